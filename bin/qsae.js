#!/usr/bin/env node
// The qsae command. The addon (libtorch, ~1 s to load) is loaded only by commands that need tensors.
import("../dist/cli/index.js").then((m) => m.main(process.argv.slice(2)));
