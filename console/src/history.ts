// Run history (GET /api/runs, kept on disk by the lab): open a past run, download its files, or pick two and overlay
// them on one set of charts, aligned on load start, with their scaling reports side by side.

import { api, downloadUrl, HttpError } from "./api";
import { ChartBoard } from "./charts";
import { clear, h } from "./dom";
import { type ChartPicker, summaryTable } from "./runview";
import { fmtNum, RunSeries } from "./series";
import { errorText, isActive, type RunMeta } from "./types";

export class HistoryList {
  readonly el: HTMLElement;
  private readonly body = h("tbody", { id: "history-rows" });
  private readonly message = h("span", { class: "muted", id: "history-message" });
  private readonly compareBtn = h("button", { type: "button", id: "compare", disabled: true }, "Compare selected (2)");
  private readonly picked: string[] = [];

  constructor(private readonly actions: { open: (id: string) => void; compare: (a: string, b: string) => void }) {
    this.compareBtn.addEventListener("click", () => {
      if (this.picked.length === 2) this.actions.compare(this.picked[0], this.picked[1]);
    });
    this.el = h(
      "section",
      { class: "panel", id: "history" },
      h("h3", {}, "Run history"),
      h(
        "div",
        { class: "row" },
        this.compareBtn,
        h("button", { type: "button", onclick: () => void this.load() }, "Refresh"),
        this.message,
      ),
      h(
        "table",
        { class: "history" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ...[
              "",
              "run",
              "status",
              "profile",
              "ScaledObject",
              "requests",
              "errors",
              "p95 ms",
              "max replicas",
              "files",
              "",
            ].map((c) => h("th", {}, c)),
          ),
        ),
        this.body,
      ),
    );
  }

  async load(): Promise<RunMeta[]> {
    try {
      const runs = await api.runs();
      this.render(runs);
      this.message.textContent = `${runs.length} run(s)`;
      return runs;
    } catch (e) {
      this.message.textContent = `could not list runs: ${e instanceof Error ? e.message : String(e)}`;
      return [];
    }
  }

  private render(runs: RunMeta[]): void {
    clear(this.body);
    const ids = new Set(runs.map((r) => r.id));
    for (let i = this.picked.length - 1; i >= 0; i--) if (!ids.has(this.picked[i])) this.picked.splice(i, 1);
    for (const r of runs) {
      const done = !isActive(r.status);
      const pick = h("input", {
        type: "checkbox",
        name: "pick",
        value: r.id,
        checked: this.picked.includes(r.id),
        disabled: !done,
      });
      pick.addEventListener("change", () => this.toggle(r.id, pick.checked));
      const files = done
        ? (["report.json", "intervals.csv", "report.html"] as const).map((f) =>
            h("a", { href: downloadUrl(r.id, f), download: `${r.id}-${f}`, "data-file": f }, f.split(".")[1]),
          )
        : [h("span", { class: "muted" }, "running")];
      this.body.append(
        h(
          "tr",
          { "data-run": r.id },
          h("td", {}, pick),
          h(
            "td",
            {},
            h(
              "a",
              { href: "#", class: "open", onclick: (ev: Event) => (ev.preventDefault(), this.actions.open(r.id)) },
              r.label || r.id,
            ),
            h("div", { class: "muted small" }, r.id),
          ),
          h("td", {}, h("span", { class: `pill ${r.status}` }, r.status)),
          h("td", {}, r.profile),
          h("td", {}, r.scaledobject),
          h("td", {}, r.summary ? String(r.summary.requests) : "–"),
          h("td", {}, r.summary ? String(r.summary.errors) : "–"),
          h("td", {}, r.summary ? fmtNum(r.summary.p95_ms) : "–"),
          h("td", {}, r.summary ? String(r.summary.max_replicas_seen) : "–"),
          h("td", { class: "files" }, ...files),
          h(
            "td",
            {},
            done
              ? h(
                  "button",
                  {
                    type: "button",
                    class: "small",
                    title: "delete from history",
                    onclick: () => void this.remove(r.id),
                  },
                  "✕",
                )
              : null,
          ),
        ),
      );
    }
    this.syncCompare();
  }

  private toggle(id: string, on: boolean): void {
    const i = this.picked.indexOf(id);
    if (on && i < 0) this.picked.push(id);
    if (!on && i >= 0) this.picked.splice(i, 1);
    // Two at most: picking a third drops the oldest pick.
    while (this.picked.length > 2) {
      const dropped = this.picked.shift()!;
      const box = this.body.querySelector<HTMLInputElement>(`input[value="${CSS.escape(dropped)}"]`);
      if (box) box.checked = false;
    }
    this.syncCompare();
  }

  private syncCompare(): void {
    this.compareBtn.disabled = this.picked.length !== 2;
  }

  private async remove(id: string): Promise<void> {
    if (!confirm(`Delete run ${id} from history?`)) return;
    try {
      await api.remove(id);
    } catch (e) {
      this.message.textContent = e instanceof HttpError ? errorText(e.body) : String(e);
    }
    await this.load();
  }
}

/** Two finished runs on the same charts: A solid, B dotted; x is seconds since each run's load start. */
export class CompareView {
  readonly el = h("div", { class: "compare", id: "compare-view" });
  private board: ChartBoard | null = null;

  constructor(private readonly picker: ChartPicker) {
    picker.onChange(() => this.board?.flush());
  }

  async show(a: string, b: string): Promise<void> {
    this.board?.destroy();
    this.board = null;
    clear(this.el);
    this.el.append(h("p", { class: "muted" }, "loading…"));
    const [ra, rb] = await Promise.all([api.run(a), api.run(b)]);
    const runs = [new RunSeries(ra), new RunSeries(rb)];
    clear(this.el);
    const charts = h("div", { id: "compare-charts" });
    this.el.append(
      h("h2", {}, "Comparison"),
      h("p", { class: "muted" }, "A solid, B dotted; both aligned on their load start."),
      h(
        "div",
        { class: "side-by-side" },
        summaryTable(runs[0], `A: ${runs[0].meta.label || a}`),
        summaryTable(runs[1], `B: ${runs[1].meta.label || b}`),
      ),
      this.picker.el,
      charts,
    );
    this.picker.setTriggers(runs);
    this.board = new ChartBoard(charts, runs, this.picker.options);
  }
}
