"""The differential (blockwise) softmax unit: bits and cycles (mirrors ``hls/revit/dsoftmax/dsoftmax.h``).

Bits: :func:`vitaccel.sim.revit.softmax.blockwise_softmax_int` (with integer weights for the joint rows),
which equals NUMERICS.md's one-pass softmax. Cycles per row on ``lanes`` elements per cycle (the
sub-RMMU's slice of the SIMD unit)::

    per block b   ceil(bl / lanes) + pipe_sm_max(lanes)                 block max
                  [ceil(b * block / lanes) + PIPE_RESCALE]             only when the running max grows
                  ceil(bl / lanes) + PIPE_OFFSET                       store the block's offsets
    per row       ceil(n / lanes) + pipe_sm_exp(lanes), PIPE_DIV, ceil(n / lanes) + PIPE_NORM

Those are each phase's own work (the counters). The unit runs the rows through a three-stage row pipeline
(block pass; exponentials and sum; reciprocal and normalisation), so a row's pipeline depths and its
divider latency overlap the neighbouring rows' streaming: ``time`` (:func:`row_pipeline`) is what a call
takes. Rows one after another without overlap (the sum of the phases) is the design we had before; on the
demo ReViT bundle it made the softmax unit the largest part of the attention layers.

The rescale is data-dependent: a row whose maximum sits in its first block never rescales; a row with
ascending scores rescales at every block (O(n^2 / block) element updates). It is the price of Eq. 8's
running max; ``block >= n`` is the one-pass softmax (no rescale, two extra passes).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from vitaccel.sim import numerics as nx
from vitaccel.sim.revit.softmax import blockwise_softmax_int
from vitaccel.sim.revit.schedule import PIPE_NORM, PIPE_OFFSET, PIPE_RESCALE
from vitaccel.sim.schedule import PIPE_DIV, pipe_sm_exp, pipe_sm_max

__all__ = ["dsoftmax", "dsoftmax_cycles", "row_pipeline", "PHASES", "TIME"]

PHASES = ("max", "rescale", "offset", "exp", "div", "norm")
#: The key of the unit's time (the row pipeline) in a cycle dict, after the phases.
TIME = "time"
_LOW = np.int64(-(1 << 62))


def _cdiv(a, b):
    return -(-np.asarray(a, np.int64) // b)


def row_pipeline(a, e, nrm, div: int = PIPE_DIV) -> int:
    """Cycles of rows through the unit's three stages, row after row, each stage on its own row: the block
    pass ``a[r]`` (block maxima streamed back to back, each block's offsets stored one block behind its
    maximum, rescales stalling it: ``sum ceil(bl / lanes) + ceil(last bl / lanes) + pipe_sm_max + PIPE_OFFSET
    + the row's rescales``), the exponentials and sum ``e[r]``, and the normalisation
    ``nrm[r]``, which starts ``div`` cycles after the sum (the reciprocal: a divider pipelined at II = 1, so
    rows do not wait for each other there). Two row buffers between stages (offsets, exponentials): a
    stage starts a row when it is done with the previous one, the row is out of the previous stage, and the
    next stage is done with the row two before it (its buffer slot is free)."""
    fa = fe = fn = 0
    fe2 = fn2 = 0               # finish of E and N two rows back (the slots this row's outputs reuse)
    fe1 = fn1 = 0
    for r in range(len(a)):
        fa = max(fa, fe2) + int(a[r])
        fe = max(fa, fe1, fn2) + int(e[r])
        fn = max(fe + div, fn1) + int(nrm[r])
        fe2, fe1 = fe1, fe
        fn2, fn1 = fn1, fn
    return int(fn)


def dsoftmax_cycles(scores, keep, block: int, lanes: int) -> Dict[str, int]:
    """The unit's cycles for ``scores`` (..., n) (rows in order), by phase (each phase's own work, the
    counters), and ``time``: the rows through the row pipeline (:func:`row_pipeline`), what the unit takes."""
    s = np.asarray(scores, np.int64)
    n = s.shape[-1]
    s = s.reshape(-1, n)
    k = np.ones(s.shape, bool) if keep is None else np.asarray(keep, bool).reshape(-1, n)
    rows = s.shape[0]
    nb = -(-n // block)
    starts = np.arange(nb) * block
    bl = np.minimum(block, n - starts)
    sk = np.where(k, s, _LOW)
    pad = np.full((rows, nb * block), _LOW)
    pad[:, :n] = sk
    bmax = pad.reshape(rows, nb, block).max(-1)                      # (rows, blocks), _LOW when none kept
    before = np.maximum.accumulate(np.concatenate([np.full((rows, 1), _LOW), bmax[:, :-1]], 1), axis=1)
    grew = (before > _LOW) & (bmax > before)                          # the running max rises at this block
    resc_rows = np.where(grew, _cdiv(starts, lanes)[None] + PIPE_RESCALE, 0).sum(1)
    mx = int(_cdiv(bl, lanes).sum() + nb * pipe_sm_max(lanes))
    of = int(_cdiv(bl, lanes).sum() + nb * PIPE_OFFSET)
    ex = int(_cdiv(n, lanes)) + pipe_sm_exp(lanes)
    no = int(_cdiv(n, lanes)) + PIPE_NORM
    # The block pass as the unit streams it: the block maxima back to back, each block's offsets one block
    # behind its maximum (a separate store stage), the depths paid once per row; a rescale stalls it.
    a = int(_cdiv(bl, lanes).sum() + _cdiv(bl[-1], lanes) + pipe_sm_max(lanes) + PIPE_OFFSET) + resc_rows
    return {"max": rows * mx, "rescale": int(resc_rows.sum()), "offset": rows * of, "exp": rows * ex,
            "div": rows * PIPE_DIV, "norm": rows * no, "time": row_pipeline(a, [ex] * rows, [no] * rows)}


def dsoftmax(scores, keep, m_exp: int, s_exp: int, block: int, lanes: int,
             weights: Optional[np.ndarray] = None) -> Tuple[np.ndarray, Dict[str, int]]:
    """``(p uint8, cycles by phase)`` of the unit on ``scores`` (..., n); ``weights`` (n,) integer
    multiplicities shared by every row."""
    s, k, m_exp, s_exp = nx.check_softmax_args(scores, keep, m_exp, s_exp)
    if not isinstance(block, (int, np.integer)) or block < 1 or not isinstance(lanes, (int, np.integer)) or lanes < 1:
        raise ValueError(f"block and lanes must be positive ints, got {block!r}, {lanes!r}")
    p = blockwise_softmax_int(s, k, m_exp, s_exp, int(block), weights=weights)
    return p, dsoftmax_cycles(s, k, int(block), int(lanes))
