// Pipeline depths of the ReViT engines' loop nests (a nest takes iterations x II + depth cycles; the depths
// are the only figures synthesis could change). vitaccel/sim/revit/schedule.py holds the same values and the
// drift tests compare them with what this file compiles to (revit_schedule_constants in revit_capi.cpp).
#ifndef VITACCEL_REVIT_SCHEDULE_H
#define VITACCEL_REVIT_SCHEDULE_H

#include "vitaccel_config.h"

namespace vitaccel {
namespace revit_sched {

constexpr int log2i(int x) { return x <= 1 ? 0 : 1 + log2i(x / 2); }
constexpr int clog2(int x) { return x <= 1 ? 0 : 1 + clog2((x + 1) / 2); }

// RBSP step: operand read, offset generator (Booth digits), shifter, the column's adder tree over its lanes,
// accumulate, output register.
constexpr int pipe_rbsp(int lanes) { return 5 + log2i(lanes); }
// Hash code: multiply by the multiplier, arithmetic shift, write the hash register.
static const int PIPE_CODE = 3;
// G-PE: read the G hash registers, compare tree over G, write the index buffer.
constexpr int pipe_argmax(int groups) { return 2 + clog2(groups); }
// gSched: read an index, increment its counter / read-add-write the prefix / scatter.
static const int PIPE_LIST = 2;

// Differential softmax unit: storing a block's offsets below the running max (read, subtract, saturate,
// write), rescaling the stored offsets when the max grows (read, add, saturate, write), and the
// normalisation (read, multiply by the reciprocal, round, clip, write). Its max and exp stages and the
// divider are the common unit's (hls/common/schedule.h).
static const int PIPE_OFFSET = 4;
static const int PIPE_RESCALE = 4;
static const int PIPE_NORM = 4;

// P-PE: importance score (read a head's probability, add, write the att reg) and rank (read a candidate's
// score, compare, count).
static const int PIPE_SCORE = 3;
static const int PIPE_RANK = 3;

// Token compaction: read a row chunk, multiply-accumulate (pruned) or pass (kept), write the kept row; a
// patch: read the triple, multiply-add, write the word.
static const int PIPE_PACK = 3;
static const int PIPE_PATCH = 2;

static const int PIPE_RBSP = pipe_rbsp(cfg::revit::RMMU_LANES);

}  // namespace revit_sched
}  // namespace vitaccel

#endif  // VITACCEL_REVIT_SCHEDULE_H
