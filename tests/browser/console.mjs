// The console in a real browser (Debian's Chromium driven by playwright-core) against a running lab:
// start the demo profile, see replicas rise and decisions arrive, stop it, find it in history after a reload, compare
// two runs, download the HTML report and open it with the network cut. Any console error, page error or request that
// leaves 127.0.0.1 fails the run. Usage: CONSOLE_URL=http://127.0.0.1:PORT/ node tests/browser/console.mjs
// Env: CONSOLE_URL (required), SHOTS_DIR (screenshots; default docs), WORK_DIR (downloads; default a temp dir),
//      LAB_PROFILE (demo), LAB_TIME_SCALE (0.25), LAB_MAX_REPLICAS (4), CHROMIUM (/usr/bin/chromium).

import { createRequire } from "node:module";
import { mkdtempSync, mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
// playwright-core is a devDependency of the console package: resolve it from there, not from a global install.
const require = createRequire(join(root, "console", "package.json"));
const { chromium } = require("playwright-core");

const base = process.env.CONSOLE_URL;
if (!base) {
  console.error("CONSOLE_URL is required (the lab's console URL)");
  process.exit(2);
}
const shots = process.env.SHOTS_DIR ?? join(root, "docs");
const work = process.env.WORK_DIR ?? mkdtempSync(join(tmpdir(), "console-browser-"));
const profile = process.env.LAB_PROFILE ?? "demo";
const timeScale = process.env.LAB_TIME_SCALE ?? "0.25";
const maxReplicas = process.env.LAB_MAX_REPLICAS ?? "4";
mkdirSync(shots, { recursive: true });

const problems = [];
// With a token in the URL (`#token=...`, as the lab prints it when it has one), every API request must carry it.
const token = new URLSearchParams(new URL(base).hash.slice(1)).get("token");
const log = (step, extra = {}) => console.log(JSON.stringify({ step, ...extra }));

function isLocal(url) {
  if (url.startsWith("data:") || url.startsWith("blob:") || url === "about:blank") return true;
  try {
    return new URL(url).hostname === "127.0.0.1";
  } catch {
    return false;
  }
}

/** Watches a context: console errors, page errors and requests off 127.0.0.1 (those are also blocked). */
async function guard(context, name, allow = isLocal) {
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (token && allow(url) && new URL(url).pathname.startsWith("/api/")) {
      const carried = route.request().headers()["x-lab-token"] ?? new URL(url).searchParams.get("token");
      if (carried !== token) problems.push(`${name}: API request without the token: ${url}`);
    }
    if (allow(url)) return route.continue();
    problems.push(`${name}: request left 127.0.0.1: ${url}`);
    return route.abort("blockedbyclient");
  });
  context.on("page", (page) => watchPage(page, name));
}

function watchPage(page, name) {
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`${name}: console error: ${msg.text()} (${msg.location().url})`);
  });
  page.on("pageerror", (err) => problems.push(`${name}: page error: ${err.message}`));
}

/** Fails at once with what went wrong so far. */
function check(cond, what) {
  if (!cond) throw new Error(what);
}

async function numberOf(page, selector) {
  const v = await page.locator(selector).getAttribute("data-value");
  return v === null || v === "" ? null : Number(v);
}

/** Starts a run from the form and returns its id (from the POST /api/runs answer). */
async function startRun(page, { rate = "1", label }) {
  await page.locator("#profile").selectOption(profile);
  await page.locator("#time_scale").fill(timeScale);
  await page.locator("#rate_multiplier").fill(rate);
  await page.locator("#max_replicas").fill(maxReplicas);
  await page.locator("#label").fill(label);
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/api/runs") && r.request().method() === "POST"),
    page.locator("#start").click(),
  ]);
  const body = await resp.json();
  check(resp.status() === 201, `start answered ${resp.status()}: ${JSON.stringify(body)}`);
  await page.locator("#run-status").waitFor();
  return body.id;
}

async function stopRun(page) {
  await page.locator("#stop").click();
  await page.waitForFunction(
    () => ["stopped", "finished", "failed"].includes(document.querySelector("#run-status")?.textContent ?? ""),
    null,
    { timeout: 60_000 },
  );
  return page.locator("#run-status").textContent();
}

/** Pixels with any ink on a chart's canvas: a drawn series leaves far more than the axes and grid. */
async function ink(page, chart) {
  return page.evaluate((id) => {
    const canvas = document.querySelector(`[data-chart="${id}"] canvas`);
    if (!canvas) return 0;
    const ctx = canvas.getContext("2d");
    const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
    let n = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
    return n;
  }, chart);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ], // launch() gives the browser a fresh, empty profile directory of its own
});
let failed = null;
try {
  const context = await browser.newContext({
    viewport: { width: 1440, height: 1100 },
    acceptDownloads: true,
  });
  await guard(context, "console");
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);

  // 1. The page loads, lists the profiles and the history.
  await page.goto(base);
  await page.locator(`#profile option[value="${profile}"]`).waitFor({ state: "attached" });
  check(!page.url().includes("token="), `the token is dropped from the address bar: ${page.url()}`);
  log("loaded", { url: base });

  // 2. Start the demo profile; the replica count rises on the page and the decision log fills.
  const first = await startRun(page, { label: "browser test A" });
  log("started", { id: first });
  await page.waitForFunction(() => Number(document.querySelector("#stat-replicas")?.dataset.value ?? 0) >= 2, null, {
    timeout: 120_000,
  });
  await page.waitForFunction(() => (document.querySelectorAll("#decision-log li").length ?? 0) >= 2, null, {
    timeout: 60_000,
  });
  check((await page.locator("#chaos button[data-action]").count()) === 5, "the chaos panel lists the five lab faults");
  check(
    await page.locator("#chaos button[data-action]").first().isEnabled(),
    "chaos buttons are enabled while running",
  );
  // A fault from the page: freeze the oldest replica for 2 s; the lab names the replica it stopped.
  await page.locator('input[name="chaos-duration"]').fill("2");
  await page.locator('#chaos button[data-action="freeze"]').click();
  await page.waitForFunction(
    () => document.querySelector("#chaos-answer")?.textContent?.includes("hit consumer-"),
    null,
    {
      timeout: 10_000,
    },
  );
  log("chaos", { answer: await page.locator("#chaos-answer").textContent() });
  // Percentiles are the user's pick: p99.9 joins the latency chart when ticked.
  await page.locator('input[name="pct-p99_9"]').check();
  await page.waitForFunction(() =>
    document.querySelector('[data-chart="latency"] .u-legend')?.textContent?.includes("p99.9"),
  );
  // Let the load build up so the screenshot shows a scale-up in progress, not its first seconds.
  await page.waitForFunction(() => Number(document.querySelector("#stat-t")?.dataset.value ?? -1) >= 15, null, {
    timeout: 60_000,
  });
  const replicas = await numberOf(page, "#stat-replicas");
  const decisions = await page.locator("#decision-log li").count();
  check((await ink(page, "replicas")) > 500, "the replicas chart is drawn live");
  await page.screenshot({
    path: join(shots, "console-live.png"),
    fullPage: true,
  });
  log("live", { replicas, decisions });

  // 3. Stop it.
  const status = await stopRun(page);
  log("stopped", { status });

  // 4. A second, shorter run at twice the rate, to compare with; its rate is changed while it runs.
  const second = await startRun(page, { rate: "2", label: "browser test B" });
  await page.locator("#rate").fill("1.5");
  await page.locator("#rate-apply").click();
  await page.waitForFunction(() => document.querySelector("#control-message")?.textContent === "rate ×1.5");
  await page.waitForFunction(() => Number(document.querySelector("#stat-t")?.dataset.value ?? -1) >= 10, null, {
    timeout: 90_000,
  });
  log("second", { id: second, status: await stopRun(page) });

  // 5. Reload: both runs are in the history, kept by the server.
  await page.reload();
  await page.locator('[data-tab="history"]').click();
  for (const id of [first, second]) await page.locator(`tr[data-run="${id}"]`).waitFor();
  log("history", { rows: await page.locator("#history-rows tr").count() });

  // A past run opens with its charts and decisions, read back from the lab's disk.
  await page.locator(`tr[data-run="${first}"] a.open`).click();
  await page.waitForFunction(() =>
    ["stopped", "finished"].includes(document.querySelector("#run-status")?.textContent ?? ""),
  );
  await page.waitForFunction(() => document.querySelectorAll("#decision-log li").length >= 2);
  check((await ink(page, "replicas")) > 500, "a past run's replicas chart is drawn");
  await page.locator('[data-tab="history"]').click();

  // 6. Compare them: one set of charts with both runs, their scaling reports side by side.
  await page.locator(`tr[data-run="${first}"] input[name="pick"]`).check();
  await page.locator(`tr[data-run="${second}"] input[name="pick"]`).check();
  await page.locator("#compare").click();
  await page.locator("#compare-view table.summary").nth(1).waitFor();
  await page.waitForFunction(() => document.querySelectorAll("#compare-charts canvas").length >= 6);
  const legend = await page.locator('#compare-charts [data-chart="rate"] .u-legend').textContent();
  check(legend.includes("A: achieved") && legend.includes("B: achieved"), `both runs on the rate chart: ${legend}`);
  await page.waitForTimeout(300);
  await page.screenshot({
    path: join(shots, "console-compare.png"),
    fullPage: true,
  });
  log("compared");

  // 7. Download the first run's HTML report from the history.
  await page.locator('[data-tab="history"]').click();
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.locator(`tr[data-run="${first}"] a[data-file="report.html"]`).click(),
  ]);
  const reportPath = join(work, "report.html");
  await download.saveAs(reportPath);
  const html = readFileSync(reportPath, "utf8");
  check(html.includes('id="lab-run"'), "the report carries its run");
  check(!/<script[^>]+src=|<link[^>]+href="(?!data:)/.test(html), "the report loads nothing from outside itself");
  log("downloaded", { bytes: html.length });

  // 8. Open it with the network cut: every request except the file itself fails, and the charts still draw.
  const offline = await browser.newContext({
    viewport: { width: 1440, height: 1100 },
    offline: true,
  });
  const reportUrl = pathToFileURL(reportPath).href;
  await guard(offline, "offline report", (url) => url === reportUrl || url.startsWith("data:"));
  const view = await offline.newPage();
  await view.goto(reportUrl);
  await view.waitForFunction(() => document.querySelectorAll(".chart canvas").length >= 6);
  for (const chart of ["rate", "latency", "replicas"]) {
    check((await ink(view, chart)) > 500, `the offline report draws the ${chart} chart`);
  }
  check((await view.locator("#decision-log li").count()) >= 1, "the offline report lists the decisions");
  check((await view.locator("form").count()) === 0, "the offline report has no start form");
  log("offline report", {
    charts: await view.locator(".chart canvas").count(),
  });
  await offline.close();
  await context.close();
} catch (err) {
  failed = err;
} finally {
  await browser.close();
}

if (problems.length > 0) console.error(problems.map((p) => `problem: ${p}`).join("\n"));
if (failed) console.error(`failed: ${failed.stack ?? failed}`);
if (failed || problems.length > 0) process.exit(1);
log("ok");
