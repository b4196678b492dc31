// Charts for the report: vega-lite specs compiled to vega and rendered to SVG in Node (no browser, no canvas).

/** Colors per precision, as in the seed's summary. */
export const PRECISION_COLORS: Record<string, string> = {
  fp32: "#0f766e",
  bf16: "#3b82f6",
  fp16: "#8b5cf6",
  int8: "#f59e0b",
  nf4: "#ef4444",
  fp4: "#be185d",
};
export const PRECISION_ORDER = ["fp32", "bf16", "fp16", "int8", "nf4", "fp4"];

const FONT = "Georgia, 'Times New Roman', serif";
const MONO = "Menlo, Consolas, 'DejaVu Sans Mono', monospace";

const baseConfig = {
  background: "#ffffff",
  font: FONT,
  view: { stroke: "#d4d0c8" },
  axis: { labelFont: MONO, titleFont: FONT, labelFontSize: 10, titleFontSize: 11, gridColor: "#eeeae2", domainColor: "#999" },
  header: { labelFont: FONT, titleFont: FONT, labelFontSize: 12, labelFontWeight: "bold" },
  legend: { labelFont: MONO, titleFont: FONT, labelFontSize: 10, orient: "top" },
  title: { font: FONT, fontSize: 13, anchor: "start" },
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type VlSpec = Record<string, any>;

/** Makes the ids inside an SVG unique to it (several SVGs inline in one page must not share clip-path ids). */
export function prefixSvgIds(svg: string, prefix: string): string {
  return svg
    .replace(/\bid="([^"]+)"/g, (_, id: string) => `id="${prefix}-${id}"`)
    .replace(/url\(#([^)]+)\)/g, (_, id: string) => `url(#${prefix}-${id})`)
    .replace(/(xlink:)?href="#([^"]+)"/g, (_, x: string | undefined, id: string) => `${x ?? ""}href="#${prefix}-${id}"`);
}

/** Compiles a vega-lite spec and renders it to an SVG string. */
export async function renderSvg(spec: VlSpec, idPrefix = "chart"): Promise<string> {
  // vega is loaded on first use (it is large; importing qsae should stay quick)
  const [vega, vl] = await Promise.all([import("vega"), import("vega-lite")]);
  const full = { $schema: "https://vega.github.io/schema/vega-lite/v6.json", config: baseConfig, ...spec };
  const compiled = vl.compile(full as never, { logger: vega.logger(vega.None) } as never).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none", logLevel: vega.None } as never);
  try {
    const svg = await view.toSVG();
    return prefixSvgIds(svg, idPrefix);
  } finally {
    view.finalize();
  }
}

function colorScale(precisions: string[]) {
  const domain = PRECISION_ORDER.filter((p) => precisions.includes(p)).concat(precisions.filter((p) => !PRECISION_ORDER.includes(p)));
  return { domain, range: domain.map((p) => PRECISION_COLORS[p] ?? "#666") };
}

export interface ScoreRow {
  benchmark: string;
  model: string;
  precision: string;
  score: number;
  lo: number | null;
  hi: number | null;
}

/** Finding 1: score per benchmark per model, one bar per precision, with 95% intervals. */
export function degradationSpec(rows: ScoreRow[]): VlSpec {
  const precisions = [...new Set(rows.map((r) => r.precision))];
  const color = colorScale(precisions);
  return {
    data: { values: rows },
    facet: { row: { field: "benchmark", type: "nominal", title: null, header: { labelAngle: 0, labelAlign: "left" } } },
    spec: {
      width: 560,
      height: { step: 9, for: "offset" },
      layer: [
        {
          mark: { type: "bar", cornerRadiusEnd: 2 },
          encoding: {
            y: { field: "model", type: "nominal", title: null },
            yOffset: { field: "precision", sort: color.domain },
            x: { field: "score", type: "quantitative", title: "score (95% CI)", scale: { domain: [0, 1] }, axis: { format: "%" } },
            color: { field: "precision", type: "nominal", scale: color, title: "precision" },
            tooltip: [{ field: "precision" }, { field: "score", format: ".3f" }],
          },
        },
        {
          mark: { type: "rule", color: "#1a1a1a", strokeWidth: 1.2 },
          encoding: {
            y: { field: "model", type: "nominal" },
            yOffset: { field: "precision", sort: color.domain },
            x: { field: "lo", type: "quantitative" },
            x2: { field: "hi" },
          },
        },
      ],
    },
    resolve: { scale: { y: "independent" } },
  };
}

export interface LayerRow {
  metric: string;
  layer: number;
  precision: string;
  value: number;
  lo: number | null;
  hi: number | null;
}

/** Transfer metrics per layer, one line per precision, with interval bars. */
export function transferByLayerSpec(rows: LayerRow[]): VlSpec {
  const color = colorScale([...new Set(rows.map((r) => r.precision))]);
  return {
    data: { values: rows },
    facet: { column: { field: "metric", type: "nominal", title: null } },
    spec: {
      width: 170,
      height: 150,
      layer: [
        {
          mark: { type: "line", point: true },
          encoding: {
            x: { field: "layer", type: "ordinal", title: "layer" },
            y: { field: "value", type: "quantitative", title: null, scale: { zero: false } },
            color: { field: "precision", type: "nominal", scale: color },
          },
        },
        {
          mark: { type: "rule" },
          encoding: {
            x: { field: "layer", type: "ordinal" },
            y: { field: "lo", type: "quantitative" },
            y2: { field: "hi" },
            color: { field: "precision", type: "nominal", scale: color },
          },
        },
      ],
    },
    resolve: { scale: { y: "independent" } },
  };
}

export interface SizeRow {
  expansion: string;
  precision: string;
  metric: string;
  value: number;
}

/** Finding 3: alignment and alive fraction against SAE size (expansion). */
export function saeSizeSpec(rows: SizeRow[]): VlSpec {
  const color = colorScale([...new Set(rows.map((r) => r.precision))]);
  return {
    data: { values: rows },
    facet: { column: { field: "metric", type: "nominal", title: null } },
    spec: {
      width: 240,
      height: 160,
      mark: { type: "line", point: true },
      encoding: {
        x: { field: "expansion", type: "ordinal", title: "SAE size (× d_model)", sort: null },
        y: { field: "value", type: "quantitative", title: null, scale: { domain: [0, 1] }, axis: { format: "%" } },
        color: { field: "precision", type: "nominal", scale: color },
      },
    },
    resolve: { scale: { y: "independent" } },
  };
}

export interface AblationRow {
  parameter: string;
  setting: string;
  metric: string;
  value: number;
}

/** Ablations (L1, seeds, ...): a metric against each swept setting. */
export function ablationSpec(rows: AblationRow[], parameter: string): VlSpec {
  return {
    data: { values: rows },
    facet: { column: { field: "metric", type: "nominal", title: null } },
    spec: {
      width: 200,
      height: 140,
      mark: { type: "line", point: true, color: "#c15f3c" },
      encoding: {
        x: { field: "setting", type: "ordinal", title: parameter, sort: null },
        y: { field: "value", type: "quantitative", title: null, scale: { zero: false } },
      },
    },
    resolve: { scale: { y: "independent" } },
  };
}

export interface SpliceChartRow {
  /** facet: which SAE was spliced in ("own SAE", "bf16 SAE") */
  sae: string;
  layer: number;
  precision: string;
  value: number;
}

/** Loss recovered per layer when an SAE is spliced into the model at each precision: one line per precision. */
export function spliceByLayerSpec(rows: SpliceChartRow[], facetOrder: string[]): VlSpec {
  const color = colorScale([...new Set(rows.map((r) => r.precision))]);
  return {
    data: { values: rows },
    facet: { column: { field: "sae", type: "nominal", title: null, sort: facetOrder } },
    spec: {
      width: 240,
      height: 160,
      mark: { type: "line", point: true },
      encoding: {
        x: { field: "layer", type: "ordinal", title: "layer" },
        y: { field: "value", type: "quantitative", title: "loss recovered", scale: { zero: false }, axis: { format: "%" } },
        color: { field: "precision", type: "nominal", scale: color, sort: color.domain },
        tooltip: [{ field: "precision" }, { field: "layer" }, { field: "value", format: ".3f" }],
      },
    },
  };
}
