// Token compaction after a pruning layer (revit_top's COMPACT): CLS and the surviving patches of the int16
// residual stream in token order, then the package token; the new token count goes to DRAM and into the
// token-dependent words of the program's later descriptors (the patch list), so the rest of the image runs
// at its own token count without the host.
//
// Bits: vitaccel/sim/revit/compact.py (compact_tokens): pkg_c = clip((sum over pruned i of score_i x_ic) *
// m + 2^(s-1)) >> s, int16), the accumulator 64 bits wide (m < 2^16 keeps the product below 2^63).
// Schedule on the SIMD unit (SIMD_LANES int16 elements per cycle), three nests one after another:
//   rows     N ceil(D / L) + PIPE_PACK     every row read once, copied (kept, CLS) or accumulated (pruned)
//   package  ceil(D / L) + PIPE_RQ         the package row's requantisation
//   patch    npatch + PIPE_PATCH           one word per cycle
// The patch words are written through the descriptor port (idx), the one the dispatcher reads them with.
#ifndef VITACCEL_REVIT_COMPACT_H
#define VITACCEL_REVIT_COMPACT_H

#include <stdint.h>

#include "revit_perf.h"
#include "revit_schedule.h"
#include "schedule.h"
#include "vitaccel_config.h"

namespace vitaccel {
namespace compact {

static const int LANES = cfg::revit::SIMD_LANES;
static const int MAX_D = cfg::MAX_EMBED_DIM;
static const int64_t MAX_PKG_MULT = 1 << 16;

inline int16_t sat16(int64_t v) { return (int16_t)(v < -32768 ? -32768 : (v > 32767 ? 32767 : v)); }

// x (N, D) int16, keep (N-1,), scores (N-1,) -> y (kept + 2, D). Returns the number of rows written;
// cycles[0..1] receive the rows and package nests' cycles.
inline int tokens(const int16_t* x, const uint8_t* keep, const int32_t* scores, int N, int D, int64_t m, int s,
                  int16_t* y, int64_t* cycles) {
    static int64_t acc[MAX_D];
    for (int c = 0; c < D; ++c) acc[c] = 0;
    const int chunks = (D + LANES - 1) / LANES;
    int out = 0;
    int64_t it = 0;
CMP_ROWS:
    for (int i = 0; i < N; ++i) {
        const bool kept = i == 0 || keep[i - 1] != 0;
        const int64_t w = kept ? 0 : scores[i - 1];
        for (int c0 = 0; c0 < chunks; ++c0) {
#pragma HLS PIPELINE II = 1
            ++it;
            for (int u = 0; u < LANES; ++u) {
#pragma HLS UNROLL
                const int c = c0 * LANES + u;
                if (c < D) {
                    const int16_t v = x[(int64_t)i * D + c];
                    if (kept)
                        y[(int64_t)out * D + c] = v;
                    else
                        acc[c] += w * v;
                }
            }
        }
        if (kept) ++out;
    }
    cycles[0] = it + revit_sched::PIPE_PACK;
    const int64_t rnd = s > 0 ? (int64_t)1 << (s - 1) : 0;
CMP_PACKAGE:
    for (int c0 = 0; c0 < chunks; ++c0) {
#pragma HLS PIPELINE II = 1
        for (int u = 0; u < LANES; ++u) {
#pragma HLS UNROLL
            const int c = c0 * LANES + u;
            if (c < D) y[(int64_t)out * D + c] = sat16((acc[c] * m + rnd) >> s);
        }
    }
    cycles[1] = chunks + sched::PIPE_RQ;
    REVIT_PERF({
        using namespace revit_perf;
        counters().total[CMP_CALLS] += 1;
        counters().total[CMP_ROWS] += cycles[0];
        counters().total[CMP_PACKAGE] += cycles[1];
    });
    return out + 1;
}

// The patch nest: word at byte address tri[3 k] of the window (through `idx`) = tri[3 k + 1] n + tri[3 k + 2].
// The caller has checked every address and value.
inline int64_t patch(int32_t* idx, const int32_t* tri, int npatch, int n) {
CMP_PATCH:
    for (int k = 0; k < npatch; ++k) {
#pragma HLS PIPELINE II = 1
        idx[(uint32_t)tri[3 * k] / 4] = (int32_t)((int64_t)tri[3 * k + 1] * n + tri[3 * k + 2]);
    }
    const int64_t cyc = npatch + revit_sched::PIPE_PATCH;
    REVIT_PERF({ revit_perf::counters().total[revit_perf::CMP_PATCH] += cyc; });
    return cyc;
}

}  // namespace compact
}  // namespace vitaccel

#endif  // VITACCEL_REVIT_COMPACT_H
