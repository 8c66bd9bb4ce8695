"""The differential (blockwise) softmax unit: bits and cycles (mirrors ``hls/revit/dsoftmax/dsoftmax.h``).

Bits: :func:`vitaccel.sim.revit.softmax.blockwise_softmax_int` (with integer weights for the joint rows),
which equals NUMERICS.md's one-pass softmax. Cycles per row on ``lanes`` elements per cycle (the
sub-RMMU's slice of the SIMD unit)::

    per block b   ceil(bl / lanes) + pipe_sm_max(lanes)                 block max
                  [ceil(b * block / lanes) + PIPE_RESCALE]             only when the running max grows
                  ceil(bl / lanes) + PIPE_OFFSET                       store the block's offsets
    per row       ceil(n / lanes) + pipe_sm_exp(lanes), PIPE_DIV, ceil(n / lanes) + PIPE_NORM

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

__all__ = ["dsoftmax", "dsoftmax_cycles", "PHASES"]

PHASES = ("max", "rescale", "offset", "exp", "div", "norm")
_LOW = np.int64(-(1 << 62))


def _cdiv(a, b):
    return -(-np.asarray(a, np.int64) // b)


def dsoftmax_cycles(scores, keep, block: int, lanes: int) -> Dict[str, int]:
    """The unit's cycles for ``scores`` (..., n) (rows in order), by phase."""
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
    resc = np.where(grew, _cdiv(starts, lanes)[None] + PIPE_RESCALE, 0).sum()
    return {"max": int(rows * (_cdiv(bl, lanes).sum() + nb * pipe_sm_max(lanes))), "rescale": int(resc),
            "offset": int(rows * (_cdiv(bl, lanes).sum() + nb * PIPE_OFFSET)),
            "exp": int(rows * (int(_cdiv(n, lanes)) + pipe_sm_exp(lanes))), "div": rows * PIPE_DIV,
            "norm": int(rows * (int(_cdiv(n, lanes)) + PIPE_NORM))}


def dsoftmax(scores, keep, m_exp: int, s_exp: int, block: int, lanes: int,
             weights: Optional[np.ndarray] = None) -> Tuple[np.ndarray, Dict[str, int]]:
    """``(p uint8, cycles by phase)`` of the unit on ``scores`` (..., n); ``weights`` (n,) integer
    multiplicities shared by every row."""
    s, k, m_exp, s_exp = nx.check_softmax_args(scores, keep, m_exp, s_exp)
    if not isinstance(block, (int, np.integer)) or block < 1 or not isinstance(lanes, (int, np.integer)) or lanes < 1:
        raise ValueError(f"block and lanes must be positive ints, got {block!r}, {lanes!r}")
    p = blockwise_softmax_int(s, k, m_exp, s_exp, int(block), weights=weights)
    return p, dsoftmax_cycles(s, k, int(block), int(lanes))
