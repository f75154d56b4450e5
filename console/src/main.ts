// Entry: the offline report when the document carries its run (`<script id="lab-run">`), otherwise the live console.

import "./style.css";
import { api, captureToken } from "./api";
import { byId, h } from "./dom";
import { CompareView, HistoryList } from "./history";
import { ChaosPanel, connectionBadge, LiveRun, RunControls } from "./live";
import { StartForm } from "./form";
import { ChartPicker, RunView } from "./runview";
import { RunSeries } from "./series";
import { isActive, type RunData, type RunMeta } from "./types";

function offlineReport(app: HTMLElement, data: RunData): void {
  document.body.classList.add("offline");
  document.title = `Lab run ${data.meta.id}`;
  const view = new RunView(new ChartPicker(), { offline: true });
  app.append(
    h("header", {}, h("h1", {}, "Autoscaling lab: run report"), h("span", { class: "muted" }, "offline copy")),
    view.el,
  );
  view.show(new RunSeries(data));
}

function consoleApp(app: HTMLElement): void {
  captureToken();
  const conn = connectionBadge();
  const tabs = {
    run: h("main", { id: "tab-run" }),
    history: h("main", { id: "tab-history", hidden: true }),
    compare: h("main", { id: "tab-compare", hidden: true }),
  };
  const tabButtons = Object.fromEntries(
    (Object.keys(tabs) as (keyof typeof tabs)[]).map((k) => [
      k,
      h(
        "button",
        { type: "button", class: "tab", "data-tab": k, onclick: () => show(k) },
        k === "run" ? "Run" : k === "history" ? "History" : "Compare",
      ),
    ]),
  ) as Record<keyof typeof tabs, HTMLButtonElement>;
  function show(tab: keyof typeof tabs): void {
    for (const [k, el] of Object.entries(tabs)) el.hidden = k !== tab;
    for (const [k, b] of Object.entries(tabButtons)) b.classList.toggle("active", k === tab);
    if (tab === "history") void history.load();
  }

  const chaos = new ChaosPanel();
  const controls = new RunControls();
  const view = new RunView(new ChartPicker(), { offline: false, extra: chaos.el });
  let live: LiveRun | null = null;

  const status = (meta: RunMeta) => {
    const active = isActive(meta.status);
    form.setRunning(active);
    controls.setRun(meta);
    chaos.setRun(active ? meta.id : null);
  };
  function follow(id: string): void {
    live?.close();
    conn.set("connecting…");
    live = new LiveRun(id, view, { status, ended: () => void history.load(), conn: conn.set });
    show("run");
  }
  async function open(id: string): Promise<void> {
    const meta = (await history.load()).find((r) => r.id === id);
    if (meta && isActive(meta.status)) return follow(id);
    live?.close();
    live = null;
    const data = await api.run(id);
    const run = new RunSeries(data);
    view.show(run);
    status(run.meta);
    conn.set("past run");
    show("run");
  }

  const form = new StartForm((meta) => follow(meta.id));
  const history = new HistoryList({
    open: (id) => void open(id),
    compare: (a, b) => {
      show("compare");
      compare
        .show(a, b)
        .catch((e) => compare.el.replaceChildren(h("p", { class: "error" }, `could not load the runs: ${String(e)}`)));
    },
  });
  const compare = new CompareView(new ChartPicker());

  tabs.run.append(
    h("section", { class: "panel" }, h("h3", {}, "Start a run"), form.el),
    h("section", { class: "panel" }, controls.el, view.el),
  );
  tabs.history.append(history.el);
  tabs.compare.append(compare.el);
  app.append(
    h("header", {}, h("h1", {}, "Autoscaling lab"), h("nav", {}, ...Object.values(tabButtons)), conn.el),
    ...Object.values(tabs),
  );
  show("run");
  conn.set("idle");

  void form.load();
  void history.load().then((runs) => {
    const active = runs.find((r) => isActive(r.status));
    if (active) follow(active.id);
  });
}

function main(): void {
  const app = byId("app");
  const inline = document.getElementById("lab-run");
  if (inline?.textContent) offlineReport(app, JSON.parse(inline.textContent) as RunData);
  else consoleApp(app);
}

main();
