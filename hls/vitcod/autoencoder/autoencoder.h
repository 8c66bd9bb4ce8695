// Encoder / decoder arithmetic of the ViTCoD auto-encoder: mix the head axis with a small int8 matrix.
//
// Bits: KERNELS.md "Auto-encoder": at every token n and feature f,
//     y[c, n, f] = requantize( sum_h W[c, h] * x[h, n, f] + b[c],  mult, shift )      c < C
// with one (mult, shift) per tensor. The encoder is this with (C, H_in) = (Hc, H), the decoder with
// (H, Hc); the golden model is vitaccel.sim.vitcod.autoencoder.mix_heads.
//
// Schedule: the mix engine is the MAC array in dot-product mode over the input heads. This file is the
// encoder op (OP_AE_MIX, run after the qkv GEMM while nothing else runs, so it has every MAC line); the
// decoder inside the attention kernel is the same engine on one output head at a time
// (attention.h decode_head). Token tile by token tile (TN tokens: the tile's H_in heads fit half the
// Q/K/S/V buffer):
//   load   the tile's H_in x tn x d bytes, head-minor (one M-byte word = M input heads of one (n, f));
//   mix    one output y[c, n, f] per MAC line at a time: ceil(H_in / M) cycles of M MACs, then the line's
//          requantiser. Outputs u = c * tn * d + n * d + f, dealt to the L lines in rounds:
//          ceil(C tn d / L) * ceil(H_in / M) iterations + PIPE_MIX;
//   store  the tile's C x tn x d bytes.
// The cycle model (vitaccel/sim/vitcod/autoencoder.py encode_cycles) counts exactly the mix nests;
// loads and stores are DMA (bytes, sim/common/dram.py). The tiles run one after another here; the model
// of the qkv layer (gemm_cycles with encode) overlaps a tile's transfers with the neighbouring tiles' mix.
#ifndef VITACCEL_KERNELS_AUTOENCODER_H
#define VITACCEL_KERNELS_AUTOENCODER_H

#include <stdint.h>

#include "vitaccel_config.h"
#include "vitaccel_numerics.h"
#include "isa/vitcod_isa.h"
#include "perf.h"
#include "vitcod_schedule.h"

namespace vitaccel {
namespace ae {

static const int LANES = cfg::vitcod::MACS_PER_LINE;
static const int MAX_H = cfg::MAX_HEADS;
static const int MAX_D = cfg::MAX_HEAD_DIM;
// The mix engine's lines: the whole MAC array.
static const int LINES = cfg::vitcod::MAC_LINES;
// The config's ae_lines (0: all lines), reported by the C API. The engines do not use it: the encoder op
// runs alone and the decoder runs while the engines' lines are idle, so both take every line.
static const int AE_L = cfg::vitcod::AE_LINES > 0 ? cfg::vitcod::AE_LINES : cfg::vitcod::MAC_LINES;
// Input heads padded to whole words.
static const int KHMAX = (MAX_H + LANES - 1) / LANES;
static const int CW = KHMAX * LANES;
// Tokens per tile: H_in heads (padded) of d features for TN tokens fill half the Q/K/S/V buffer.
static const int TN = cfg::QKVS_BUFFER_BYTES / 2 / (MAX_D * CW);

static_assert(MAX_D % LANES == 0, "MAX_HEAD_DIM must be a multiple of MACS_PER_LINE");
static_assert(TN >= 1, "the Q/K/S/V buffer is too small for one token of the encoder");

// Status codes from the generated ISA table (hls/include/isa/vitcod_isa.h, vitaccel/sim/vitcod/isa.py).
static const int OK = isa::OK;
static const int ERR_DIMS = isa::vitcod::AE_ERR_DIMS;
static const int ERR_QUANT = isa::vitcod::AE_ERR_QUANT;

// Tokens [n0, n0 + tn), head-minor: xt[n * d + f][h] = x[h, n0 + n, f], zero for h >= Hin.
inline void load_tile(const int8_t* x, int64_t x_hs, int64_t x_ns, int64_t n0, int tn, int Hin, int d,
                      data_t xt[TN * MAX_D][CW]) {
    const int kw = ((Hin + LANES - 1) / LANES) * LANES;
AE_LOAD:
    for (int h = 0; h < kw; ++h) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 16
        for (int t = 0; t < tn * d; ++t) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 4096
#pragma HLS PIPELINE II = 1
            const int n = t / d;
            const int f = t - n * d;
            xt[t][h] = (h < Hin) ? data_t(x[h * x_hs + (n0 + n) * x_ns + f]) : data_t(0);
        }
    }
    VITACCEL_PERF(perf::add(perf::AE_BYTES_IN, (int64_t)Hin * tn * d));
}

// yt[c][n * d + f] = requantize(b[c] + sum_h W[c][h] xt[n * d + f][h]). Returns the cycles.
inline int64_t mix_tile(const data_t xt[TN * MAX_D][CW], const data_t wb[MAX_H][CW], const acc_t bb[MAX_H], mult_t m,
                        shift_t s, int Hin, int C, int tn, int d, data_t yt[MAX_H][TN * MAX_D]) {
    const int kh = (Hin + LANES - 1) / LANES;
    const int per_c = tn * d;
    const int rounds = (C * per_c + LINES - 1) / LINES;
    accreg_t acc[LINES];
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 1
    int64_t iters = 0;
    int r = 0, j = 0;
AE_MIX:
    for (int it = 0; it < rounds * kh; ++it) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 768
#pragma HLS PIPELINE II = 1
        VITACCEL_PERF(++iters);
        for (int l = 0; l < LINES; ++l) {
#pragma HLS UNROLL
            const int u = r * LINES + l;
            if (u < C * per_c) {
                const int c = u / per_c;
                const int w = u - c * per_c;
                const mac_sum_t dot = dot_int8<LANES>(&wb[c][j * LANES], xt[w] + j * LANES);
                // |b| < 2^30 and at most MAX_HEADS products of 2^14: exact in int32.
                acc[l] = acc_plus((j == 0) ? accreg_t(bb[c]) : acc[l], dot);
                if (j == kh - 1) yt[c][w] = requantize(acc[l], m, s);
            }
        }
        if (++j == kh) {
            j = 0;
            ++r;
        }
    }
    return iters + vitcod_sched::PIPE_MIX;
}

inline void store_tile(const data_t yt[MAX_H][TN * MAX_D], int8_t* y, int64_t y_hs, int64_t y_ns, int64_t n0, int tn,
                       int C, int d) {
AE_STORE:
    for (int t = 0; t < C * tn * d; ++t) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 49152
#pragma HLS PIPELINE II = 1
        const int c = t / (tn * d);
        const int w = t - c * tn * d;
        const int n = w / d;
        const int f = w - n * d;
        y[c * y_hs + (n0 + n) * y_ns + f] = int8_t(yt[c][w].to_int());
    }
    VITACCEL_PERF(perf::add(perf::AE_BYTES_OUT, (int64_t)C * tn * d));
}

// A mix's weights (C x H_in, row-major, zero-padded to CW heads) and biases into registers.
inline void load_weights(const int8_t* w, const int32_t* b, int Hin, int C, data_t wb[MAX_H][CW], acc_t bb[MAX_H]) {
AE_LOAD_W:
    for (int t = 0; t < C * CW; ++t) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 192
#pragma HLS PIPELINE II = 1
        const int c = t / CW;
        const int h = t - c * CW;
        wb[c][h] = (h < Hin) ? data_t(w[c * Hin + h]) : data_t(0);
    }
AE_LOAD_B:
    for (int c = 0; c < C; ++c) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 12
#pragma HLS PIPELINE II = 1
        bb[c] = b[c];
    }
    VITACCEL_PERF(perf::add(perf::AE_CALLS, 1); perf::add(perf::AE_BYTES_IN, (int64_t)C * Hin + 4 * (int64_t)C));
}

// y (C heads) = mix of x (H_in heads). Element (h, n, f) of x is at x[h * x_hs + n * x_ns + f], element
// (c, n, f) of y at y[c * y_hs + n * y_ns + f] (strides in bytes: the encoder reads Q or K straight
// out of the qkv GEMM's (N, 3D) output). w is (C, H_in) row-major, b (C,).
inline int ae_mix(const int8_t* x, int64_t x_hs, int64_t x_ns, const int8_t* w, const int32_t* b, int32_t mult,
                  int32_t shift, int8_t* y, int64_t y_hs, int64_t y_ns, int Hin, int C, int N, int d) {
    if (Hin < 1 || Hin > MAX_H || C < 1 || C > MAX_H || N < 1 || N > cfg::MAX_TOKENS || d < 1 || d > MAX_D)
        return ERR_DIMS;
    if (mult < 0 || shift < 0 || shift > 63) return ERR_QUANT;
    static data_t xt[TN * MAX_D][CW];
#pragma HLS ARRAY_PARTITION variable = xt cyclic factor = LINES dim = 1
#pragma HLS ARRAY_PARTITION variable = xt complete dim = 2
    static data_t yt[MAX_H][TN * MAX_D];
#pragma HLS ARRAY_PARTITION variable = yt cyclic factor = LINES dim = 2
    // The weights are tiny (C x H_in bytes): registers.
    data_t wb[MAX_H][CW];
#pragma HLS ARRAY_PARTITION variable = wb complete dim = 0
    acc_t bb[MAX_H];
#pragma HLS ARRAY_PARTITION variable = bb complete dim = 1
    load_weights(w, b, Hin, C, wb, bb);
AE_TILES:
    for (int n0 = 0; n0 < N; n0 += TN) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 4
        const int tn = (N - n0 < TN) ? N - n0 : TN;
        load_tile(x, x_hs, x_ns, n0, tn, Hin, d, xt);
        const int64_t t_mix = mix_tile(xt, wb, bb, mult_t(mult), shift_t(shift), Hin, C, tn, d, yt);
        VITACCEL_PERF(perf::add(perf::AE_COMPUTE, t_mix));
        (void)t_mix;
        store_tile(yt, y, y_hs, y_ns, n0, tn, C, d);
    }
    return OK;
}

}  // namespace ae
}  // namespace vitaccel

#endif  // VITACCEL_KERNELS_AUTOENCODER_H
