"""Encoder and decoder engines of the ViTCoD auto-encoder (KERNELS.md): bits and cycles.

Both mix the head axis with a small int8 matrix at every token and feature, on the mix engine: every MAC
line in dot-product mode over the input heads (``macs_per_line`` heads per cycle), one output per line at
a time, requantised by the line's requantiser (``hls/vitcod/autoencoder/autoencoder.h``).

* The encoder is its own operation (OP_AE_MIX, once for Q and once for K) after the qkv GEMM, reading Q
  or K out of the GEMM's output: token tiles of :func:`ae_tile_tokens` tokens, each loaded, mixed
  (``ceil(C tn d / L) * ceil(H_in / M)`` iterations + ``pipe_mix``) and stored. Nothing else runs
  meanwhile, so it has all ``mac_lines`` lines; ``ae_lines`` is not used by the engines.
  :func:`encode_cycles` counts the mix nests; :func:`ae_mix_cycles` is one descriptor's report, tiles'
  transfers included.
* The decoder's cycles are part of the attention kernel's schedule (``attention.decode_cycles``): it runs
  beside the softmax unit, decoding the next head.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from vitaccel.hwconfig import HardwareConfig
from vitaccel.sim import numerics as nx
from vitaccel.sim import schedule
from vitaccel.sim.common.dram import overlap, transfer_cycles
from vitaccel.sim.report import KernelReport

__all__ = ["ae_encode", "ae_decode", "mix_heads", "encode_cycles", "mix_tiles", "ae_tile_tokens"]


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


def ae_tile_tokens(cfg: HardwareConfig) -> int:
    """Tokens per encoder tile: ``max_heads`` input heads (padded to whole ``macs_per_line`` words) of
    ``max_head_dim`` features fill half the Q/K/S/V buffer (autoencoder.h ``TN``)."""
    m = cfg.macs_per_line
    cw = -(-cfg.max_heads // m) * m
    return cfg.qkvs_buffer_kb * 1024 // 2 // (cfg.max_head_dim * cw)


def mix_tiles(cfg: HardwareConfig, hin: int, c: int, n: int, d: int) -> List[Tuple[int, int, int, int]]:
    """One OP_AE_MIX (``hin`` -> ``c`` heads, ``n`` tokens) tile by tile: ``(load bytes, mix cycles, store
    bytes, tokens)`` per tile."""
    tn_max = ae_tile_tokens(cfg)
    kh = -(-hin // cfg.macs_per_line)
    out = []
    for n0 in range(0, n, tn_max):
        tn = min(tn_max, n - n0)
        cyc = -(-c * tn * d // cfg.mac_lines) * kh + schedule.pipe_mix(cfg.macs_per_line)
        out.append((hin * tn * d, cyc, c * tn * d, tn))
    return out


def encode_cycles(cfg: HardwareConfig, heads: int, compressed_heads: int, n: int, d: int) -> int:
    """Cycles of the encoder's mix nests for Q and K of one layer (two OP_AE_MIX, ``heads`` ->
    ``compressed_heads``), every MAC line."""
    return 2 * sum(t[1] for t in mix_tiles(cfg, heads, compressed_heads, n, d))


def ae_mix_cycles(cfg: HardwareConfig, hin: int, c: int, n: int, d: int, *, name: str = "ae_mix",
                  layer=None):
    """One OP_AE_MIX descriptor (the encoder on Q or on K): weights, then per token tile load, mix, store,
    with the next tile's load and the previous tile's store under the current tile's mix. The mix cycles
    are ``preprocess`` (the AE's cost on the critical path), exposed transfers ``data``."""
    w_bytes = [c * hin, 4 * c]
    steps = []
    dram = sum(w_bytes)
    for i, (lb, cyc, sb, _) in enumerate(mix_tiles(cfg, hin, c, n, d)):
        steps.append((sum(transfer_cycles(cfg, b) for b in (w_bytes if i == 0 else []) + [lb]), cyc,
                      transfer_cycles(cfg, sb)))
        dram += lb + sb
    comp, data = overlap(steps)
    macs = c * hin * n * d
    return KernelReport("ae_encoder", name, layer, 0, comp, data, macs, macs, dram,
                        {"encoder": comp, "dma": sum(s[0] + s[2] for s in steps)}, [], [])
