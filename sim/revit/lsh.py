"""The LSH partition as the hardware computes it: a hash GEMM, a floor by multiply-and-shift, an argmax.

Float definition (Eq. 3-4, ``vitaccel.models.revit.lsh_partition``): ``argmax_g floor((alpha_g . x + beta_g)
/ gamma)`` on the LayerNorm-1 output ``x = s_in * x8`` (``s_in`` = the qkv input scale). In integers, with
one int8 scale ``s_a = absmax(alpha) / 127`` for the whole (G, D) matrix (one multiplier, so codes of
different g stay comparable):

    acc_g  = sum_k A[g, k] x8[k] + B[g]        A = quantize(alpha, s_a) int8, B = round(beta / (s_a s_in)) int32
    code_g = (acc_g * m) >> s                  (m, s) = quantize_multiplier(s_a s_in / gamma); 64-bit, floor
    group  = argmax_g code_g                   ties to the lowest g (the G-PE compares in index order)

``acc * m >> s`` is floor(acc m / 2^s), the floor of Eq. 3 up to the rounding of ``m / 2^s``; it is one
multiply-shift per code rather than a divider. :func:`hash_params` is the one derivation (offline, float);
the bundle loader re-derives it and refuses integer hash tensors that disagree with the float ones.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from vitaccel.sim import numerics as nx

__all__ = ["hash_params", "lsh_codes_int", "lsh_groups_int", "MAX_HASH_BIAS"]

#: Same bound as every other bias of the contract: |B| < 2^30 keeps acc inside int32.
MAX_HASH_BIAS = (1 << 30) - 1


def hash_params(alpha, beta, gamma, in_scale) -> Tuple[np.ndarray, np.ndarray, int, int]:
    """Offline: ``(A int8 (G, D), B int32 (G,), m, s)`` from float32 ``alpha`` (G, D), ``beta`` (G,),
    ``gamma`` > 0 and the qkv input scale. Raises ValueError when the ratio cannot be a multiplier."""
    a = np.asarray(alpha, np.float32).astype(np.float64)
    b = np.asarray(beta, np.float32).astype(np.float64)
    g = float(np.float32(gamma))
    s_in = float(np.float32(in_scale))
    if a.ndim != 2 or b.shape != (a.shape[0],):
        raise ValueError(f"alpha must be (G, D) and beta (G,), got {a.shape}, {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all() and np.isfinite(g) and g > 0 and np.isfinite(s_in) and s_in > 0):
        raise ValueError("alpha, beta must be finite and gamma, in_scale finite and > 0")
    amax = float(np.max(np.abs(a))) if a.size else 0.0
    s_a = float(np.float32(amax / 127.0)) if amax > 0 else 1.0
    A = np.clip(np.rint(a / s_a), -128, 127).astype(np.int8)
    with np.errstate(all="ignore"):  # a bias past int32 saturates like every other bias of the exporter
        ratio = np.nan_to_num(b / (s_a * s_in), nan=0.0, posinf=MAX_HASH_BIAS, neginf=-MAX_HASH_BIAS)
    B = np.clip(np.rint(ratio), -MAX_HASH_BIAS, MAX_HASH_BIAS).astype(np.int32)
    m, s = nx.quantize_multiplier(s_a * s_in / g)
    return A, B, int(m), int(s)


def lsh_codes_int(x8, weight, bias, mult: int, shift: int) -> np.ndarray:
    """Hash codes int64 (..., N, G) of int8 tokens ``x8`` (..., N, D): ``(x8 . A_g + B_g) * m >> s``."""
    x = np.asarray(x8)
    w = np.asarray(weight)
    if x.dtype != np.int8 or w.dtype != np.int8 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"x8 must be int8 (..., N, D) and weight int8 (G, D), got {x.dtype} {x.shape}, {w.dtype} {w.shape}")
    acc = nx.matmul_int(x, w.T).astype(np.int64) + np.asarray(bias, np.int64)
    if np.any(np.abs(acc) >= (1 << 31)):
        raise OverflowError("hash accumulator exceeds int32")
    return np.right_shift(acc * np.int64(mult), np.int64(shift))


def lsh_groups_int(x8, weight, bias, mult: int, shift: int) -> np.ndarray:
    """Group index int64 (..., N): argmax of :func:`lsh_codes_int`, the first maximum on ties."""
    return np.argmax(lsh_codes_int(x8, weight, bias, mult, shift), axis=-1).astype(np.int64)
