// Integer LayerNorm: int16 rows of the residual stream in, int8 rows out (NUMERICS.md "layernorm").
//
// Bits: the golden model is vitaccel.sim.common.layernorm.layernorm_int; every step is an integer
// operation with the rounding NUMERICS.md states, so the two agree bit for bit. Per row of D values:
//   s1 = sum x; mu = floor((2 s1 + D) / (2 D)); c = x - mu; q = sum c^2;
//   v = floor(q 2^16 / D) + eps; sd = max(isqrt(v), 1); r = floor(2^40 / sd);
//   n = (c r + 2^15) >> 16; y = clip((n g + (b << 16) + 2^(S-1)) >> S, -128, 127).
//
// Structure (the cycle model, sim/common/layernorm.py layernorm_cycles, follows it): rows in turn; per row a
// sum pass, a squares pass and a normalising pass over ceil(D / LINES) chunks (II 1, LINES elements per
// chunk), and between them the mean's divider, a bit-by-bit square root (LN_SQRT_STEPS iterations) and
// the reciprocal's divider. The row stays in an on-chip buffer between passes.
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

// Floor square root of v < 2^52, one result bit per step from the top (SQRT_STEPS iterations).
inline int64_t isqrt(int64_t v, int64_t* iters) {
    int64_t root = 0, rem = v;
LN_SQRT:
    for (int bit = SQRT_STEPS - 1; bit >= 0; --bit) {
#pragma HLS PIPELINE II = 1
        VITACCEL_PERF(++*iters);
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

// The engine on the vector lanes ARRAY::LINES wide (one element per line per cycle).
template <class ARRAY>
struct LayerNorm {
    static const int LINES = ARRAY::LINES;

    // x (rows, D) int16, g / b (D,) int32, y (rows, D) int8. Returns a status (0 ok).
    static int layer(const int16_t* x, const int32_t* g, const int32_t* b, int shift, int64_t eps, int8_t* y,
                     int rows, int D) {
        if (rows < 1 || D < 1 || D > MAX_D) return ERR_DIMS;
        if (shift < 16 || shift > 62 || eps < 0 || eps >= ((int64_t)1 << 31)) return ERR_PARAM;
        static int64_t row[MAX_D];
        static int32_t gb[2][MAX_D];  // g and b, loaded once per call
    LN_LOAD_GB:
        for (int k = 0; k < D; ++k) {
#pragma HLS PIPELINE II = 1
            gb[0][k] = g[k];
            gb[1][k] = b[k];
        }
        const int chunks = (D + LINES - 1) / LINES;
        VITACCEL_PERF(perf::add(perf::LN_CALLS, 1));
        VITACCEL_PERF(perf::add(perf::LN_BYTES_IN, 8 * (int64_t)D));
    LN_ROWS:
        for (int i = 0; i < rows; ++i) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
            int64_t s1 = 0, it = 0;
        LN_SUM:
            for (int c = 0; c < chunks; ++c) {
#pragma HLS PIPELINE II = 1
                VITACCEL_PERF(++it);
                for (int l = 0; l < LINES; ++l) {
#pragma HLS UNROLL
                    const int k = c * LINES + l;
                    if (k < D) {
                        row[k] = x[(int64_t)i * D + k];
                        s1 += row[k];
                    }
                }
            }
            const int64_t mu = floor_div(2 * s1 + D, 2 * (int64_t)D);
            int64_t q = 0;
        LN_SQUARES:
            for (int c = 0; c < chunks; ++c) {
#pragma HLS PIPELINE II = 1
                VITACCEL_PERF(++it);
                for (int l = 0; l < LINES; ++l) {
#pragma HLS UNROLL
                    const int k = c * LINES + l;
                    if (k < D) {
                        const int64_t cc = row[k] - mu;
                        row[k] = cc;
                        q += cc * cc;
                    }
                }
            }
            const int64_t v = ((q / D) << EPS_BITS) + (((q % D) << EPS_BITS) / D) + eps;
            int64_t sd = isqrt(v, &it);
            if (sd < 1) sd = 1;
            const int64_t r = ((int64_t)1 << RECIP_BITS) / sd;
        LN_NORM:
            for (int c = 0; c < chunks; ++c) {
#pragma HLS PIPELINE II = 1
                VITACCEL_PERF(++it);
                for (int l = 0; l < LINES; ++l) {
#pragma HLS UNROLL
                    const int k = c * LINES + l;
                    if (k < D) {
                        const int64_t n = (row[k] * r + (1 << 15)) >> 16;
                        // b * 2^16 as a product: a left shift of a negative value is undefined in C++14.
                        const int64_t t = n * gb[0][k] + (int64_t)gb[1][k] * 65536 + ((int64_t)1 << (shift - 1));
                        int64_t o = t >> shift;
                        o = o < -128 ? -128 : (o > 127 ? 127 : o);
                        y[(int64_t)i * D + k] = (int8_t)o;
                    }
                }
            }
            // The loops' iterations (II 1) plus their depths, and the two dividers with their hand-overs.
            VITACCEL_PERF(perf::add(perf::LN_COMPUTE, it + 2 * sched::pipe_sum(LINES) + 1 + sched::PIPE_LN_NORM +
                                                          2 * sched::PIPE_DIV + 2));
        }
        VITACCEL_PERF(perf::add(perf::LN_BYTES_IN, 2 * (int64_t)rows * D));
        VITACCEL_PERF(perf::add(perf::LN_BYTES_OUT, (int64_t)rows * D));
        return OK;
    }
};

}  // namespace layernorm
}  // namespace vitaccel

#endif  // VITACCEL_KERNELS_LAYERNORM_H
