// Every chart of a run, drawn with uPlot: the live page, a past run, the overlay of two runs and the offline report
// all go through ChartBoard, so the report shows exactly what the page showed. Scale events (vertical lines) and the
// scaling report's phases (bands) are drawn on every chart by one uPlot plugin.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { fmtNum, fmtT, PERCENTILE_LABEL, PERCENTILES, type Percentile, type RunSeries, alignTables } from "./series";

type Col = (number | null)[];

interface Line {
  label: string;
  stroke: string;
  values: Col;
  dash?: number[];
  scale?: string;
  stepped?: boolean;
}

export interface ChartOptions {
  percentiles: Set<Percentile>;
  endpointMetric: "rps" | Percentile;
  /** The trigger whose value and target are drawn (their scales differ by orders of magnitude); null: the first. */
  trigger: string | null;
}

/** The run's trigger names in the ScaledObject's order, then any the samples name that it does not. */
export function triggerNames(run: RunSeries): string[] {
  const seen = run.triggerValue.keys();
  const ordered = run.triggers.map((t) => t.name).filter((n) => seen.includes(n));
  return [...ordered, ...seen.filter((n) => !ordered.includes(n))];
}

interface ChartKind {
  id: string;
  title: string;
  unit: string;
  lines: (run: RunSeries, opts: ChartOptions) => Line[];
  /** A second y axis on the right for lines with scale "y2". */
  y2?: string;
}

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563", "#65a30d"];
const color = (i: number) => PALETTE[i % PALETTE.length];

// x ticks on whole seconds and minutes, so m:ss labels never repeat.
const TIME_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];

const ones = (n: number): Col => new Array<number | null>(n).fill(1);

export const CHARTS: ChartKind[] = [
  {
    id: "rate",
    title: "Request rate",
    unit: "req/s",
    lines: (r) => [
      { label: "offered", stroke: "#94a3b8", values: r.offered },
      { label: "achieved", stroke: "#2563eb", values: r.achieved },
      { label: "dropped/s", stroke: "#dc2626", values: r.dropped },
    ],
  },
  {
    id: "errors",
    title: "Errors by class",
    unit: "errors/s",
    lines: (r) => {
      const keys = r.errorClass.keys();
      if (keys.length === 0) return [{ label: "errors/s", stroke: "#dc2626", values: r.errorsPerS }];
      return keys.map((k, i) => ({ label: k, stroke: color(i + 1), values: r.errorClass.cols.get(k)! }));
    },
  },
  {
    id: "latency",
    title: "Latency percentiles",
    unit: "ms",
    lines: (r, o) =>
      PERCENTILES.filter((p) => o.percentiles.has(p)).map((p) => ({
        label: PERCENTILE_LABEL[p],
        stroke: color(PERCENTILES.indexOf(p)),
        values: r.latency[p],
      })),
  },
  {
    id: "endpoints",
    title: "Per endpoint",
    unit: "",
    lines: (r, o) => {
      const cols = o.endpointMetric === "rps" ? r.endpointRps : r.endpointLatency[o.endpointMetric];
      return cols.keys().map((k, i) => ({ label: k, stroke: color(i), values: cols.cols.get(k)! }));
    },
  },
  {
    id: "replicas",
    title: "Replicas",
    unit: "replicas",
    lines: (r) => [
      { label: "desired", stroke: "#7c3aed", values: r.desired, stepped: true, dash: [6, 3] },
      { label: "current", stroke: "#2563eb", values: r.current, stepped: true },
      { label: "ready", stroke: "#16a34a", values: r.ready, stepped: true },
      { label: "draining", stroke: "#d97706", values: r.draining, stepped: true },
    ],
  },
  {
    id: "triggers",
    title: "Trigger value vs target",
    unit: "value",
    lines: (r, o) => {
      const names = triggerNames(r);
      const k = o.trigger && names.includes(o.trigger) ? o.trigger : names[0];
      if (k === undefined) return [];
      return [
        { label: `${k} value`, stroke: "#2563eb", values: r.triggerValue.cols.get(k)! },
        { label: `${k} target`, stroke: "#dc2626", values: r.triggerTarget.cols.get(k)!, dash: [4, 4] },
      ];
    },
  },
  {
    id: "ratio",
    title: "Trigger usage ratio (value / target)",
    unit: "ratio",
    lines: (r) => [
      ...r.triggerRatio.keys().map((k, i) => ({ label: k, stroke: color(i), values: r.triggerRatio.cols.get(k)! })),
      { label: "1.0", stroke: "#9ca3af", values: ones(r.length), dash: [2, 4] },
    ],
  },
  {
    id: "backlog",
    title: "Backlog",
    unit: "requests",
    lines: (r) => [{ label: "backlog", stroke: "#0891b2", values: r.backlog }],
  },
];

const PHASE_COLORS: Record<string, string> = {};
const PHASE_FILL = ["rgba(37,99,235,0.08)", "rgba(217,119,6,0.10)", "rgba(22,163,74,0.09)", "rgba(124,58,237,0.08)"];
function phaseFill(name: string): string {
  if (!PHASE_COLORS[name]) PHASE_COLORS[name] = PHASE_FILL[Object.keys(PHASE_COLORS).length % PHASE_FILL.length];
  return PHASE_COLORS[name];
}

/** Draws the runs' phases as bands and scale events as labelled vertical lines under the series. */
function markersPlugin(runs: () => RunSeries[]): uPlot.Plugin {
  return {
    hooks: {
      drawAxes: (u: uPlot) => {
        const { ctx } = u;
        const { left, top, width, height } = u.bbox;
        const px = devicePixelRatio || 1;
        ctx.save();
        ctx.beginPath();
        ctx.rect(left, top, width, height);
        ctx.clip();
        runs().forEach((run, ri) => {
          for (const ph of run.phases) {
            const x0 = u.valToPos(ph.start_s, "x", true);
            const x1 = u.valToPos(ph.end_s, "x", true);
            if (!Number.isFinite(x0) || !Number.isFinite(x1)) continue;
            ctx.fillStyle = phaseFill(ph.phase);
            ctx.fillRect(x0, top, Math.max(x1 - x0, px), height);
          }
          ctx.setLineDash(ri === 0 ? [] : [4 * px, 3 * px]);
          ctx.font = `${10 * px}px system-ui, sans-serif`;
          run.scaleEvents.forEach((ev, ei) => {
            const x = u.valToPos(ev.t_s, "x", true);
            if (!Number.isFinite(x)) return;
            const up = ev.to > ev.from;
            ctx.strokeStyle = up ? "rgba(22,163,74,0.8)" : "rgba(217,119,6,0.8)";
            ctx.lineWidth = px;
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, top + height);
            ctx.stroke();
            ctx.fillStyle = ctx.strokeStyle;
            const text = `${ri === 1 ? "B " : ""}${ev.from}→${ev.to}`;
            // Near the right edge the label goes left of its line, or it would be cut off.
            const w = ctx.measureText(text).width;
            const tx = x + 3 * px + w > left + width ? x - 3 * px - w : x + 3 * px;
            // Alternate rows so the labels of events a second apart do not print over each other.
            const row = ri * 2 + (ei % 2);
            ctx.fillText(text, tx, top + (10 + row * 11) * px);
          });
          // Faults: red lines labelled at the bottom, so they do not cover the scale events' labels.
          ctx.strokeStyle = "rgba(220,38,38,0.85)";
          ctx.fillStyle = ctx.strokeStyle;
          run.faults.forEach((f, fi) => {
            const x = u.valToPos(f.t_s, "x", true);
            if (!Number.isFinite(x)) return;
            ctx.lineWidth = 2 * px;
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, top + height);
            ctx.stroke();
            const text = `${ri === 1 ? "B " : ""}⚡${f.label}`;
            const w = ctx.measureText(text).width;
            const tx = x + 3 * px + w > left + width ? x - 3 * px - w : x + 3 * px;
            ctx.fillText(text, tx, top + height - (4 + (fi % 2) * 11) * px);
          });
        });
        ctx.restore();
      },
    },
  };
}

const RUN_PREFIX = ["A", "B"];

function seriesFor(kind: ChartKind, runs: RunSeries[], opts: ChartOptions): { lines: Line[]; data: uPlot.AlignedData } {
  if (runs.length === 1) {
    const lines = kind.lines(runs[0], opts);
    return { lines, data: [runs[0].t, ...lines.map((l) => l.values)] as uPlot.AlignedData };
  }
  const lines: Line[] = [];
  const tables = runs.map((run, ri) => {
    const ls = kind.lines(run, opts).map((l) => ({
      ...l,
      label: `${RUN_PREFIX[ri] ?? ri}: ${l.label}`,
      dash: ri === 0 ? l.dash : [2, 3],
    }));
    lines.push(...ls);
    return { x: run.t, ys: ls.map((l) => l.values) };
  });
  return { lines, data: alignTables(tables) as uPlot.AlignedData };
}

class Panel {
  private plot: uPlot | null = null;
  private signature = "";
  readonly el: HTMLElement;
  private readonly body: HTMLElement;
  private readonly empty: HTMLElement;

  constructor(
    readonly kind: ChartKind,
    parent: HTMLElement,
    private readonly runs: () => RunSeries[],
  ) {
    this.el = document.createElement("section");
    this.el.className = "chart";
    this.el.dataset.chart = kind.id;
    const h = document.createElement("h3");
    h.textContent = kind.title + (kind.unit ? ` (${kind.unit})` : "");
    this.body = document.createElement("div");
    this.empty = document.createElement("p");
    this.empty.className = "muted";
    this.empty.textContent = "no data yet";
    this.el.append(h, this.body, this.empty);
    parent.append(this.el);
  }

  update(opts: ChartOptions, width: number): void {
    const runs = this.runs();
    const { lines, data } = seriesFor(this.kind, runs, opts);
    const hasData = lines.length > 0 && data[0].length > 0;
    this.empty.hidden = hasData;
    const sig = `${runs.length}|${lines.map((l) => l.label).join(",")}`;
    if (!this.plot || sig !== this.signature) {
      this.plot?.destroy();
      this.plot = null;
      this.signature = sig;
      if (lines.length === 0) return;
      this.plot = new uPlot(this.options(lines, width), data, this.body);
      return;
    }
    this.plot.setData(data);
  }

  resize(width: number): void {
    this.plot?.setSize({ width, height: this.plot.height });
  }

  /** Redraws without new data (markers changed). */
  redraw(): void {
    this.plot?.redraw(false, false);
  }

  destroy(): void {
    this.plot?.destroy();
    this.el.remove();
  }

  private options(lines: Line[], width: number): uPlot.Options {
    const stepped = uPlot.paths.stepped ? uPlot.paths.stepped({ align: 1 }) : undefined;
    return {
      width,
      height: 200,
      scales: { x: { time: false } },
      cursor: { sync: { key: "lab" } },
      legend: { live: true },
      axes: [
        { values: (_u: uPlot, splits: number[]) => splits.map(fmtT), size: 30, incrs: TIME_INCRS },
        { size: 52, values: (_u: uPlot, splits: number[]) => splits.map((v) => fmtAxis(v)) },
      ],
      series: [
        { label: "t", value: (_u: uPlot, v: number) => (v === null || v === undefined ? "–" : fmtT(v)) },
        ...lines.map((l) => ({
          label: l.label,
          stroke: l.stroke,
          width: 1.5,
          dash: l.dash,
          spanGaps: true,
          paths: l.stepped ? stepped : undefined,
          value: (_u: uPlot, v: number | null) => fmtNum(v, Math.abs(v ?? 0) >= 100 ? 0 : 2),
        })),
      ],
      plugins: [markersPlugin(this.runs)],
    };
  }
}

function fmtAxis(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(0)}k`;
  if (a >= 1000) return `${(v / 1e3).toFixed(1)}k`;
  return Number.isInteger(v) ? `${v}` : v.toFixed(a < 1 ? 2 : 1);
}

/**
 * The set of charts for one run (live or past) or two (overlay). Redraws are throttled: samples mark the board
 * dirty and at most one setData per chart happens per REDRAW_MS, whatever the sample rate.
 */
export class ChartBoard {
  static REDRAW_MS = 250;
  private readonly panels: Panel[];
  private timer: number | null = null;
  private last = 0;
  private readonly observer: ResizeObserver | null;
  private width = 0;

  constructor(
    readonly root: HTMLElement,
    private runs: RunSeries[],
    private readonly opts: () => ChartOptions,
  ) {
    root.classList.add("charts");
    this.panels = CHARTS.map((k) => new Panel(k, root, () => this.runs));
    this.width = this.panelWidth();
    this.flush();
    this.observer =
      typeof ResizeObserver === "undefined"
        ? null
        : new ResizeObserver(() => {
            const w = this.panelWidth();
            if (Math.abs(w - this.width) < 2) return;
            this.width = w;
            for (const p of this.panels) p.resize(w);
          });
    this.observer?.observe(root);
  }

  setRuns(runs: RunSeries[]): void {
    this.runs = runs;
    this.schedule();
  }

  /** Marks the data changed; the redraw follows within REDRAW_MS. */
  schedule(): void {
    if (this.timer !== null) return;
    const wait = Math.max(0, ChartBoard.REDRAW_MS - (performance.now() - this.last));
    this.timer = window.setTimeout(() => {
      this.timer = null;
      this.flush();
    }, wait);
  }

  /** Applies new options (percentiles, endpoint metric) at once. */
  flush(): void {
    this.last = performance.now();
    const opts = this.opts();
    for (const p of this.panels) p.update(opts, this.width);
  }

  destroy(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.observer?.disconnect();
    for (const p of this.panels) p.destroy();
  }

  private panelWidth(): number {
    const cols = getComputedStyle(this.root).gridTemplateColumns.split(" ").filter(Boolean).length || 1;
    const w = (this.root.clientWidth || 900) / cols - 24;
    return Math.max(280, Math.floor(w));
  }
}
