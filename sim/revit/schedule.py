"""Pipeline depths of the ReViT engines' loop nests, mirroring ``hls/revit/revit_schedule.h`` (a nest takes
iterations x II + depth cycles). The drift tests compare these with the compiled C++ values."""
from __future__ import annotations

from vitaccel.sim.schedule import log2i

__all__ = ["pipe_rbsp", "pipe_argmax", "PIPE_CODE", "PIPE_LIST", "PIPE_OFFSET", "PIPE_RESCALE", "PIPE_NORM", "PIPE_SCORE", "PIPE_RANK", "PIPE_PACK", "PIPE_PATCH", "clog2"]

#: Hash code: multiply by the multiplier, arithmetic shift, write the hash register.
PIPE_CODE = 3
#: gSched: read an index, increment its counter / read-add-write the prefix / scatter.
PIPE_LIST = 2
#: Differential softmax: store a block's offsets (read, subtract, saturate, write), rescale stored offsets
#: (read, add, saturate, write), normalise (read, multiply, round, clip, write). The max and exp stages and
#: the divider are the common softmax unit's (vitaccel.sim.schedule).
PIPE_OFFSET = 4
PIPE_RESCALE = 4
PIPE_NORM = 4
#: P-PE: score (read a head's probability, add, write) and rank (read a candidate's score, compare, count).
PIPE_SCORE = 3
PIPE_RANK = 3
#: Token compaction: read a row chunk, multiply-accumulate (pruned) or pass (kept), write the kept row; a
#: patch: read the triple, multiply-add, write the word.
PIPE_PACK = 3
PIPE_PATCH = 2


def clog2(x: int) -> int:
    return max(int(x) - 1, 0).bit_length()


def pipe_rbsp(lanes: int) -> int:
    """RBSP step: operand read, offset generator, shifter, the column's adder tree, accumulate, output register."""
    return 5 + log2i(lanes)


def pipe_argmax(groups: int) -> int:
    """G-PE: read the G hash registers, compare tree over G, write the index buffer."""
    return 2 + clog2(groups)
