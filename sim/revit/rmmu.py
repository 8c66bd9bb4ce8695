"""The RMMU of reconfigurable bit-serial PEs (RBSP): bits and cycles of one bit-serial pass, and the three
uses ReViT makes of it (differential Q/K/V generation, ``Q . dK``, ``A . dV``). Mirrors
``hls/revit/rmmu/rmmu.h``; KERNELS.md "ReViT accelerator" is the spec.

**Pass.** ``Y[o, c] = sum_k B[o, k] S[c, k]`` (a 32-bit accumulator: the exact sum, wrapped to int32). ``S``
is the serial operand (raw int8 or a 9-bit delta, read as 10-bit two's complement), ``B`` the broadcast one.
Column ``c`` of a sub-array of ``cols`` columns holds ``S[c]``; its ``Pc`` lanes take ``Pc`` elements per
step; a step is one (broadcast row ``o``, chunk of ``Pc`` elements).

**Time.** Each lane emits the non-zero radix-4 Booth digits of its element one per cycle
(:func:`vitaccel.sim.revit.booth.booth_terms`). The sub-array's columns share the broadcast bus, so they move
in lock step: a step takes ``max(1, max over its columns and lanes of the digit count)`` cycles (the
Bit-Pragmatic/DNNsim rule, no run-ahead between columns). Passes with more serial vectors than columns run
column tile after column tile; each tile is one pipelined nest:

    cycles(tile) = max over sync groups s of  O * sum_chunks max(1, max_{c in s, lane} terms(S[c, chunk]))
                   + pipe_rbsp(Pc)

A column's lanes feed one adder tree, so they are always in lock step. Columns are grouped by the config's
``sync_cols``: a group shares one step length; groups run ahead of each other within a tile (each column
has a FIFO of broadcast operands, Bit-Pragmatic's column synchronisation). ``sync_cols = 1`` (the shipped
configs) decouples every column; ``sync_cols = rmmu_cols`` puts the whole sub-array in lock step, which on
the demo's inputs makes the deltas slower than raw tokens (5 digits at most instead of 4; measured in
KERNELS.md).

**Uses** (the delta generator builds ``S``; MUX 1 = delta, 0 = raw):

* ``project``: ``S = [x_c; x_i - x_c]``, ``B = W``; the DRP adds column 0 (the centroid term) and the bias
  once to every delta column: ``acc_i = W x_c + b + W (x_i - x_c) == W x_i + b``;
* ``scores``: ``S = [k_c; k_j - k_c; raw keys]``, ``B = q``; the DRP adds ``q . k_c`` to the delta columns;
* ``output``: column ``f`` holds ``[v_jf - v_cf ...; raw values; v_cf]``, ``B[o] = [p_o ...; rowsum_o]``:
  the centroid term enters as one more element whose broadcast value is the row sum of the group's own
  probabilities (the softmax unit's normalisation pass produces it), so no DRP add is needed.

The bits equal :mod:`vitaccel.sim.revit.differential` (tested); only the time depends on the deltas.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import numpy as np

from vitaccel.sim.revit.booth import booth_terms
from vitaccel.sim.revit.schedule import pipe_rbsp

__all__ = ["RbspCycles", "SERIAL_BITS", "rbsp_pass", "rbsp_cycles", "rmmu_project", "rmmu_scores", "rmmu_output",
           "wrap32"]

#: The offset generator reads 10-bit two's complement (5 radix-4 digits): int8 and 9-bit deltas fit.
SERIAL_BITS = 10


@dataclasses.dataclass
class RbspCycles:
    """One or more passes' counters, named as ``hls/revit/revit_perf.h``."""

    passes: int = 0
    tiles: int = 0
    steps: int = 0
    cycles: int = 0
    terms: int = 0
    slots: int = 0

    def __iadd__(self, other: "RbspCycles") -> "RbspCycles":
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    @property
    def utilisation(self) -> float:
        """Effectual terms per lane-cycle offered."""
        return self.terms / self.slots if self.slots else 0.0


def wrap32(a: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of exact integers to int32 (what a 32-bit adder chain leaves)."""
    a = np.asarray(a, np.int64)
    return (((a + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)).astype(np.int32)


def _exact(b: np.ndarray, s: np.ndarray) -> np.ndarray:
    # |B| < 2^18, |S| < 2^9, K <= 2^16: every partial sum is below 2^43, exact in float64.
    return np.rint(np.asarray(b, np.float64) @ np.asarray(s, np.float64).T).astype(np.int64)


def _check_serial(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s)
    if not np.issubdtype(s.dtype, np.integer) or s.ndim != 2:
        raise ValueError(f"the serial operand must be an integer (C, K) array, got {s.dtype} {s.shape}")
    lo, hi = -(1 << (SERIAL_BITS - 1)), (1 << (SERIAL_BITS - 1)) - 1
    if s.size and (s.min() < lo or s.max() > hi):
        raise ValueError(f"serial operand outside the RBSP's {SERIAL_BITS}-bit input [{lo}, {hi}]")
    return s.astype(np.int64)


def rbsp_cycles(serial: np.ndarray, rows: int, cols: int, lanes: int, sync: Optional[int] = None) -> RbspCycles:
    """The counters of one pass of ``serial`` (C, K) against ``rows`` broadcast rows on ``cols`` columns,
    groups of ``sync`` columns in lock step (default: all ``cols``)."""
    s = _check_serial(serial)
    c, k = s.shape
    sync = cols if sync is None else min(int(sync), cols)
    if c < 1 or k < 1 or rows < 1 or cols < 1 or lanes < 1 or sync < 1:
        raise ValueError(f"pass dims must be >= 1 (C={c}, K={k}, O={rows}, cols={cols}, lanes={lanes}, sync={sync})")
    t = booth_terms(s, SERIAL_BITS)
    tiles, chunks = -(-c // cols), -(-k // lanes)
    ngroups = -(-cols // sync)
    pad = np.zeros((tiles * ngroups * sync, chunks * lanes), np.int64)
    active = np.zeros(tiles * ngroups * sync, bool)
    # Column j of tile t sits at t * cols + j; groups of `sync` start at multiples of sync inside the tile.
    rows_at = (np.arange(c) // cols) * ngroups * sync + np.arange(c) % cols
    pad[rows_at, :k] = t
    active[rows_at] = True
    per = pad.reshape(tiles, ngroups, sync, chunks, lanes)
    live = active.reshape(tiles, ngroups, sync).any(-1)                        # (tiles, groups)
    group_steps = rows * np.maximum(per.max(axis=(2, 4)), 1).sum(-1)           # (tiles, groups)
    tile_steps = np.where(live, group_steps, 0).max(-1)                        # the slowest group
    steps = int(tile_steps.sum())
    return RbspCycles(passes=1, tiles=tiles, steps=steps, cycles=steps + tiles * pipe_rbsp(lanes),
                      terms=int(rows * t.sum()), slots=steps * cols * lanes)


def rbsp_pass(serial, broadcast, cols: int, lanes: int, sync: Optional[int] = None) -> Tuple[np.ndarray, RbspCycles]:
    """``(Y int32 (O, C), counters)`` of one pass: ``Y = broadcast (O, K) . serial (C, K)^T``, wrapped to 32 bits."""
    s = _check_serial(serial)
    b = np.asarray(broadcast, np.int64)
    if b.ndim != 2 or b.shape[1] != s.shape[1]:
        raise ValueError(f"broadcast must be (O, {s.shape[1]}), got {b.shape}")
    return wrap32(_exact(b, s)), rbsp_cycles(s, b.shape[0], cols, lanes, sync)


def _i8(a, name):
    a = np.asarray(a)
    if a.dtype != np.int8:
        raise ValueError(f"{name} must be int8, got {a.dtype}")
    return a.astype(np.int64)


def rmmu_project(x8, xc8, weight, bias, *, delta: bool, cols: int, lanes: int,
                 sync: Optional[int] = None) -> Tuple[np.ndarray, RbspCycles]:
    """One group's tokens ``x8`` (l, K) through ``weight`` (O, K): int32 (l, O) accumulators ``x W^T + b``;
    with ``delta`` the centroid ``xc8`` (K,) is column 0 and the others are deltas to it."""
    x, w = _i8(x8, "x8"), _i8(weight, "weight")
    s = np.concatenate([_i8(xc8, "xc8")[None], x - _i8(xc8, "xc8")[None]]) if delta else x
    y, cyc = rbsp_pass(s, w, cols, lanes, sync)
    b = np.asarray(bias, np.int64)[:, None]
    acc = (y[:, :1].astype(np.int64) + b + y[:, 1:]) if delta else (b + y)
    return wrap32(acc).T.copy(), cyc


def rmmu_scores(q8, k8, kc8=None, extra=None, *, delta: bool, cols: int, lanes: int,
                 sync: Optional[int] = None) -> Tuple[np.ndarray, RbspCycles]:
    """Scores int32 (m, l + e) of queries ``q8`` (m, d) against the group's keys ``k8`` (l, d) (deltas to
    ``kc8`` with ``delta``) and ``extra`` raw keys (e, d)."""
    q, k = _i8(q8, "q8"), _i8(k8, "k8").reshape(-1, np.shape(q8)[1])
    ke = np.zeros((0, q.shape[1]), np.int64) if extra is None else _i8(extra, "extra").reshape(-1, q.shape[1])
    if delta:
        kc = _i8(kc8, "kc8")
        s = np.concatenate([kc[None], k - kc[None], ke])
    else:
        s = np.concatenate([k, ke])
    y, cyc = rbsp_pass(s, q, cols, lanes, sync)
    off = 1 if delta else 0
    out = y[:, off:].astype(np.int64)
    if delta:
        out[:, :k.shape[0]] += y[:, :1]
    return wrap32(out), cyc


def rmmu_output(p, v8, vc8=None, extra=None, *, delta: bool, cols: int, lanes: int,
                 sync: Optional[int] = None) -> Tuple[np.ndarray, RbspCycles]:
    """Outputs int32 (m, d) = ``p`` (m, l + e) uint8 . ``[v8 (l, d); extra (e, d)]``; with ``delta`` the
    group's values are deltas to ``vc8`` and the centroid term rides as one more element (rowsum of ``p[:, :l]``)."""
    pr = np.asarray(p)
    if pr.dtype != np.uint8 or pr.ndim != 2:
        raise ValueError(f"p must be uint8 (m, l + e), got {pr.dtype} {pr.shape}")
    v = _i8(v8, "v8")
    d = v.shape[1]
    ve = np.zeros((0, d), np.int64) if extra is None else _i8(extra, "extra").reshape(-1, d)
    l = v.shape[0]
    pr = pr.astype(np.int64)
    if delta:
        vc = _i8(vc8, "vc8")
        s = np.concatenate([v - vc[None], ve, vc[None]]).T            # (d, l + e + 1)
        b = np.concatenate([pr, pr[:, :l].sum(1, keepdims=True)], 1)
    else:
        s, b = np.concatenate([v, ve]).T, pr
    return rbsp_pass(s, b, cols, lanes, sync)
