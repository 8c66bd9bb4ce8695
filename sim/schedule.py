"""Pipeline depths of the engines' loop nests, mirroring ``hls/common/schedule.h``: a nest takes
(iterations x II) + depth cycles, and the depths are the only figures synthesis could change. Each is a
function of the width of the unit it runs on, so every accelerator instantiates them at its own widths
(ViTCoD: ``hls/vitcod/vitcod_schedule.h``). ``tests/test_cycle_model_vs_hls.py`` checks the values
against the compiled C++.
"""
from __future__ import annotations

__all__ = ["log2i", "pipe_dot", "pipe_mix", "pipe_sm_max", "pipe_sm_exp", "pipe_sum", "PIPE_RQ", "PIPE_DIV",
           "PIPE_LN_NORM", "PIPE_ADD", "PIPE_LUT"]

#: Requantiser (one per MAC line): add, multiply by the multiplier, round and shift, clip and write.
PIPE_RQ = 4
#: Reciprocal 2^40 / sum: a restoring divider with one quotient bit per stage, fully pipelined.
PIPE_DIV = 41
#: LayerNorm's normalising pass: subtract, multiply by the reciprocal, round, multiply by g, add, shift, clip.
PIPE_LN_NORM = 7
#: Residual add: two multiplies, add, round and shift, clip, write.
PIPE_ADD = 5
#: Table lookup: read, index, table read, write.
PIPE_LUT = 3


def log2i(x: int) -> int:
    return max(int(x), 1).bit_length() - 1


def pipe_dot(lanes: int) -> int:
    """A dot-product nest on a line of ``lanes`` MACs: operand read, multiply, adder tree, accumulate, write."""
    return 4 + log2i(lanes)


def pipe_mix(lanes: int) -> int:
    """The mix engine: a dot product over input heads, then the line's requantiser."""
    return pipe_dot(lanes) + PIPE_RQ


def pipe_sm_max(lanes: int) -> int:
    """Softmax unit of ``lanes`` elements per cycle, max stage: read, compare tree, hand the maximum on."""
    return 2 + log2i(lanes)


def pipe_sm_exp(lanes: int) -> int:
    """Softmax unit, exp stage: read, subtract / multiply / shift, table read and shift, adder tree, sum."""
    return 6 + log2i(lanes)


def pipe_sum(lanes: int) -> int:
    """A reduction pass over ``lanes`` elements per cycle: read, adder tree, accumulate."""
    return 2 + log2i(lanes)
