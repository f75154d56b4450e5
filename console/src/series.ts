// A run as columns: one array per plotted quantity, appended to once per sample, so a live chart hands the same
// arrays to uPlot's setData instead of rebuilding anything. An hour of one-second samples is 3600 numbers a column.

import type { Decision, Note, Phase, RunData, RunMeta, Sample, ScaleEvent } from "./types";

export const PERCENTILES = ["p50", "p90", "p95", "p99", "p99_9", "max"] as const;
export type Percentile = (typeof PERCENTILES)[number];
export const PERCENTILE_LABEL: Record<Percentile, string> = {
  p50: "p50",
  p90: "p90",
  p95: "p95",
  p99: "p99",
  p99_9: "p99.9",
  max: "max",
};

type Col = (number | null)[];

/** Columns keyed by a name that appears during the run (an error class, an endpoint, a trigger). */
class KeyedCols {
  readonly cols = new Map<string, Col>();
  /** Appends `value` under `key` at row `row`, padding a column that is new with nulls for the rows before it. */
  set(key: string, row: number, value: number | null): void {
    let col = this.cols.get(key);
    if (!col) {
      col = new Array<number | null>(row).fill(null);
      this.cols.set(key, col);
    }
    col.push(value);
  }
  /** Pads every column to `len` rows (keys absent from a sample read null there). */
  pad(len: number): void {
    for (const col of this.cols.values()) while (col.length < len) col.push(null);
  }
  keys(): string[] {
    return [...this.cols.keys()].sort();
  }
}

export class RunSeries {
  meta: RunMeta;
  readonly t: number[] = [];
  readonly offered: Col = [];
  readonly achieved: Col = [];
  readonly errorsPerS: Col = [];
  readonly dropped: Col = [];
  readonly latency: Record<Percentile, Col> = { p50: [], p90: [], p95: [], p99: [], p99_9: [], max: [] };
  readonly desired: Col = [];
  readonly current: Col = [];
  readonly ready: Col = [];
  readonly draining: Col = [];
  readonly backlog: Col = [];
  readonly multiplier: Col = [];
  readonly errorClass = new KeyedCols();
  readonly endpointRps = new KeyedCols();
  readonly endpointLatency: Record<Percentile, KeyedCols> = {
    p50: new KeyedCols(),
    p90: new KeyedCols(),
    p95: new KeyedCols(),
    p99: new KeyedCols(),
    p99_9: new KeyedCols(),
    max: new KeyedCols(),
  };
  readonly triggerValue = new KeyedCols();
  readonly triggerTarget = new KeyedCols();
  readonly triggerRatio = new KeyedCols();
  decisions: Decision[] = [];
  notes: Note[] = [];
  phases: Phase[] = [];
  /** The profile stage of the newest sample (the server's `phase`), shown beside the figures. */
  stage: string | null = null;
  scaleEvents: ScaleEvent[] = [];
  triggers: RunData["triggers"] = [];
  report: RunData["report"] = null;

  constructor(data: RunData) {
    this.meta = data.meta;
    this.decisions = [...(data.decisions ?? [])];
    this.notes = [...(data.notes ?? [])];
    this.phases = data.phases ?? [];
    this.scaleEvents = [...(data.scale_events ?? [])];
    this.triggers = data.triggers ?? [];
    this.report = data.report ?? null;
    for (const s of data.samples ?? []) this.push(s);
  }

  get length(): number {
    return this.t.length;
  }

  /** Appends one sample. A sample at or before the last one is a repeat (an SSE reconnect) and is ignored. */
  push(s: Sample): boolean {
    const n = this.t.length;
    const prevT = n > 0 ? this.t[n - 1] : null;
    if (prevT !== null && s.t_s <= prevT) return false;
    // Counts are per interval; the interval is the gap to the previous sample (one second unless one was lost).
    const dt = prevT === null ? 1 : Math.max(s.t_s - prevT, 1e-3);
    this.t.push(s.t_s);
    this.offered.push(s.offered_rps);
    this.achieved.push(s.achieved_rps);
    this.errorsPerS.push(s.errors / dt);
    this.dropped.push(s.dropped / dt);
    for (const p of PERCENTILES) this.latency[p].push(s.latency_ms?.[p] ?? null);
    this.desired.push(s.replicas?.desired ?? null);
    this.current.push(s.replicas?.current ?? null);
    this.ready.push(s.replicas?.ready ?? null);
    this.draining.push(s.replicas?.draining ?? null);
    this.backlog.push(s.backlog ?? null);
    this.multiplier.push(s.rate_multiplier ?? null);
    this.stage = s.phase ?? null;
    for (const [cls, count] of Object.entries(s.errors_by_class ?? {})) this.errorClass.set(cls, n, count / dt);
    for (const [route, e] of Object.entries(s.endpoints ?? {})) {
      this.endpointRps.set(route, n, e.rps);
      for (const p of PERCENTILES) this.endpointLatency[p].set(route, n, e.latency_ms?.[p] ?? null);
    }
    for (const tr of s.triggers ?? []) {
      this.triggerValue.set(tr.name, n, tr.value);
      this.triggerTarget.set(tr.name, n, tr.target);
      this.triggerRatio.set(tr.name, n, tr.ratio);
    }
    const len = n + 1;
    this.errorClass.pad(len);
    this.endpointRps.pad(len);
    for (const p of PERCENTILES) this.endpointLatency[p].pad(len);
    this.triggerValue.pad(len);
    this.triggerTarget.pad(len);
    this.triggerRatio.pad(len);
    this.noteScale(s.t_s);
    return true;
  }

  /**
   * The faults (issue 12's chaos): the report's chaos section once the run has ended, with its recovery figures; while
   * live, the lab's injection notes (`chaos: kill consumer-1 (pid 7) (SIGKILL) ...`).
   */
  get faults(): FaultMark[] {
    const chaos = (this.report as { chaos?: { faults?: ChaosFault[] } } | null)?.chaos;
    if (chaos && Array.isArray(chaos.faults))
      return chaos.faults.map((f) => ({
        t_s: f.at_s,
        label: f.action,
        detail:
          `${f.action} ${f.hit ?? f.target}: lost ${f.lost}` +
          (f.recovered_after_s !== null && f.recovered_after_s !== undefined
            ? `, recovered after ${f.recovered_after_s.toFixed(1)} s`
            : ", not recovered within the load"),
      }));
    return this.notes
      .filter((n) => n.text.startsWith("chaos: ") && n.text.includes("(SIG"))
      .map((n) => {
        const verb = n.text.slice("chaos: ".length).split(" ")[0];
        return { t_s: n.t_s, label: n.text.includes(" scaler (pid ") ? `${verb}-scaler` : verb, detail: n.text };
      });
  }

  /** Scale events come from the server at the end; while live, the page derives them from `current` changing. */
  private noteScale(t: number): void {
    const n = this.current.length;
    if (n < 2) return;
    const from = this.current[n - 2];
    const to = this.current[n - 1];
    if (from === null || to === null || from === to) return;
    const last = this.scaleEvents[this.scaleEvents.length - 1];
    if (last && last.t_s >= t - 1e-9 && last.to === to) return;
    this.scaleEvents.push({ t_s: t, from, to });
  }

  /** Takes the server's finished record (phases, authoritative scale events, report) without losing live samples. */
  finish(data: RunData): void {
    this.meta = data.meta;
    if (data.phases) this.phases = data.phases;
    if (data.scale_events && data.scale_events.length > 0) this.scaleEvents = [...data.scale_events];
    if (data.decisions && data.decisions.length >= this.decisions.length) this.decisions = [...data.decisions];
    if (data.notes) this.notes = [...data.notes];
    if (data.triggers) this.triggers = data.triggers;
    this.report = data.report ?? null;
    for (const s of data.samples ?? []) this.push(s);
  }
}

/** A fault drawn on the charts. */
export interface FaultMark {
  t_s: number;
  label: string;
  detail: string;
}

/** The part of the report's `chaos.faults[]` the page shows. */
export interface ChaosFault {
  at_s: number;
  action: string;
  target: string;
  hit: string | null;
  lost: number;
  recovered_after_s: number | null;
  replacement_ready_after_s: number | null;
}

/**
 * Joins several runs' tables on a shared x (seconds since each run's load start), as uPlot's join would: the union of
 * the x values, a run's columns null where it has no sample. Both inputs are sorted, so this is a merge.
 */
export function alignTables(tables: { x: number[]; ys: (number | null)[][] }[]): (number | null)[][] {
  const xs = [...new Set(tables.flatMap((t) => t.x))].sort((a, b) => a - b);
  const out: (number | null)[][] = [xs];
  for (const table of tables) {
    const idx = new Map<number, number>();
    table.x.forEach((x, i) => idx.set(x, i));
    for (const y of table.ys) out.push(xs.map((x) => (idx.has(x) ? (y[idx.get(x)!] ?? null) : null)));
  }
  return out;
}

/** The newest-first decision list the log shows, capped so the DOM stays small over an hour-long run. */
export function newestFirst(decisions: Decision[], cap = 300): Decision[] {
  return decisions.slice(-cap).reverse();
}

export const fmtNum = (v: number | null | undefined, digits = 1): string =>
  v === null || v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(digits);

/** `m:ss` for a run-relative time (negative before the load starts). */
export function fmtT(t: number): string {
  const sign = t < 0 ? "-" : "";
  const a = Math.abs(t);
  const m = Math.floor(a / 60);
  const s = Math.floor(a % 60);
  return `${sign}${m}:${s.toString().padStart(2, "0")}`;
}
