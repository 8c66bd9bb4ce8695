"""The pruners of one pruning layer (group pruner, then patch pruner, on one P-PE design): bits and cycles
(mirrors ``hls/revit/pruner/pruner.h``).

Bits: :func:`vitaccel.sim.revit.attention.prune_decisions`'s keep mask (and the patch scores its package
weights come from). The score is the bundle's ``prune_score = cls_attention``: the head sum of the uint8
CLS probabilities, so the P-PE's norm generator (||V|| x attention) is bypassed, and the Gumbel unit is not
used at inference (hard decisions; Gumbel noise is a training device). A P-PE ranks one candidate by
streaming the candidate set past it (a higher score, or an equal one at a lower index, ranks above); it is
kept when its rank is below ``ceil(q m / 2^16)``.

Cycles (``p_pes`` P-PEs; nests one after another)::

    group score  ceil(G / p_pes) H + PIPE_SCORE      group rank  ceil(G / p_pes) G + PIPE_RANK
    patch score  ceil(n / p_pes) H + PIPE_SCORE      patch rank  sum over kept groups ceil(l / p_pes) l + PIPE_RANK
"""
from __future__ import annotations

import dataclasses
from typing import Dict

import numpy as np

from vitaccel.hwconfig import ConfigLike, load_config
from vitaccel.sim.revit.attention import ceil_q16
from vitaccel.sim.revit.schedule import PIPE_RANK, PIPE_SCORE

__all__ = ["PruneResult", "prune_layer", "PHASES"]

PHASES = ("group_score", "group_rank", "patch_score", "patch_rank")


@dataclasses.dataclass
class PruneResult:
    keep: np.ndarray          # bool (n,): surviving non-CLS tokens
    keep_groups: np.ndarray   # bool (G,)
    scores: np.ndarray        # int32 (n,): patch scores (head sums of the CLS row)
    cycles: Dict[str, int]


def _rank(score: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Rank among the valid candidates (0 = best): higher score first, ties to the lower index."""
    s = score.astype(np.int64)
    i = np.arange(len(s))
    above = valid[None, :] & ((s[None, :] > s[:, None]) | ((s[None, :] == s[:, None]) & (i[None, :] < i[:, None])))
    return above.sum(1)


def prune_layer(group_p, cls_p, groups, num_groups: int, q_groups: int, q_patches: int,
                config: ConfigLike = "revit-paper") -> PruneResult:
    """``group_p`` uint8 (H, G): the CLS query over the groups' centroid keys; ``cls_p`` uint8 (H, n): the CLS
    row over the n non-CLS tokens; ``groups`` (n,); Q16 keep ratios."""
    cfg = load_config(config)
    gp, cp = np.asarray(group_p), np.asarray(cls_p)
    g = np.asarray(groups, np.int64)
    H, G = gp.shape
    n = cp.shape[1]
    if gp.dtype != np.uint8 or cp.dtype != np.uint8 or cp.shape[0] != H or G != num_groups or g.shape != (n,):
        raise ValueError(f"group_p uint8 (H, G), cls_p uint8 (H, n), groups (n,): got {gp.shape}, {cp.shape}, {g.shape}")
    if not (1 <= H <= cfg.max_heads and 1 <= G <= 64 and 1 <= n <= cfg.max_tokens) or (n and (g.min() < 0 or g.max() >= G)):
        raise ValueError(f"pruner limits of config {cfg.name!r}: 1 <= H <= {cfg.max_heads}, 1 <= G <= 64, "
                         f"1 <= n <= {cfg.max_tokens}, groups in [0, G); got H={H}, G={G}, n={n}")
    if not (0 <= q_groups <= 1 << 16 and 0 <= q_patches <= 1 << 16):
        raise ValueError("keep ratios must be Q16 in [0, 2^16]")
    counts = np.bincount(g, minlength=G)
    sg = gp.astype(np.int64).sum(0)
    ne = counts > 0
    keep_g = ne & (_rank(sg, ne) < ceil_q16(q_groups, int(ne.sum())))
    sp = cp.astype(np.int64).sum(0)
    keep = np.zeros(n, bool)
    p = cfg.p_pes
    rank_cycles = 0
    for gg in np.flatnonzero(keep_g):
        idx = np.flatnonzero(g == gg)
        keep[idx[_rank(sp[idx], np.ones(len(idx), bool)) < ceil_q16(q_patches, len(idx))]] = True
        rank_cycles += -(-len(idx) // p) * len(idx) + PIPE_RANK
    cycles = {"group_score": -(-G // p) * H + PIPE_SCORE, "group_rank": -(-G // p) * G + PIPE_RANK,
              "patch_score": -(-n // p) * H + PIPE_SCORE, "patch_rank": int(rank_cycles)}
    return PruneResult(keep, keep_g, sp.astype(np.int32), cycles)
