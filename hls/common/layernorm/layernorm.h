// Integer LayerNorm: int16 rows of the residual stream in, int8 rows out (NUMERICS.md "layernorm").
//
// Bits: the golden model is vitaccel.sim.common.layernorm.layernorm_int; every step is an integer
// operation with the rounding NUMERICS.md states, so the two agree bit for bit. Per row of D values:
//   s1 = sum x; mu = floor((2 s1 + D) / (2 D)); c = x - mu; q = sum c^2;
//   v = floor(q 2^16 / D) + eps; sd = max(isqrt(v), 1); r = floor(2^40 / sd);
//   n = (c r + 2^15) >> 16; y = clip((n g + (b << 16) + 2^(S-1)) >> S, -128, 127).
//
// Structure (the cycle model, sim/common/layernorm.py layernorm_cycles, follows it): tiles of rows; per tile
// a statistics pass (th ceil(D / LINES) iterations, LINES elements each), the scalar pipeline (th
// iterations, II 1, depth 3 PIPE_DIV + SQRT_STEPS: the bit-by-bit square root unrolled into stages) and a
// normalising pass (th ceil(D / LINES)). Synthesis note: II 1 over rows needs the three 64-bit dividers
// and the root fully pipelined (one quotient bit per stage, as PIPE_DIV assumes), a few thousand LUTs.
#ifndef VITACCEL_KERNELS_LAYERNORM_H
#define VITACCEL_KERNELS_LAYERNORM_H

#include <stdint.h>

#include "perf.h"
#include "schedule.h"
#include "vitaccel_config.h"

namespace vitaccel {
namespace layernorm {

static const int OK = 0;
static const int ERR_DIMS = 1;   // rows < 1 or D outside [1, MAX_D]
static const int ERR_PARAM = 2;  // shift outside [16, 62] or eps outside [0, 2^31)
static const int MAX_D = 8192;
static const int EPS_BITS = 16;
static const int RECIP_BITS = 40;
static const int SQRT_STEPS = 26;

// Floor square root of v < 2^52, one result bit per step from the top: SQRT_STEPS stages of the row
// scalar pipeline (unrolled).
inline int64_t isqrt(int64_t v) {
    int64_t root = 0, rem = v;
LN_SQRT:
    for (int bit = SQRT_STEPS - 1; bit >= 0; --bit) {
#pragma HLS UNROLL
        const int64_t trial = (root << (bit + 1)) + ((int64_t)1 << (2 * bit));
        if (rem >= trial) {
            rem -= trial;
            root |= (int64_t)1 << bit;
        }
    }
    return root;
}

// floor(a / b) for b > 0 (C++ division truncates toward zero).
inline int64_t floor_div(int64_t a, int64_t b) {
    const int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

// The engine on the vector lanes ARRAY::LINES wide (one element per line per cycle). Rows go in tiles that
// fit half the activation buffer (at most MAX_TILE_ROWS): a statistics pass over the tile (s1 = sum x and
// s2 = sum x^2 of every row in one read), a per-row scalar pipeline (mean, variance, square root,
// reciprocal; II 1 over rows), and a normalising pass over the tile from the buffer. The per-row latency of
// the scalar chain is paid once per tile instead of once per row. q = sum (x - mu)^2 is formed as
// s2 - 2 mu s1 + D mu^2, the same integer (|s2| < 2^43, |mu s1| < 2^43).
template <class ARRAY>
struct LayerNorm {
    static const int LINES = ARRAY::LINES;
    // int16 elements of half the activation buffer (the other half is the next tile's, as for the GEMM).
    static const int TILE_ELEMS = ARRAY::ACT_BYTES / 2 / 2;
    static const int MAX_TILE_ROWS = cfg::MAX_TOKENS;
    static_assert(TILE_ELEMS >= MAX_D, "half the activation buffer must hold one LayerNorm row");

    // Rows per tile for rows of D.
    static int tile_rows(int rows, int D) {
        int t = TILE_ELEMS / D;
        if (t > MAX_TILE_ROWS) t = MAX_TILE_ROWS;
        return t < rows ? t : rows;
    }

    // mean, variance, standard deviation and reciprocal of one row from its sums (NUMERICS.md steps 1-5).
    static void row_scalars(int64_t s1, int64_t s2, int D, int64_t eps, int64_t* mu_out, int64_t* r_out) {
#pragma HLS INLINE
        const int64_t mu = floor_div(2 * s1 + D, 2 * (int64_t)D);
        const int64_t q = s2 - 2 * mu * s1 + (int64_t)D * mu * mu;
        const int64_t v = ((q / D) << EPS_BITS) + (((q % D) << EPS_BITS) / D) + eps;
        int64_t sd = isqrt(v);
        if (sd < 1) sd = 1;
        *mu_out = mu;
        *r_out = ((int64_t)1 << RECIP_BITS) / sd;
    }

    // x (rows, D) int16, g / b (D,) int32, y (rows, D) int8. Returns a status (0 ok).
    static int layer(const int16_t* x, const int32_t* g, const int32_t* b, int shift, int64_t eps, int8_t* y,
                     int rows, int D) {
        if (rows < 1 || D < 1 || D > MAX_D) return ERR_DIMS;
        if (shift < 16 || shift > 62 || eps < 0 || eps >= ((int64_t)1 << 31)) return ERR_PARAM;
        static int16_t xt[TILE_ELEMS];
        static int64_t s1[MAX_TILE_ROWS], s2[MAX_TILE_ROWS], mu[MAX_TILE_ROWS], rc[MAX_TILE_ROWS];
        static int32_t gb[2][MAX_D];  // g and b, loaded once per call
    LN_LOAD_GB:
        for (int k = 0; k < D; ++k) {
#pragma HLS PIPELINE II = 1
            gb[0][k] = g[k];
            gb[1][k] = b[k];
        }
        const int chunks = (D + LINES - 1) / LINES;
        const int T = tile_rows(rows, D);
        VITACCEL_PERF(perf::add(perf::LN_CALLS, 1));
        VITACCEL_PERF(perf::add(perf::LN_BYTES_IN, 8 * (int64_t)D));
    LN_TILES:
        for (int r0 = 0; r0 < rows; r0 += T) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 16
            const int th = (rows - r0 < T) ? rows - r0 : T;
            int64_t it_stats = 0, it_scalar = 0, it_norm = 0;
            int i = 0, c = 0;
        LN_STATS:
            for (int t = 0; t < th * chunks; ++t) {
#pragma HLS PIPELINE II = 1
                VITACCEL_PERF(++it_stats);
                int64_t a1 = (c == 0) ? 0 : s1[i], a2 = (c == 0) ? 0 : s2[i];
                for (int l = 0; l < LINES; ++l) {
#pragma HLS UNROLL
                    const int k = c * LINES + l;
                    if (k < D) {
                        const int16_t v = x[(int64_t)(r0 + i) * D + k];
                        xt[i * D + k] = v;
                        a1 += v;
                        a2 += (int64_t)v * v;
                    }
                }
                s1[i] = a1;
                s2[i] = a2;
                if (++c == chunks) {
                    c = 0;
                    ++i;
                }
            }
        LN_SCALAR:
            for (int j = 0; j < th; ++j) {
#pragma HLS PIPELINE II = 1
                VITACCEL_PERF(++it_scalar);
                row_scalars(s1[j], s2[j], D, eps, &mu[j], &rc[j]);
            }
            i = 0;
            c = 0;
        LN_NORM:
            for (int t = 0; t < th * chunks; ++t) {
#pragma HLS PIPELINE II = 1
                VITACCEL_PERF(++it_norm);
                for (int l = 0; l < LINES; ++l) {
#pragma HLS UNROLL
                    const int k = c * LINES + l;
                    if (k < D) {
                        const int64_t cc = (int64_t)xt[i * D + k] - mu[i];
                        const int64_t n = (cc * rc[i] + (1 << 15)) >> 16;
                        // b * 2^16 as a product: a left shift of a negative value is undefined in C++14.
                        const int64_t tt = n * gb[0][k] + (int64_t)gb[1][k] * 65536 + ((int64_t)1 << (shift - 1));
                        int64_t o = tt >> shift;
                        o = o < -128 ? -128 : (o > 127 ? 127 : o);
                        y[(int64_t)(r0 + i) * D + k] = (int8_t)o;
                    }
                }
                if (++c == chunks) {
                    c = 0;
                    ++i;
                }
            }
            // Each nest's iterations (II 1) plus its depth; the scalar pipeline's depth is its three
            // dividers and the square root's stages.
            VITACCEL_PERF(perf::add(perf::LN_COMPUTE, it_stats + sched::pipe_sum(LINES) + it_scalar +
                                                          3 * sched::PIPE_DIV + SQRT_STEPS + it_norm +
                                                          sched::PIPE_LN_NORM));
        }
        VITACCEL_PERF(perf::add(perf::LN_BYTES_IN, 2 * (int64_t)rows * D));
        VITACCEL_PERF(perf::add(perf::LN_BYTES_OUT, (int64_t)rows * D));
        return OK;
    }
};

}  // namespace layernorm
}  // namespace vitaccel

#endif  // VITACCEL_KERNELS_LAYERNORM_H
