// C-simulation cycle counters of the ReViT engines, compiled out for synthesis (as hls/common/perf.h for
// ViTCoD). Each engine adds, per pipelined loop nest it runs, the iterations it executed (II = 1) plus the
// nest's pipeline depth (revit_schedule.h); tests/test_revit_*.py compare them with the cycle models in
// vitaccel/sim/revit/ term by term.
#ifndef VITACCEL_REVIT_PERF_H
#define VITACCEL_REVIT_PERF_H

#include <stdint.h>

#ifndef __SYNTHESIS__
#define REVIT_PERF(...) \
    do {                \
        __VA_ARGS__;    \
    } while (0)
#else
#define REVIT_PERF(...) \
    do {                \
    } while (0)
#endif

#ifndef __SYNTHESIS__
namespace vitaccel {
namespace revit_perf {

// Totals since the last reset, in this order (revit_capi.cpp reports them in this order; append only).
enum Total {
    RBSP_PASSES = 0,   // bit-serial passes (one serial operand set through one sub-array)
    RBSP_TILES,        // column tiles of those passes
    RBSP_STEPS,        // term cycles: sum over (tile, broadcast row, lane chunk) of max(1, terms)
    RBSP_CYCLES,       // RBSP_STEPS + one pipeline depth per tile
    RBSP_TERMS,        // effectual terms of the serial operands (each operand once per broadcast row)
    RBSP_SLOTS,        // lane-cycles offered: cols x lanes x steps (utilisation = terms / slots)
    GG_CALLS,          // group generation calls
    GG_HASH,           // the hash GEMM on the array (RBSP_CYCLES of its pass, also counted there)
    GG_CODES,          // hash code requantisation: one code per G-PE lane per cycle
    GG_ARGMAX,         // G-PE argmax nest
    GG_LISTS,          // gSched: histogram, prefix sum and member-list scatter
    DSM_ROWS,          // differential softmax rows
    DSM_MAX,           // per block: the block-max stage
    DSM_RESCALE,       // per block that raises the running max: rescaling the stored offsets
    DSM_OFFSET,        // per block: storing its offsets
    DSM_EXP,           // per row: exponentials and sum
    DSM_DIV,           // per row: the reciprocal
    DSM_NORM,          // per row: the probabilities
    PR_CALLS,          // pruner calls (one layer: group pruner, then patch pruner)
    PR_GROUP_SCORE,    // group pruner: head sums of the CLS-to-centroid probabilities
    PR_GROUP_RANK,     // group pruner: ranks of the non-empty groups
    PR_PATCH_SCORE,    // patch pruner: head sums of the CLS row, every patch
    PR_PATCH_RANK,     // patch pruner: ranks within each kept group
    SCH_ALLOC,         // rSched: column allocation of one layer
    SCH_EVENTS,        // out-of-order dispatcher: finish / release events handled
    CMP_CALLS,         // token compactions (COMPACT)
    CMP_ROWS,          // compaction: the rows nest (copy or accumulate), with its depth
    CMP_PACKAGE,       // compaction: the package row's requantisation, with its depth
    CMP_PATCH,         // compaction: the descriptor words patched, with the nest's depth
    DSM_TIME,          // differential softmax: the row pipeline's time (what the calls take)
    N_TOTALS
};

struct Counters {
    int64_t total[N_TOTALS];
};

inline Counters& counters() {
    static Counters c = {};
    return c;
}

inline void reset() { counters() = Counters(); }

inline void add(Total t, int64_t v) { counters().total[t] += v; }

}  // namespace revit_perf
}  // namespace vitaccel
#endif  // __SYNTHESIS__

#endif  // VITACCEL_REVIT_PERF_H
