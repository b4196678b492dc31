#!/usr/bin/env python3
"""Independent reference for qsae's alignment metrics and linear assignment (numpy + scipy).

Usage: reference.py align SAE_A SAE_B   -> JSON {matched_cosine, procrustes_alignment, frac_cosine_ge_0_7, encoder_*, permutation}
       reference.py lap FILE.safetensors -> JSON {NAME: {value, col_of_row}} for every tensor (maximization)
Reads safetensors with a tiny parser (no safetensors package needed).
"""
import json
import struct
import sys

import numpy as np
from scipy.optimize import linear_sum_assignment

DT = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=DT[info["dtype"]]).reshape(info["shape"]).astype(np.float64)
    return out


def align_dicts(A, B):
    A = A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-30)
    B = B / np.maximum(np.linalg.norm(B, axis=1, keepdims=True), 1e-30)
    C = A @ B.T
    rows, cols = linear_sum_assignment(C, maximize=True)
    perm = cols[np.argsort(rows)]
    matched = C[np.arange(len(perm)), perm].mean()
    U, _, Vt = np.linalg.svd(A.T @ B[perm])
    R = U @ Vt
    rot = A @ R
    cos = np.sum(rot * B[perm], axis=1) / (np.linalg.norm(rot, axis=1) * np.linalg.norm(B[perm], axis=1))
    return float(matched), float(cos.mean()), float((cos >= 0.7).mean()), perm.tolist()


def main():
    if sys.argv[1] == "align":
        a = load(sys.argv[2] + "/sae_weights.safetensors")
        b = load(sys.argv[3] + "/sae_weights.safetensors")
        m, p, f, perm = align_dicts(a["W_dec"], b["W_dec"])
        em, ep, ef, eperm = align_dicts(a["W_enc"].T, b["W_enc"].T)
        print(json.dumps({"matched_cosine": m, "procrustes_alignment": p, "frac_cosine_ge_0_7": f,
                          "encoder_matched_cosine": em, "encoder_procrustes_alignment": ep,
                          "encoder_frac_cosine_ge_0_7": ef, "permutation": perm, "encoder_permutation": eperm}))
    elif sys.argv[1] == "lap":
        out = {}
        for name, w in load(sys.argv[2]).items():
            rows, cols = linear_sum_assignment(w, maximize=True)
            out[name] = {"value": float(w[rows, cols].sum()), "col_of_row": cols[np.argsort(rows)].tolist()}
        print(json.dumps(out))
    else:
        raise SystemExit("unknown mode")


if __name__ == "__main__":
    main()
