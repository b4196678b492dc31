// Runs untrusted Python programs (HumanEval checks) in separate processes: a fresh temporary folder per
// program, a wall-clock timeout, memory / process / file-size limits (setrlimit in a small runner, the
// "ulimit wrapper"), no network where `unshare -n` works (probed once), several at a time.
// Never in-process. Like the official harness this limits accidents, it is not a security sandbox.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { availableParallelism, tmpdir } from "node:os";

import { InputError } from "../errors.js";

export interface ExecutorOptions {
  /** Python interpreter: this, else $QSAE_PYTHON, else `python3` on PATH. */
  python?: string;
  /** Wall-clock limit per program in ms (default 3000). */
  timeoutMs?: number;
  /** Address-space limit per program in MiB (default 4096). */
  memoryMiB?: number;
  /** RLIMIT_NPROC per program (default 64; not enforced for root). */
  maxProcesses?: number;
  /** Programs run at once (default: the number of cores). */
  parallel?: number;
  /** "auto": `unshare -n` when it works here (default); "off": never isolate the network. */
  isolateNetwork?: "auto" | "off";
}

export interface ExecResult {
  passed: boolean;
  /** "passed", "failed: AssertionError", "failed: NameError: name 'x' is not defined", "timed out", ... */
  result: string;
}

// The runner: applies the limits and the official harness' reliability guard, execs the program and
// reports the outcome on stderr after a marker (the program's own output cannot forge it: the marker
// carries a per-run nonce).
const RUNNER = String.raw`
import sys, os, resource, faulthandler
mem, nproc, fsize, cpu = (int(x) for x in sys.argv[1:5]); path = sys.argv[5]; nonce = sys.argv[6]
try: os.nice(10)  # below the model's threads: generation runs alongside these programs
except OSError: pass
def lim(r, v):
    try: resource.setrlimit(r, (v, v))
    except (ValueError, OSError): pass
if mem > 0:
    lim(resource.RLIMIT_AS, mem)
    lim(resource.RLIMIT_DATA, mem)
lim(resource.RLIMIT_NPROC, nproc); lim(resource.RLIMIT_FSIZE, fsize); lim(resource.RLIMIT_CPU, cpu)
lim(resource.RLIMIT_CORE, 0)
src = open(path, encoding="utf-8").read()
_write, _exit, _devnull = os.write, os._exit, open(os.devnull, "w")
def report(code, msg):
    try: sys.stdout.flush()
    except BaseException: pass
    _write(2, ("\n" + nonce + msg.replace("\n", " ")[:300] + "\n").encode("utf-8", "replace"))
    _exit(code)
faulthandler.disable()
import builtins, shutil, subprocess
builtins.exit = None; builtins.quit = None; builtins.help = None
for name in ["kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
             "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
             "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir"]:
    if hasattr(os, name): setattr(os, name, None)
shutil.rmtree = None; shutil.move = None; shutil.chown = None; subprocess.Popen = None
for m in ["ipdb", "joblib", "resource", "psutil", "tkinter"]: sys.modules[m] = None
sys.stdout = _devnull; sys.stdin = open(os.devnull)
try:
    exec(compile(src, path, "exec"), {"__name__": "__main__", "__file__": path, "__builtins__": builtins})
except BaseException as e:
    s = str(e)
    report(1, "failed: " + type(e).__name__ + (": " + s if s else ""))
report(0, "passed")
`;

// The helper: receives {id, program, ...} over IPC, runs the program in a fresh temporary folder with a
// timeout, answers {id, r}. Exits when the parent disconnects.
const HELPER = String.raw`
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
process.on("disconnect", () => process.exit(0));
process.on("message", (job) => {
  const dir = mkdtempSync(join(tmpdir(), "qsae-exec-"));
  const file = join(dir, "program.py");
  writeFileSync(file, job.program);
  const nonce = "@@qsae-result-" + Math.random().toString(36).slice(2) + "@@ ";
  let done = false;
  const finish = (r) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    rmSync(dir, { recursive: true, force: true });
    if (process.connected) process.send({ id: job.id, r });
  };
  let child;
  try {
    child = spawn(job.cmd, [...job.pre, ...job.python, ...job.limits, file, nonce], {
      cwd: dir,
      env: { PATH: job.path, HOME: dir, TMPDIR: dir, LANG: "C.UTF-8", PYTHONHASHSEED: "0" },
      stdio: ["ignore", "ignore", "pipe"],
      detached: true,
    });
  } catch (e) {
    return finish({ passed: false, result: "failed: could not start python (" + e.message + ")" });
  }
  let stderr = "";
  let timedOut = false;
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d) => {
    stderr += d;
    if (stderr.length > 65536) stderr = stderr.slice(-32768);
  });
  const timer = setTimeout(() => {
    timedOut = true;
    try { process.kill(-child.pid, "SIGKILL"); } catch { child.kill("SIGKILL"); }
  }, job.timeoutMs);
  child.on("error", (e) => finish({ passed: false, result: "failed: could not start python (" + e.message + ")" }));
  child.on("close", (code, signal) => {
    if (timedOut) return finish({ passed: false, result: "timed out" });
    const at = stderr.lastIndexOf(nonce);
    if (at >= 0) {
      const msg = stderr.slice(at + nonce.length).split("\n")[0];
      return finish({ passed: code === 0 && msg === "passed", result: msg });
    }
    if (signal === "SIGXCPU") return finish({ passed: false, result: "timed out" });
    const last = stderr.trim().split("\n").pop() || "";
    finish({ passed: false, result: signal ? "failed: killed by " + signal : "failed: exit code " + code + (last ? " (" + last.slice(0, 200) + ")" : "") });
  });
});
`;

interface Resolved {
  python: string;
  prefix: string[];
}

let probeCache: Map<string, Promise<Resolved>> | undefined;

/** Finds the Python interpreter (its real path: version-manager shims are slow to start) and probes
 * `unshare -n`. Throws an InputError with a clear message when there is no python3. */
export function resolvePython(opts: ExecutorOptions = {}): Promise<Resolved> {
  const want = opts.python ?? process.env.QSAE_PYTHON ?? "python3";
  const key = `${want}\0${opts.isolateNetwork ?? "auto"}`;
  probeCache ??= new Map();
  let p = probeCache.get(key);
  if (!p) {
    p = Promise.resolve().then(() => probe(want, opts.isolateNetwork ?? "auto"));
    probeCache.set(key, p);
    p.catch(() => probeCache?.delete(key));
  }
  return p;
}

function probe(want: string, isolate: "auto" | "off"): Resolved {
  let python: string;
  try {
    python = execFileSync(want, ["-c", "import sys; assert sys.version_info >= (3, 6); print(sys.executable)"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 60_000,
    }).trim();
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    const why = err.code === "ENOENT" ? "was not found" : `does not run (${(err.stderr || err.message).trim().split("\n").pop()})`;
    throw new InputError(
      `HumanEval runs each task's tests with Python 3 in a separate process, but '${want}' ${why}. ` +
        `Install python3 or set QSAE_PYTHON to its path.`,
    );
  }
  if (!python) python = want;
  const prefix: string[] = [];
  if (isolate === "auto" && process.platform === "linux") {
    for (const args of [["-n"], ["-r", "-n"]]) {
      try {
        execFileSync("unshare", [...args, python, "-I", "-S", "-c", "pass"], { stdio: "ignore", timeout: 30_000 });
        prefix.push("unshare", ...args);
        break;
      } catch {
        // not permitted here (containers without CAP_SYS_ADMIN, no user namespaces): run without it
      }
    }
  }
  return { python, prefix };
}

/** Runs programs with limits, `parallel` at a time. */
export class PythonExecutor {
  readonly python: string;
  readonly networkIsolated: boolean;
  readonly parallel: number;
  private readonly prefix: string[];
  private readonly timeoutMs: number;
  private readonly memBytes: number;
  private readonly maxProcesses: number;
  private running = 0;
  private readonly queue: (() => void)[] = [];
  private closed = false;
  private child: ChildProcess | undefined;
  private nextId = 0;
  private readonly waiting = new Map<number, (r: ExecResult) => void>();

  private constructor(r: Resolved, opts: ExecutorOptions) {
    this.python = r.python;
    this.prefix = r.prefix;
    this.networkIsolated = r.prefix.length > 0;
    this.timeoutMs = opts.timeoutMs ?? 3000;
    this.memBytes = Math.round((opts.memoryMiB ?? 4096) * 1024 * 1024);
    this.maxProcesses = opts.maxProcesses ?? 64;
    this.parallel = Math.max(1, opts.parallel ?? availableParallelism());
    if (!(this.timeoutMs > 0)) throw new RangeError(`Expected a positive timeout but received ${opts.timeoutMs}`);
  }

  /** Resolves python (a clear error when missing) and probes network isolation. */
  static async create(opts: ExecutorOptions = {}): Promise<PythonExecutor> {
    const ex = new PythonExecutor(await resolvePython(opts), opts);
    ex.helper();
    return ex;
  }

  async run(program: string): Promise<ExecResult> {
    if (this.closed) throw new Error("PythonExecutor is closed");
    if (this.running >= this.parallel) await new Promise<void>((r) => this.queue.push(r));
    this.running++;
    try {
      return await this.runOne(program);
    } finally {
      this.running--;
      this.queue.shift()?.();
    }
  }

  close(): void {
    this.closed = true;
    const c = this.child;
    this.child = undefined;
    if (c?.connected) c.disconnect();
  }

  /**
   * Programs are started by a small helper process (plain Node, no libtorch), itself started here before
   * any generation: forking the process that holds libtorch while a forward is in flight runs OpenBLAS's
   * fork handlers under the running computation, which can hang it.
   */
  private helper(): ChildProcess {
    if (this.child && this.child.connected) return this.child;
    const child = spawn(process.execPath, ["--input-type=module", "-e", HELPER], {
      stdio: ["ignore", "ignore", "inherit", "ipc"],
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", TMPDIR: tmpdir() },
    });
    child.on("message", (m: { id: number; r: ExecResult }) => {
      const w = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      w?.(m.r);
    });
    const fail = () => {
      for (const [id, w] of this.waiting) {
        this.waiting.delete(id);
        w({ passed: false, result: "failed: the executor helper process exited" });
      }
      if (this.child === child) this.child = undefined;
    };
    child.on("exit", fail);
    child.on("error", fail);
    this.child = child;
    return child;
  }

  private runOne(program: string): Promise<ExecResult> {
    const id = this.nextId++;
    const job = {
      id,
      program,
      cmd: this.prefix.length ? this.prefix[0] : this.python,
      pre: [...this.prefix.slice(1), ...(this.prefix.length ? [this.python] : [])],
      python: ["-I", "-S", "-c", RUNNER],
      limits: [String(this.memBytes), String(this.maxProcesses), String(64 * 1024 * 1024), String(Math.ceil(this.timeoutMs / 1000) + 1)],
      timeoutMs: this.timeoutMs,
      path: process.env.PATH ?? "/usr/bin:/bin",
    };
    return new Promise<ExecResult>((resolve) => {
      this.waiting.set(id, resolve);
      this.helper().send(job);
    });
  }
}
