// The CLI skeleton: help, info, inspect, and one-line errors with non-zero exits.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

import { runCli } from "../helpers/cli.js";
import { haveShared, sharedPath } from "../helpers/shared.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();

describe("qsae CLI", () => {
  it("--help lists the commands without loading libtorch", () => {
    const r = runCli(["--help"], { env: { QSAE_ADDON: "/nonexistent/qsae.node" } });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/qsae info/);
    expect(r.stdout).toMatch(/qsae inspect/);
  });

  it("unknown commands and options fail with usage", () => {
    expect(runCli(["frobnicate"]).status).not.toBe(0);
    const r = runCli(["info", "--bogus"]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/bogus/);
  });

  it("info --json reports libtorch, OpenBLAS and the thread count", () => {
    const r = runCli(["info", "--json"]);
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.torchVersion).toMatch(/^\d+\.\d+/);
    expect(j.threads).toBeGreaterThanOrEqual(1);
    expect(typeof j.cudaAvailable).toBe("boolean");
    expect(j.blas).toMatch(/OpenBLAS|MKL/);
    const r2 = runCli(["info", "--json"], { env: { QSAE_THREADS: "1" } });
    expect(JSON.parse(r2.stdout).threads).toBe(1);
  });

  it("bad input: one line naming the file, exit 1, no stack unless --verbose", () => {
    const bad = join(dir, "garbage.safetensors");
    writeFileSync(bad, "this is not a safetensors file at all");
    const r = runCli(["inspect", bad]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain(bad);
    const v = runCli(["inspect", bad, "--verbose"]);
    expect(v.stderr.split("\n").length).toBeGreaterThan(2);
    const missing = runCli(["inspect", join(dir, "missing.safetensors")]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/missing\.safetensors: no such file or folder/);
  });

  it.skipIf(!haveShared)("inspect --json lists tiny-qwen3's 25 tensors", () => {
    const r = runCli(["inspect", sharedPath("models/tiny-qwen3/model.safetensors"), "--json"]);
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.tensors).toHaveLength(25);
    expect(j.tensors[0]).toEqual({ name: expect.any(String), dtype: expect.any(String), shape: expect.any(Array) });
    expect(j.parameters).toBeGreaterThan(0);
    expect(j.bytes).toBe(j.parameters * 2);
  });
});
