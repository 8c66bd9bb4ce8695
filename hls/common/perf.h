// C-simulation cycle counters (FINN-style instrumentation), compiled out for synthesis.
//
// Every engine adds, for each pipelined loop nest it runs, the iterations it executed x II plus the nest's
// pipeline depth (schedule.h), and where nests run concurrently (the two attention engines inside one
// loop, DATAFLOW stages, the decoder beside the softmax unit) the schedule's combination of them. The C++
// knows its own trip counts at run time, so these are the cycles an HLS schedule of the same code takes,
// with the depths as the only assumption. Off-chip traffic is counted in bytes (its cycles belong to the
// DRAM model, sim/common/dram.py). tests/test_cycle_model_vs_hls.py reads the counters through
// hls/vitcod/vitcod_capi.cpp and compares them with the cycle models in vitaccel/sim/common/ and vitaccel/sim/vitcod/.
#ifndef VITACCEL_KERNELS_PERF_H
#define VITACCEL_KERNELS_PERF_H

#include <stdint.h>

#include "vitaccel_config.h"

#ifndef __SYNTHESIS__
#define VITACCEL_PERF(...) \
    do {                   \
        __VA_ARGS__;       \
    } while (0)
#else
#define VITACCEL_PERF(...) \
    do {                   \
    } while (0)
#endif

#ifndef __SYNTHESIS__
namespace vitaccel {
namespace perf {

// Totals since the last reset, in this order (kernels_capi.cpp reports them in this order).
enum Total {
    ATT_LAYERS = 0,    // attention_layer calls
    ATT_DECODE_PRO,    // decoding head 0 before anything else can run (AE)
    ATT_SDDMM,         // SDDMM phase: both engines in one loop, + depth
    ATT_SDDMM_DENSE,   // its denser-engine iterations
    ATT_SDDMM_SPARSE,  // its sparser-engine iterations
    ATT_SOFTMAX,       // softmax unit: max stage and exp stage (DATAFLOW) + divider
    ATT_DECODE,        // decoding head h + 1 beside head h's softmax unit (AE)
    ATT_SM_PHASE,      // that phase: max(softmax, decode)
    ATT_SPMM,          // S.V phase: both engines in one loop, + depth
    ATT_SPMM_DENSE,
    ATT_SPMM_SPARSE,
    ATT_REQUANT,       // output requantisation
    ATT_PIPELINE,      // the layer's heads pipelined (attention.h head_pipeline): what a layer takes
    ATT_BYTES_IN,      // off-chip bytes read / written by the attention kernel
    ATT_BYTES_OUT,
    GEMM_CALLS,
    GEMM_COMPUTE,      // sum over (weight tile, activation tile, K slice) of the compute / store DATAFLOW
    GEMM_MAC_ITERS,    // iterations of the MAC loop alone
    GEMM_BYTES_IN,
    GEMM_BYTES_OUT,
    AE_CALLS,
    AE_COMPUTE,        // mix nests of the encoder op (per token tile)
    AE_BYTES_IN,
    AE_BYTES_OUT,
    LN_CALLS,          // layernorm layer calls
    LN_COMPUTE,        // per tile: statistics pass, row scalar pipeline, normalising pass (iterations + depths)
    LN_BYTES_IN,
    LN_BYTES_OUT,
    ELT_CALLS,         // element-wise add / table calls
    ELT_COMPUTE,       // the pipelined loop's iterations + depth
    ELT_BYTES_IN,
    ELT_BYTES_OUT,
    N_TOTALS
};

// Per head of the last attention_layer call.
enum Head { H_SDDMM = 0, H_SOFTMAX, H_DECODE_NEXT, H_SPMM, H_REQUANT, H_BYTES_IN, N_HEAD };

struct Counters {
    int64_t total[N_TOTALS];
    int64_t head[cfg::MAX_HEADS][N_HEAD];
};

// One instance across translation units (an inline function's static).
inline Counters& counters() {
    static Counters c = {};
    return c;
}

inline void reset() { counters() = Counters(); }

inline void add(Total t, int64_t v) { counters().total[t] += v; }

}  // namespace perf
}  // namespace vitaccel
#endif  // __SYNTHESIS__

#endif  // VITACCEL_KERNELS_PERF_H
