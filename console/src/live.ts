// The live run: the SSE stream feeds a RunSeries (snapshot first, then one sample a second), the controls stop it or
// change its rate, and the chaos panel sends the lab's faults (issue 12) while it runs.

import { api, eventsUrl, HttpError } from "./api";
import { clear, h } from "./dom";
import { type RunView } from "./runview";
import { RunSeries } from "./series";
import {
  errorText,
  isActive,
  type ApiError,
  type Decision,
  type Note,
  type RunData,
  type RunMeta,
  type Sample,
} from "./types";

// The lab's faults (docs/lab.md, Chaos): the same actions as a profile's `chaos:` list.
export const CHAOS_ACTIONS = [
  {
    action: "kill",
    label: "kill replica",
    hint: "SIGKILL: a crash; replaced after the restart back-off",
    duration: false,
  },
  { action: "terminate", label: "terminate replica", hint: "SIGTERM: an eviction; replaced at once", duration: false },
  { action: "freeze", label: "freeze replica", hint: "SIGSTOP for N s: a partition or a stalled node", duration: true },
  { action: "kill-scaler", label: "kill scaler", hint: "the metric source dies: KEDA's fallback", duration: false },
  { action: "freeze-scaler", label: "freeze scaler", hint: "SIGSTOP the scaler for N s", duration: true },
] as const;

/** What the chaos panel says for the server's answer (`status` null: accepted, `body` names what was hit). */
export function chaosMessage(status: number | null, body: unknown): string {
  if (status === null) {
    const done = body as { action?: string; hit?: string } | null;
    return done && done.hit ? `${done.action ?? "fault"}: hit ${done.hit}` : `sent: ${JSON.stringify(body)}`;
  }
  if (status === 404 || status === 405) return `This lab does not offer chaos actions (the server answered ${status}).`;
  const err = body && typeof body === "object" && "error" in body ? errorText(body as ApiError) : "";
  return `refused (${status})${err ? `: ${err}` : ""}`;
}

export class ChaosPanel {
  readonly el: HTMLElement;
  private runId: string | null = null;
  private readonly answer = h("p", { class: "muted", id: "chaos-answer" }, "Faults apply to the active run.");
  private readonly target = h("input", {
    type: "text",
    name: "chaos-target",
    value: "replica",
    size: 9,
    title: "replica (the oldest ready one) or replica-N; scaler faults always hit the scaler",
  });
  private readonly duration = h("input", { type: "number", name: "chaos-duration", value: "10", min: "1", step: "1" });
  private readonly buttons: HTMLButtonElement[];

  constructor() {
    this.buttons = CHAOS_ACTIONS.map((a) =>
      h(
        "button",
        { type: "button", title: a.hint, "data-action": a.action, onclick: () => void this.send(a.action, a.duration) },
        a.label,
      ),
    );
    this.el = h(
      "section",
      { class: "panel chaos", id: "chaos" },
      h("h3", {}, "Chaos"),
      h(
        "div",
        { class: "row" },
        h("label", {}, "target ", this.target),
        h("label", {}, "freeze for (s) ", this.duration),
      ),
      h("div", { class: "row" }, ...this.buttons),
      this.answer,
    );
    this.setRun(null);
  }

  setRun(id: string | null): void {
    this.runId = id;
    for (const b of this.buttons) b.disabled = id === null;
    this.el.classList.toggle("disabled", id === null);
  }

  private async send(action: string, withDuration: boolean): Promise<void> {
    if (!this.runId) return;
    const duration = withDuration ? Number(this.duration.value) || null : null;
    const target = action.endsWith("-scaler") ? null : this.target.value.trim() || null;
    try {
      const body = await api.chaos(this.runId, action, target, duration);
      this.answer.textContent = chaosMessage(null, body);
    } catch (e) {
      this.answer.textContent = e instanceof HttpError ? chaosMessage(e.status, e.body) : `failed: ${String(e)}`;
    }
  }
}

/** Stop and change-rate buttons for the active run. */
export class RunControls {
  readonly el: HTMLElement;
  private runId: string | null = null;
  private readonly stopBtn = h("button", { type: "button", id: "stop", onclick: () => void this.stop() }, "Stop");
  private readonly rate = h("input", {
    type: "number",
    id: "rate",
    name: "rate",
    value: "1",
    min: "0.1",
    max: "10",
    step: "0.1",
  });
  private readonly rateBtn = h(
    "button",
    { type: "button", id: "rate-apply", onclick: () => void this.applyRate() },
    "Set rate",
  );
  private readonly message = h("span", { class: "muted", id: "control-message" });

  constructor() {
    this.el = h(
      "div",
      { class: "controls", id: "controls" },
      this.stopBtn,
      h("label", {}, "rate × ", this.rate),
      this.rateBtn,
      this.message,
    );
    this.setRun(null);
  }

  setRun(meta: RunMeta | null): void {
    this.runId = meta && isActive(meta.status) ? meta.id : null;
    this.el.hidden = this.runId === null;
    if (meta && document.activeElement !== this.rate) this.rate.value = String(meta.rate_multiplier);
  }

  private async stop(): Promise<void> {
    if (!this.runId) return;
    this.stopBtn.disabled = true;
    try {
      await api.stop(this.runId);
      this.message.textContent = "stopping…";
    } catch (e) {
      this.message.textContent = e instanceof HttpError ? errorText(e.body) : String(e);
    } finally {
      this.stopBtn.disabled = false;
    }
  }

  private async applyRate(): Promise<void> {
    if (!this.runId) return;
    try {
      const meta = await api.rate(this.runId, Number(this.rate.value));
      this.message.textContent = `rate ×${meta.rate_multiplier}`;
    } catch (e) {
      this.message.textContent = e instanceof HttpError ? errorText(e.body) : String(e);
    }
  }
}

/** Follows one run's event stream into the view until the run ends; then reads the final record once. */
export class LiveRun {
  private es: EventSource | null;
  private series: RunSeries | null = null;

  constructor(
    readonly id: string,
    private readonly view: RunView,
    private readonly hooks: {
      status: (meta: RunMeta) => void;
      ended: (meta: RunMeta) => void;
      conn: (s: string) => void;
    },
  ) {
    const es = new EventSource(eventsUrl(id));
    this.es = es;
    es.addEventListener("snapshot", (ev) => {
      this.series = new RunSeries(JSON.parse((ev as MessageEvent).data) as RunData);
      this.view.show(this.series);
      this.hooks.conn("live");
      this.statusChanged(this.series.meta);
    });
    es.addEventListener("sample", (ev) => {
      if (this.series?.push(JSON.parse((ev as MessageEvent).data) as Sample)) this.view.sampleAdded();
    });
    es.addEventListener("decision", (ev) => {
      if (!this.series) return;
      const d = JSON.parse((ev as MessageEvent).data) as Decision;
      this.series.decisions.push(d);
      this.view.decisionAdded(d);
    });
    es.addEventListener("note", (ev) => {
      if (!this.series) return;
      this.series.notes.push(JSON.parse((ev as MessageEvent).data) as Note);
      this.view.noteAdded();
    });
    es.addEventListener("status", (ev) => {
      if (!this.series) return;
      this.series.meta = JSON.parse((ev as MessageEvent).data) as RunMeta;
      this.statusChanged(this.series.meta);
    });
    es.onerror = () => this.hooks.conn(es.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…");
  }

  close(): void {
    this.es?.close();
    this.es = null;
  }

  private statusChanged(meta: RunMeta): void {
    this.view.metaChanged();
    this.hooks.status(meta);
    if (isActive(meta.status)) return;
    // Close before the server ends the stream, or EventSource would reconnect and replay the run.
    this.close();
    this.hooks.conn("ended");
    void api
      .run(this.id)
      .then((data) => {
        this.series?.finish(data);
        this.view.refresh();
      })
      .catch((e) => this.hooks.conn(`final record not read: ${String(e)}`))
      .finally(() => this.hooks.ended(this.series?.meta ?? meta));
  }
}

export function connectionBadge(): { el: HTMLElement; set: (s: string) => void } {
  const el = h("span", { class: "pill conn", id: "connection" });
  return {
    el,
    set: (s: string) => {
      clear(el);
      el.append(s);
    },
  };
}
