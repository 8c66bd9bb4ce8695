// Differential (blockwise) softmax unit of a sub-RMMU's SIMD slice: Eq. 8's running max over key blocks,
// bit-exact with NUMERICS.md's one-pass integer softmax in any block size.
//
// Bits: KERNELS.md "ReViT", blockwise softmax; golden model vitaccel.sim.revit.softmax.blockwise_softmax_int
// (with integer weights: the joint rows' group sizes). Per row, per block of `block` keys in order:
//   block max over the kept entries; m' = max(m, block max);
//   if m grew (and an entry was kept before): every stored offset d += m' - m, saturating at d_zero;
//   store the block's offsets d_j = min(m' - s_j, d_zero) (d_zero for entries not kept);
// after the last block: e_j = exp(-d_j) (NUMERICS.md step 3) times its weight, the sum, one reciprocal
// 2^40 / sum, p_j = min((e_j recip + 2^31) >> 32, 255).
// Schedule per row, `lanes` elements per cycle (the sub-RMMU's slice of the SIMD unit):
//   per block  ceil(bl / lanes) + pipe_sm_max(lanes)  [+ ceil(seen / lanes) + PIPE_RESCALE if m grew]
//              + ceil(bl / lanes) + PIPE_OFFSET         (seen: the positions of earlier blocks)
//   per row    ceil(n / lanes) + pipe_sm_exp(lanes), PIPE_DIV, ceil(n / lanes) + PIPE_NORM
// Those are each phase's own work as separate nests (the counters). The unit runs the rows through a
// three-stage row pipeline, two row buffers between stages: the block pass (maxima streamed back to back,
// each block's offsets stored one block behind its maximum, depths once per row, rescales stalling it:
// sum ceil(bl / lanes) + ceil(last bl / lanes) + pipe_sm_max + PIPE_OFFSET + the row's rescales), the
// exponentials and sum, the reciprocal (a divider pipelined at II = 1) and the normalisation. cycles[6] is
// its time (pipeline_row below; sim/revit/dsoftmax.py row_pipeline).
#ifndef VITACCEL_REVIT_DSOFTMAX_H
#define VITACCEL_REVIT_DSOFTMAX_H

#include <stdint.h>

#include "isa/revit_isa.h"
#include "revit_perf.h"
#include "revit_schedule.h"
#include "schedule.h"
#include "vitaccel_config.h"
#include "vitaccel_exp_lut.h"

namespace vitaccel {
namespace dsoftmax {

static const int MAX_N = cfg::MAX_TOKENS + 64;
static const int OK = isa::OK;
static const int ERR_DIMS = isa::revit::DSM_ERR_DIMS;
static const int ERR_QUANT = isa::revit::DSM_ERR_QUANT;

// The smallest offset from which every exponential is 0, capped at 2^31 (sim/revit/softmax.py zero_offset).
inline int64_t zero_offset(int64_t m_exp, int s_exp) {
    // From s_exp = 51 on, 3840 * 2^s / m_exp > 2^62 / 2^31: always the cap (and 3840 << 51 would overflow).
    if (m_exp == 0 || s_exp >= 51) return int64_t(1) << 31;
    const int64_t z = ((int64_t)3840 << s_exp) / m_exp + 1;
    return z < (int64_t(1) << 31) ? z : (int64_t(1) << 31);
}

// NUMERICS.md step 3 at offset d (0 <= d <= 2^31): x = -d, u = -((x m) >> s), EXP2_LUT[u & 255] >> (u >> 8).
inline int64_t exp_at(int64_t d, int64_t m_exp, int s_exp) {
    const int64_t u = -((-d * m_exp) >> s_exp);
    const int64_t q = u >> EXP_FRAC_BITS;
    if (q > 15) return 0;
    return (int64_t)(EXP2_LUT[u & ((1 << EXP_FRAC_BITS) - 1)] >> q);
}

inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline int64_t max2(int64_t a, int64_t b) { return a > b ? a : b; }

// One row into the row pipeline: its block pass `a`, exponentials `e`, normalisation `nrm`. The stage
// finish times of the last two rows live in `st` (fa, fe1, fe2, fn1, fn2); returns the row's finish.
inline int64_t pipeline_row(int64_t st[5], int64_t a, int64_t e, int64_t nrm) {
    int64_t& fa = st[0];
    int64_t& fe1 = st[1];
    int64_t& fe2 = st[2];
    int64_t& fn1 = st[3];
    int64_t& fn2 = st[4];
    fa = max2(fa, fe2) + a;                              // the offsets slot of the row two back is free
    const int64_t fe = max2(max2(fa, fe1), fn2) + e;      // ... and the exponentials slot
    const int64_t fn = max2(fe + sched::PIPE_DIV, fn1) + nrm;
    fe2 = fe1;
    fe1 = fe;
    fn2 = fn1;
    fn1 = fn;
    return fn;
}

// scores (rows, n) int32, keep (rows, n) 0/1, weights (n,) >= 0 (all 1 for a plain row), p (rows, n).
// cycles[7]: max, rescale, offset, exp, div, norm summed over the rows; the row pipeline's time.
inline int softmax(const int32_t* scores, const uint8_t* keep, const int32_t* weights, int rows, int n, int32_t m_exp,
                   int32_t s_exp, int block, int lanes, uint8_t* p, int64_t cycles[7]) {
    if (rows < 1 || n < 1 || n > MAX_N || block < 1 || lanes < 1 || lanes > cfg::revit::SIMD_LANES) return ERR_DIMS;
    if (m_exp < 0 || s_exp < 0 || s_exp > 63) return ERR_QUANT;
    int64_t wsum = 0;
    for (int j = 0; j < n; ++j) {
        if (weights[j] < 0) return ERR_QUANT;
        wsum += weights[j];
    }
    if (wsum >= (1 << 16)) return ERR_QUANT;
    const int64_t dz = zero_offset(m_exp, s_exp);
    static int64_t off[MAX_N];
    static int64_t e[MAX_N];
    for (int i = 0; i < 7; ++i) cycles[i] = 0;
    int64_t pipe[5] = {0, 0, 0, 0, 0};
DSM_ROWS:
    for (int r = 0; r < rows; ++r) {
        const int32_t* s = scores + (int64_t)r * n;
        const uint8_t* k = keep + (int64_t)r * n;
        bool any = false;
        int64_t m = 0;
        const int64_t resc0 = cycles[1];
        int64_t stream = 0;
        int last_bl = 0;
    DSM_BLOCKS:
        for (int b0 = 0; b0 < n; b0 += block) {
            const int bl = (n - b0 < block) ? n - b0 : block;
            bool bany = false;
            int64_t bmax = 0;
        DSM_MAX:
            for (int j = b0; j < b0 + bl; ++j) {
                if (k[j] && (!bany || s[j] > bmax)) {
                    bmax = s[j];
                    bany = true;
                }
            }
            cycles[0] += cdiv(bl, lanes) + sched::pipe_sm_max(lanes);
            stream += cdiv(bl, lanes);
            last_bl = bl;
            const int64_t nm = (!any) ? bmax : ((bany && bmax > m) ? bmax : m);
            if (any && nm > m) {
                const int64_t grow = nm - m;
            DSM_RESCALE:
                for (int j = 0; j < b0; ++j) {
                    const int64_t t = off[j] + grow;
                    off[j] = t < dz ? t : dz;
                }
                cycles[1] += cdiv(b0, lanes) + revit_sched::PIPE_RESCALE;
            }
            if (bany) {
                m = nm;
                any = true;
            }
        DSM_OFFSET:
            for (int j = b0; j < b0 + bl; ++j) {
                const int64_t t = m - (int64_t)s[j];
                off[j] = k[j] ? (t < dz ? t : dz) : dz;
            }
            cycles[2] += cdiv(bl, lanes) + revit_sched::PIPE_OFFSET;
        }
        int64_t total = 0;
    DSM_EXP:
        for (int j = 0; j < n; ++j) {
            e[j] = k[j] ? exp_at(off[j], m_exp, s_exp) * weights[j] : 0;
            total += e[j];
        }
        cycles[3] += cdiv(n, lanes) + sched::pipe_sm_exp(lanes);
        const int64_t recip = total > 0 ? (int64_t(1) << RECIP_BITS) / total : 0;
        cycles[4] += sched::PIPE_DIV;
    DSM_NORM:
        for (int j = 0; j < n; ++j) {
            const int64_t q = (e[j] * recip + (int64_t(1) << 31)) >> 32;
            p[(int64_t)r * n + j] = (uint8_t)(q > 255 ? 255 : q);
        }
        cycles[5] += cdiv(n, lanes) + revit_sched::PIPE_NORM;
        // The block pass as streamed: maxima back to back, offsets one block behind, depths once per row.
        const int64_t a_row = stream + cdiv(last_bl, lanes) + sched::pipe_sm_max(lanes) + revit_sched::PIPE_OFFSET +
                              (cycles[1] - resc0);
        cycles[6] = pipeline_row(pipe, a_row, cdiv(n, lanes) + sched::pipe_sm_exp(lanes),
                                 cdiv(n, lanes) + revit_sched::PIPE_NORM);
    }
    REVIT_PERF(revit_perf::add(revit_perf::DSM_ROWS, rows); revit_perf::add(revit_perf::DSM_MAX, cycles[0]);
               revit_perf::add(revit_perf::DSM_RESCALE, cycles[1]); revit_perf::add(revit_perf::DSM_OFFSET, cycles[2]);
               revit_perf::add(revit_perf::DSM_EXP, cycles[3]); revit_perf::add(revit_perf::DSM_DIV, cycles[4]);
               revit_perf::add(revit_perf::DSM_NORM, cycles[5]); revit_perf::add(revit_perf::DSM_TIME, cycles[6]));
    return OK;
}

}  // namespace dsoftmax
}  // namespace vitaccel

#endif  // VITACCEL_REVIT_DSOFTMAX_H
