// The engines' schedule constants: pipeline depths of their loop nests and the sizes of tiles that the
// cycle model needs. A loop nest's latency is (iterations x II) + depth; the iterations and II follow
// from the loop structure in the kernel headers, the depths are the only figures that synthesis could
// change. vitaccel/sim/vitcod/{attention,autoencoder}.py and sim/common/gemm.py use the same values and
// tests/test_cycle_model_vs_hls.py checks them against this file (vitaccel_schedule_constants in
// hls/vitcod/vitcod_capi.cpp).
#ifndef VITACCEL_KERNELS_SCHEDULE_H
#define VITACCEL_KERNELS_SCHEDULE_H

namespace vitaccel {
namespace sched {

constexpr int log2i(int x) { return x <= 1 ? 0 : 1 + log2i(x / 2); }

// Dot-product nest on a MAC line of `lanes` MACs (inter-PE mode) or an accumulate-over-tokens nest
// (intra-PE mode): operand read, multiply, adder tree over the line's products, accumulate, write.
constexpr int pipe_dot(int lanes) { return 4 + log2i(lanes); }
// Requantiser (one per MAC line): add, multiply by the multiplier, round and shift, clip and write.
static const int PIPE_RQ = 4;
// Mix engine (dot product over input heads, then the line's requantiser).
constexpr int pipe_mix(int lanes) { return pipe_dot(lanes) + PIPE_RQ; }
// Softmax unit of `lanes` elements per cycle, max stage: read, compare tree, hand the row maximum on.
constexpr int pipe_sm_max(int lanes) { return 2 + log2i(lanes); }
// Softmax unit, exp stage: read, subtract / multiply / shift, table read and shift, adder tree, sum.
constexpr int pipe_sm_exp(int lanes) { return 6 + log2i(lanes); }
// Reciprocal 2^40 / sum: a restoring divider with one quotient bit per stage, fully pipelined.
static const int PIPE_DIV = 41;
// A reduction pass over `lanes` elements per cycle: read, adder tree, accumulate.
constexpr int pipe_sum(int lanes) { return 2 + log2i(lanes); }
// LayerNorm's normalising pass: subtract, multiply by the reciprocal, round, multiply by g, add, shift, clip.
static const int PIPE_LN_NORM = 7;
// Residual add: two multiplies, add, round and shift, clip, write.
static const int PIPE_ADD = 5;
// Table lookup: read, index, table read, write.
static const int PIPE_LUT = 3;

}  // namespace sched
}  // namespace vitaccel

#endif  // VITACCEL_KERNELS_SCHEDULE_H
