// The cell runner: outputs keyed by input hashes, atomic writes, resume, reruns of dependents only,
// claims, and N local processes sharing one RUNDIR giving the same results as one process.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { describe, expect, it } from "vitest";

import { keyCells, parseShard, shardFromEnv, shardOf } from "../../src/pipeline/cells.js";
import { collectResults, writePlan } from "../../src/pipeline/results.js";
import { isDone, runCells } from "../../src/pipeline/runner.js";
import type { RunEvent } from "../../src/pipeline/runner.js";
import { repoRoot } from "../helpers/shared.js";
import { tempDir } from "../helpers/tmp.js";
import { fixtureSpecs, fixtureStages } from "./fixture-stages.mjs";

const tmp = tempDir("qsae-runner-");
let n = 0;
const freshDir = () => join(tmp, `run${n++}`);

function plan(rundir: string, cells: ReturnType<typeof keyCells>) {
  mkdirSync(rundir, { recursive: true });
  writePlan(rundir, { format: "qsae-plan", version: 1, name: "fixture", config: {}, layers: {}, cells });
}

function metricsOf(rundir: string) {
  return collectResults(rundir).results.metrics.map((m) => ({ cell: m.cell, key: m.key, metric: m.metric, value: m.value, ci95: m.ci95, labels: m.labels }));
}

describe("cell keys", () => {
  it("are stable, change with params, and propagate to dependents only", () => {
    const a = keyCells(fixtureSpecs());
    const b = keyCells(fixtureSpecs());
    expect(a.map((c) => c.key)).toEqual(b.map((c) => c.key));
    const c = keyCells(fixtureSpecs({ slopeB: 4 }));
    const changed = c.filter((x, i) => x.key !== a[i].key).map((x) => x.id);
    // B data sets change, so do their fits and every evaluation touching a B fit or B data
    expect(changed).toContain("data:B1");
    expect(changed).toContain("fit:B2");
    expect(changed).toContain("evaluate:A1@B1");
    expect(changed).not.toContain("data:A1");
    expect(changed).not.toContain("fit:A2");
    expect(changed).not.toContain("evaluate:A1@A2");
    expect(keyCells(fixtureSpecs(), "9.9.9")[0].key).not.toBe(a[0].key);
  });

  it("rejects cycles, unknown dependencies and duplicates", () => {
    expect(() => keyCells([{ id: "x", stage: "s", deps: ["y"], params: {} }])).toThrow(/unknown cell y/);
    expect(() =>
      keyCells([
        { id: "x", stage: "s", deps: ["y"], params: {} },
        { id: "y", stage: "s", deps: ["x"], params: {} },
      ]),
    ).toThrow(/cycle/);
    expect(() => keyCells([{ id: "x", stage: "s", deps: [], params: {} }, { id: "x", stage: "s", deps: [], params: {} }])).toThrow(/duplicate/);
  });

  it("parses shards and spreads every stage over them", () => {
    expect(parseShard("1/4")).toEqual({ index: 1, count: 4 });
    expect(() => parseShard("4/4")).toThrow(/out of range/);
    expect(() => parseShard("x")).toThrow(/expected i\/N/);
    expect(shardFromEnv({ SLURM_ARRAY_TASK_ID: "3", SLURM_ARRAY_TASK_COUNT: "4" })).toEqual({ index: 3, count: 4 });
    expect(shardFromEnv({ SLURM_ARRAY_TASK_ID: "2", SLURM_ARRAY_TASK_COUNT: "2", SLURM_ARRAY_TASK_MIN: "1" })).toEqual({ index: 1, count: 2 });
    expect(shardFromEnv({})).toBeNull();
    const cells = keyCells(fixtureSpecs());
    const m = shardOf(cells, 3);
    for (const stage of ["data", "fit", "evaluate"]) {
      const counts = [0, 0, 0];
      for (const c of cells.filter((c) => c.stage === stage)) counts[m.get(c.id)!]++;
      expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
    }
  });
});

describe("runCells", () => {
  it("runs the DAG, then resumes with nothing to do, then reruns only what a changed option touches", async () => {
    const rundir = freshDir();
    const cells = keyCells(fixtureSpecs());
    plan(rundir, cells);
    const events: RunEvent[] = [];
    const r1 = await runCells(cells, fixtureStages, { rundir, onEvent: (e) => events.push(e) });
    expect(r1.ran).toHaveLength(cells.length);
    expect(r1.failed).toEqual([]);
    expect(events.filter((e) => e.type === "progress").length).toBeGreaterThan(0);
    for (const c of cells) expect(isDone(rundir, c)).toBe(true);
    // fits recover the slopes
    const res = collectResults(rundir).results;
    expect(res.complete).toBe(true);
    const slope = (set: string) => res.metrics.find((m) => m.cell === `fit:${set}`)!.value;
    expect(slope("A1")).toBeCloseTo(2, 1);
    expect(slope("B2")).toBeCloseTo(3, 1);
    const mse = res.metrics.find((m) => m.cell === "evaluate:A1@A2")!;
    expect(mse.ci95![0]).toBeLessThan(mse.value);
    expect(mse.labels).toEqual({ fit: "A1", data: "A2" });
    // no temp folders or claims left
    expect(readdirSync(join(rundir, "tmp"))).toEqual([]);
    expect(readdirSync(join(rundir, "claims"))).toEqual([]);

    const r2 = await runCells(cells, fixtureStages, { rundir });
    expect(r2.ran).toEqual([]);
    expect(r2.skipped).toHaveLength(cells.length);

    const changed = keyCells(fixtureSpecs({ slopeB: 4 }));
    const r3 = await runCells(changed, fixtureStages, { rundir });
    const expected = changed.filter((c, i) => c.key !== cells[i].key).map((c) => c.id);
    expect(r3.ran.sort()).toEqual(expected.sort());
    expect(expected.length).toBeLessThan(cells.length);
    expect(expected.length).toBeGreaterThan(2);
  });

  it("leaves no half-written cell when a stage fails, skips its dependents, and runs the rest", async () => {
    const rundir = freshDir();
    const cells = keyCells(fixtureSpecs({ failFit: "B1" }));
    plan(rundir, cells);
    const r = await runCells(cells, fixtureStages, { rundir });
    expect(r.failed).toEqual([{ id: "fit:B1", error: "fit: asked to fail" }]);
    const fit = cells.find((c) => c.id === "fit:B1")!;
    expect(existsSync(join(rundir, fit.dir))).toBe(false);
    expect(readdirSync(join(rundir, "tmp"))).toEqual([]);
    expect(isDone(rundir, cells.find((c) => c.id === "evaluate:B1@A1")!)).toBe(false);
    expect(isDone(rundir, cells.find((c) => c.id === "evaluate:A1@B1")!)).toBe(true);
    const res = collectResults(rundir).results;
    expect(res.complete).toBe(false);
    expect(res.cells.missing).toContain("fit:B1");
  });

  it("with --only, runs one stage and reports dependencies that are not done", async () => {
    const rundir = freshDir();
    const cells = keyCells(fixtureSpecs({ seeds: [1] }));
    const r1 = await runCells(cells, fixtureStages, { rundir, only: ["fit"] });
    expect(r1.ran).toEqual([]);
    expect(r1.failed.map((f) => f.id).sort()).toEqual(["data:A1", "data:B1"]);
    expect(r1.failed[0].error).toMatch(/outside --only fit/);
    const r2 = await runCells(cells, fixtureStages, { rundir, only: ["data"] });
    expect(r2.ran.sort()).toEqual(["data:A1", "data:B1"]);
    const r3 = await runCells(cells, fixtureStages, { rundir, only: ["fit"] });
    expect(r3.ran.sort()).toEqual(["fit:A1", "fit:B1"]);
  });

  it("waits for a cell claimed by another process, and takes over a stale claim", async () => {
    const rundir = freshDir();
    const cells = keyCells(fixtureSpecs({ seeds: [1] }));
    const target = cells.find((c) => c.id === "data:A1")!;
    mkdirSync(join(rundir, "claims"), { recursive: true });
    const claim = join(rundir, "claims", `${target.key}.json`);
    writeFileSync(claim, JSON.stringify({ id: target.id, host: "elsewhere", pid: 1 }));
    // A fresh claim: the run waits, then takes it over once it has not been refreshed for staleMs.
    const events: RunEvent[] = [];
    const r = await runCells(cells, fixtureStages, { rundir, staleMs: 400, pollMs: 50, onEvent: (e) => events.push(e) });
    expect(events.some((e) => e.type === "skip" && e.reason === "claimed" && e.cell.id === "data:A1")).toBe(true);
    expect(r.ran).toContain("data:A1");
    expect(r.failed).toEqual([]);
    // The stale claim was moved aside, not deleted silently.
    expect(readdirSync(join(rundir, "claims")).some((f) => f.includes(".stale-"))).toBe(true);
  });

  it("a refreshed claim is not taken over", async () => {
    const rundir = freshDir();
    const cells = keyCells(fixtureSpecs({ seeds: [1] })).filter((c) => c.id === "data:A1");
    mkdirSync(join(rundir, "claims"), { recursive: true });
    const claim = join(rundir, "claims", `${cells[0].key}.json`);
    writeFileSync(claim, "{}");
    const keep = setInterval(() => utimesSync(claim, new Date(), new Date()), 50);
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error("stopped waiting")), 1000);
    await expect(runCells(cells, fixtureStages, { rundir, staleMs: 300, pollMs: 50, signal: ac.signal })).rejects.toThrow(/stopped waiting/);
    clearInterval(keep);
    expect(isDone(rundir, cells[0])).toBe(false);
  });

  it("runs independent cells one per device at the same time (two CPU 'devices')", async () => {
    const rundir = freshDir();
    const cells = keyCells(fixtureSpecs({ n: 3000 }));
    let active = 0;
    let maxActive = 0;
    const used = new Set<string>();
    const stages = Object.fromEntries(
      Object.entries(fixtureStages).map(([k, f]) => [
        k,
        async (ctx: Parameters<typeof f>[0]) => {
          active++;
          maxActive = Math.max(maxActive, active);
          used.add(ctx.device);
          try {
            await new Promise((r) => setTimeout(r, 20));
            return await f(ctx);
          } finally {
            active--;
          }
        },
      ]),
    );
    const r = await runCells(cells, stages, { rundir, devices: ["cpu", "cpu:1"] });
    expect(r.failed).toEqual([]);
    expect(maxActive).toBe(2);
    expect([...used].sort()).toEqual(["cpu", "cpu:1"]);
    const single = freshDir();
    plan(single, cells);
    plan(rundir, cells);
    await runCells(cells, fixtureStages, { rundir: single });
    expect(metricsOf(rundir)).toEqual(metricsOf(single));
  });

  it("a cell that spans several devices (a model split by layers) gets them all at once", async () => {
    const rundir = freshDir();
    // The "fit" cells stand for a model split over 2 devices; the others take one device each.
    const cells = keyCells(fixtureSpecs({ n: 2000 }).map((s: { stage: string }) => (s.stage === "fit" ? { ...s, devices: 2 } : s)));
    const seen: Record<string, string[]> = {};
    let busy = 0;
    let overbooked = false;
    const stages = Object.fromEntries(
      Object.entries(fixtureStages).map(([k, f]) => [
        k,
        async (ctx: Parameters<typeof f>[0]) => {
          const devs = ctx.device.split(",");
          (seen[k] ??= []).push(ctx.device);
          busy += devs.length;
          overbooked ||= busy > 3;
          try {
            await new Promise((r) => setTimeout(r, 10));
            return await f(ctx);
          } finally {
            busy -= devs.length;
          }
        },
      ]),
    );
    const r = await runCells(cells, stages, { rundir, devices: ["cpu", "cpu:1", "cpu:2"] });
    expect(r.failed).toEqual([]);
    expect(overbooked).toBe(false);
    for (const d of seen.fit) expect(d.split(",")).toHaveLength(2);
    for (const d of seen.data) expect(d.split(",")).toHaveLength(1);
    // More devices than the run has: that cell fails with a clear message, the rest still run.
    const small = freshDir();
    const r2 = await runCells(cells, fixtureStages, { rundir: small, devices: ["cpu"] });
    expect(r2.failed.map((f) => f.id).sort()).toEqual(cells.filter((c) => c.stage === "fit").map((c) => c.id).sort());
    expect(r2.failed[0].error).toMatch(/needs 2 devices .* this run has 1: cpu/);
  });

  it("N local processes sharing RUNDIR produce exactly the single-process results", async () => {
    const cells = keyCells(fixtureSpecs({ n: 3000 }));
    const single = freshDir();
    plan(single, cells);
    await runCells(cells, fixtureStages, { rundir: single });

    const shared = freshDir();
    plan(shared, cells);
    const N = 3;
    const outs = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        new Promise<{ code: number; out: string; err: string }>((res) => {
          const p = spawn(process.execPath, [join(repoRoot, "test/pipeline/shard-worker.mjs"), shared, `${i}/${N}`, "3000"], { cwd: repoRoot });
          let out = "";
          let err = "";
          p.stdout.on("data", (d) => (out += d));
          p.stderr.on("data", (d) => (err += d));
          p.on("close", (code) => res({ code: code ?? -1, out, err }));
        }),
      ),
    );
    for (const o of outs) expect(o.err).toBe("");
    for (const o of outs) expect(o.code).toBe(0);
    const ran = outs.flatMap((o) => (JSON.parse(o.out) as { ran: string[] }).ran);
    // every cell ran exactly once across the processes
    expect(ran.sort()).toEqual(cells.map((c) => c.id).sort());
    // each process ran something
    for (const o of outs) expect((JSON.parse(o.out) as { ran: string[] }).ran.length).toBeGreaterThan(0);
    expect(metricsOf(shared)).toEqual(metricsOf(single));
    const recs = readdirSync(join(shared, "cells", "evaluate")).map((d) => JSON.parse(readFileSync(join(shared, "cells", "evaluate", d, "cell.json"), "utf8")) as { pid: number });
    expect(new Set(recs.map((r) => r.pid)).size).toBeGreaterThan(1);
  });
});
