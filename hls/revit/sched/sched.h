// rSched and the latency-aware out-of-order scheduler of one layer's hierarchical attention.
//
// Model: KERNELS.md "ReViT accelerator", scheduler; golden model vitaccel.sim.revit.sched.
// Allocation (rSched; reconfiguring the RMMU's column switches), by mode:
//   0 one array   one sub-array of all Pn columns; the groups run on it one after another;
//   1 fixed       floor(Pn / F) sub-arrays of F columns (fixed windows); a free sub-array takes the next group;
//   2 workload    one sub-array per non-empty group, c_g = 1 + floor((Pn - G') l_g / L) columns (L the tokens,
//                 G' the non-empty groups), the Pn - sum c_g left over going one each to the groups with the
//                 largest remainder ((Pn - G') l_g mod L) - except to groups tied with the first one left out,
//                 so equal groups get equal sub-arrays; undealt columns are free for inter-group work.
//   Queues (modes 0, 1): the largest group first (ties to the lower index).
// Timeline, given each group's intra-group latency t_g on its sub-array and its inter-group work W_g
// (column-cycles, divisible over columns; available once the group's intra-group part is done):
//   in order      every inter-group job waits for the last intra-group finish A, then runs on all Pn columns:
//                 A + ceil(sum W / Pn);
//   out of order  events in time order: a finishing group adds W_g to the available work, a sub-array whose
//                 queue is empty adds its columns to the capacity (columns no sub-array took count from 0);
//                 between events the capacity works off the available work (min(avail, cap dt)); after the
//                 last event all Pn columns finish it: t_last + ceil(avail / Pn).
// Out of order is never later (at A it has done at least as much inter-group work, and both run on Pn
// columns afterwards) and equal when every group finishes at A.
// Cycles of the scheduler itself: allocation G (shares) + G (ranks, G comparators per group) + G (assign)
// + 3 PIPE_LIST; the dispatcher handles one event per cycle (counted, not on the array's critical path).
#ifndef VITACCEL_REVIT_SCHED_H
#define VITACCEL_REVIT_SCHED_H

#include <stdint.h>

#include "isa/revit_isa.h"
#include "revit_perf.h"
#include "revit_schedule.h"
#include "vitaccel_config.h"

namespace vitaccel {
namespace sched {

static const int MAX_G = 64;
static const int PN = cfg::revit::RMMU_COLS;
static const int OK = isa::OK;
static const int ERR_DIMS = isa::revit::SCH_ERR_DIMS;
static const int ERR_MODE = isa::revit::SCH_ERR_MODE;
enum Mode { ONE_ARRAY = 0, FIXED = 1, WORKLOAD = 2 };

// Column allocation: sub (G,) the sub-array of each group (-1: empty group), cols (S,) each sub-array's
// columns, order (G,) the queue position of each group (its rank). Returns the number of sub-arrays, or a
// negative status. *cycles receives the allocation's cycles.
inline int allocate(const int32_t* sizes, int G, int mode, int F, int32_t* sub, int32_t* cols, int32_t* order,
                    int64_t* cycles) {
    if (G < 1 || G > MAX_G) return -ERR_DIMS;
    if (mode < 0 || mode > 2 || (mode == FIXED && (F < 1 || F > PN))) return -ERR_MODE;
    int64_t L = 0;
    int ne = 0;
    for (int g = 0; g < G; ++g) {
        if (sizes[g] < 0) return -ERR_DIMS;
        L += sizes[g];
        ne += sizes[g] > 0;
    }
    if (L == 0 || (mode == WORKLOAD && ne > PN)) return -ERR_DIMS;
    // Queue rank: size descending, ties to the lower index (G comparators per group).
SCH_RANK:
    for (int g = 0; g < G; ++g) {
        int r = 0;
        for (int h = 0; h < G; ++h)
            if (sizes[h] > sizes[g] || (sizes[h] == sizes[g] && h < g)) ++r;
        order[g] = r;
    }
    int S = 0;
    if (mode == ONE_ARRAY || mode == FIXED) {
        S = (mode == ONE_ARRAY) ? 1 : PN / F;
        for (int s = 0; s < S; ++s) cols[s] = (mode == ONE_ARRAY) ? PN : F;
        for (int g = 0; g < G; ++g) sub[g] = -1;  // the timeline deals the queue to the sub-arrays
    } else {
        const int64_t spare = PN - ne;
        int32_t rem[MAX_G];
        int used = 0;
    SCH_SHARES:
        for (int g = 0; g < G; ++g) {
            cols[g] = sizes[g] > 0 ? (int32_t)(1 + spare * sizes[g] / L) : 0;
            rem[g] = sizes[g] > 0 ? (int32_t)(spare * sizes[g] % L) : -1;
            used += cols[g];
        }
        const int left = PN - used;
        // The remainder of the group ranked `left`: groups above it get a column; groups tied with it do not
        // (equal groups keep equal sub-arrays), and what is not dealt stays free for inter-group work.
        int32_t cut = -1;
    SCH_CUT:
        for (int g = 0; g < G; ++g) {
            int r = 0;
            for (int h = 0; h < G; ++h)
                if (rem[h] > rem[g] || (rem[h] == rem[g] && h < g)) ++r;
            if (r == left) cut = rem[g];
        }
    SCH_LEFTOVER:
        for (int g = 0; g < G; ++g) {
            if (sizes[g] > 0 && rem[g] > cut) ++cols[g];
            sub[g] = sizes[g] > 0 ? g : -1;
        }
        S = G;
    }
    *cycles = 3 * (int64_t)G + 3 * revit_sched::PIPE_LIST;
    REVIT_PERF(revit_perf::add(revit_perf::SCH_ALLOC, *cycles));
    return S;
}

inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The layer's timeline. t (G,) intra-group latency on the group's sub-array, W (G,) inter-group work.
// finish (G,) receives each group's intra-group finish (0 for an empty group); out[0] the in-order makespan,
// out[1] the out-of-order one, out[2] the busy column-cycles (intra c t summed, plus sum W).
inline int timeline(const int32_t* sizes, int G, int mode, int F, const int64_t* t, const int64_t* W, int64_t* finish,
                    int64_t out[3]) {
    int32_t sub[MAX_G], cols[MAX_G], order[MAX_G];
    int64_t alloc_cycles = 0;
    const int S = allocate(sizes, G, mode, F, sub, cols, order, &alloc_cycles);
    if (S < 0) return -S;
    for (int g = 0; g < G; ++g)
        if (t[g] < 0 || W[g] < 0) return ERR_DIMS;
    int64_t release[MAX_G];   // when each sub-array's queue is done
    int64_t busy = 0, sumW = 0;
    for (int g = 0; g < G; ++g) {
        finish[g] = 0;
        sumW += sizes[g] > 0 ? W[g] : 0;  // an empty group has no work
    }
    if (mode == WORKLOAD) {
        for (int g = 0; g < G; ++g) {
            release[g] = 0;
            if (sizes[g] > 0) {
                finish[g] = t[g];
                release[g] = t[g];
                busy += (int64_t)cols[g] * t[g];
            }
        }
    } else {
        // List scheduling: the next group of the queue goes to the sub-array free first (lowest index on ties).
        for (int s = 0; s < S; ++s) release[s] = 0;
    SCH_DEAL:
        for (int q = 0; q < G; ++q) {
            int g = 0;
            for (int h = 0; h < G; ++h)
                if (order[h] == q) g = h;
            if (sizes[g] == 0) continue;
            int best = 0;
            for (int s = 1; s < S; ++s)
                if (release[s] < release[best]) best = s;
            release[best] += t[g];
            finish[g] = release[best];
            sub[g] = best;
            busy += (int64_t)cols[best] * t[g];
        }
    }
    int64_t A = 0;
    for (int g = 0; g < G; ++g)
        if (finish[g] > A) A = finish[g];
    out[0] = A + cdiv(sumW, PN);
    // Out of order: events (group finishes, sub-array releases) in time order.
    int used = 0;
    for (int s = 0; s < S; ++s) used += cols[s];
    int64_t cap = PN - used, avail = 0, now = 0, events = 0;
    bool gdone[MAX_G], sdone[MAX_G];
    for (int g = 0; g < G; ++g) gdone[g] = sizes[g] == 0;
    for (int s = 0; s < S; ++s) sdone[s] = (mode == WORKLOAD) ? sizes[s] == 0 : false;
    if (mode == WORKLOAD)
        for (int s = 0; s < S; ++s)
            if (sdone[s]) cap += cols[s];  // 0: empty groups have no columns
SCH_EVENTS:
    while (true) {
        int64_t next = -1;
        for (int g = 0; g < G; ++g)
            if (!gdone[g] && (next < 0 || finish[g] < next)) next = finish[g];
        for (int s = 0; s < S; ++s)
            if (!sdone[s] && (next < 0 || release[s] < next)) next = release[s];
        if (next < 0) break;
        const int64_t work = cap * (next - now);
        avail -= (work < avail) ? work : avail;
        now = next;
        for (int g = 0; g < G; ++g)
            if (!gdone[g] && finish[g] == next) {
                gdone[g] = true;
                avail += W[g];
                ++events;
            }
        for (int s = 0; s < S; ++s)
            if (!sdone[s] && release[s] == next) {
                sdone[s] = true;
                cap += cols[s];
                ++events;
            }
    }
    out[1] = now + cdiv(avail, PN);
    out[2] = busy + sumW;
    REVIT_PERF(revit_perf::add(revit_perf::SCH_EVENTS, events));
    return OK;
}

}  // namespace sched
}  // namespace vitaccel

#endif  // VITACCEL_REVIT_SCHED_H
