// The run display: live multi-line redraws on a TTY, plain lines otherwise, JSON lines for machine logs,
// and always a log file — fed with the events of a real (small) cell run.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PassThrough } from "node:stream";

import { describe, expect, it } from "vitest";

import { keyCells } from "../../src/pipeline/cells.js";
import { RunProgress } from "../../src/pipeline/progress.js";
import type { ProgressMode } from "../../src/pipeline/progress.js";
import { runCells } from "../../src/pipeline/runner.js";
import { tempDir } from "../helpers/tmp.js";
import { fixtureSpecs, fixtureStages } from "./fixture-stages.mjs";

const tmp = tempDir("qsae-progress-");

async function capture(mode: ProgressMode, name: string): Promise<{ out: string; log: string }> {
  const stream = new PassThrough();
  let out = "";
  stream.on("data", (d) => (out += d));
  const logFile = join(tmp, `${name}.log`);
  const p = new RunProgress(mode, stream, logFile);
  await runCells(keyCells(fixtureSpecs({ seeds: [1], n: 4000 })), fixtureStages, { rundir: join(tmp, name), onEvent: p.onEvent });
  p.note("all done");
  p.close();
  return { out, log: readFileSync(logFile, "utf8") };
}

describe("RunProgress", () => {
  it("plain mode prints one line per started and finished cell", async () => {
    const { out, log } = await capture("plain", "plain");
    expect(out).not.toMatch(/\x1b\[/);
    expect(out).toMatch(/^8 cells \(0 already done\)$/m);
    expect(out).toMatch(/^\[1\/8\] data:A1 \.\.\.$/m);
    expect(out).toMatch(/^ {2}✓ evaluate:B1@B1 \(\d+\.\d s\)$/m);
    expect(log).toMatch(/start data:A1 on cpu/);
    expect(log).toMatch(/done fit:B1 in/);
    expect(log).toMatch(/all done/);
  });

  it("tty mode redraws a status block in place (cursor up + clear) and leaves finished lines above it", async () => {
    const { out } = await capture("tty", "tty");
    expect(out).toMatch(/\x1b\[\d+A\x1b\[J/);
    expect(out).toMatch(/qsae run {2}\d+\/8 cells/);
    expect(out).toMatch(/ {2}✓ fit:A1/);
  });

  it("json mode writes one parseable object per line", async () => {
    const { out } = await capture("json", "json");
    const events = out.trim().split("\n").map((l) => JSON.parse(l) as { type: string; cell?: string; key?: string });
    expect(events[0].type).toBe("plan");
    expect(events.filter((e) => e.type === "done")).toHaveLength(8);
    expect(events.find((e) => e.type === "start")!.key).toMatch(/^[0-9a-f]{64}$/);
    expect(events.at(-1)!.type).toBe("note");
  });
});
