import { describe, expect, it } from "vitest";
import { tokenFromHash } from "./api";
import { describeYamlError } from "./form";

describe("tokenFromHash", () => {
  it("reads #token= and ignores an empty or absent one", () => {
    expect(tokenFromHash("#token=abc123")).toBe("abc123");
    expect(tokenFromHash("#x=1&token=a%2Bb")).toBe("a+b");
    expect(tokenFromHash("#token=")).toBeNull();
    expect(tokenFromHash("")).toBeNull();
  });
});

describe("describeYamlError", () => {
  const yaml = "name: x\nstages:\n  - rate: abc\n";
  it("names the line and column and quotes the line with a caret", () => {
    const { message, excerpt } = describeYamlError(
      {
        error: "invalid_yaml",
        message: 'profile YAML: stages[0].rate: invalid type: string "abc", expected f64 at line 3 column 11',
        field: "yaml",
        line: 3,
        column: 11,
      },
      yaml,
    );
    expect(message).toBe('line 3, column 11: profile YAML: stages[0].rate: invalid type: string "abc", expected f64');
    expect(excerpt).toBe("3 |   - rate: abc\n" + " ".repeat(10 + 4) + "^");
  });
  it("falls back to the message when the server has no position", () => {
    expect(describeYamlError({ error: "invalid_field", message: "no stages", field: "stages" }, yaml)).toEqual({
      message: "no stages (field stages)",
      excerpt: null,
    });
  });
});
