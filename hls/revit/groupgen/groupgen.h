// Semantic group generation engine: the LSH hash GEMM on the RMMU, G-PEs taking each patch's argmax, and
// gSched's group sizes and member lists (the scheduler's input).
//
// Bits: KERNELS.md "ReViT", LSH hash; golden model vitaccel.sim.revit.groupgen.generate_groups (equal to
// vitaccel.sim.revit.lsh.lsh_groups_int):
//     acc[i, g]  = sum_k A[g, k] x8[i, k] + B[g]         the RMMU in one-large-array mode, raw (MUX 0)
//     code[i, g] = (acc[i, g] * m) >> s                  64-bit product, arithmetic shift (floor)
//     group[i]   = argmax_g code[i, g]                   first maximum (the G-PE compares in index order)
// then counts[g], offsets (exclusive prefix of counts) and members: the tokens of each group in ascending
// index order, groups one after another (a counting sort).
// Schedule, four nests one after another:
//   hash    the RMMU pass (rmmu.h) of the n tokens against the G hash rows on all rmmu_cols columns;
//   codes   the G-PEs' multiply-shift, g_pes patches per cycle: ceil(n / g_pes) + PIPE_CODE;
//   argmax  the G-PEs' compare tree, g_pes patches per cycle: ceil(n / g_pes) + pipe_argmax(G);
//   lists   gSched: histogram (n + PIPE_LIST), prefix (G + PIPE_LIST), scatter (n + PIPE_LIST).
#ifndef VITACCEL_REVIT_GROUPGEN_H
#define VITACCEL_REVIT_GROUPGEN_H

#include <stdint.h>

#include "isa/revit_isa.h"
#include "revit_perf.h"
#include "revit_schedule.h"
#include "rmmu/rmmu.h"
#include "vitaccel_config.h"

namespace vitaccel {
namespace groupgen {

static const int MAX_GROUPS = 64;
static const int MAX_N = cfg::MAX_TOKENS;
static const int MAX_D = cfg::MAX_EMBED_DIM;
static const int G_PES = cfg::revit::G_PES;
static const int OK = isa::OK;
static const int ERR_DIMS = isa::revit::GG_ERR_DIMS;
static const int ERR_QUANT = isa::revit::GG_ERR_QUANT;

typedef rmmu::Rmmu<rmmu::RmmuArray> RMMU;

// x (n, D) int8, A (G, D) int8, B (G,) int32. Outputs groups (n,), counts (G,), members (n,) int32.
// cycles[4]: hash, codes, argmax, lists.
inline int generate(const int8_t* x, int n, int D, const int8_t* A, const int32_t* B, int G, int32_t m, int32_t s,
                    int32_t* groups, int32_t* counts, int32_t* members, int64_t cycles[4]) {
    if (n < 1 || n > MAX_N || D < 1 || D > MAX_D || G < 1 || G > MAX_GROUPS) return ERR_DIMS;
    if (m < 0 || s < 0 || s > 63) return ERR_QUANT;
    int16_t* S = RMMU::bufs().S;
    int32_t* W = RMMU::bufs().B;
    static int32_t Y[MAX_GROUPS * MAX_N];
    for (int64_t t = 0; t < (int64_t)n * D; ++t) S[t] = x[t];
    for (int64_t t = 0; t < (int64_t)G * D; ++t) W[t] = A[t];
    cycles[0] = RMMU::pass(S, n, D, W, G, RMMU::COLS, cfg::revit::SYNC_COLS, Y);

    static int64_t code[MAX_N][MAX_GROUPS];
    int64_t it = 0;
GG_CODES:
    for (int i0 = 0; i0 < n; i0 += G_PES) {
#pragma HLS PIPELINE II = 1
        ++it;
        for (int p = 0; p < G_PES && i0 + p < n; ++p) {
#pragma HLS UNROLL
            for (int g = 0; g < G; ++g) {
                const int32_t acc = (int32_t)((uint32_t)Y[(int64_t)g * n + i0 + p] + (uint32_t)B[g]);
                code[i0 + p][g] = ((int64_t)acc * (int64_t)m) >> s;
            }
        }
    }
    cycles[1] = it + revit_sched::PIPE_CODE;

    it = 0;
GG_ARGMAX:
    for (int i0 = 0; i0 < n; i0 += G_PES) {
#pragma HLS PIPELINE II = 1
        ++it;
        for (int p = 0; p < G_PES && i0 + p < n; ++p) {
#pragma HLS UNROLL
            int best = 0;
            for (int g = 1; g < G; ++g)
                if (code[i0 + p][g] > code[i0 + p][best]) best = g;
            groups[i0 + p] = best;
        }
    }
    cycles[2] = it + revit_sched::pipe_argmax(G);

    int32_t next[MAX_GROUPS];
    it = 0;
    for (int g = 0; g < G; ++g) counts[g] = 0;
GG_HIST:
    for (int i = 0; i < n; ++i) {
#pragma HLS PIPELINE II = 1
        ++it;
        ++counts[groups[i]];
    }
GG_PREFIX:
    for (int g = 0, acc = 0; g < G; ++g) {
#pragma HLS PIPELINE II = 1
        ++it;
        next[g] = acc;
        acc += counts[g];
    }
GG_SCATTER:
    for (int i = 0; i < n; ++i) {
#pragma HLS PIPELINE II = 1
        ++it;
        members[next[groups[i]]++] = i;
    }
    cycles[3] = it + 3 * revit_sched::PIPE_LIST;
    REVIT_PERF(revit_perf::add(revit_perf::GG_CALLS, 1); revit_perf::add(revit_perf::GG_HASH, cycles[0]);
               revit_perf::add(revit_perf::GG_CODES, cycles[1]); revit_perf::add(revit_perf::GG_ARGMAX, cycles[2]);
               revit_perf::add(revit_perf::GG_LISTS, cycles[3]));
    return OK;
}

}  // namespace groupgen
}  // namespace vitaccel

#endif  // VITACCEL_REVIT_GROUPGEN_H
