// Element-wise integer kernels of the whole model (NUMERICS.md "add" and "lut"):
//   add:  y = clip((a ma + b mb + 2^(s-1)) >> s) to int16 or int8 (residual adds, CLS / position add);
//   lut:  y = table[x + 128], a 256-entry int8 table (GELU, made offline at the layer's scales).
// Golden models: vitaccel.sim.common.eltwise.add_requant / lut_int8. One element per line per cycle over
// ARRAY::LINES lines: ceil(n / LINES) iterations of one pipelined loop (II 1) plus its depth
// (sim/common/eltwise.py add_cycles / lut_cycles count the same).
#ifndef VITACCEL_KERNELS_ELTWISE_H
#define VITACCEL_KERNELS_ELTWISE_H

#include <stdint.h>

#include "perf.h"
#include "schedule.h"
#include "vitaccel_config.h"

namespace vitaccel {
namespace eltwise {

static const int OK = 0;
static const int ERR_DIMS = 1;   // n < 1
static const int ERR_PARAM = 2;  // a multiplier outside [0, 2^31), shift outside [0, 62], width not 8 / 16

template <class ARRAY>
struct Eltwise {
    static const int LINES = ARRAY::LINES;

    // a, b: int8 or int16 (a_bits / b_bits), n elements each; y: int16 or int8 (out_bits).
    static int add(const void* a, int a_bits, int32_t ma, const void* b, int b_bits, int32_t mb, int shift, void* y,
                   int out_bits, int64_t n) {
        if (n < 1) return ERR_DIMS;
        if (ma < 0 || mb < 0 || shift < 0 || shift > 62 || (a_bits != 8 && a_bits != 16) ||
            (b_bits != 8 && b_bits != 16) || (out_bits != 8 && out_bits != 16))
            return ERR_PARAM;
        const int64_t lim = (int64_t)1 << (out_bits - 1);
        const int64_t round = shift ? (int64_t)1 << (shift - 1) : 0;
        const int64_t chunks = (n + LINES - 1) / LINES;
        int64_t it = 0;
    ELT_ADD:
        for (int64_t c = 0; c < chunks; ++c) {
#pragma HLS PIPELINE II = 1
            VITACCEL_PERF(++it);
            for (int l = 0; l < LINES; ++l) {
#pragma HLS UNROLL
                const int64_t k = c * LINES + l;
                if (k < n) {
                    const int64_t av = a_bits == 8 ? ((const int8_t*)a)[k] : ((const int16_t*)a)[k];
                    const int64_t bv = b_bits == 8 ? ((const int8_t*)b)[k] : ((const int16_t*)b)[k];
                    int64_t o = (av * ma + bv * mb + round) >> shift;
                    o = o < -lim ? -lim : (o > lim - 1 ? lim - 1 : o);
                    if (out_bits == 8) {
                        ((int8_t*)y)[k] = (int8_t)o;
                    } else {
                        ((int16_t*)y)[k] = (int16_t)o;
                    }
                }
            }
        }
        VITACCEL_PERF(perf::add(perf::ELT_CALLS, 1));
        VITACCEL_PERF(perf::add(perf::ELT_COMPUTE, it + sched::PIPE_ADD));
        VITACCEL_PERF(perf::add(perf::ELT_BYTES_IN, n * (a_bits + b_bits) / 8));
        VITACCEL_PERF(perf::add(perf::ELT_BYTES_OUT, n * out_bits / 8));
        return OK;
    }

    static int lut(const int8_t* x, const int8_t table[256], int8_t* y, int64_t n) {
        if (n < 1) return ERR_DIMS;
        int8_t t[256];
#pragma HLS ARRAY_PARTITION variable = t complete dim = 1
    ELT_LUT_LOAD:
        for (int i = 0; i < 256; ++i) {
#pragma HLS PIPELINE II = 1
            t[i] = table[i];
        }
        const int64_t chunks = (n + LINES - 1) / LINES;
        int64_t it = 0;
    ELT_LUT:
        for (int64_t c = 0; c < chunks; ++c) {
#pragma HLS PIPELINE II = 1
            VITACCEL_PERF(++it);
            for (int l = 0; l < LINES; ++l) {
#pragma HLS UNROLL
                const int64_t k = c * LINES + l;
                if (k < n) y[k] = t[x[k] + 128];
            }
        }
        VITACCEL_PERF(perf::add(perf::ELT_CALLS, 1));
        VITACCEL_PERF(perf::add(perf::ELT_COMPUTE, it + sched::PIPE_LUT));
        VITACCEL_PERF(perf::add(perf::ELT_BYTES_IN, n + 256));
        VITACCEL_PERF(perf::add(perf::ELT_BYTES_OUT, n));
        return OK;
    }
};

}  // namespace eltwise
}  // namespace vitaccel

#endif  // VITACCEL_KERNELS_ELTWISE_H
