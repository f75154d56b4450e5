import { describe, expect, it } from "vitest";
import { alignTables, fmtT, newestFirst, RunSeries } from "./series";
import type { RunData, Sample } from "./types";

function meta(): RunData["meta"] {
  return {
    id: "r1",
    label: "",
    profile: "demo",
    status: "running",
    started_at: "2026-11-30T02:00:00Z",
    ended_at: null,
    time_scale: 0.5,
    rate_multiplier: 1,
    scaledobject: "consumer",
    max_replicas: null,
    exit_code: null,
    error: null,
    summary: null,
  };
}

function sample(t: number, over: Partial<Sample> = {}): Sample {
  return {
    t_s: t,
    offered_rps: 10 * t,
    achieved_rps: 9 * t,
    ok: 9,
    errors: 2,
    dropped: 1,
    latency_ms: { p50: 1, p90: 2, p95: 3, p99: 4, p99_9: 5, max: 6, mean: 1.5 },
    replicas: { desired: 1, current: 1, ready: 1, draining: 0 },
    ...over,
  };
}

function data(samples: Sample[]): RunData {
  return { meta: meta(), samples, decisions: [], notes: [], triggers: [], phases: [], scale_events: [], report: null };
}

describe("RunSeries", () => {
  it("turns samples into columns and counts into per-second rates over the sample gap", () => {
    const r = new RunSeries(data([sample(1), sample(2), sample(4)]));
    expect(r.t).toEqual([1, 2, 4]);
    expect(r.offered).toEqual([10, 20, 40]);
    expect(r.latency.p99_9).toEqual([5, 5, 5]);
    // 2 errors in the 2 s between t=2 and t=4 are 1 error/s.
    expect(r.errorsPerS).toEqual([2, 2, 1]);
  });

  it("ignores a repeated sample (an SSE reconnect replays what was seen)", () => {
    const r = new RunSeries(data([sample(1), sample(2)]));
    expect(r.push(sample(2))).toBe(false);
    expect(r.push(sample(1.5))).toBe(false);
    expect(r.push(sample(3))).toBe(true);
    expect(r.length).toBe(3);
  });

  it("keeps keyed columns (error classes, endpoints, triggers) as long as t, null where a key was absent", () => {
    const r = new RunSeries(data([sample(1)]));
    r.push(
      sample(2, {
        errors_by_class: { timeout: 3 },
        endpoints: { "/work": { rps: 5, errors: 0, latency_ms: { p95: 7 } } },
      }),
    );
    r.push(sample(3, { triggers: [{ name: "rps", value: 12, target: 10, ratio: 1.2 }] }));
    expect(r.errorClass.cols.get("timeout")).toEqual([null, 3, null]);
    expect(r.endpointRps.cols.get("/work")).toEqual([null, 5, null]);
    expect(r.endpointLatency.p95.cols.get("/work")).toEqual([null, 7, null]);
    expect(r.triggerRatio.cols.get("rps")).toEqual([null, null, 1.2]);
    for (const col of [r.errorClass, r.endpointRps, r.triggerValue, r.triggerTarget]) {
      for (const c of col.cols.values()) expect(c.length).toBe(r.t.length);
    }
  });

  it("derives scale events from the current replica count while live, and takes the server's at the end", () => {
    const r = new RunSeries(data([sample(1)]));
    r.push(sample(2, { replicas: { desired: 3, current: 3, ready: 1, draining: 0 } }));
    r.push(sample(3, { replicas: { desired: 3, current: 3, ready: 3, draining: 0 } }));
    r.push(sample(4, { replicas: { desired: 1, current: 1, ready: 1, draining: 2 } }));
    expect(r.scaleEvents).toEqual([
      { t_s: 2, from: 1, to: 3 },
      { t_s: 4, from: 3, to: 1 },
    ]);
    const final = data([]);
    final.meta.status = "finished";
    final.scale_events = [{ t_s: 1.6, from: 1, to: 3 }];
    final.phases = [{ event: 1, kind: "scale-up", phase: "signal", start_s: 1, end_s: 1.6 }];
    r.finish(final);
    expect(r.scaleEvents).toEqual([{ t_s: 1.6, from: 1, to: 3 }]);
    expect(r.phases).toHaveLength(1);
    expect(r.meta.status).toBe("finished");
    expect(r.length).toBe(4);
  });

  it("appends an hour of samples quickly (the live page's per-second cost stays flat)", () => {
    const r = new RunSeries(data([]));
    const started = performance.now();
    for (let t = 1; t <= 3600; t++) {
      r.push(
        sample(t, {
          endpoints: { "/a": { rps: 1, errors: 0, latency_ms: {} }, "/b": { rps: 2, errors: 0, latency_ms: {} } },
        }),
      );
    }
    expect(r.length).toBe(3600);
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe("alignTables", () => {
  it("joins two runs on the union of their x, nulls where a run has no sample", () => {
    const out = alignTables([
      { x: [1, 2, 3], ys: [[10, 20, 30]] },
      { x: [2, 4], ys: [[200, 400]] },
    ]);
    expect(out).toEqual([
      [1, 2, 3, 4],
      [10, 20, 30, null],
      [null, 200, null, 400],
    ]);
  });
});

describe("formatting", () => {
  it("shows run time as m:ss, negative before the load starts", () => {
    expect(fmtT(0)).toBe("0:00");
    expect(fmtT(75.4)).toBe("1:15");
    expect(fmtT(-5)).toBe("-0:05");
  });

  it("lists decisions newest first, capped", () => {
    const ds = [1, 2, 3, 4].map((t) => ({ t_s: t, desired: t, reason: `r${t}` }));
    expect(newestFirst(ds, 3).map((d) => d.t_s)).toEqual([4, 3, 2]);
  });
});

describe("faults on the timeline", () => {
  it("come from the lab's injection notes while live, and from the report's chaos section at the end", () => {
    const live = data([sample(1)]);
    live.notes = [
      { t_s: 0, text: "scaler pid 1 grpc 127.0.0.1:1" },
      { t_s: 7, text: "chaos: freeze consumer-1 (pid 42) (SIGSTOP) for 2s" },
      { t_s: 9, text: "chaos: consumer-1 left the targets after 0.5s, continued after 2.0s, back after 2.6s" },
      { t_s: 12, text: "chaos: kill (SIGKILL) scaler (pid 9); back after 5s: the triggers fail until then" },
    ];
    const r = new RunSeries(live);
    expect(r.faults.map((f) => [f.t_s, f.label])).toEqual([
      [7, "freeze"],
      [12, "kill-scaler"],
    ]);

    const ended = { ...live };
    ended.report = {
      chaos: {
        faults: [
          {
            at_s: 7.4,
            action: "freeze",
            target: "replica",
            hit: "consumer-1 (pid 42)",
            lost: 0,
            recovered_after_s: 2.75,
            replacement_ready_after_s: 2.6,
          },
        ],
      },
    };
    r.finish(ended);
    expect(r.faults).toEqual([
      { t_s: 7.4, label: "freeze", detail: "freeze consumer-1 (pid 42): lost 0, recovered after 2.8 s" },
    ]);
  });
});
