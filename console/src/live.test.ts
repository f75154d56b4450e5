import { describe, expect, it } from "vitest";
import { CHAOS_ACTIONS, chaosMessage } from "./live";

describe("chaos panel", () => {
  it("offers the lab's five faults by their profile names, only the freezes with a duration", () => {
    expect(CHAOS_ACTIONS.map((a) => a.action)).toEqual(["kill", "terminate", "freeze", "kill-scaler", "freeze-scaler"]);
    expect(CHAOS_ACTIONS.filter((a) => a.duration).map((a) => a.action)).toEqual(["freeze", "freeze-scaler"]);
  });

  it("names what a fault hit, says plainly when the lab has no chaos route, and quotes any other refusal", () => {
    expect(chaosMessage(null, { action: "freeze", target: "replica", hit: "consumer-2 (pid 42)" })).toBe(
      "freeze: hit consumer-2 (pid 42)",
    );
    expect(chaosMessage(405, { error: "Method Not Allowed" })).toMatch(/does not offer chaos actions.*405/);
    expect(chaosMessage(409, { error: "not_running", message: "the run has ended" })).toBe(
      "refused (409): the run has ended",
    );
    expect(chaosMessage(null, { ok: true })).toBe('sent: {"ok":true}');
  });
});
