// Completion post-processing and data parsing: stop sequences, chat code blocks, GSM8K answer
// extraction, CSV, and bad-input errors naming the file and line.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

import { extractGsm8kAnswer, gsm8kPrompt, loadGsm8k, normalizeNumber } from "../../src/bench/gsm8k.js";
import { completionAfterTail, extractCodeBlock, loadHumanEval, splitPromptTail, truncateAtStop } from "../../src/bench/humaneval.js";
import { parseCsv } from "../../src/bench/io.js";
import { fitMmluPrompt, loadMmluCsv, mmluPrompt, runMmlu, selectSubjects } from "../../src/bench/mmlu.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir("qsae-bench-parse-");
const write = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

describe("HumanEval completions", () => {
  it("leaves a prompt's trailing whitespace for the model and re-bases the completion on the full prompt", () => {
    const prompt = 'def add(a, b):\n    """Return a + b."""\n';
    const { head, tail } = splitPromptTail(prompt);
    expect(head).toBe('def add(a, b):\n    """Return a + b."""');
    expect(tail).toBe("\n");
    const generated = "\n    return a + b\n\n\ndef other():\n";
    const completion = truncateAtStop(completionAfterTail(tail, generated));
    expect(completion).toBe("    return a + b\n\n");
    expect(prompt + completion).toBe(head + generated.slice(0, 1 + completion.length));
    // a generation that does not start with the stripped whitespace is kept as it is
    expect(completionAfterTail("\n", "    return 1")).toBe("    return 1");
    expect(splitPromptTail("x = 1")).toEqual({ head: "x = 1", tail: "" });
  });

  it("cuts base-model completions at the earliest stop sequence", () => {
    const c = "    return a + b\n\n\ndef other():\n    pass\n";
    expect(truncateAtStop(c)).toBe("    return a + b\n\n");
    expect(truncateAtStop("    x = 1\n# comment\n    y")).toBe("    x = 1");
    expect(truncateAtStop("    return 1\nif __name__ == '__main__':\n")).toBe("    return 1");
    expect(truncateAtStop("    return 1\nprint(f(2))")).toBe("    return 1");
    expect(truncateAtStop("    return 1\nclass A:\n")).toBe("    return 1");
    // indented comments and nested defs are kept
    expect(truncateAtStop("    # note\n    def g():\n        return 2\n    return g()\n")).toBe("    # note\n    def g():\n        return 2\n    return g()\n");
  });

  it("takes the code block of a chat answer", () => {
    const ans = "Here you go:\n```python\nimport math\n\ndef f(x):\n    return math.sqrt(x)\n```\nDone.";
    expect(extractCodeBlock(ans, "f")).toBe("\nimport math\n\ndef f(x):\n    return math.sqrt(x)\n");
    const two = "```\nprint(1)\n```\nand\n```py\ndef g():\n    return 2\n```";
    expect(extractCodeBlock(two, "g")).toBe("\ndef g():\n    return 2\n");
    expect(extractCodeBlock("```python\n    return x * 2\n```", "h")).toBe("    return x * 2\n");
    expect(extractCodeBlock("    return 3\n", "h")).toBe("    return 3\n");
  });

  it("bad HumanEval data names the file and line", () => {
    const p = write("he.jsonl", `{"task_id":"a","prompt":"def f():\\n","test":"def check(c): pass","entry_point":"f"}\n{"task_id":"b","prompt":"x"\n`);
    expect(() => loadHumanEval(p)).toThrow(new RegExp(`${p.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}:2: bad JSON`));
    const q = write("he2.jsonl", `{"task_id":"a","prompt":"def f():\\n","entry_point":"f"}\n`);
    expect(() => loadHumanEval(q)).toThrow(/he2\.jsonl:1: missing field "test"/);
    expect(() => loadHumanEval(join(dir, "nope.jsonl"))).toThrow(/nope\.jsonl: HumanEval data file not found/);
  });
});

describe("GSM8K answers", () => {
  it("takes the number after ####, else the last number; commas, $ and a trailing period removed", () => {
    expect(extractGsm8kAnswer("She pays 3*4 = 12 dollars.\n#### 12")).toBe("12");
    expect(extractGsm8kAnswer("#### 1,450,000")).toBe("1450000");
    expect(extractGsm8kAnswer("so 5 + 7 = 12. The answer is 1,234.")).toBe("1234");
    expect(extractGsm8kAnswer("The total is $18.")).toBe("18");
    expect(extractGsm8kAnswer("It costs -3.50 in the end")).toBe("-3.50");
    expect(extractGsm8kAnswer("no numbers here")).toBeNull();
    expect(extractGsm8kAnswer("10 apples then #### $2,000.")).toBe("2000");
    expect(normalizeNumber("18.")).toBe("18");
    expect(normalizeNumber("abc")).toBeNull();
  });

  it("builds the k-shot prompt and rejects answers without ####", () => {
    const p = write("g.jsonl", `{"question":"1+1?","answer":"1+1=2\\n#### 2"}\n{"question":"2+2?","answer":"4\\n#### 4"}\n`);
    const items = loadGsm8k(p);
    expect(items.map((i) => i.reference)).toEqual(["2", "4"]);
    expect(gsm8kPrompt(items.slice(0, 1), "3+3?")).toBe("Question: 1+1?\nAnswer: 1+1=2\n#### 2\n\nQuestion: 3+3?\nAnswer:");
    const bad = write("gbad.jsonl", `{"question":"1+1?","answer":"1+1=2\\n#### 2"}\n\n{"question":"x","answer":"no final"}\n`);
    expect(() => loadGsm8k(bad)).toThrow(/gbad\.jsonl:3: the answer does not end in "#### <number>"/);
  });
});

describe("MMLU data", () => {
  it("parses RFC 4180 CSV with quotes, escaped quotes and newlines", () => {
    const rows = parseCsv('a,"b,c","say ""hi""\nthere",d\r\nx,y,z,w\n', "t.csv");
    expect(rows).toEqual([
      { line: 1, fields: ["a", "b,c", 'say "hi"\nthere', "d"] },
      { line: 3, fields: ["x", "y", "z", "w"] },
    ]);
    expect(() => parseCsv('a,"open\n', "u.csv")).toThrow(/u\.csv:1: unterminated quoted field/);
  });

  it("rejects non-letter answers and wrong column counts naming file and line", () => {
    const p = write("s_test.csv", 'Q1?,a,b,c,d,A\n"Q2\nmultiline?",a,b,c,d,E\n');
    expect(() => loadMmluCsv(p)).toThrow(/s_test\.csv:2: the answer must be one of the letters A, B, C, D but is "E"/);
    const q = write("t_test.csv", "Q1?,a,b,c,A\n");
    expect(() => loadMmluCsv(q)).toThrow(/t_test\.csv:1: expected 6 columns/);
  });

  it("builds the prompt exactly as the original harness, and drops shots that overflow", () => {
    const dev = [
      { question: "D1?", choices: ["a", "b", "c", "d"] as [string, string, string, string], answer: "B" as const },
      { question: "D2?", choices: ["e", "f", "g", "h"] as [string, string, string, string], answer: "D" as const },
    ];
    const q = { question: "T?", choices: ["1", "2", "3", "4"] as [string, string, string, string], answer: "A" as const };
    expect(mmluPrompt("high_school_computer_science", dev, 2, q)).toBe(
      "The following are multiple choice questions (with answers) about high school computer science.\n\n" +
        "D1?\nA. a\nB. b\nC. c\nD. d\nAnswer: B\n\n" +
        "D2?\nA. e\nB. f\nC. g\nD. h\nAnswer: D\n\n" +
        "T?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:",
    );
    const byChars = { countTokens: (s: string) => s.length, maxPositions: 150 };
    const f = fitMmluPrompt("x", dev, 5, q, byChars);
    expect(f.shots).toBe(1);
    expect(byChars.countTokens(f.prompt) + 1).toBeLessThanOrEqual(150);
  });

  it("expands the cs group and rejects unknown subjects", async () => {
    const root = join(dir, "mm");
    const { mkdirSync } = await import("node:fs");
    mkdirSync(join(root, "test"), { recursive: true });
    mkdirSync(join(root, "dev"), { recursive: true });
    for (const s of ["machine_learning", "computer_security", "college_computer_science", "high_school_computer_science", "anatomy"]) {
      writeFileSync(join(root, "test", `${s}_test.csv`), "Q?,a,b,c,d,C\nR?,a,b,c,d,A\n");
      writeFileSync(join(root, "dev", `${s}_dev.csv`), "E?,a,b,c,d,B\n");
    }
    expect(selectSubjects(root, ["cs"])).toEqual([
      "college_computer_science",
      "high_school_computer_science",
      "computer_security",
      "machine_learning",
    ]);
    expect(() => selectSubjects(root, ["astrology"])).toThrow(/MMLU subject "astrology" has no test file/);
    // a stand-in scorer that always prefers C: 1 of 2 right per subject
    const scorer = { countTokens: (s: string) => s.length, maxPositions: 10000, score: async (p: string[]) => p.map(() => [-3, -2, -0.5, -4]) };
    const r = await runMmlu({ data: root, subjects: ["anatomy", "machine_learning"], scorer });
    expect(r.score).toBe(0.5);
    expect(r.subjects).toEqual({ anatomy: { n: 2, correct: 1, accuracy: 0.5 }, machine_learning: { n: 2, correct: 1, accuracy: 0.5 } });
    expect(r.items[0]).toMatchObject({ id: "anatomy/0", passed: true, answer: "C" });
  });
});
