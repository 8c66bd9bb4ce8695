"""The semantic group generation engine: bits and cycles (mirrors ``hls/revit/groupgen/groupgen.h``).

The hash GEMM runs on the RMMU in one-large-array mode with raw operands (the tokens are the serial
operand, the G hash rows the broadcast one); the G-PEs turn each patch's G accumulators into codes
(multiply, arithmetic shift) and take their argmax (ties to the lowest group: the compare tree visits groups
in index order); gSched counts the group sizes and scatters the member lists (a counting sort: members in
ascending token order, groups one after another), which the RMMU's sub-array allocation and the scheduler
read. The bits are :func:`vitaccel.sim.revit.lsh.lsh_groups_int`'s.

Cycles, four nests one after another (``g_pes`` patches per cycle in the G-PE nests)::

    hash    rbsp pass of n tokens x G rows on rmmu_cols columns (vitaccel.sim.revit.rmmu)
    codes   ceil(n / g_pes) + PIPE_CODE
    argmax  ceil(n / g_pes) + pipe_argmax(G)
    lists   n + G + n + 3 PIPE_LIST          histogram, prefix, scatter
"""
from __future__ import annotations

import dataclasses
from typing import Dict

import numpy as np

from vitaccel.hwconfig import ConfigLike, load_config
from vitaccel.sim.revit.rmmu import RbspCycles, rbsp_pass, wrap32
from vitaccel.sim.revit.schedule import PIPE_CODE, PIPE_LIST, pipe_argmax

__all__ = ["GroupResult", "generate_groups", "MAX_GROUPS"]

#: G-PE compare tree width the HLS engine is built for.
MAX_GROUPS = 64


@dataclasses.dataclass
class GroupResult:
    groups: np.ndarray        # int32 (n,): group of each token
    counts: np.ndarray        # int32 (G,)
    offsets: np.ndarray       # int32 (G + 1,): member list of group g is members[offsets[g]:offsets[g + 1]]
    members: np.ndarray       # int32 (n,)
    cycles: Dict[str, int]    # hash, codes, argmax, lists
    hash_pass: RbspCycles

    @property
    def total_cycles(self) -> int:
        return sum(self.cycles.values())


def generate_groups(x8, weight, bias, mult: int, shift: int, config: ConfigLike = "revit-paper") -> GroupResult:
    """Group generation of int8 tokens ``x8`` (n, D) with the hash ``weight`` int8 (G, D), ``bias`` int32
    (G,) and the code multiplier/shift, on ``config``'s engine."""
    cfg = load_config(config)
    x, w = np.asarray(x8), np.asarray(weight)
    if x.dtype != np.int8 or w.dtype != np.int8 or x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"x8 must be int8 (n, D) and weight int8 (G, D), got {x.dtype} {x.shape}, {w.dtype} {w.shape}")
    n, _ = x.shape
    G = w.shape[0]
    if not (1 <= n <= cfg.max_tokens and 1 <= G <= MAX_GROUPS and x.shape[1] <= cfg.max_embed_dim):
        raise ValueError(f"group generation needs 1 <= n <= {cfg.max_tokens}, 1 <= G <= {MAX_GROUPS}, "
                         f"D <= {cfg.max_embed_dim}; got n={n}, G={G}, D={x.shape[1]}")
    if not (0 <= int(mult) < (1 << 31) and 0 <= int(shift) <= 63):
        raise ValueError(f"hash multiplier {mult} / shift {shift} outside [0, 2^31) / [0, 63]")
    y, hp = rbsp_pass(x, w, cfg.rmmu_cols, cfg.rmmu_lanes, cfg.sync_cols)              # (G, n)
    acc = wrap32(y.astype(np.int64) + np.asarray(bias, np.int64)[:, None]).astype(np.int64)
    codes = np.right_shift(acc * np.int64(mult), np.int64(shift))                        # (G, n)
    groups = np.argmax(codes, axis=0).astype(np.int32)
    counts = np.bincount(groups, minlength=G).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    members = np.argsort(groups, kind="stable").astype(np.int32)
    per = -(-n // cfg.g_pes)
    cycles = {"hash": hp.cycles, "codes": per + PIPE_CODE, "argmax": per + pipe_argmax(G),
              "lists": 2 * n + G + 3 * PIPE_LIST}
    return GroupResult(groups, counts, offsets, members, cycles, hp)
