#!/usr/bin/env python3
"""Reference outputs from the transformers library for tiny random configs of every architecture qsae runs.

Run by scripts/gpu-check.sh on a machine with PyTorch + transformers (not needed for qsae itself):
    python3 scripts/transformers-reference.py --out DIR
For each architecture it writes DIR/models/<name>/ (config.json + model.safetensors, fp32, seeded random
weights) and DIR/reference/<name>.fp32.safetensors with the same layout as ../shared/reference:
input_ids [B,T] I64, logits [B,T,V] F32 and hidden.{i} [B,T,D] F32 = the residual stream after block i,
before the final norm (captured with forward hooks on the decoder layers, since transformers' last
hidden_states entry has the final norm applied). A second file <name>.padded.safetensors adds a
left-padded attention_mask (positions from cumsum(mask) - 1, as generate() does).
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file

BASE = dict(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=128, max_position_embeddings=512, tie_word_embeddings=False)

CONFIGS = {
    "llama3": ("LlamaConfig", dict(BASE, model_type="llama", head_dim=16, rms_norm_eps=1e-6, rope_theta=500000.0,
                                   rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                                     high_freq_factor=4.0, original_max_position_embeddings=64))),
    "llama-linear": ("LlamaConfig", dict(BASE, model_type="llama", rope_scaling=dict(rope_type="linear", factor=2.0))),
    "llama-yarn": ("LlamaConfig", dict(BASE, model_type="llama", rope_scaling=dict(rope_type="yarn", factor=4.0,
                                                                                     original_max_position_embeddings=128))),
    "mistral": ("MistralConfig", dict(BASE, model_type="mistral", head_dim=16, sliding_window=4)),
    "qwen2": ("Qwen2Config", dict(BASE, model_type="qwen2", rope_theta=1000000.0)),
    "qwen3": ("Qwen3Config", dict(BASE, model_type="qwen3", head_dim=24, rope_theta=1000000.0)),
    "qwen3-tied": ("Qwen3Config", dict(BASE, model_type="qwen3", head_dim=16, num_key_value_heads=1, tie_word_embeddings=True)),
    "qwen3_moe": ("Qwen3MoeConfig", dict(BASE, model_type="qwen3_moe", head_dim=16, moe_intermediate_size=32, num_experts=4,
                                         num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1,
                                         mlp_only_layers=[1])),
    "starcoder2": ("Starcoder2Config", dict(BASE, model_type="starcoder2", intermediate_size=256, sliding_window=4,
                                            use_bias=True, norm_epsilon=1e-5, hidden_act="gelu_pytorch_tanh",
                                            tie_word_embeddings=True)),
    "gpt2": ("GPT2Config", dict(model_type="gpt2", vocab_size=256, n_embd=64, n_layer=2, n_head=4, n_positions=128,
                                activation_function="gelu_new", tie_word_embeddings=True)),
}


def decoder_layers(model):
    if hasattr(model, "model") and hasattr(model.model, "layers"):
        return model.model.layers
    return model.transformer.h


def run(model, ids, mask):
    layers = decoder_layers(model)
    outs = [None] * len(layers)
    hooks = []
    for i, layer in enumerate(layers):
        def hook(_m, _inp, out, i=i):
            outs[i] = (out[0] if isinstance(out, tuple) else out).detach().float().clone()
        hooks.append(layer.register_forward_hook(hook))
    kw = {}
    if mask is not None:
        kw["attention_mask"] = mask
        pos = (mask.long().cumsum(-1) - 1).clamp_min(0)
        kw["position_ids"] = pos
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False, **kw).logits.float()
    for h in hooks:
        h.remove()
    t = {"input_ids": ids.contiguous(), "logits": logits.contiguous()}
    if mask is not None:
        t["attention_mask"] = mask.long().contiguous()
    for i, o in enumerate(outs):
        t[f"hidden.{i}"] = o.contiguous()
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    import transformers
    os.makedirs(os.path.join(args.out, "models"), exist_ok=True)
    os.makedirs(os.path.join(args.out, "reference"), exist_ok=True)
    failures = 0
    for name, (cls_name, cfg) in CONFIGS.items():
        try:
            torch.manual_seed(0)
            cfg = dict(cfg)
            cls = getattr(transformers, cls_name)
            model_type = cfg.pop("model_type")
            config = cls(**cfg)
            assert config.model_type == model_type
            try:  # transformers >= 4.56 names it dtype; older versions torch_dtype
                model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            except TypeError:
                model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
            # Non-trivial norms and biases, so that every parameter matters.
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if "norm" in n or "ln_" in n or n.endswith(".bias"):
                        p.add_(torch.randn_like(p) * 0.1)
            model = model.to(args.device).eval()
            if hasattr(model.config, "_attn_implementation"):
                model.config._attn_implementation = "eager"
            mdir = os.path.join(args.out, "models", name)
            model.save_pretrained(mdir, safe_serialization=True)
            g = torch.Generator().manual_seed(1)
            ids = torch.randint(0, 256, (2, 8), generator=g).to(args.device)
            meta = {"source": f"transformers {transformers.__version__}, torch {torch.__version__}", "model": name}
            t = run(model, ids, None)
            save_file({k: v.cpu() for k, v in t.items()}, os.path.join(args.out, "reference", f"{name}.fp32.safetensors"), meta)
            mask = torch.ones_like(ids)
            mask[1, :3] = 0
            t = run(model, ids, mask)
            save_file({k: v.cpu() for k, v in t.items()}, os.path.join(args.out, "reference", f"{name}.padded.safetensors"), meta)
            from safetensors import safe_open
            names = []
            for fn in sorted(os.listdir(mdir)):
                if fn.endswith(".safetensors"):
                    with safe_open(os.path.join(mdir, fn), "pt") as sf:
                        names += [f"{k}{list(sf.get_slice(k).get_shape())}" for k in sf.keys() if ".layers.0." in k or ".h.0." in k]
            print(f"{name}: ok ({cls_name}); layer-0 tensors: {' '.join(sorted(names))}")
        except Exception as e:  # keep going: one architecture missing from this transformers is not fatal
            failures += 1
            print(f"{name}: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
    with open(os.path.join(args.out, "README.json"), "w") as f:
        json.dump({"configs": list(CONFIGS), "failures": failures}, f, indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
