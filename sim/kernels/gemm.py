"""GEMM mode of the MAC lines (qkv, proj, fc1, fc2) with fused bias and requantisation: bits and cycles.

Cycle model, following ``hls/kernels/gemm``:

* Weights stream through the weight buffer in tiles of ``To`` output rows (half the buffer: double
  buffered), each tile with its bias and requantisation constants (4 + 4 + 4 bytes per output).
* Activations stay resident when they fit in half the Q/K/S/V buffer; otherwise they are tiled by rows
  (``Tm``) and re-streamed for every weight tile.
* Inside a tile every line computes one output at a time, ``ceil(K / macs_per_line)`` cycles per output
  plus the dot-product pipeline depth once per tile.
* Loads of the next tile and the store of the previous one overlap the current tile's compute.
* With ``encode`` (the qkv layer of an AE model) the encoder engine takes ``ae_lines`` lines and
  compresses Q and K in a pipeline with the GEMM: the store shrinks to ``(2 Hc + H) N d`` bytes and the
  layer takes at least the encoder's time.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from vitaccel.hwconfig import HardwareConfig
from vitaccel.sim import numerics as nx
from vitaccel.sim.kernels.attention import pipe_dot
from vitaccel.sim.kernels.autoencoder import encode_cycles
from vitaccel.sim.kernels.dram import transfer_cycles
from vitaccel.sim.report import KernelReport

__all__ = ["gemm", "gemm_cycles", "gemm_tiles"]

#: Bytes per output channel of constants that travel with a weight tile: bias, multiplier, shift.
CONST_BYTES = 12


def gemm(x, w, bias, mult, shift) -> np.ndarray:
    """``requantize(x @ w.T + bias, mult, shift)``: x int8 (M, K), w int8 (O, K), bias int32 (O,)."""
    x = np.asarray(x)
    w = np.asarray(w)
    b = np.asarray(bias)
    if x.dtype != np.int8 or x.ndim != 2:
        raise ValueError(f"x must be int8 (M, K), got {x.dtype} {x.shape}")
    if w.dtype != np.int8 or w.ndim != 2 or w.shape[1] != x.shape[1]:
        raise ValueError(f"w must be int8 (O, {x.shape[1]}), got {w.dtype} {w.shape}")
    if b.dtype != np.int32 or b.shape != (w.shape[0],):
        raise ValueError(f"bias must be int32 ({w.shape[0]},), got {b.dtype} {b.shape}")
    acc = nx.matmul_int(x, w.T).astype(np.int64) + b.astype(np.int64)
    return nx.requantize(acc, mult, shift)


def gemm_tiles(cfg: HardwareConfig, m: int, k: int, o: int) -> Tuple[int, int, bool]:
    """``(To, Tm, x_resident)``: weight-tile rows, activation-tile rows, whether x stays on chip."""
    w_half = cfg.weight_buffer_kb * 1024 // 2
    a_half = cfg.qkvs_buffer_kb * 1024 // 2
    if k + CONST_BYTES > w_half:
        raise ValueError(f"K={k} does not fit one weight row in half the weight buffer ({w_half} B) of '{cfg.name}'")
    if k > a_half:
        raise ValueError(f"K={k} does not fit one activation row in half the Q/K/S/V buffer ({a_half} B)")
    to = max(1, min(o, w_half // (k + CONST_BYTES)))
    resident = m * k <= a_half
    tm = m if resident else max(1, a_half // k)
    return to, tm, resident


def gemm_cycles(cfg: HardwareConfig, m: int, k: int, o: int, *, name: str = "gemm", layer: Optional[int] = None,
                encode: Optional[Tuple[int, int, int]] = None) -> KernelReport:
    """Cycles of ``(m x k) @ (k x o)`` in GEMM mode; ``encode=(H, Hc, d)`` fuses the AE encoder (qkv only)."""
    if min(m, k, o) < 1:
        raise ValueError(f"GEMM dims must be >= 1, got m={m}, k={k}, o={o}")
    to, tm, resident = gemm_tiles(cfg, m, k, o)
    lines = cfg.mac_lines - (cfg.ae_lines if encode else 0)
    cpd = -(-k // cfg.macs_per_line)
    pd = pipe_dot(cfg)
    out_bytes = m * o
    if encode:
        h, hc, d = encode
        if 3 * h * d != o:
            raise ValueError(f"encode={encode} does not match a qkv output of width {o}")
        out_bytes = m * (2 * hc + h) * d
    o_tiles = [(i, min(to, o - i)) for i in range(0, o, to)]
    m_tiles = [(j, min(tm, m - j)) for j in range(0, m, tm)]

    # Issue order: for each weight tile, (weights + constants), then every activation tile.
    steps: List[Tuple[int, int, int]] = []  # (load cycles before it, compute cycles, store cycles after)
    loaded_bytes = 0
    x_loaded = False
    for oi, (_, ow) in enumerate(o_tiles):
        w_load = transfer_cycles(cfg, ow * (k + CONST_BYTES))
        loaded_bytes += ow * (k + CONST_BYTES)
        for mi, (_, mh) in enumerate(m_tiles):
            load = w_load if mi == 0 else 0
            if not (resident and x_loaded):
                load += transfer_cycles(cfg, mh * k)
                loaded_bytes += mh * k
            comp = -(-(mh * ow) // lines) * cpd + pd
            store_b = mh * ow if not encode else -(-mh * ow * out_bytes // (m * o))
            steps.append((load, comp, transfer_cycles(cfg, store_b)))
        x_loaded = True
    compute = data = 0
    data += steps[0][0]
    for i, (_, comp, _) in enumerate(steps):
        nxt = (steps[i + 1][0] if i + 1 < len(steps) else 0) + (steps[i - 1][2] if i > 0 else 0)
        compute += comp
        data += max(comp, nxt) - comp
    data += steps[-1][2]
    engines = {"gemm": compute, "dma": sum(s[0] + s[2] for s in steps)}
    macs = m * k * o
    preprocess = 0
    if encode:
        enc = encode_cycles(cfg, encode[0], encode[1], m, encode[2])
        engines["encoder"] = enc
        preprocess = max(0, enc - (compute + data))  # the encoder trails the GEMM when it is slower
        macs += 2 * encode[1] * encode[0] * m * encode[2]
    return KernelReport("gemm", name, layer, compute, preprocess, data, macs, m * k * o, loaded_bytes + out_bytes,
                        engines, [], [] if resident else [f"activations re-streamed {len(o_tiles)}x"])
