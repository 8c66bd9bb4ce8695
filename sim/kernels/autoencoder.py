"""Encoder and decoder engines of the ViTCoD auto-encoder (KERNELS.md): bits and cycles.

Both mix the head axis with a small int8 matrix at every token and feature. The encoder runs on
``ae_lines`` MAC lines right after the qkv GEMM, in a pipeline with it; the decoder's cycles are part of the
attention kernel's schedule (``attention.attention_cycles``) because it feeds the engines directly.
"""
from __future__ import annotations

import numpy as np

from vitaccel.hwconfig import HardwareConfig
from vitaccel.sim import numerics as nx

__all__ = ["ae_encode", "ae_decode", "mix_heads", "encode_cycles"]


def mix_heads(x, weight, bias, mult, shift) -> np.ndarray:
    """``requantize(sum_h W[c, h] * x[h] + b[c], mult, shift)`` for x int8 (H, N, d) -> (C, N, d)."""
    x = np.asarray(x)
    w = np.asarray(weight)
    b = np.asarray(bias)
    if x.dtype != np.int8 or x.ndim != 3:
        raise ValueError(f"x must be int8 (H, N, d), got {x.dtype} {x.shape}")
    if w.dtype != np.int8 or w.ndim != 2 or w.shape[1] != x.shape[0]:
        raise ValueError(f"weight must be int8 (C, {x.shape[0]}), got {w.dtype} {w.shape}")
    if b.dtype != np.int32 or b.shape != (w.shape[0],):
        raise ValueError(f"bias must be int32 ({w.shape[0]},), got {b.dtype} {b.shape}")
    h, n, d = x.shape
    acc = nx.matmul_int(w, x.reshape(h, n * d)).astype(np.int64) + b[:, None].astype(np.int64)
    return nx.requantize(acc, mult, shift).reshape(w.shape[0], n, d)


def ae_encode(x, enc_weight, enc_bias, mult, shift) -> np.ndarray:
    """Encoder engine: (H, N, d) -> (Hc, N, d)."""
    return mix_heads(x, enc_weight, enc_bias, mult, shift)


def ae_decode(x, dec_weight, dec_bias, mult, shift) -> np.ndarray:
    """Decoder engine: (Hc, N, d) -> (H, N, d)."""
    return mix_heads(x, dec_weight, dec_bias, mult, shift)


def encode_cycles(cfg: HardwareConfig, heads: int, compressed_heads: int, n: int, d: int) -> int:
    """Cycles for the encoder engine to compress Q and K of one layer on its ``ae_lines`` lines."""
    macs = 2 * compressed_heads * heads * n * d
    lines = cfg.ae_lines or cfg.mac_lines
    return -(-macs // (lines * cfg.macs_per_line))
