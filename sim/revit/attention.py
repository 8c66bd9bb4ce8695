"""One ReViT attention layer of one image in integers: LSH groups, differential Q/K/V, intra-group
differential attention with the blockwise softmax, inter-group attention on the centroids, the global
CLS row, and the integer pruning decisions (KERNELS.md, "ReViT").

Token 0 is CLS; the others (patches, and package tokens of earlier pruning layers) are hashed. The
function computes what the hardware's engines would, in the order they would; every integer step is
exact, so processing order (blocks, groups, out-of-order group scheduling) cannot change the bits.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

import numpy as np

from vitaccel.sim import numerics as nx
from vitaccel.sim.revit.differential import diff_output, diff_projection, diff_scores, imatmul
from vitaccel.sim.revit.lsh import lsh_groups_int
from vitaccel.sim.revit.softmax import blockwise_softmax_int

__all__ = ["LayerParams", "LayerResult", "revit_attention_layer", "prune_decisions", "ceil_q16", "Q16"]

Q16 = 1 << 16


def ceil_q16(q, n):
    """``ceil(q n / 2^16)``: how many of ``n`` candidates a Q16 keep ratio keeps."""
    return (np.asarray(q, np.int64) * np.asarray(n, np.int64) + (Q16 - 1)) // Q16


@dataclasses.dataclass
class LayerParams:
    """A layer's integer attention arguments (from a bundle)."""

    heads: int
    num_groups: int
    qkv_weight: np.ndarray
    qkv_bias: np.ndarray
    qkv_mult: np.ndarray
    qkv_shift: np.ndarray
    hash_weight: np.ndarray
    hash_bias: np.ndarray
    hash_mult: int
    hash_shift: int
    softmax: Tuple[int, int]
    out: Tuple[int, int]
    block: int = 16
    combine: str = "sum"


@dataclasses.dataclass
class LayerResult:
    a8: np.ndarray            # int8 (N, D): attention output, heads concatenated (the proj GEMM's input)
    groups: np.ndarray        # int64 (N-1,): group of each non-CLS token
    counts: np.ndarray        # int64 (G,)
    cls_p: np.ndarray         # uint8 (H, N): the CLS row's probabilities
    group_p: np.ndarray       # uint8 (H, G): CLS query over the non-empty groups' centroid keys
    deltas: np.ndarray        # int16 (N-1, D): input deltas to the group centroids (the RBSP's serial operand)


def revit_attention_layer(h8: np.ndarray, lp: LayerParams) -> LayerResult:
    """``h8`` int8 (N, D): the quantised LayerNorm-1 output of one image's alive tokens, CLS first."""
    h8 = np.asarray(h8)
    if h8.dtype != np.int8 or h8.ndim != 2 or h8.shape[0] < 2:
        raise ValueError(f"h8 must be int8 (N >= 2, D), got {h8.dtype} {h8.shape}")
    n, dm = h8.shape
    H, G = lp.heads, lp.num_groups
    d = dm // H
    patches = h8[1:]
    groups = lsh_groups_int(patches, lp.hash_weight, lp.hash_bias, lp.hash_mult, lp.hash_shift)
    # Differential QKV: centroid term (bias once) + delta term, reconstructed before requantisation.
    acc, acc_c, _, dx = diff_projection(patches, groups, G, lp.qkv_weight, lp.qkv_bias)
    counts = np.bincount(groups, minlength=G).astype(np.int64)
    rq = lambda a: nx.requantize(a, lp.qkv_mult, lp.qkv_shift)
    qkv_p = rq(acc)                                                          # (N-1, 3D)
    qkv_cls = rq(imatmul(h8[:1], np.asarray(lp.qkv_weight).T) + np.asarray(lp.qkv_bias, np.int64))
    qkv_c = rq(acc_c)                                                        # (G, 3D): the centroids' own q/k/v
    heads = lambda t: np.ascontiguousarray(t.reshape(t.shape[0], 3, H, d).transpose(1, 2, 0, 3))  # (3, H, rows, d)
    qp, kp, vp = heads(qkv_p)
    qs, ks, vs = heads(qkv_cls)
    qc, kc, vc = heads(qkv_c)
    m_exp, s_exp = lp.softmax
    acc_out = np.zeros((H, n, d), np.int64)
    # CLS row: global over every alive token, itself included.
    k_all = np.concatenate([ks, kp], 1)
    v_all = np.concatenate([vs, vp], 1)
    s_cls = imatmul(qs, np.swapaxes(k_all, 1, 2))                             # (H, 1, N)
    cls_p = blockwise_softmax_int(s_cls, None, m_exp, s_exp, lp.block)
    acc_out[:, :1] = imatmul(cls_p, v_all)
    ne = counts > 0
    if lp.combine not in ("sum", "intra", "joint"):
        raise ValueError(f"combine {lp.combine!r} is not a ReViT mode (expected 'sum', 'intra' or 'joint')")
    # Intra-group differential attention, one group at a time (the hardware's sub-arrays, any order).
    for g in range(G):
        idx = np.flatnonzero(groups == g)
        if idx.size == 0:
            continue
        dk = kp[:, idx].astype(np.int16) - kc[:, g:g + 1].astype(np.int16)
        dv = vp[:, idx].astype(np.int16) - vc[:, g:g + 1].astype(np.int16)
        s = diff_scores(qp[:, idx], kc[:, g], dk)
        if lp.combine == "joint":
            # One row: the group's own tokens (delta keys) then the other non-empty groups' centroids, each
            # weighted by its group size (the float model's log(l_g) bias), one blockwise softmax.
            other = ne & (np.arange(G) != g)
            s_c = imatmul(qp[:, idx], np.swapaxes(kc, 1, 2))                 # (H, l, G)
            keep = np.concatenate([np.ones(idx.size, bool), other])
            w = np.concatenate([np.ones(idx.size, np.int64), np.where(other, counts, 0)])
            p = blockwise_softmax_int(np.concatenate([s, s_c], -1), np.broadcast_to(keep, s.shape[:-1] + keep.shape).copy(),
                                      m_exp, s_exp, lp.block, weights=w)
            acc_out[:, 1 + idx] = diff_output(p[..., :idx.size], vc[:, g], dv) + imatmul(p[..., idx.size:], vc)
        else:
            p = blockwise_softmax_int(s, None, m_exp, s_exp, lp.block)
            acc_out[:, 1 + idx] = diff_output(p, vc[:, g], dv)
    keep_g = np.broadcast_to(ne, (H, 1, G))
    if lp.combine == "sum":
        s_cc = imatmul(qc, np.swapaxes(kc, 1, 2))                             # (H, G, G)
        pc = nx.softmax(s_cc, np.broadcast_to(ne, (H, G, G)).copy(), m_exp, s_exp)
        zc = imatmul(pc, vc)                                                  # (H, G, d)
        acc_out[:, 1:] += zc[:, groups]
    group_p = nx.softmax(imatmul(qs, np.swapaxes(kc, 1, 2)), keep_g.copy(), m_exp, s_exp)[:, 0]   # (H, G)
    if np.any(np.abs(acc_out) >= (1 << 31)):
        raise OverflowError("attention accumulator exceeds int32")
    o8 = nx.requantize(acc_out, *lp.out)                                      # (H, N, d)
    a8 = np.ascontiguousarray(o8.transpose(1, 0, 2).reshape(n, dm))
    return LayerResult(a8, groups, counts, cls_p[:, 0], group_p, dx)


def _rank_desc(score: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """0 = best; descending score, ties to the lower index, invalid last."""
    key = np.where(valid, score, np.iinfo(np.int64).min)
    order = np.lexsort((np.arange(len(score)), -key.astype(np.float64)))  # int sums < 2^53: exact as floats
    rank = np.empty(len(score), np.int64)
    rank[order] = np.arange(len(score))
    return rank


def prune_decisions(res: LayerResult, q_groups: int, q_patches: int) -> Tuple[np.ndarray, np.ndarray]:
    """Which non-CLS tokens survive: bool (N-1,), and the package weights (N-1,) float32 of the pruned ones.

    Scores are integer head sums of the uint8 probabilities (the head mean up to a constant): groups by
    the CLS-to-centroid row, patches by the CLS row. Keeps ``ceil_q16(q_groups, G')`` of the G' non-empty
    groups and ``ceil_q16(q_patches, l_g)`` patches of each kept group; ties to the lower index.
    """
    G = res.counts.shape[0]
    sg = res.group_p.astype(np.int64).sum(0)
    ne = res.counts > 0
    keep_g = _rank_desc(sg, ne) < ceil_q16(q_groups, int(ne.sum()))
    sp = res.cls_p[:, 1:].astype(np.int64).sum(0)
    keep = np.zeros(len(res.groups), bool)
    for g in np.flatnonzero(keep_g):
        idx = np.flatnonzero(res.groups == g)
        r = _rank_desc(sp[idx], np.ones(len(idx), bool))
        keep[idx[r < ceil_q16(q_patches, len(idx))]] = True
    heads = res.cls_p.shape[0]
    weights = np.where(keep, 0.0, sp / (256.0 * heads)).astype(np.float32)
    return keep, weights
