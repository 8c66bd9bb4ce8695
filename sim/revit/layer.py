"""One ReViT attention layer on the accelerator's engines: the bits of
:func:`vitaccel.sim.revit.attention.revit_attention_layer` computed engine by engine, and the layer's cycles
from the engines' cycle models composed by the scheduler. NumPy only.

Flow (``combine`` = ``joint``, ``intra`` or ``sum``):

1. group generation (:mod:`~vitaccel.sim.revit.groupgen`) on the whole array;
2. rSched allocates the columns (:func:`~vitaccel.sim.revit.sched.allocate`, by ``mode``);
3. per non-empty group, on its sub-array (``t_g``): the centroid (*model only, no HLS yet*: the tokens
   summed into the columns' accumulators, ``l_g ceil(D / Pc)`` cycles, and the rounding divider, 41), the
   Q/K/V projection as one RMMU pass of ``[x_c; x_i - x_c]`` (``delta``) or ``[x_c; x_i]`` (raw: the
   centroid is still needed for the other groups' joint rows), the columns' requantisers
   (``ceil(l_g 3D / c_g) + PIPE_RQ``), and per head the scores pass, the differential softmax on the
   sub-array's SIMD slice (``simd_lanes c_g / Pn`` lanes) and the output pass, the heads overlapped
   (:func:`head_overlap`: head h's softmax on the slice while the columns run head h+1's scores);
4. inter-group work ``W_g`` (column-cycles): the CLS query's scores against group g's keys and its output
   over group g's values, i.e. the per-column costs of those serial vectors (one broadcast row each);
5. the scheduler's timeline (in or out of order) gives the groups' makespan; the tail on the whole array:
   CLS's own projection (one raw serial vector, and its requantisation ``ceil(3D / Pn) + PIPE_RQ``), the
   CLS row's softmax, the CLS-to-centroid row (pass and softmax: the group pruner's scores) and the
   output requantisation (``ceil(N D / Pn) + PIPE_RQ``); with ``sum``, per head also the attention among the
   non-empty centroids on the whole array (scores pass, softmax, output pass), each group's context added to
   its members' accumulators.

The bits do not depend on the mode, the synchronisation or the order (every step is exact integer
arithmetic); ``tests/test_revit_layer.py`` checks them against the functional layer.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional

import numpy as np

from vitaccel.hwconfig import ConfigLike, load_config
from vitaccel.sim import numerics as nx
from vitaccel.sim.revit.attention import LayerParams
from vitaccel.sim.revit.booth import booth_terms
from vitaccel.sim.revit.differential import centroids_int
from vitaccel.sim.revit.dsoftmax import dsoftmax
from vitaccel.sim.revit.groupgen import generate_groups
from vitaccel.sim.revit.rmmu import SERIAL_BITS, RbspCycles, rbsp_pass, rmmu_output, rmmu_scores, wrap32
from vitaccel.sim.revit.sched import WORKLOAD, Timeline, allocate, timeline
from vitaccel.sim.schedule import PIPE_DIV, PIPE_RQ, pipe_dot

__all__ = ["LayerCycles", "engine_layer", "column_cost", "head_overlap", "int8_pass_cycles"]


@dataclasses.dataclass
class LayerCycles:
    groupgen: int
    intra: Dict[int, int]           # t_g per non-empty group
    inter_work: Dict[int, int]      # W_g per non-empty group (column-cycles)
    timeline: Timeline
    tail: int
    out_of_order: bool
    rbsp: RbspCycles                # every RMMU pass of the layer
    breakdown: Dict[str, int]       # summed over the groups: centroid, projection, requant, scores, softmax, output

    @property
    def makespan(self) -> int:
        return self.timeline.out_of_order if self.out_of_order else self.timeline.in_order

    @property
    def total(self) -> int:
        return self.groupgen + self.makespan + self.tail

    @property
    def engines(self) -> Dict[str, int]:
        """Each engine's cycles for a report (the groups' are sums over the groups, so they overlap)."""
        return dict(groupgen=self.groupgen, makespan=int(self.makespan), tail=self.tail, **self.breakdown)


def head_overlap(S, M, O) -> int:
    """A group's heads on its sub-array and its SIMD slice, overlapped: head h's scores pass ``S[h]`` and
    output pass ``O[h]`` on the columns, its softmax ``M[h]`` on the SIMD slice. The columns run ``S[0]``,
    then ``S[h+1]`` while the slice does head h's softmax, then ``O[h]``; two score and two probability
    buffers, so a head's scores never wait for the previous head's probabilities to be consumed."""
    H = len(S)
    if H == 0:
        return 0
    rm = int(S[0])          # when the columns are free
    fs = rm                 # when head h's scores are done
    sm = 0                  # when the SIMD slice is free
    for h in range(H):
        sm = max(fs, sm) + int(M[h])
        if h + 1 < H:
            rm += int(S[h + 1])
            fs = rm
        rm = max(rm, sm) + int(O[h])
    return rm


def column_cost(serial: np.ndarray, lanes: int) -> np.ndarray:
    """Per serial vector (row of ``serial`` (C, K)): its cycles for one broadcast row on a decoupled column,
    ``sum_chunks max(1, most digits in the chunk)``."""
    t = booth_terms(np.asarray(serial, np.int64), SERIAL_BITS)
    c, k = t.shape
    pad = np.zeros((c, -(-k // lanes) * lanes), np.int64)
    pad[:, :k] = t
    return np.maximum(pad.reshape(c, -1, lanes).max(-1), 1).sum(-1)


def int8_pass_cycles(C: int, K: int, O: int, cols: int, lanes: int) -> int:
    """The same pass on an int8 MAC array of the same shape (the ``no_differential`` baseline): one cycle per
    step, a dot-product nest's depth per column tile."""
    return -(-C // cols) * (O * -(-K // lanes) + pipe_dot(lanes))


def engine_layer(h8: np.ndarray, lp: LayerParams, config: ConfigLike = "revit-paper", *, mode: int = WORKLOAD,
                 delta: bool = True, out_of_order: bool = True, fixed_cols: int = 16,
                 sync: Optional[int] = None, array: str = "rbsp"):
    """``(a8 int8 (N, D), LayerCycles)`` of one layer on ``config``'s engines. ``array="int8"`` times every
    RMMU pass as on an int8 MAC array of the same Pn x Pc (the ``no_differential`` baseline; use it with
    ``delta=False``); the bits do not change."""
    cfg = load_config(config)
    if array not in ("rbsp", "int8"):
        raise ValueError(f"array must be 'rbsp' or 'int8', got {array!r}")
    if lp.combine not in ("joint", "intra", "sum"):
        raise ValueError(f"combine {lp.combine!r} is not a ReViT mode (joint, intra, sum)")
    pn, pc = cfg.rmmu_cols, cfg.rmmu_lanes
    sync = cfg.sync_cols if sync is None else int(sync)
    serial = array == "rbsp"

    def cost(cyc: RbspCycles, C: int, K: int, O: int, cols: int) -> int:
        return cyc.cycles if serial else int8_pass_cycles(C, K, O, cols, pc)

    def col_cost(vectors: np.ndarray) -> int:
        v = np.asarray(vectors)
        return int(column_cost(v, pc).sum()) if serial else v.shape[0] * -(-v.shape[1] // pc)
    h8 = np.asarray(h8)
    n, dm = h8.shape
    H, G = lp.heads, lp.num_groups
    d = dm // H
    patches = h8[1:]
    gr = generate_groups(patches, lp.hash_weight, lp.hash_bias, lp.hash_mult, lp.hash_shift, cfg)
    groups, counts = gr.groups.astype(np.int64), gr.counts.astype(np.int64)
    alloc = allocate(counts, mode, fixed_cols, cfg)
    xc, _ = centroids_int(patches, groups, G)
    W, b = np.asarray(lp.qkv_weight), np.asarray(lp.qkv_bias, np.int64)
    rq = lambda a: nx.requantize(a, lp.qkv_mult, lp.qkv_shift)  # noqa: E731
    rb = RbspCycles()
    br = dict(centroid=0, projection=0, requant=0, scores=0, softmax=0, output=0)
    # Projection of every group (and its centroid) on its sub-array.
    q8 = np.zeros((n - 1, 3 * dm), np.int8)
    c8 = np.zeros((G, 3 * dm), np.int8)
    proj_cyc, cols_of = {}, {}
    ne = np.flatnonzero(counts)
    for g in ne:
        idx = np.flatnonzero(groups == g)
        c = alloc.group_cols(int(g)) if mode == WORKLOAD else int(alloc.cols[0])
        cols_of[int(g)] = c
        x = patches[idx].astype(np.int64)
        s = np.concatenate([xc[g][None].astype(np.int64), x - xc[g] if delta else x])
        y, cyc = rbsp_pass(s, W, c, pc, sync)
        rb += cyc
        # 32-bit adders (the DRP): a bias near the int32 limits wraps as in the C++.
        base = wrap32(y[:, :1].astype(np.int64) + b[:, None]).astype(np.int64)
        acc = wrap32((base + y[:, 1:]) if delta else (b[:, None] + y[:, 1:]))
        q8[idx] = rq(acc.T)
        c8[g] = rq(base[:, 0])
        proj_cyc[int(g)] = (len(idx) * -(-dm // pc) + PIPE_DIV, cost(cyc, len(idx) + 1, dm, 3 * dm, c),
                            -(-len(idx) * 3 * dm // c) + PIPE_RQ)
    # CLS's own projection: one raw serial vector on the whole array (counted in the tail).
    y_cls, cyc_cls = rbsp_pass(h8[:1].astype(np.int64), W, pn, pc, sync)
    rb += cyc_cls
    qkv_cls = rq(wrap32(y_cls[:, 0].astype(np.int64) + b)[None])
    heads = lambda t: np.ascontiguousarray(t.reshape(t.shape[0], 3, H, d).transpose(1, 2, 0, 3))  # noqa: E731
    qp, kp, vp = heads(q8)
    qs, ks, vs = heads(qkv_cls)
    qc, kc, vc = heads(c8)
    m_exp, s_exp = lp.softmax
    acc_out = np.zeros((H, n, d), np.int64)
    intra, inter = {}, {}
    for g in ne:
        g = int(g)
        idx = np.flatnonzero(groups == g)
        c = cols_of[g]
        lanes = max(1, cfg.simd_lanes * c // pn)
        t_c, t_p, t_r = proj_cyc[g]
        t = t_c + t_p + t_r
        br["centroid"] += t_c
        br["projection"] += t_p
        br["requant"] += t_r
        others = [o for o in ne if o != g] if lp.combine == "joint" else []
        w_g = 0
        hs, hm, ho = [], [], []
        for h in range(H):
            ke = kc[h, others] if others else None
            ve = vc[h, others] if others else None
            s, cs = rmmu_scores(qp[h, idx], kp[h, idx], kc[h, g], ke, delta=delta, cols=c, lanes=pc, sync=sync)
            w = np.concatenate([np.ones(len(idx), np.int64), counts[others].astype(np.int64)])
            p, cyc_sm = dsoftmax(s, None, m_exp, s_exp, lp.block, lanes, weights=w)
            z, co = rmmu_output(p, vp[h, idx], vc[h, g], ve, delta=delta, cols=c, lanes=pc, sync=sync)
            acc_out[h, 1 + idx] = z
            rb += cs
            rb += co
            e = len(others)
            c_s = cost(cs, int(delta) + len(idx) + e, d, len(idx), c)
            c_o = cost(co, d, len(idx) + e + int(delta), len(idx), c)
            hs.append(c_s)
            hm.append(cyc_sm["time"])
            ho.append(c_o)
            br["scores"] += c_s
            br["softmax"] += cyc_sm["time"]
            br["output"] += c_o
            # Inter-group: the CLS query against this group's keys, and its output over the group's values.
            w_g += col_cost(kp[h, idx]) + col_cost(vp[h, idx].T)
        intra[g], inter[g] = t + head_overlap(hs, hm, ho), w_g
    # The CLS row (global) and the CLS-to-centroid row: bits, and the tail's cycles.
    k_all = np.concatenate([ks, kp], 1)
    v_all = np.concatenate([vs, vp], 1)
    tail = cost(cyc_cls, 1, dm, 3 * dm, pn) + -(-3 * dm // pn) + PIPE_RQ
    cls_rows, group_rows = [], []
    for h in range(H):
        s_cls, _ = rbsp_pass(k_all[h], qs[h], pn, pc, sync)                      # (1, N)
        p_cls, cyc_sm = dsoftmax(s_cls, None, m_exp, s_exp, lp.block, cfg.simd_lanes)
        z, _ = rbsp_pass(v_all[h].T, p_cls, pn, pc, sync)                        # (1, d)
        acc_out[h, 0] = z[0]
        cls_rows.append(p_cls[0])
        s_g, cg = rbsp_pass(kc[h][ne], qs[h], pn, pc, sync)
        p_g, cyc_g = dsoftmax(s_g, None, m_exp, s_exp, lp.block, cfg.simd_lanes)
        row = np.zeros(G, np.uint8)
        row[ne] = p_g[0]
        group_rows.append(row)
        rb += cg
        tail += cyc_sm["time"] + cost(cg, len(ne), d, 1, pn) + cyc_g["time"]
        if lp.combine == "sum":
            # Attention among the non-empty centroids on the whole array; each group's context is added to its
            # members' accumulators.
            s_cc, cs = rbsp_pass(kc[h][ne], qc[h][ne], pn, pc, sync)                  # (queries, keys)
            p_cc, cyc_cc = dsoftmax(s_cc, None, m_exp, s_exp, lp.block, cfg.simd_lanes)
            z_cc, co = rbsp_pass(vc[h][ne].T, p_cc, pn, pc, sync)                     # (ne, d)
            rb += cs
            rb += co
            tail += cost(cs, len(ne), d, len(ne), pn) + cyc_cc["time"] + cost(co, d, len(ne), len(ne), pn)
            slot = np.full(G, -1, np.int64)
            slot[ne] = np.arange(len(ne))
            acc_out[h, 1:] += z_cc[slot[groups]].astype(np.int64)
    tail += -(-n * dm // pn) + PIPE_RQ
    if np.any(np.abs(acc_out) >= (1 << 31)):
        raise OverflowError("attention accumulator exceeds int32")
    o8 = nx.requantize(acc_out, *lp.out)
    a8 = np.ascontiguousarray(o8.transpose(1, 0, 2).reshape(n, dm))
    sizes = counts.astype(np.int32)
    tl = timeline(sizes, [intra.get(g, 0) for g in range(G)], [inter.get(g, 0) for g in range(G)], mode, fixed_cols, cfg)
    cyc = LayerCycles(gr.total_cycles, intra, inter, tl, tail, out_of_order, rb, br)
    cyc.cls_p = np.stack(cls_rows)            # for the pruner: uint8 (H, N) and (H, G)
    cyc.group_p = np.stack(group_rows)
    return a8, cyc
