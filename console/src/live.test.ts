import { describe, expect, it } from "vitest";
import { CHAOS_ACTIONS, chaosMessage } from "./live";

describe("chaos panel", () => {
  it("offers the lab's four faults, only freeze with a duration", () => {
    expect(CHAOS_ACTIONS.map((a) => a.label)).toEqual([
      "kill replica",
      "terminate replica",
      "freeze replica",
      "kill scaler",
    ]);
    expect(CHAOS_ACTIONS.filter((a) => a.duration).map((a) => a.action)).toEqual(["freeze-replica"]);
  });

  it("says plainly when the lab has no chaos route, and quotes any other refusal", () => {
    expect(chaosMessage(404, { error: "not_found", message: "no such route" })).toMatch(
      /does not offer chaos actions yet.*404/,
    );
    expect(chaosMessage(405, { error: "Method Not Allowed" })).toMatch(/does not offer chaos actions yet.*405/);
    expect(chaosMessage(409, { error: "not_running", message: "the run has ended" })).toBe(
      "refused (409): the run has ended",
    );
    expect(chaosMessage(null, { ok: true })).toBe('sent: {"ok":true}');
  });
});
