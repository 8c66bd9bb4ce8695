"""Baselines of the ViTCoD design on the same hardware budget: the same MAC array, softmax unit, memory
system and output requantisation, a different dataflow. The whole-model baselines (dense, pruning only,
reordering only, no AE) are compositions in :func:`vitaccel.sim.vitcod.model.model_baselines`; the
dataflows that are not ViTCoD's engines live here.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from vitaccel.hwconfig import HardwareConfig
from vitaccel.sim.common.dram import transfer_cycles
from vitaccel.sim.report import KernelReport
from vitaccel.sim.vitcod.attention import live_blocks, pipe_dot, requant_cycles, softmax_cycles

__all__ = ["sanger_cycles"]


def sanger_cycles(cfg: HardwareConfig, mask: np.ndarray, d: int, *, name: str = "attention-sanger",
                  layer: Optional[int] = None) -> KernelReport:
    """S-stationary (Sanger-like) baseline on the same MAC array, softmax unit and memory system.

    The ``mac_lines x macs_per_line`` array is a grid of score PEs: MAC ``c`` of every line holds key ``c``
    of the current block of ``macs_per_line`` keys (K streams down the array regularly, no gathering), and
    each line holds one query. For every key block, the queries with at least one kept entry in it are
    packed onto the lines (Sanger's packing, without its row splitting), ``mac_lines`` per pass; a pass
    accumulates over the ``d`` features. S.V reuses the array output-stationary: a pass over a key block
    takes ``macs_per_line`` keys x ``ceil(d / macs_per_line)`` feature chunks. Softmax on the same unit as
    ViTCoD's (live lane blocks in the original column order) and the same output requantisation. Q, K and V
    are loaded once per head (full reuse) plus the mask bitmap; no reordering, no AE.
    """
    mask = np.asarray(mask, dtype=bool)
    h_count, n, _ = mask.shape
    L, m = cfg.mac_lines, cfg.macs_per_line
    cpd = -(-d // m)
    pd = pipe_dot(cfg)
    row_kept = mask.sum(axis=2)
    live = live_blocks(cfg, mask)
    head_bytes = n * d
    mask_bytes = -(-n * n // 8)
    in_c = 3 * transfer_cycles(cfg, head_bytes) + transfer_cycles(cfg, mask_bytes)
    out_c = transfer_cycles(cfg, head_bytes)
    pad = (-n) % m
    blocks = np.pad(mask, ((0, 0), (0, 0), (0, pad))).reshape(h_count, n, -1, m).any(axis=3)  # (H, N, KB)
    passes = -(-blocks.sum(axis=1) // L)  # (H, KB)
    compute = data = 0
    heads = []
    performed = 0
    for h in range(h_count):
        p_h = int(passes[h].sum())
        sddmm = p_h * (d + pd)
        spmm = p_h * (m * cpd + pd)
        t_sm = softmax_cycles(cfg, live[h])
        t_rq = requant_cycles(cfg, n, d)
        c = sddmm + t_sm + spmm + t_rq
        nxt = (in_c if h + 1 < h_count else 0) + (out_c if h > 0 else 0)
        step = max(c, nxt)
        compute += c
        data += step - c
        performed += 2 * p_h * L * m * d
        heads.append({"head": h, "compute": c, "data": step - c, "sddmm": sddmm, "spmm": spmm, "softmax": t_sm,
                      "requant": t_rq, "passes": p_h})
    data += in_c + out_c
    heads[0]["data"] += in_c
    heads[-1]["data"] += out_c
    useful = 2 * int(row_kept.sum()) * d
    dram = h_count * (4 * head_bytes + mask_bytes)
    return KernelReport("attention", name, layer, compute, 0, data, performed, useful, dram,
                        {"array": compute}, heads, ["S-stationary baseline"])
