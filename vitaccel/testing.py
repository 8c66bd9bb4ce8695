"""Factories for tests and benchmarks: small valid inputs built from a seed, without torch or a dataset.

They live outside the runtime packages (``vitaccel.host``, ``vitaccel.sim``) so that nothing a board runs
depends on them, and so that the runtime never ships a path that makes up weights. They build their output
through the public API and the same helpers the exporter uses (``mask_to_csc``, ``quantize_multiplier``),
so what they return is exactly as valid as an exported bundle.

NumPy and the standard library only, like the packages they feed.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

import numpy as np

from vitaccel.host.bundle import FORMAT_VERSION, METHODS, Bundle
from vitaccel.sim.vitcod.sparse_format import mask_to_csc, order_from_globals

__all__ = ["random_bundle"]


def random_bundle(config: Any = "paper", *, method: str = "vitcod", depth: int = 2, seed: int = 0,
                  img_size: int = 16, patch_size: int = 4, in_chans: int = 3, num_classes: int = 10,
                  embed_dim: int = 16, num_heads: int = 2, mlp_dim: int = 32, ae: Optional[bool] = None,
                  ae_heads: Optional[int] = None, density: float = 0.2, n_groups: int = 4,
                  sparse_attention: Optional[bool] = None) -> Bundle:
    """A small valid bundle with random weights and masks (seeded). Tiny by default: N = 17 tokens, D = 16,
    2 heads, 2 layers, a few tens of KiB on disk.

    Masks keep the CLS key column and the diagonal plus a random ``density`` of other entries; columns
    kept by more than half the queries are global (Alg. 1 of the ViTCoD paper with theta_d = N / 2). AE
    (``ae``, default on for vitcod) uses ``ae_heads`` (default ceil(H / 2)); revit gets LSH tensors.
    """
    from vitaccel.hwconfig import load_config
    from vitaccel.sim.numerics import quantize_multiplier, softmax_params
    from vitaccel.sim.revit.lsh import hash_params

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    cfg = load_config(config)
    rng = np.random.default_rng(seed)
    D, H, M, K = embed_dim, num_heads, mlp_dim, num_classes
    N = (img_size // patch_size) ** 2 + 1
    if ae is None:
        ae = method == "vitcod"
    if sparse_attention is None:
        sparse_attention = method == "vitcod"
    hc = ae_heads if ae_heads is not None else -(-H // 2)
    model = {"arch": "deit", "img_size": img_size, "patch_size": patch_size, "in_chans": in_chans,
             "num_classes": K, "embed_dim": D, "depth": depth, "num_heads": H, "mlp_dim": M, "num_tokens": N}
    if ae:
        model["ae_heads"] = hc
    meta: Dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model": model,
        "hw": {"config_name": cfg.name, "config_hash": cfg.hash},
        "quant": {"weight_bits": 8, "act_bits": 8, "weight_granularity": "per_channel", "calibration": "random"},
        "method": method,
        "extra": {"source": "vitaccel.testing.random_bundle", "seed": seed, "dataset": None},
    }
    if method == "revit":
        meta["groups"] = {"n_groups": n_groups, "hash": "lsh"}

    def f32(*shape: int, lo: float = -0.5, hi: float = 0.5) -> np.ndarray:
        return rng.uniform(lo, hi, shape).astype(np.float32)

    def scale() -> float:
        return float(np.float32(rng.uniform(0.01, 0.1)))

    t: Dict[str, np.ndarray] = {
        "patch_embed.weight": f32(D, in_chans, patch_size, patch_size),
        "patch_embed.bias": f32(D),
        "cls_token": f32(1, 1, D),
        "pos_embed": f32(1, N, D),
        "norm.weight": f32(D, lo=0.5, hi=1.5),
        "norm.bias": f32(D),
        "head.weight": f32(K, D),
        "head.bias": f32(K),
    }
    for i in range(depth):
        p = f"layers.{i}."
        for nm in ("norm1", "norm2"):
            t[p + nm + ".weight"] = f32(D, lo=0.5, hi=1.5)
            t[p + nm + ".bias"] = f32(D)
        for nm, out, inp in (("qkv", 3 * D, D), ("proj", D, D), ("fc1", M, D), ("fc2", D, M)):
            w_scale = rng.uniform(0.001, 0.02, out).astype(np.float32)
            in_s, out_s = scale(), scale()
            mults, shifts = zip(*(quantize_multiplier(in_s * float(ws) / out_s) for ws in w_scale))
            t[p + nm + ".weight"] = rng.integers(-128, 128, (out, inp), dtype=np.int8)
            t[p + nm + ".bias"] = rng.integers(-(1 << 16), 1 << 16, out, dtype=np.int32)
            t[p + nm + ".w_scale"] = w_scale
            t[p + nm + ".in_scale"] = np.array(in_s, dtype=np.float32)
            t[p + nm + ".out_scale"] = np.array(out_s, dtype=np.float32)
            t[p + nm + ".mult"] = np.array(mults, dtype=np.int32)
            t[p + nm + ".shift"] = np.array(shifts, dtype=np.int32)
        sm, ss = softmax_params(scale() * scale() / math.sqrt(D // H))
        om, os_ = quantize_multiplier(scale() / 256 / scale())
        t[p + "attn.softmax_mult"] = np.array(sm, dtype=np.int32)
        t[p + "attn.softmax_shift"] = np.array(ss, dtype=np.int32)
        t[p + "attn.out_mult"] = np.array(om, dtype=np.int32)
        t[p + "attn.out_shift"] = np.array(os_, dtype=np.int32)
        if sparse_attention:
            mask = rng.random((H, N, N)) < density
            mask[:, :, 0] = True  # the CLS key column is kept
            mask[:, np.arange(N), np.arange(N)] = True
            for hh in range(H):  # sometimes one more dense column
                if rng.random() < 0.5:
                    mask[hh, :, int(rng.integers(1, N))] |= rng.random(N) < 0.8
            is_global = mask.sum(axis=1) > N // 2
            order, n_global = order_from_globals(is_global)
            colptr, headptr, rowidx = mask_to_csc(mask, order, n_global)
            t[p + "attn.mask"] = mask
            t[p + "attn.order"] = order
            t[p + "attn.n_global"] = n_global
            t[p + "attn.csc_colptr"] = colptr
            t[p + "attn.csc_headptr"] = headptr
            t[p + "attn.csc_rowidx"] = rowidx
        if ae:
            for w in ("q", "k"):
                a = f"{p}ae.{w}."
                t[a + "enc_weight"] = rng.integers(-128, 128, (hc, H), dtype=np.int8)
                t[a + "enc_bias"] = rng.integers(-1000, 1000, hc, dtype=np.int32)
                t[a + "dec_weight"] = rng.integers(-128, 128, (H, hc), dtype=np.int8)
                t[a + "dec_bias"] = rng.integers(-1000, 1000, H, dtype=np.int32)
                for nm in ("enc", "dec"):
                    m, s = quantize_multiplier(float(rng.uniform(0.001, 0.01)))
                    t[a + nm + "_mult"] = np.array(m, dtype=np.int32)
                    t[a + nm + "_shift"] = np.array(s, dtype=np.int32)
        if method == "revit":
            gamma = float(rng.uniform(1.0, 4.0))
            t[p + "lsh.alpha"] = rng.standard_normal((n_groups, D)).astype(np.float32)
            t[p + "lsh.beta"] = rng.uniform(0, gamma, n_groups).astype(np.float32)
            t[p + "lsh.gamma"] = np.array(gamma, dtype=np.float32)
            hw, hb, hm, hs = hash_params(t[p + "lsh.alpha"], t[p + "lsh.beta"], gamma, t[p + "qkv.in_scale"])
            t.update({p + "lsh.hash_weight": hw, p + "lsh.hash_bias": hb, p + "lsh.hash_mult": np.array(hm, np.int32),
                      p + "lsh.hash_shift": np.array(hs, np.int32), p + "prune.keep_groups": np.array(1 << 16, np.int32),
                      p + "prune.keep_patches": np.array(1 << 16, np.int32)})
    # The integer whole model, made from the float tensors by the exporter's own function, at random
    # calibration figures: residual maxima in [2, 20], int8 scales like the linears'.
    from vitaccel.sim.common.intmodel import int_model_tensors

    sc: Dict[str, float] = {"input": scale(), "patch": scale(), "norm": scale(), "head": scale(),
                            "res.x0": float(rng.uniform(2, 20))}
    for i in range(depth):
        sc[f"layers.{i}.res1"] = float(rng.uniform(2, 20))
        sc[f"layers.{i}.res2"] = float(rng.uniform(2, 20))
    t.update(int_model_tensors(t, depth, sc))
    return Bundle(meta=meta, tensors=t)
