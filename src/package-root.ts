// Where qsae's own files live (package.json, build/, models/, data/): the repository or the installed
// package, found from this module's location in src/ or dist/src/.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

let cached: { root: string; version: string } | undefined;

function find(): { root: string; version: string } {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "qsae") return (cached = { root: dir, version: pkg.version ?? "0.0.0" });
    } catch {
      // keep looking upwards
    }
    dir = dirname(dir);
  }
  throw new Error("qsae: cannot find qsae's package folder (package.json)");
}

/** The folder holding qsae's package.json. */
export function packageRoot(): string {
  return find().root;
}

/** qsae's version from package.json. */
export function packageVersion(): string {
  return find().version;
}
