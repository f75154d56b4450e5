// One run on screen: header, figures, downloads, the chart board, the decision log and the notes. The live page,
// a past run and the offline report all use it; only the live page adds controls (controls.ts) around it.

import { downloadUrl } from "./api";
import { ChartBoard, type ChartOptions, triggerNames } from "./charts";
import { clear, h } from "./dom";
import { fmtNum, fmtT, newestFirst, PERCENTILE_LABEL, PERCENTILES, type Percentile, RunSeries } from "./series";
import type { Decision, RunMeta } from "./types";

const LOG_CAP = 300;

/** The chart options the user picks, shared by every board on the page. */
export class ChartPicker {
  percentiles = new Set<Percentile>(["p50", "p95", "p99"]);
  endpointMetric: ChartOptions["endpointMetric"] = "rps";
  trigger: string | null = null;
  private readonly triggerSelect: HTMLSelectElement;
  private readonly listeners: (() => void)[] = [];
  readonly el: HTMLElement;

  constructor() {
    const boxes = PERCENTILES.map((p) =>
      h(
        "label",
        { class: "check" },
        h("input", {
          type: "checkbox",
          name: `pct-${p}`,
          checked: this.percentiles.has(p),
          onchange: (ev: Event) => {
            if ((ev.target as HTMLInputElement).checked) this.percentiles.add(p);
            else this.percentiles.delete(p);
            this.changed();
          },
        }),
        PERCENTILE_LABEL[p],
      ),
    );
    const metric = h(
      "select",
      {
        name: "endpoint-metric",
        onchange: (ev: Event) => {
          this.endpointMetric = (ev.target as HTMLSelectElement).value as ChartOptions["endpointMetric"];
          this.changed();
        },
      },
      h("option", { value: "rps" }, "req/s"),
      ...PERCENTILES.map((p) => h("option", { value: p }, `${PERCENTILE_LABEL[p]} ms`)),
    );
    this.triggerSelect = h("select", {
      name: "trigger",
      onchange: (ev: Event) => {
        this.trigger = (ev.target as HTMLSelectElement).value || null;
        this.changed();
      },
    });
    this.el = h(
      "div",
      { class: "picker" },
      h("span", { class: "muted" }, "latency:"),
      ...boxes,
      h("span", { class: "muted sep" }, "per endpoint:"),
      metric,
      h("span", { class: "muted sep" }, "trigger:"),
      this.triggerSelect,
    );
  }

  /** Offers the triggers the runs have (kept as they are when unchanged, so a live run does not reset the pick). */
  setTriggers(runs: RunSeries[]): void {
    const names = [...new Set(runs.flatMap(triggerNames))];
    const current = [...this.triggerSelect.options].map((o) => o.value);
    if (names.join("\n") === current.join("\n")) return;
    clear(this.triggerSelect);
    for (const n of names) this.triggerSelect.append(h("option", { value: n }, n));
    if (this.trigger && names.includes(this.trigger)) this.triggerSelect.value = this.trigger;
  }

  options = (): ChartOptions => ({
    percentiles: this.percentiles,
    endpointMetric: this.endpointMetric,
    trigger: this.trigger,
  });
  onChange(fn: () => void): void {
    this.listeners.push(fn);
  }
  private changed(): void {
    for (const fn of this.listeners) fn();
  }
}

function describeMeta(m: RunMeta): string {
  const parts = [
    `profile ${m.profile}`,
    `time scale x${m.time_scale}`,
    `rate x${m.rate_multiplier}`,
    `ScaledObject ${m.scaledobject}`,
  ];
  if (m.max_replicas) parts.push(`max ${m.max_replicas} replicas`);
  parts.push(`started ${new Date(m.started_at).toLocaleString()}`);
  return parts.join(" · ");
}

export function decisionItem(d: Decision): HTMLLIElement {
  const change =
    d.current !== undefined && d.current !== d.desired ? `${d.current} → ${d.desired}` : `stay at ${d.desired}`;
  return h(
    "li",
    { class: d.current !== undefined && d.desired > d.current ? "up" : d.desired < (d.current ?? 0) ? "down" : "" },
    h("span", { class: "t" }, fmtT(d.t_s)),
    h("span", { class: "chg" }, change),
    h("span", { class: "why" }, d.reason),
  );
}

/** The figures a scaling report is compared by, read defensively from RunMeta.summary and report.json. */
export function summaryRows(run: RunSeries): [string, string][] {
  const s = run.meta.summary;
  const rep = (run.report ?? {}) as Record<string, unknown>;
  const scaling = (rep.scaling ?? {}) as Record<string, unknown>;
  const cost = (scaling.cost ?? {}) as Record<string, unknown>;
  const events = Array.isArray(scaling.events) ? (scaling.events as Record<string, unknown>[]) : [];
  const eventText = events
    // An event the analysis found without a replica change (demand only) has no from/to: its kind says what it was.
    .map((e) => {
      const step = typeof e.from_replicas === "number" && typeof e.to_replicas === "number";
      const what = step ? `${e.from_replicas}→${e.to_replicas}` : String(e.kind ?? "event").replace("_", "-");
      return `${what} in ${fmtNum(e.total_s as number)} s`;
    })
    .join(", ");
  const num = (v: unknown, d = 1, unit = "") => (typeof v === "number" ? `${fmtNum(v, d)}${unit}` : "–");
  return [
    ["status", `${run.meta.status}${run.meta.exit_code !== null ? ` (exit ${run.meta.exit_code})` : ""}`],
    ["verdict", typeof rep.verdict === "string" && rep.verdict ? rep.verdict : "–"],
    ["SLO", typeof scaling.slo === "string" ? scaling.slo : "–"],
    ["requests", s ? `${s.requests}` : "–"],
    ["errors", s ? `${s.errors}` : "–"],
    ["p95", s ? `${fmtNum(s.p95_ms)} ms` : "–"],
    ["max replicas seen", s ? `${s.max_replicas_seen}` : "–"],
    ["time to scale", s && s.time_to_scale_s !== null ? `${fmtNum(s.time_to_scale_s)} s` : "–"],
    ["first new replica ready", num(scaling.time_to_first_new_ready_s, 1, " s")],
    ["time to scale down", num(scaling.time_to_scale_down_s, 1, " s")],
    ["peak replicas", num(scaling.peak_replicas, 0)],
    ["scaling events", eventText || "–"],
    ["replica-seconds", num(cost.replica_seconds, 1)],
    ["… per 1000 requests", num(cost.replica_seconds_per_1000_requests, 1)],
    ["… wasted", num(cost.wasted_replica_seconds, 1)],
    ["scale steps seen", `${run.scaleEvents.length}`],
    ...run.faults.map((f): [string, string] => [`fault at ${fmtNum(f.t_s)} s`, f.detail]),
    ["decisions", `${run.decisions.length}`],
  ];
}

/** The scaling report's advice, when it has some. */
export function advice(run: RunSeries): string[] {
  const scaling = ((run.report ?? {}) as Record<string, unknown>).scaling as Record<string, unknown> | undefined;
  return Array.isArray(scaling?.advice) ? (scaling.advice as unknown[]).map(String) : [];
}

export function summaryTable(run: RunSeries, title?: string): HTMLElement {
  const tips = advice(run);
  return h(
    "div",
    { class: "summary-block" },
    summaryFigures(run, title),
    tips.length > 0
      ? h(
          "ul",
          { class: "advice" },
          tips.map((t) => h("li", {}, t)),
        )
      : null,
  );
}

function summaryFigures(run: RunSeries, title?: string): HTMLElement {
  return h(
    "table",
    { class: "summary" },
    title ? h("caption", {}, title) : null,
    h(
      "tbody",
      {},
      summaryRows(run).map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v))),
    ),
  );
}

export class RunView {
  readonly el: HTMLElement;
  private readonly content: HTMLElement;
  private readonly placeholder = h(
    "p",
    { class: "muted", id: "no-run" },
    "No run open: start one above, or open one from the history.",
  );
  private run: RunSeries | null = null;
  private board: ChartBoard | null = null;
  private readonly header = h("div", { class: "run-header" });
  private readonly stats = h("div", { class: "stats", id: "stats" });
  private readonly downloads = h("div", { class: "downloads", id: "downloads" });
  private readonly chartsEl = h("div", { id: "charts" });
  private readonly log = h("ol", { class: "decisions", id: "decision-log" });
  private readonly notes = h("ul", { class: "notes", id: "notes" });
  private readonly summary = h("div", { id: "summary" });

  constructor(
    private readonly picker: ChartPicker,
    private readonly opts: { offline: boolean; extra?: HTMLElement },
  ) {
    this.content = h(
      "div",
      { class: "run-view", hidden: true },
      this.header,
      this.stats,
      opts.offline ? null : this.downloads,
      picker.el,
      this.chartsEl,
      h(
        "div",
        { class: "columns" },
        h("section", { class: "panel" }, h("h3", {}, "Decisions (newest first)"), this.log),
        h(
          "div",
          {},
          opts.extra ?? null,
          h("section", { class: "panel" }, h("h3", {}, "Scaling report"), this.summary),
          h("section", { class: "panel" }, h("h3", {}, "Notes"), this.notes),
        ),
      ),
    );
    this.el = h("div", {}, this.placeholder, this.content);
    picker.onChange(() => this.board?.flush());
  }

  get current(): RunSeries | null {
    return this.run;
  }

  /** Shows a run from scratch (a snapshot, a past run, the offline report). */
  show(run: RunSeries): void {
    this.run = run;
    // Unhide first: the board sizes its charts from the laid-out width.
    this.content.hidden = false;
    this.placeholder.hidden = true;
    if (this.board) this.board.setRuns([run]);
    else this.board = new ChartBoard(this.chartsEl, [run], this.picker.options);
    this.picker.setTriggers([run]);
    this.board.flush();
    this.renderMeta();
    this.renderStats();
    this.renderLog();
    this.renderNotes();
  }

  sampleAdded(): void {
    if (this.run) this.picker.setTriggers([this.run]);
    this.renderStats();
    this.renderSummary();
    this.board?.schedule();
  }

  decisionAdded(d: Decision): void {
    this.renderSummary();
    this.log.prepend(decisionItem(d));
    while (this.log.childElementCount > LOG_CAP) this.log.lastElementChild?.remove();
    this.log.dataset.count = String(this.run?.decisions.length ?? 0);
  }

  noteAdded(): void {
    this.renderNotes();
  }

  metaChanged(): void {
    this.renderMeta();
    this.board?.schedule();
  }

  /** After the server's final record: phases and scale events changed on every chart. */
  refresh(): void {
    this.board?.flush();
    this.renderMeta();
    this.renderStats();
    this.renderLog();
    this.renderNotes();
  }

  private renderMeta(): void {
    const run = this.run;
    clear(this.header);
    clear(this.downloads);
    if (!run) return;
    const m = run.meta;
    this.header.append(
      h("h2", {}, m.label || m.id, " ", h("span", { class: `pill ${m.status}`, id: "run-status" }, m.status)),
      h("p", { class: "muted" }, `${m.id} · ${describeMeta(m)}`),
    );
    if (m.error) this.header.append(h("p", { class: "error" }, m.error));
    if (!this.opts.offline) {
      const finished = m.status === "finished" || m.status === "failed" || m.status === "stopped";
      this.downloads.append(
        h("span", { class: "muted" }, "downloads: "),
        ...(["report.json", "intervals.csv", "report.html"] as const).map((f) =>
          finished
            ? h("a", { href: downloadUrl(m.id, f), download: `${m.id}-${f}`, "data-file": f }, f)
            : h("span", { class: "muted", title: "after the run ends" }, f),
        ),
      );
    }
    this.renderSummary();
  }

  private renderSummary(): void {
    clear(this.summary);
    if (this.run) this.summary.append(summaryTable(this.run));
  }

  private renderStats(): void {
    const run = this.run;
    clear(this.stats);
    if (!run) return;
    const n = run.length - 1;
    const at = <T>(col: T[]): T | null => (n >= 0 ? col[n] : null);
    const stat = (id: string, label: string, value: number | null, digits = 0, unit = "") =>
      h(
        "div",
        { class: "stat" },
        h("span", { class: "v", id, "data-value": value ?? "" }, `${fmtNum(value, digits)}${unit}`),
        h("span", { class: "k" }, label),
      );
    this.stats.append(
      stat("stat-t", "t (s)", at(run.t), 0),
      stat("stat-replicas", "replicas (current)", at(run.current)),
      stat("stat-desired", "desired", at(run.desired)),
      stat("stat-ready", "ready", at(run.ready)),
      stat("stat-offered", "offered req/s", at(run.offered), 1),
      stat("stat-achieved", "achieved req/s", at(run.achieved), 1),
      stat("stat-p95", "p95 ms", at(run.latency.p95), 1),
      stat("stat-errors", "errors/s", at(run.errorsPerS), 1),
      stat("stat-backlog", "backlog", at(run.backlog), 0),
    );
    if (run.stage) {
      this.stats.append(
        h(
          "div",
          { class: "stat" },
          h("span", { class: "v", id: "stat-stage" }, run.stage),
          h("span", { class: "k" }, "stage"),
        ),
      );
    }
  }

  private renderLog(): void {
    clear(this.log);
    if (!this.run) return;
    for (const d of newestFirst(this.run.decisions, LOG_CAP)) this.log.append(decisionItem(d));
    this.log.dataset.count = String(this.run.decisions.length);
  }

  private renderNotes(): void {
    clear(this.notes);
    if (!this.run) return;
    const phases = this.run.phases.map((p) =>
      h("li", {}, `${fmtT(p.start_s)}–${fmtT(p.end_s)} ${p.kind} #${p.event}: ${p.phase}`),
    );
    const notes = [...this.run.notes].reverse().map((n) => h("li", {}, `${fmtT(n.t_s)} ${n.text}`));
    if (phases.length + notes.length === 0) this.notes.append(h("li", { class: "muted" }, "none yet"));
    this.notes.append(...notes, ...phases);
  }
}
