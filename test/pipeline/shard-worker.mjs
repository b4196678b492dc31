// One process of the sharding test: runs shard i/N of the fixture DAG into RUNDIR (built dist/ required).
import { keyCells, parseShard } from "../../dist/src/pipeline/cells.js";
import { runCells } from "../../dist/src/pipeline/runner.js";
import { fixtureSpecs, fixtureStages } from "./fixture-stages.mjs";

const [rundir, shard, n] = process.argv.slice(2);
const cells = keyCells(fixtureSpecs({ n: Number(n ?? 400) }));
const r = await runCells(cells, fixtureStages, { rundir, shard: parseShard(shard), pollMs: 50, staleMs: 60_000 });
process.stdout.write(`${JSON.stringify(r)}\n`);
