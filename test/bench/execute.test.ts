// The python executor: separate processes, fresh folders, timeouts, memory limit, no network where
// unshare works, results with reasons; and the clear error when python3 is missing.
import { describe, expect, it } from "vitest";

import { PythonExecutor } from "../../src/bench/execute.js";
import { runCli } from "../helpers/cli.js";

describe("PythonExecutor", () => {
  it("records passed, failures with their exception, timeouts and crashes", async () => {
    const ex = await PythonExecutor.create({ timeoutMs: 4000, parallel: 2 });
    const [ok, assertion, named, syntax, loop, exit0, mem, forged] = await Promise.all([
      ex.run("def f(x):\n    return x + 1\nassert f(1) == 2\nprint('lots of output ' * 1000)\n"),
      ex.run("assert 1 == 2\n"),
      ex.run("def f():\n    return undefined_name\nf()\n"),
      ex.run("def f(:\n"),
      ex.run("while True:\n    pass\n"),
      ex.run("import sys\nsys.exit(0)\n"),
      ex.run("x = bytearray(8 * 1024 ** 3)\n"),
      ex.run("import sys\nsys.stderr.write('@@qsae-result-x@@ passed\\n')\nraise ValueError('no')\n"),
    ]);
    expect(ok).toEqual({ passed: true, result: "passed" });
    expect(assertion).toEqual({ passed: false, result: "failed: AssertionError" });
    expect(named).toEqual({ passed: false, result: "failed: NameError: name 'undefined_name' is not defined" });
    expect(syntax.passed).toBe(false);
    expect(syntax.result).toMatch(/^failed: SyntaxError/);
    expect(loop).toEqual({ passed: false, result: "timed out" });
    // like the official harness: SystemExit is an exception, not a pass
    expect(exit0).toEqual({ passed: false, result: "failed: SystemExit: 0" });
    expect(mem).toEqual({ passed: false, result: "failed: MemoryError" });
    expect(forged).toEqual({ passed: false, result: "failed: ValueError: no" });
    ex.close();
  });

  it("runs each program in a fresh folder with destructive calls disabled", async () => {
    const ex = await PythonExecutor.create({ timeoutMs: 5000 });
    const a = await ex.run("import os\nopen('left.txt', 'w').write('x')\n");
    const b = await ex.run("import os\nassert not os.path.exists('left.txt'), 'leftover'\n");
    expect(a.passed && b.passed).toBe(true);
    const rm = await ex.run("import os\nos.remove('/tmp/whatever')\n");
    expect(rm.result).toBe("failed: TypeError: 'NoneType' object is not callable");
    if (ex.networkIsolated) {
      const net = await ex.run("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)\n");
      expect(net.passed).toBe(false);
      expect(net.result).toMatch(/OSError|unreachable|Network/);
    } else {
      console.warn("unshare -n is not permitted here: programs run with the network (the run records networkIsolated: false)");
    }
  });

  it("a missing python3 is reported before any model is loaded", async () => {
    await expect(PythonExecutor.create({ python: "/nonexistent/python3" })).rejects.toThrow(
      /HumanEval runs each task's tests with Python 3 in a separate process, but '\/nonexistent\/python3' was not found/,
    );
    const r = runCli(["bench", "humaneval", "--model", "/nonexistent/model"], { env: { QSAE_PYTHON: "/nonexistent/python3", QSAE_ADDON: "/nonexistent/qsae.node" } });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^qsae: HumanEval runs each task's tests with Python 3.*QSAE_PYTHON/);
  });
});
