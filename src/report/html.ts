// The self-contained report.html: inline CSS and SVG charts (vega-lite rendered in Node), no scripts,
// no external fonts; sections in <details> so the page works without JavaScript.
import type { AblationRow, LayerRow, ScoreRow, SizeRow, SpliceChartRow } from "./charts.js";
import { ablationSpec, degradationSpec, PRECISION_COLORS, renderSvg, saeSizeSpec, spliceByLayerSpec, transferByLayerSpec } from "./charts.js";
import type { CI, Flip, ReportData } from "./data.js";
import { benchScores, findSplice, gridNames, mean, select, sortPrecisions, spliceRows } from "./data.js";

export const esc = (s: unknown) =>
  String(s ?? "")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");

export function pct(v: number | null | undefined, digits = 1): string {
  return v === null || v === undefined || !Number.isFinite(v) ? "—" : `${(100 * v).toFixed(digits)}%`;
}
export function ciText(ci: CI | undefined, digits = 1): string {
  return ci && ci[0] !== null && ci[1] !== null && Number.isFinite(ci[0]) && Number.isFinite(ci[1])
    ? `[${(100 * ci[0]).toFixed(digits)}, ${(100 * ci[1]).toFixed(digits)}]`
    : "";
}
/** A difference of two fractions in percentage points, with its sign ("+0.0" rather than "-0.0"). */
function signedPts(d: number): string {
  const r = Number((100 * d).toFixed(1));
  return `${r > 0 ? "+" : r < 0 ? "−" : "±"}${Math.abs(r).toFixed(1)} pts`;
}
function num(v: number | null | undefined, digits = 3): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(2) : v.toFixed(digits);
}

const CSS = `
:root{--ink:#1a1a1a;--paper:#f8f6f1;--accent:#c15f3c;--accent-light:#e8d4cc;--success:#2d6a4f;--warning:#b5651d;--muted:#6b6b6b;--border:#d4d0c8;}
*{margin:0;padding:0;box-sizing:border-box}
body{font-family:Georgia,'Times New Roman',serif;background:var(--paper);color:var(--ink);line-height:1.6;font-size:16px}
code,pre,.mono{font-family:Menlo,Consolas,'DejaVu Sans Mono',monospace}
.container{max-width:980px;margin:0 auto;padding:0 32px}
header{padding:48px 0 32px;border-bottom:1px solid var(--border);margin-bottom:32px}
.eyebrow{font-family:Menlo,Consolas,monospace;font-size:10px;letter-spacing:2px;text-transform:uppercase;color:var(--accent);margin-bottom:8px}
h1{font-size:2.2rem;font-weight:700;line-height:1.1;margin-bottom:12px}
.subtitle{font-size:1.05rem;color:var(--muted)}
.hero-stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:1px;background:var(--border);border:1px solid var(--border);margin:24px 0}
.stat{background:var(--paper);padding:16px 12px;text-align:center}
.stat-value{font-family:Menlo,Consolas,monospace;font-size:1.7rem;font-weight:600;color:var(--accent);line-height:1}
.stat-ci{font-family:Menlo,Consolas,monospace;font-size:.7rem;color:var(--muted);margin-top:4px}
.stat-label{font-size:.7rem;color:var(--muted);margin-top:4px;text-transform:uppercase;letter-spacing:.5px}
.stat-detail{font-size:.65rem;color:var(--muted);margin-top:2px}
details.section{border:1px solid var(--border);margin-bottom:8px;background:#fff}
details.section>summary{padding:14px 20px;cursor:pointer;font-size:1.05rem;font-weight:600;list-style:none;display:flex;gap:12px;align-items:center}
details.section>summary::-webkit-details-marker{display:none}
details.section>summary::after{content:"▼";margin-left:auto;color:var(--muted);font-size:.9rem}
details.section[open]>summary::after{content:"▲"}
.tag{font-family:Menlo,Consolas,monospace;font-size:.65rem;padding:3px 8px;background:var(--accent);color:#fff;text-transform:uppercase;letter-spacing:.5px}
.tag.finding{background:var(--success)}.tag.method{background:var(--muted)}
.content{padding:4px 20px 20px;border-top:1px solid var(--border)}
.content h3{font-size:.95rem;margin:18px 0 6px}
.note{color:var(--muted);font-size:.8rem;margin:6px 0}
.table-wrap{overflow-x:auto}
.data-table{width:100%;border-collapse:collapse;margin:12px 0;font-size:.82rem}
.data-table th{font-family:Menlo,Consolas,monospace;font-size:.62rem;text-transform:uppercase;letter-spacing:.5px;text-align:left;padding:7px 10px;background:var(--ink);color:var(--paper);font-weight:500}
.data-table td{padding:6px 10px;border-bottom:1px solid var(--border);vertical-align:top}
.data-table td.n{font-family:Menlo,Consolas,monospace;text-align:right;white-space:nowrap}
.data-table .ci{color:var(--muted);font-size:.72rem}
.chart{margin:12px 0;overflow-x:auto}
.chart svg{max-width:100%;height:auto}
.insight{background:var(--ink);color:var(--paper);padding:14px 20px;margin:14px 0;font-size:.92rem}
.insight strong{color:var(--accent-light)}
.dot{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:middle}
.flip{border:1px solid var(--border);margin:12px 0;background:#fafafa}
.flip>summary{padding:8px 14px;cursor:pointer;font-size:.85rem}
.side{display:grid;grid-template-columns:1fr 1fr;gap:10px;padding:0 12px 12px}
.code{background:#1e1e1e;border-radius:4px;padding:12px;font-size:.75rem;overflow-x:auto}
.code .label{color:#aaa;font-size:.68rem;margin-bottom:6px;font-family:Menlo,Consolas,monospace}
.code .label.pass{color:#7bd88f}.code .label.fail{color:#ff7b72}
.code pre{color:#d4d4d4;white-space:pre-wrap;word-break:break-word}
.meta dt{font-weight:600;font-size:.8rem;margin-top:8px}.meta dd{font-size:.8rem;color:var(--muted);word-break:break-all}
footer{border-top:1px solid var(--border);padding:24px 0;margin-top:32px;text-align:center;color:var(--muted);font-size:.8rem}
@media (max-width:768px){.hero-stats{grid-template-columns:repeat(2,1fr)}.side{grid-template-columns:1fr}}
`;

interface Stat {
  value: string;
  ci: string;
  label: string;
  detail: string;
}

function table(header: string[], rows: string[][], numericFrom = 1): string {
  return `<div class="table-wrap"><table class="data-table"><thead><tr>${header.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c, i) => `<td${i >= numericFrom ? ' class="n"' : ""}>${c}</td>`).join("")}</tr>`)
    .join("")}</tbody></table></div>`;
}

const valCi = (v: number | null | undefined, ci: CI | undefined) => `${pct(v)} <span class="ci">${ciText(ci)}</span>`;

function section(tag: string, tagClass: string, title: string, body: string, open = false): string {
  return `<details class="section"${open ? " open" : ""}><summary><span class="tag ${tagClass}">${esc(tag)}</span>${esc(title)}</summary><div class="content">${body}</div></details>`;
}

const TRANSFER_SHOWN = [
  ["sample_correlation", "Sample correlation"],
  ["feature_correlation", "Feature correlation"],
  ["topk_agreement", "Top-k agreement"],
  ["sparsity_agreement", "Sparsity agreement"],
  ["active_jaccard", "Active Jaccard"],
  ["explained_variance_b", "Explained variance (B)"],
] as const;

/** Renders the report; `charts` counts the SVG charts embedded (the browser test checks each one). */
export async function renderReport(d: ReportData): Promise<{ html: string; charts: number }> {
  const m = d.results.metrics;
  const ref = d.reference;
  const others = d.precisions.filter((p) => p !== ref);
  const lowest = others[others.length - 1];
  const grid = gridNames(d);
  const mainSae = grid[0]?.name;
  let chartN = 0;
  const chart = async (spec: Record<string, unknown>, caption: string) => {
    const svg = await renderSvg(spec, `chart${++chartN}`);
    return `<figure class="chart" data-chart="${chartN}">${svg}<figcaption class="note">${esc(caption)}</figcaption></figure>`;
  };

  // ---- headline numbers
  const stats: Stat[] = [];
  const layersOf = (model: string) => d.plan.layers[model] ?? [];
  const model0 = d.models[0];
  const midLayer = (() => {
    const ls = layersOf(model0);
    return ls[Math.floor((ls.length - 1) / 2)];
  })();
  if (lowest && mainSae) {
    const r = select(m, { model: model0, precision: lowest, reference: ref, layer: midLayer, sae: mainSae }, "sample_correlation").find((x) => x.stage === "transfer");
    if (r) stats.push({ value: pct(r.value), ci: ciText(r.ci95), label: "SAE transfer", detail: `${ref.toUpperCase()}→${lowest.toUpperCase()}, layer ${midLayer}` });
  }
  const splices = spliceRows(d);
  if (lowest && mainSae) {
    const hook = splices.find((r) => r.model === model0 && r.layer === midLayer)?.hook;
    const where = { model: model0, hook: hook ?? "", layer: midLayer, precision: lowest, sae: mainSae };
    const r = findSplice(splices, where, ref);
    if (r && Number.isFinite(r.ce_score)) {
      const own = findSplice(splices, where, lowest);
      const atRef = findSplice(splices, { ...where, precision: ref }, ref);
      stats.push({
        value: pct(r.ce_score),
        ci: `own SAE ${pct(own?.ce_score)} · in ${ref} ${pct(atRef?.ce_score)}`,
        label: "Loss recovered",
        detail: `${ref.toUpperCase()} SAE spliced into ${lowest.toUpperCase()}, layer ${midLayer}`,
      });
    }
  }
  const scores = benchScores(d);
  for (const b of [...new Set(scores.map((s) => s.benchmark))].slice(0, 2)) {
    const rs = scores.find((s) => s.model === model0 && s.benchmark === b && s.precision === ref);
    const lo = scores.find((s) => s.model === model0 && s.benchmark === b && s.precision === lowest);
    if (rs && lo) {
      const rel = rs.score > 0 ? (lo.score - rs.score) / rs.score : NaN;
      stats.push({
        value: Number.isFinite(rel) ? `${rel >= 0 ? "+" : ""}${(100 * rel).toFixed(0)}%` : `${pct(lo.score - rs.score, 0)} pts`,
        ci: `${ref} ${ciText(rs.ci95, 0)} · ${lowest} ${ciText(lo.ci95, 0)}`,
        label: b,
        detail: `${pct(rs.score, 0)}→${pct(lo.score, 0)} (${ref}→${lowest})`,
      });
    }
  }
  const alignRows = m.filter((x) => x.stage === "align" && x.metric === "procrustes_alignment");
  const expansions = [...new Set(grid.map((g) => g.expansion))].sort((a, b) => a - b);
  const alignByExp = expansions.map((e) => ({
    e,
    v: mean(alignRows.filter((x) => Number(x.labels.expansion) === e).map((x) => x.value)),
  }));
  const bestExp = alignByExp.filter((x) => Number.isFinite(x.v)).sort((a, b) => b.v - a.v)[0];
  if (bestExp) {
    const worst = alignByExp.filter((x) => Number.isFinite(x.v)).sort((a, b) => a.v - b.v)[0];
    stats.push({
      value: `${bestExp.e}×`,
      ci: `alignment ${pct(bestExp.v)}`,
      label: "Best SAE size",
      detail:
        worst && worst.e !== bestExp.e && worst.v > 0
          ? bestExp.v / worst.v < 1.01
            ? `ties with ${worst.e}× (within 1%)`
            : `beats ${worst.e}× by ${(bestExp.v / worst.v).toFixed(1)}×`
          : "highest Procrustes alignment",
    });
  }

  // ---- Finding 1: degradation
  let f1 = "";
  if (scores.length) {
    const rows: ScoreRow[] = scores.map((s) => ({
      benchmark: `${s.benchmark} (${s.metric})`,
      model: s.model,
      precision: s.precision,
      score: s.score,
      lo: s.ci95?.[0] ?? null,
      hi: s.ci95?.[1] ?? null,
    }));
    f1 += await chart(degradationSpec(rows), "Score per benchmark and model at each precision; black bars are 95% intervals (Wilson or bootstrap, from the benchmark harness).");
    const benches = [...new Set(scores.map((s) => s.benchmark))];
    const trs: string[][] = [];
    for (const model of d.models)
      for (const b of benches) {
        const refS = scores.find((s) => s.model === model && s.benchmark === b && s.precision === ref);
        trs.push([
          `${esc(model)} · ${esc(b)}`,
          ...d.precisions.map((p) => {
            const s = scores.find((x) => x.model === model && x.benchmark === b && x.precision === p);
            if (!s) return "—";
            const delta = refS && p !== ref ? ` <span class="ci">(${s.score - refS.score >= 0 ? "+" : ""}${(100 * (s.score - refS.score)).toFixed(1)} pts)</span>` : "";
            return `${valCi(s.score, s.ci95)}${delta}`;
          }),
          String(refS?.n ?? "—"),
        ]);
      }
    f1 += table(["model · benchmark", ...d.precisions, "n"], trs);
    const worst = d.flips.filter((f) => f.passToFail > 0).sort((a, b) => b.passToFail - a.passToFail)[0];
    if (worst)
      f1 += `<div class="insight"><strong>${esc(worst.benchmark)}</strong> at ${esc(worst.precision)}: ${worst.passToFail} item(s) pass at ${esc(worst.reference)} and fail at ${esc(worst.precision)}, ${worst.failToPass} the other way (McNemar exact p = ${num(worst.mcnemarP)}).</div>`;
  }

  // ---- flipped items
  let flipsHtml = "";
  for (const f of d.flips) {
    if (f.flips.length === 0) continue;
    flipsHtml += `<h3>${esc(f.model)} · ${esc(f.benchmark)}: ${esc(f.reference)} vs ${esc(f.precision)} — ${f.passToFail} pass→fail, ${f.failToPass} fail→pass of ${f.n} (McNemar p = ${num(f.mcnemarP)})</h3>`;
    for (const x of f.flips.slice(0, 12)) {
      const side = (label: string, s: Flip["reference"], passed: boolean) =>
        `<div class="code"><div class="label ${passed ? "pass" : "fail"}">${esc(label)} — ${esc(s.result)}${s.answer !== undefined && s.answer !== null ? ` (answer ${esc(s.answer)})` : ""}</div><pre>${esc(s.completion ?? "")}</pre></div>`;
      flipsHtml += `<details class="flip"${x === f.flips[0] ? " open" : ""}><summary><span class="mono">${esc(x.id)}</span> — ${esc(x.direction)}</summary>${
        x.prompt ? `<div class="code" style="margin:0 12px 10px"><div class="label">prompt</div><pre>${esc(x.prompt)}</pre></div>` : ""
      }<div class="side">${side(f.reference, x.reference, x.direction === "pass→fail")}${side(f.precision, x.other, x.direction === "fail→pass")}</div></details>`;
    }
    if (f.flips.length > 12) flipsHtml += `<p class="note">${f.flips.length - 12} more in ${esc(f.benchmark)} flips.json of the compare cell.</p>`;
  }

  // ---- Finding 2: transfer
  let f2 = "";
  const transfer = m.filter((x) => x.stage === "transfer");
  if (transfer.length && mainSae) {
    for (const model of d.models) {
      const layers = layersOf(model);
      const hooks = [...new Set(transfer.filter((x) => x.labels.model === model).map((x) => String(x.labels.hook)))];
      const cols = others.filter((p) => transfer.some((x) => x.labels.model === model && x.labels.precision === p));
      const one = layers.length * hooks.length === 1;
      const rows = TRANSFER_SHOWN.map(([k, label]) => [
        esc(label),
        ...cols.map((p) => {
          const rs = transfer.filter((x) => x.labels.model === model && x.labels.precision === p && x.labels.reference === ref && x.labels.sae === mainSae && x.metric === k);
          if (rs.length === 0) return "—";
          if (one) return valCi(rs[0].value, rs[0].ci95);
          const vs = rs.map((r) => r.value);
          return `${pct(mean(vs))} <span class="ci">${pct(Math.min(...vs))}–${pct(Math.max(...vs))}</span>`;
        }),
      ]);
      f2 += `<h3>${esc(model)}: ${esc(ref)}-trained SAE (${esc(mainSae)}) applied to each precision</h3>`;
      f2 += table(["metric", ...cols.map((p) => `${ref}→${p}`)], rows);
      f2 += `<p class="note">${one ? "Brackets: bootstrap 95% intervals over prompts." : `Mean over ${layers.length * hooks.length} hook/layer sites; grey: range over sites (per-site 95% intervals below).`}</p>`;
      const lr: LayerRow[] = [];
      for (const [k, label] of TRANSFER_SHOWN.slice(0, 3))
        for (const r of transfer.filter((x) => x.labels.model === model && x.labels.reference === ref && x.labels.sae === mainSae && x.metric === k))
          lr.push({ metric: label, layer: Number(r.labels.layer), precision: String(r.labels.precision), value: r.value, lo: r.ci95?.[0] ?? null, hi: r.ci95?.[1] ?? null });
      if (lr.length) f2 += await chart(transferByLayerSpec(lr), `${model}: transfer per layer (${hooks.join(", ")}), with 95% bootstrap intervals.`);
      const perLayer: string[][] = [];
      for (const hook of hooks)
        for (const layer of layers)
          for (const p of cols) {
            const get = (k: string) =>
              transfer.find((x) => x.labels.model === model && x.labels.hook === hook && x.labels.layer === layer && x.labels.precision === p && x.labels.reference === ref && x.labels.sae === mainSae && x.metric === k);
            if (!get("sample_correlation")) continue;
            perLayer.push([`${esc(hook)}.${layer}`, esc(p), ...TRANSFER_SHOWN.map(([k]) => valCi(get(k)?.value, get(k)?.ci95))]);
          }
      if (perLayer.length) f2 += table(["site", "precision", ...TRANSFER_SHOWN.map(([, l]) => l)], perLayer, 2);
    }
  }

  // ---- Finding 2b: loss recovered with the SAE spliced into each precision's forward pass
  let f2b = "";
  if (splices.length) {
    const saeNames = grid.map((g) => g.name).filter((n) => splices.some((r) => r.sae === n));
    for (const model of d.models) {
      const mine = splices.filter((r) => r.model === model);
      if (!mine.length) continue;
      const sites = [...new Map(mine.map((r) => [`${r.hook}.${r.layer}`, { hook: r.hook, layer: r.layer }])).values()].sort((a, b) => a.layer - b.layer || (a.hook < b.hook ? -1 : 1));
      const precs = d.precisions.filter((p) => mine.some((r) => r.precision === p));
      f2b += `<h3>${esc(model)}: SAEs spliced into the forward pass at each precision</h3>`;
      // the main SAE per layer, own against the reference's, in a chart
      const own = `own SAE`;
      const refLabel = `${ref} SAE`;
      const cr: SpliceChartRow[] = [];
      const hook0 = sites[0]?.hook;
      for (const r of mine.filter((x) => x.sae === mainSae && x.hook === hook0 && Number.isFinite(x.ce_score))) {
        if (r.sae_precision === r.precision) cr.push({ sae: own, layer: r.layer, precision: r.precision, value: r.ce_score });
        if (r.sae_precision === ref) cr.push({ sae: refLabel, layer: r.layer, precision: r.precision, value: r.ce_score });
      }
      if (cr.length) f2b += await chart(spliceByLayerSpec(cr, [own, refLabel]), `${model}: loss recovered per layer (${hook0}) with SAE ${mainSae}: each precision's own SAE (left) and the ${ref} SAE (right) spliced into that precision's model.`);
      const trs: string[][] = [];
      for (const site of sites)
        for (const p of precs)
          for (const sae of saeNames) {
            const where = { model, hook: site.hook, layer: site.layer, precision: p, sae };
            const o = findSplice(mine, where, p);
            const rr = findSplice(mine, where, ref);
            const base = rr ?? o;
            if (!base) continue;
            const delta = o && rr && p !== ref && Number.isFinite(o.ce_score) && Number.isFinite(rr.ce_score) ? ` <span class="ci">(${signedPts(rr.ce_score - o.ce_score)})</span>` : "";
            trs.push([
              `${esc(site.hook)}.${site.layer}`,
              esc(p),
              `<span class="mono" style="white-space:nowrap">${esc(sae)}</span>`,
              num(base.ce_orig),
              num(base.ce_zero),
              pct(o?.ce_score),
              num(o?.kl_sae),
              `${pct(rr?.ce_score)}${delta}`,
              num(rr?.kl_sae),
            ]);
          }
      f2b += table(["site", "precision", "SAE", "CE clean", "CE zero-ablated", "own SAE: loss recovered", "own SAE: KL", `${ref} SAE: loss recovered`, `${ref} SAE: KL`], trs, 3);
      const tokens = [...new Set(mine.map((r) => r.tokens))];
      f2b += `<p class="note">${tokens.length === 1 ? `Each row scores ${tokens[0]} predicted tokens` : `Tokens scored per row: ${tokens.join(", ")}`} (the same ones at every precision).</p>`;
      if (lowest && mainSae) {
        const atLow = (sp: string) => mean(mine.filter((r) => r.sae === mainSae && r.precision === lowest && r.sae_precision === sp && Number.isFinite(r.ce_score)).map((r) => r.ce_score));
        const atRef = mean(mine.filter((r) => r.sae === mainSae && r.precision === ref && r.sae_precision === ref && Number.isFinite(r.ce_score)).map((r) => r.ce_score));
        const refIn = atLow(ref);
        if (Number.isFinite(refIn))
          f2b += `<div class="insight">The <strong>${esc(ref)}</strong>-trained SAE ${esc(mainSae)} recovers <strong>${pct(refIn)}</strong> of the loss inside the <strong>${esc(lowest)}</strong> model (mean over ${sites.length} site${sites.length > 1 ? "s" : ""}), against ${pct(atLow(lowest))} for ${esc(lowest)}'s own SAE and ${pct(atRef)} inside the ${esc(ref)} model it was trained on.</div>`;
      }
    }
    f2b += `<p class="note">Each SAE's reconstruction replaces the activations at its site during the forward pass of the model at the row's precision; CE is the mean next-token cross-entropy (nats/token) over the first prompts of the prompt set, clean and with the site zeroed. Loss recovered = (CE<sub>zero</sub> − CE<sub>SAE</sub>) / (CE<sub>zero</sub> − CE<sub>clean</sub>): 100% is the clean model (above 100%: the reconstruction lowers the loss), 0% the zero ablation. KL: mean KL(p<sub>clean</sub> ‖ p<sub>SAE</sub>) per token (nats). Grey: the ${esc(ref)} SAE's loss recovered minus the own SAE's. At ${esc(ref)} the own SAE is the ${esc(ref)} SAE (one evaluation). No intervals: one pass over a fixed prompt set.</p>`;
  }

  // ---- Finding 3: SAE size
  let f3 = "";
  if (expansions.length) {
    const sizeRows: SizeRow[] = [];
    const trs: string[][] = [];
    for (const e of expansions) {
      const cells: string[] = [];
      for (const p of others) {
        const al = alignRows.filter((x) => Number(x.labels.expansion) === e && x.labels.precision === p).map((x) => x.value);
        const tr = m.filter((x) => x.stage === "train" && x.metric === "dead_fraction" && Number(x.labels.expansion) === e && x.labels.precision === p);
        const alive = tr.length ? 1 - mean(tr.map((x) => x.value)) : NaN;
        if (al.length) sizeRows.push({ expansion: `${e}×`, precision: p, metric: "Procrustes alignment", value: mean(al) });
        if (tr.length) sizeRows.push({ expansion: `${e}×`, precision: p, metric: "features alive", value: alive });
        cells.push(al.length ? pct(mean(al)) : "—");
      }
      const refTrain = m.filter((x) => x.stage === "train" && x.metric === "dead_fraction" && Number(x.labels.expansion) === e && x.labels.precision === ref);
      if (refTrain.length) sizeRows.push({ expansion: `${e}×`, precision: ref, metric: "features alive", value: 1 - mean(refTrain.map((x) => x.value)) });
      const dSae = m.find((x) => x.stage === "train" && Number(x.labels.expansion) === e && x.metric === "d_sae")?.value;
      const allAlive = m.filter((x) => x.stage === "train" && x.metric === "dead_fraction" && Number(x.labels.expansion) === e).map((x) => 1 - x.value);
      trs.push([`${e}×${dSae ? ` (${dSae} features)` : ""}`, ...cells, pct(mean(allAlive))]);
    }
    f3 += table(["SAE size", ...others.map((p) => `alignment ${ref}~${p}`), "features alive"], trs);
    f3 += `<p class="note">Alignment: Procrustes alignment of each precision's own SAE with the ${esc(ref)} SAE (mean over sites and seeds); alive: 1 − dead fraction on the training activations (mean over precisions and sites).</p>`;
    if (sizeRows.length) f3 += await chart(saeSizeSpec(sizeRows), "Alignment with the reference SAE and fraction of features alive, against SAE size.");
  }

  // ---- ablations: L1 and seeds when swept
  let abl = "";
  const l1s = [...new Set(grid.map((g) => g.l1))];
  const seeds = [...new Set(grid.map((g) => g.seed))];
  for (const [param, values, key] of [
    ["L1 coefficient", l1s, "l1"],
    ["seed", seeds, "seed"],
  ] as const) {
    if (values.length < 2) continue;
    const rows: AblationRow[] = [];
    for (const v of values) {
      for (const [metric, stage, name] of [
        ["sample_correlation", "transfer", "sample correlation"],
        ["procrustes_alignment", "align", "Procrustes alignment"],
        ["explained_variance", "train", "explained variance"],
      ] as const) {
        const xs = m.filter((x) => x.stage === stage && x.metric === metric && Number(x.labels[key]) === v).map((x) => x.value);
        if (xs.length) rows.push({ parameter: param, setting: String(v), metric: name, value: mean(xs) });
      }
    }
    if (rows.length) {
      abl += `<h3>${esc(param)}</h3>${await chart(ablationSpec(rows, param), `Means over precisions, sites and the other grid settings, per ${param}.`)}`;
      abl += table(
        [param, ...[...new Set(rows.map((r) => r.metric))]],
        values.map((v) => [esc(v), ...[...new Set(rows.map((r) => r.metric))].map((mm) => num(rows.find((r) => r.setting === String(v) && r.metric === mm)?.value))]),
      );
    }
  }

  // ---- metadata
  const byStage = new Map<string, { n: number; s: number }>();
  for (const r of d.records.values()) {
    const e = byStage.get(r.stage) ?? { n: 0, s: 0 };
    e.n++;
    e.s += r.seconds;
    byStage.set(r.stage, e);
  }
  const meta = d.meta;
  const metaRows: [string, string][] = [
    ["qsae", meta.qsae_version ?? d.results.qsae_version],
    ["libtorch", meta.torch_version ?? "—"],
    ["BLAS", meta.blas ?? "—"],
    ["device", meta.device ?? "—"],
    ["host", meta.host ?? "—"],
    ["config", meta.config_file ?? "—"],
    ["started", meta.started ?? "—"],
    ["finished", meta.finished ?? "—"],
    ["cells", `${d.results.cells.done}/${d.results.cells.total} done${d.results.complete ? "" : ` — missing: ${d.results.cells.missing.slice(0, 8).join(", ")}${d.results.cells.missing.length > 8 ? ", …" : ""}`}`],
  ];
  for (const [name, info] of Object.entries(meta.models ?? {}))
    metaRows.push([`model ${name}`, `${info.path} — ${info.num_layers} layers — config sha256 ${info.config_hash.slice(0, 16)}…, weights ${info.weights_hash.slice(0, 16)}…`]);
  const timing = table(
    ["stage", "cells", "total time", "mean per cell"],
    [...byStage.entries()].map(([s, e]) => [esc(s), String(e.n), `${e.s.toFixed(1)} s`, `${(e.s / e.n).toFixed(1)} s`]),
  );
  const metaHtml = `<dl class="meta">${metaRows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("")}</dl><h3>Timings</h3>${timing}`;

  const legend = d.precisions.map((p) => `<span class="mono" style="font-size:.75rem;margin-right:14px"><span class="dot" style="background:${PRECISION_COLORS[p] ?? "#666"}"></span>${esc(p)}</span>`).join("");
  const config = d.plan.config as { name?: string; description?: string };
  const title = config.name ?? d.plan.name ?? "qsae run";
  const body = [
    `<header><div class="eyebrow">qsae report · ${esc(d.results.qsae_version)}</div><h1>${esc(title)}</h1><p class="subtitle">${esc(
      config.description ?? `Do SAEs trained at ${ref.toUpperCase()} transfer to quantized models? What breaks when the model is quantized?`,
    )}</p>`,
    stats.length
      ? `<div class="hero-stats">${stats.map((s) => `<div class="stat"><div class="stat-value">${esc(s.value)}</div><div class="stat-ci">${esc(s.ci)}</div><div class="stat-label">${esc(s.label)}</div><div class="stat-detail">${esc(s.detail)}</div></div>`).join("")}</div>`
      : "",
    `<div>${legend}</div></header>`,
    f1 ? section("Finding 1", "finding", "Degradation per benchmark across precisions", f1, true) : "",
    flipsHtml ? section("Examples", "", "Flipped benchmark items, side by side", flipsHtml) : "",
    f2 ? section("Finding 2", "finding", "SAE transfer across precisions", f2, true) : "",
    f2b ? section("Finding 2b", "finding", "Loss recovered when the SAE is spliced in", f2b, true) : "",
    f3 ? section("Finding 3", "finding", "SAE size: alignment and features alive", f3, true) : "",
    abl ? section("Ablations", "method", "L1 and seed sweeps", abl) : "",
    section("Method", "method", "Run metadata", metaHtml),
    `<footer>Generated by qsae ${esc(d.results.qsae_version)} from ${esc(d.rundir)}. Every interval is a 95% interval computed by the stage that produced the number.</footer>`,
  ].join("\n");
  const html = `<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${esc(title)} — qsae report</title><style>${CSS}</style></head><body><div class="container">\n${body}\n</div></body></html>\n`;
  return { html, charts: chartN };
}

export { sortPrecisions };
