// qsae quantize: reproduces bitsandbytes' reference files byte for byte, writes HF pre-quantized model
// folders (quantization_config, kept modules, tokenizer files), and fails cleanly on bad input.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

import { runCli } from "../helpers/cli.js";
import { haveShared, sharedPath } from "../helpers/shared.js";
import { tempDir } from "../helpers/tmp.js";
import { readRaw } from "./raw.js";

const dir = tempDir("qsae-quant-cli-");
const bnb = (f: string) => sharedPath("reference", "bnb", f);

describe.skipIf(!haveShared)("qsae quantize", () => {
  for (const [fmt, bs] of [
    ["nf4", 64],
    ["fp4", 128],
  ] as const) {
    it(`${fmt} --blocksize ${bs} reproduces ../shared/reference/bnb/${fmt}-bs${bs}.safetensors`, () => {
      const out = join(dir, `${fmt}-${bs}.safetensors`);
      const r = runCli(["quantize", bnb("input.safetensors"), out, "--format", fmt, "--blocksize", String(bs)]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/4 tensors quantized/);
      const got = readRaw(out);
      const ref = readRaw(bnb(`${fmt}-bs${bs}.safetensors`));
      for (const name of ["t0.weight", "t1.weight", "t2.weight", "t3.weight"]) {
        expect(got.tensors[name].dtype).toBe("U8");
        expect(got.tensors[name].shape).toEqual(ref.tensors[name].shape);
        expect(got.tensors[name].bytes.equals(ref.tensors[name].bytes)).toBe(true);
        expect(got.tensors[`${name}.absmax`].bytes.equals(ref.tensors[`${name}.absmax`].bytes)).toBe(true);
        expect(got.tensors[`${name}.quant_map`].shape).toEqual([16]);
        const st = JSON.parse(got.tensors[`${name}.quant_state.bitsandbytes__${fmt}`].bytes.toString("utf8"));
        expect(st).toMatchObject({ quant_type: fmt, blocksize: bs, dtype: "float32", shape: ref.tensors[`${name}.dequant`].shape });
      }
    });
  }

  it("int8 reproduces ../shared/reference/bnb/int8.safetensors (PREFIX.weight I8, PREFIX.SCB)", () => {
    const out = join(dir, "int8.safetensors");
    const r = runCli(["quantize", bnb("input.safetensors"), out, "--format", "int8", "--json"]);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).quantized).toHaveLength(4);
    const got = readRaw(out);
    const ref = readRaw(bnb("int8.safetensors"));
    expect(Object.keys(got.tensors).sort()).toEqual(Object.keys(ref.tensors).sort());
    for (const [k, t] of Object.entries(ref.tensors)) {
      expect(got.tensors[k].dtype).toBe(t.dtype);
      expect(got.tensors[k].bytes.equals(t.bytes)).toBe(true);
    }
  });

  it("--double-quant writes nested statistics and the quant_state bitsandbytes reads", () => {
    const out = join(dir, "dq.safetensors");
    const r = runCli(["quantize", bnb("input.safetensors"), out, "--double-quant"]);
    expect(r.status).toBe(0);
    const got = readRaw(out);
    expect(got.tensors["t3.weight.absmax"].dtype).toBe("U8");
    expect(got.tensors["t3.weight.nested_absmax"].dtype).toBe("F32");
    expect(got.tensors["t3.weight.nested_quant_map"].shape).toEqual([256]);
    const text = got.tensors["t3.weight.quant_state.bitsandbytes__nf4"].bytes.toString("utf8");
    expect(text).toMatch(
      /^\{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": \[64, 256\], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": [0-9.e-]+\}$/,
    );
    // the codes themselves do not change
    expect(got.tensors["t3.weight"].bytes.equals(readRaw(bnb("nf4-bs64.safetensors")).tensors["t3.weight"].bytes)).toBe(true);
  });

  it("an HF model folder becomes a pre-quantized checkpoint (block projections only)", () => {
    const out = join(dir, "qwen3-moe-nf4");
    const r = runCli(["quantize", sharedPath("models", "tiny-qwen3-moe"), out, "--format", "nf4", "--json"]);
    expect(r.status, r.stderr).toBe(0);
    const rep = JSON.parse(r.stdout);
    expect(rep.modelFolder).toBe(true);
    expect(rep.quantized).toContain("model.layers.0.mlp.experts.3.down_proj.weight");
    expect(rep.quantized).toContain("model.layers.1.self_attn.q_proj.weight");
    for (const kept of ["lm_head.weight", "model.embed_tokens.weight", "model.norm.weight", "model.layers.0.mlp.gate.weight"])
      expect(rep.kept).toContain(kept);
    const cfg = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
    expect(cfg.quantization_config).toMatchObject({
      quant_method: "bitsandbytes",
      load_in_4bit: true,
      load_in_8bit: false,
      bnb_4bit_quant_type: "nf4",
      bnb_4bit_use_double_quant: false,
      bnb_4bit_quant_storage: "uint8",
      bnb_4bit_compute_dtype: "bfloat16",
      llm_int8_threshold: 6.0,
    });
    const st = readRaw(join(out, "model.safetensors"));
    expect(st.tensors["model.layers.0.self_attn.q_proj.weight"].dtype).toBe("U8");
    expect(st.tensors["model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__nf4"]).toBeDefined();
    expect(st.tensors["model.layers.0.mlp.gate.weight"].dtype).toBe("BF16");
    expect(st.tensors["lm_head.weight"].dtype).toBe("BF16");
    expect(readdirSync(dir).some((n) => n.includes(".tmp-"))).toBe(false);
  });

  it("GPT-2 (Conv1D) folders: int8 of [out, in] weights, tokenizer files copied", () => {
    const out = join(dir, "gpt2-int8");
    const r = runCli(["quantize", sharedPath("models", "tiny-gpt2"), out, "--format", "int8", "--json"]);
    expect(r.status).toBe(0);
    const st = readRaw(join(out, "model.safetensors"));
    // c_fc is stored [in=16, out=64] by Conv1D; quantized as W^T [64, 16] with one SCB per output.
    expect(st.tensors["transformer.h.0.mlp.c_fc.weight"]).toMatchObject({ dtype: "I8", shape: [64, 16] });
    expect(st.tensors["transformer.h.0.mlp.c_fc.SCB"].shape).toEqual([64]);
    expect(st.tensors["transformer.wte.weight"].dtype).toBe("F32");
    for (const f of ["tokenizer.json", "vocab.json", "merges.txt"]) expect(existsSync(join(out, f))).toBe(true);
    expect(JSON.parse(readFileSync(join(out, "config.json"), "utf8")).quantization_config.load_in_8bit).toBe(true);
  });

  it("bad input: one line naming the problem, exit 1, nothing written", () => {
    const out = join(dir, "bad.safetensors");
    let r = runCli(["quantize", bnb("input.safetensors"), out, "--blocksize", "48"]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toMatch(/^qsae: .*blocksize.*48 is not a power of two in 32\.\.4096$/);
    r = runCli(["quantize", join(dir, "missing.safetensors"), out]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/missing\.safetensors/);
    r = runCli(["quantize", bnb("input.safetensors"), out, "--format", "int3"]);
    expect(r.status).not.toBe(0);
    expect(existsSync(out)).toBe(false);
  });
});
