// The start form: a built-in profile or its YAML edited, the ScaledObject (the repo's or edited), time scale, rate,
// duration, max replicas, SLO and label. YAML is checked by the server as the lab checks it (POST /api/validate) and
// an error is shown at its line; a refused start marks the field the server names.

import { api, HttpError, type StartRequest } from "./api";
import { clear, h } from "./dom";
import { type ApiError, errorText, type ProfileInfo, type RunMeta } from "./types";

/** `line 3, column 5: ...` plus the offending line with a caret under the column, when the server gives a position. */
export function describeYamlError(err: ApiError, yaml: string): { message: string; excerpt: string | null } {
  const where = err.line ? `line ${err.line}${err.column ? `, column ${err.column}` : ""}: ` : "";
  // The request field holding the YAML says nothing the editor does not; a field inside the YAML does.
  const field = err.field && !/(^|_)yaml$/.test(err.field) ? ` (field ${err.field})` : "";
  // The parser's own "at line N column M" is already in front.
  const text = err.line ? errorText(err).replace(/ at line \d+ column \d+$/, "") : errorText(err);
  let excerpt: string | null = null;
  if (err.line) {
    const line = yaml.split("\n")[err.line - 1];
    if (line !== undefined) {
      const caret = err.column ? `\n${" ".repeat(Math.max(0, err.column - 1) + String(err.line).length + 3)}^` : "";
      excerpt = `${err.line} | ${line}${caret}`;
    }
  }
  return { message: `${where}${text}${field}`, excerpt };
}

function debounce(fn: () => void, ms: number): () => void {
  let timer: number | null = null;
  return () => {
    if (timer !== null) clearTimeout(timer);
    timer = window.setTimeout(fn, ms);
  };
}

/** A YAML textarea with its validation line underneath. */
class YamlField {
  readonly area: HTMLTextAreaElement;
  readonly status = h("div", { class: "validation" });
  edited = false;

  constructor(
    readonly kind: "profile" | "scaledobject",
    name: string,
  ) {
    this.area = h("textarea", { name, rows: 10, spellcheck: "false" });
    const check = debounce(() => void this.validate(), 400);
    this.area.addEventListener("input", () => {
      this.edited = true;
      check();
    });
  }

  set(yaml: string): void {
    this.area.value = yaml;
    this.edited = false;
    clear(this.status);
  }

  async validate(): Promise<boolean> {
    const yaml = this.area.value;
    clear(this.status);
    this.area.classList.remove("invalid");
    try {
      const ok = await api.validate(this.kind, yaml);
      this.status.append(h("span", { class: "ok" }, `✓ ${ok.summary}`));
      return true;
    } catch (e) {
      this.showError(e instanceof HttpError ? e.body : { error: String(e) });
      return false;
    }
  }

  /** Marks the editor and shows the error under it, at its line when the server located it. */
  showError(err: ApiError): void {
    clear(this.status);
    const { message, excerpt } = describeYamlError(err, this.area.value);
    this.area.classList.add("invalid");
    this.status.append(h("span", { class: "error" }, message));
    if (excerpt) this.status.append(h("pre", { class: "excerpt" }, excerpt));
    if (err.line) this.selectLine(err.line);
  }

  private selectLine(line: number): void {
    const lines = this.area.value.split("\n");
    const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    this.area.setSelectionRange(start, start + (lines[line - 1]?.length ?? 0));
  }
}

export class StartForm {
  readonly el: HTMLFormElement;
  private profiles: ProfileInfo[] = [];
  private readonly profile = h("select", { name: "profile", id: "profile" });
  private readonly profileYaml = new YamlField("profile", "profile_yaml");
  private readonly soYaml = new YamlField("scaledobject", "scaledobject_yaml");
  private readonly soMode = h(
    "select",
    { name: "scaledobject_mode" },
    h("option", { value: "repo" }, "the repo's"),
    h("option", { value: "edited" }, "edited YAML"),
  );
  private readonly soSource = h("span", { class: "muted" });
  private readonly message = h("div", { class: "form-message", id: "start-message" });
  private readonly startBtn = h("button", { type: "submit", id: "start" }, "Start");

  constructor(private readonly onStarted: (meta: RunMeta) => void) {
    const num = (name: string, value: string, attrs: Record<string, string> = {}) =>
      h("input", { type: "number", name, id: name, value, step: "any", ...attrs });
    const field = (label: string, input: HTMLElement, hint?: string) =>
      h("label", { class: "field" }, h("span", {}, label), input, hint ? h("small", { class: "muted" }, hint) : null);
    this.profile.addEventListener("change", () => this.pickProfile());
    this.soMode.addEventListener("change", () => this.soModeChanged());
    this.el = h(
      "form",
      { class: "start-form", id: "start-form", novalidate: true },
      h(
        "div",
        { class: "row" },
        field("Profile", this.profile),
        field("Time scale", num("time_scale", "0.5", { min: "0.01", max: "10" }), "0.01–10; 0.5 = twice as fast"),
        field("Rate ×", num("rate_multiplier", "1", { min: "0.1", max: "10" }), "0.1–10"),
        field("Duration (s)", num("duration_s", "", { min: "1", placeholder: "profile's" })),
        field("Max replicas", num("max_replicas", "", { min: "1", max: "64", placeholder: "ScaledObject's" })),
        field("SLO", h("input", { type: "text", name: "slo", id: "slo", placeholder: "e.g. p95<500ms" })),
        field("Label", h("input", { type: "text", name: "label", id: "label", placeholder: "optional" })),
      ),
      h(
        "details",
        {},
        h("summary", {}, "Profile YAML (edit to run a custom profile)"),
        this.profileYaml.area,
        this.profileYaml.status,
      ),
      h(
        "details",
        {},
        h("summary", {}, "ScaledObject: ", this.soMode, " ", this.soSource),
        this.soYaml.area,
        this.soYaml.status,
      ),
      h("div", { class: "actions" }, this.startBtn, this.message),
    );
    this.el.addEventListener("submit", (ev) => {
      ev.preventDefault();
      void this.submit();
    });
  }

  async load(): Promise<void> {
    try {
      const [profiles, so] = await Promise.all([api.profiles(), api.scaledobject()]);
      this.profiles = profiles;
      clear(this.profile);
      for (const p of profiles) {
        this.profile.append(
          h("option", { value: p.name, title: p.description }, `${p.name} (${Math.round(p.duration_s)} s)`),
        );
      }
      const demo = profiles.find((p) => p.name === "demo");
      if (demo) this.profile.value = demo.name;
      this.pickProfile();
      this.soYaml.set(so.yaml);
      this.soSource.textContent = `(${so.source})`;
    } catch (e) {
      this.say(`could not load the profiles: ${e instanceof Error ? e.message : String(e)}`, true);
    }
  }

  setRunning(running: boolean): void {
    this.startBtn.disabled = running;
    this.startBtn.title = running ? "one run at a time: stop the active run first" : "";
  }

  private pickProfile(): void {
    const p = this.profiles.find((x) => x.name === this.profile.value);
    this.profileYaml.set(p?.yaml ?? "");
  }

  private soModeChanged(): void {
    const edited = this.soMode.value === "edited";
    this.soYaml.area.readOnly = !edited;
    if (edited) (this.soYaml.area.closest("details") as HTMLDetailsElement).open = true;
  }

  private value(name: string): string {
    return (this.el.elements.namedItem(name) as HTMLInputElement).value.trim();
  }

  request(): StartRequest {
    const req: StartRequest = {};
    if (this.profileYaml.edited) req.profile_yaml = this.profileYaml.area.value;
    else req.profile = this.profile.value;
    const n = (name: string) => (this.value(name) === "" ? undefined : Number(this.value(name)));
    req.time_scale = n("time_scale");
    req.rate_multiplier = n("rate_multiplier");
    req.duration_s = n("duration_s");
    req.max_replicas = n("max_replicas");
    if (this.soMode.value === "edited" || this.soYaml.edited) req.scaledobject_yaml = this.soYaml.area.value;
    if (this.value("slo")) req.slo = this.value("slo");
    if (this.value("label")) req.label = this.value("label");
    return req;
  }

  private async submit(): Promise<void> {
    for (const el of this.el.querySelectorAll(".invalid")) el.classList.remove("invalid");
    if (this.profileYaml.edited && !(await this.profileYaml.validate()))
      return this.say("fix the profile YAML first", true);
    if ((this.soMode.value === "edited" || this.soYaml.edited) && !(await this.soYaml.validate()))
      return this.say("fix the ScaledObject YAML first", true);
    this.startBtn.disabled = true;
    this.say("starting…");
    try {
      const meta = await api.start(this.request());
      this.say(`started ${meta.id}`);
      this.onStarted(meta);
    } catch (e) {
      this.startBtn.disabled = false;
      if (e instanceof HttpError) {
        const yamlField = { profile_yaml: this.profileYaml, scaledobject_yaml: this.soYaml }[e.body.field ?? ""];
        if (yamlField) yamlField.showError(e.body);
        const field = e.body.field ? this.el.querySelector(`[name="${CSS.escape(e.body.field)}"]`) : null;
        field?.classList.add("invalid");
        this.say(`${errorText(e.body)}${e.body.field ? ` (${e.body.field})` : ""}`, true);
      } else this.say(String(e), true);
    }
  }

  private say(text: string, error = false): void {
    this.message.textContent = text;
    this.message.className = `form-message${error ? " error" : ""}`;
  }
}
