"""rSched (the RMMU's column allocation) and the latency-aware out-of-order scheduler of one layer's
hierarchical attention (mirrors ``hls/revit/sched/sched.h``; KERNELS.md "ReViT accelerator").

Allocation, by mode (``ONE_ARRAY``: no reconfiguration, the groups one after another on all Pn columns;
``FIXED``: ``floor(Pn / F)`` sub-arrays of F columns, fixed windows; ``WORKLOAD``: one sub-array per
non-empty group sized to its tokens, ``c_g = 1 + floor((Pn - G') l_g / L)`` plus the leftover columns one
each to the largest remainders, except to groups tied with the first one left out: equal groups keep equal
sub-arrays, and undealt columns are free for inter-group work). Queues (ONE_ARRAY, FIXED): the largest group first, dealt to the sub-array
that frees first.

Timeline, from each group's intra-group latency ``t_g`` on its sub-array and its inter-group work ``W_g``
(column-cycles, available once the group's intra-group part is done, divisible over columns):

* in order: ``A + ceil(sum W / Pn)``, ``A`` the last intra-group finish;
* out of order: finishing groups release their inter-group work, emptied sub-arrays their columns, and the
  free columns work it off between events; after the last event all Pn columns finish what is left.

Out of order is never later than in order, and equal when every group finishes at the same time (tested
on random mixes). The scheduler reacts to finish events only: it needs no latency prediction, and the
timeline here is what its decisions produce given the engines' latencies.
"""
from __future__ import annotations

import dataclasses
from typing import Dict

import numpy as np

from vitaccel.hwconfig import ConfigLike, load_config
from vitaccel.sim.revit.schedule import PIPE_LIST

__all__ = ["ONE_ARRAY", "FIXED", "WORKLOAD", "Allocation", "Timeline", "allocate", "timeline", "MAX_GROUPS"]

ONE_ARRAY, FIXED, WORKLOAD = 0, 1, 2
MAX_GROUPS = 64


@dataclasses.dataclass
class Allocation:
    mode: int
    cols: np.ndarray      # int32 (S,): columns of each sub-array
    sub: np.ndarray       # int32 (G,): the sub-array of each group in WORKLOAD mode (-1 otherwise / empty)
    order: np.ndarray     # int32 (G,): queue rank (size descending, ties to the lower index)
    cycles: int

    def group_cols(self, g: int) -> int:
        """Columns the group runs on (its sub-array's width)."""
        return int(self.cols[self.sub[g]] if self.mode == WORKLOAD else self.cols[0])


@dataclasses.dataclass
class Timeline:
    finish: np.ndarray    # int64 (G,): intra-group finish of each group (0 if empty)
    sub: np.ndarray       # int32 (G,): the sub-array each group ran on (-1 if empty)
    in_order: int
    out_of_order: int
    busy: int             # column-cycles of work (intra c t and inter W)
    events: int

    def utilisation(self, pn: int) -> Dict[str, float]:
        return {"in_order": self.busy / (pn * self.in_order) if self.in_order else 0.0,
                "out_of_order": self.busy / (pn * self.out_of_order) if self.out_of_order else 0.0}


def _rank(key: np.ndarray) -> np.ndarray:
    k = np.asarray(key, np.int64)
    i = np.arange(len(k))
    return ((k[None, :] > k[:, None]) | ((k[None, :] == k[:, None]) & (i[None, :] < i[:, None]))).sum(1).astype(np.int32)


def allocate(sizes, mode: int, fixed_cols: int = 16, config: ConfigLike = "revit-paper") -> Allocation:
    pn = load_config(config).rmmu_cols
    l = np.asarray(sizes, np.int64)
    G = l.size
    if not 1 <= G <= MAX_GROUPS or (l < 0).any() or l.sum() == 0:
        raise ValueError(f"sizes: 1..{MAX_GROUPS} non-negative group sizes with a token, got {l.tolist()}")
    if mode not in (ONE_ARRAY, FIXED, WORKLOAD) or (mode == FIXED and not 1 <= fixed_cols <= pn):
        raise ValueError(f"mode {mode} / fixed sub-array width {fixed_cols} (1..{pn}) not valid")
    ne = int((l > 0).sum())
    if mode == WORKLOAD and ne > pn:
        raise ValueError(f"{ne} non-empty groups cannot each have one of {pn} columns (use FIXED)")
    order = _rank(l)
    sub = np.full(G, -1, np.int32)
    if mode == ONE_ARRAY:
        cols = np.array([pn], np.int32)
    elif mode == FIXED:
        cols = np.full(pn // fixed_cols, fixed_cols, np.int32)
    else:
        L, spare = int(l.sum()), pn - ne
        cols = np.where(l > 0, 1 + spare * l // L, 0)
        rem = np.where(l > 0, spare * l % L, -1)
        left = pn - int(cols.sum())
        # Groups tied with the first one left out get none: equal groups keep equal sub-arrays.
        cut = rem[_rank(rem) == left][0] if left < G else -1
        cols = (cols + ((l > 0) & (rem > cut))).astype(np.int32)
        sub = np.where(l > 0, np.arange(G), -1).astype(np.int32)
    return Allocation(mode, cols, sub, order, 3 * G + 3 * PIPE_LIST)


def timeline(sizes, t, W, mode: int, fixed_cols: int = 16, config: ConfigLike = "revit-paper") -> Timeline:
    """The layer's timeline (see the module doc); ``t`` (G,) each group's intra-group latency on the columns
    :func:`allocate` gives it, ``W`` (G,) its inter-group work in column-cycles."""
    pn = load_config(config).rmmu_cols
    a = allocate(sizes, mode, fixed_cols, config)
    l = np.asarray(sizes, np.int64)
    t, W = np.asarray(t, np.int64), np.asarray(W, np.int64)
    G = l.size
    if t.shape != (G,) or W.shape != (G,) or (t < 0).any() or (W < 0).any():
        raise ValueError("t and W must be (G,) non-negative")
    finish = np.zeros(G, np.int64)
    if mode == WORKLOAD:
        release = np.where(l > 0, t, 0)
        finish = release.copy()
        sub = a.sub.copy()
        busy = int((a.cols.astype(np.int64) * np.where(l > 0, t, 0)).sum())
    else:
        release = np.zeros(a.cols.size, np.int64)
        sub = np.full(G, -1, np.int32)
        busy = 0
        for g in np.argsort(a.order, kind="stable"):
            if l[g] == 0:
                continue
            s = int(np.argmin(release))
            release[s] += t[g]
            finish[g] = release[s]
            sub[g] = s
            busy += int(a.cols[s]) * int(t[g])
    A = int(finish.max())
    sum_w = int(W[l > 0].sum())             # an empty group has no work
    in_order = A + -(-sum_w // pn)
    cap = pn - int(a.cols.sum())
    avail, now, events = 0, 0, 0
    gdone = l == 0
    sdone = (l == 0) if mode == WORKLOAD else np.zeros(a.cols.size, bool)
    while True:
        cand = [finish[g] for g in range(G) if not gdone[g]] + [release[s] for s in range(a.cols.size) if not sdone[s]]
        if not cand:
            break
        nxt = int(min(cand))
        avail -= min(cap * (nxt - now), avail)
        now = nxt
        for g in range(G):
            if not gdone[g] and finish[g] == nxt:
                gdone[g] = True
                avail += int(W[g])
                events += 1
        for s in range(a.cols.size):
            if not sdone[s] and release[s] == nxt:
                sdone[s] = True
                cap += int(a.cols[s])
                events += 1
    return Timeline(finish, sub, in_order, now + -(-avail // pn), busy + sum_w, events)
