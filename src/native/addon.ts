// Lazy loader of the native addon: libtorch takes about a second to load, so nothing loads it until a
// tensor is needed (`qsae --help`, `qsae bench --samples` stay instant).
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

import { packageRoot } from "../package-root.js";

import type { NativeAddon } from "./types.js";

export { packageRoot };

let cached: NativeAddon | undefined;

/** Path of the built addon: QSAE_ADDON, else build/Release/qsae.node under the package root. */
export function addonPath(): string {
  if (process.env.QSAE_ADDON) return process.env.QSAE_ADDON;
  const dir = process.env.QSAE_BUILD_DIR ?? "build";
  return join(packageRoot(), dir, "Release", "qsae.node");
}

export function native(): NativeAddon {
  if (cached) return cached;
  const path = addonPath();
  if (!existsSync(path)) {
    throw new Error(
      `qsae: the native addon is not built (${path} is missing). Run scripts/setup-system.sh, then npm run build:native.`,
    );
  }
  const require = createRequire(import.meta.url);
  cached = require(path) as NativeAddon;
  return cached;
}

/** True once the addon has been loaded (for tests of lazy loading). */
export function isNativeLoaded(): boolean {
  return cached !== undefined;
}
