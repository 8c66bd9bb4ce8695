// Encoder / decoder engines of the ViTCoD auto-encoder: mix the head axis with a small int8 matrix.
//
// Bits: KERNELS.md "Auto-encoder": at every token n and feature f,
//     y[c, n, f] = requantize( sum_h W[c, h] * x[h, n, f] + b[c],  mult, shift )      c < C
// with one (mult, shift) per tensor. The encoder is this with (C, H_in) = (Hc, H), the decoder with
// (H, Hc); the golden model is vitaccel.sim.kernels.autoencoder.mix_heads.
//
// Structure (cycle model: sim/kernels/autoencoder.py encode_cycles): token by token, DATAFLOW over
//   load   the token's H_in rows of d features (strided: reads the qkv GEMM output in place),
//   mix    AE_LINES lines, one output head per line, MACS_PER_LINE features per cycle, one input head
//          per cycle: C * H_in * d / (AE_LINES * MACS_PER_LINE) cycles per token,
//   store  bias + requantise, one byte per cycle.
// The decoder used by the attention kernel is the same arithmetic specialised to one output head
// (attention.h, decode_head); this engine is the stand-alone encoder that runs after the qkv GEMM.
#ifndef VITACCEL_KERNELS_AUTOENCODER_H
#define VITACCEL_KERNELS_AUTOENCODER_H

#include <stdint.h>

#include "vitaccel_config.h"
#include "vitaccel_numerics.h"

namespace vitaccel {
namespace ae {

static const int LANES = cfg::MACS_PER_LINE;
static const int MAX_H = cfg::MAX_HEADS;
static const int MAX_D = cfg::MAX_HEAD_DIM;
// ae_lines == 0 in a config means "the encoder borrows all the lines" (sim: `cfg.ae_lines or
// cfg.mac_lines`); more lines than output heads would idle.
static const int AE_L0 = cfg::AE_LINES > 0 ? cfg::AE_LINES : cfg::MAC_LINES;
static const int AE_L = AE_L0 < MAX_H ? AE_L0 : MAX_H;
static const int CPD_MAX = (MAX_D + LANES - 1) / LANES;

static_assert(MAX_D % LANES == 0, "MAX_HEAD_DIM must be a multiple of MACS_PER_LINE");

static const int OK = 0;
static const int ERR_DIMS = 0x201;   // H_in, C, N or d out of [1, MAX_*]
static const int ERR_QUANT = 0x202;  // multiplier or shift out of range

// One token: x[h, n, 0..d) for h < H_in.
inline void load_token(const int8_t* x, int64_t x_hs, int64_t x_ns, int64_t n, int Hin, int d,
                       data_t xrow[MAX_H][MAX_D]) {
AE_LOAD:
    for (int t = 0; t < Hin * d; ++t) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 768
#pragma HLS PIPELINE II = 1
        const int h = t / d;
        const int f = t - h * d;
        xrow[h][f] = x[h * x_hs + n * x_ns + f];
    }
}

// acc[c, f] = b[c] + sum_h W[c, h] * x[h, f]: AE_L output heads x LANES features per cycle.
inline void mix_token(const data_t xrow[MAX_H][MAX_D], const data_t wb[MAX_H][MAX_H], const acc_t bb[MAX_H],
                      int Hin, int C, int d, acc_t orow[MAX_H][MAX_D]) {
    const int cpd = (d + LANES - 1) / LANES;
    const int cgroups = (C + AE_L - 1) / AE_L;
    acc_t acc[AE_L][LANES];
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 0
    const int steps = cgroups * cpd * Hin;
    int cg = 0, ch = 0, h = 0;
AE_MIX:
    for (int t = 0; t < steps; ++t) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 96
#pragma HLS PIPELINE II = 1
        for (int l = 0; l < AE_L; ++l) {
#pragma HLS UNROLL
            const int c = cg * AE_L + l;
            const data_t wv = (c < C) ? wb[c][h] : data_t(0);
            for (int j = 0; j < LANES; ++j) {
#pragma HLS UNROLL
                const int f = ch * LANES + j;
                const data_t xv = (f < d) ? xrow[h][f] : data_t(0);
                const acc_t base = (h == 0) ? ((c < C) ? bb[c] : acc_t(0)) : acc[l][j];
                acc[l][j] = base + xv * wv;
                // |b| < 2^30 and at most MAX_HEADS products of 2^14: exact in int32.
                if (h == Hin - 1 && c < C && f < d) orow[c][f] = acc[l][j];
            }
        }
        if (h == Hin - 1) {
            h = 0;
            if (ch == cpd - 1) {
                ch = 0;
                ++cg;
            } else {
                ++ch;
            }
        } else {
            ++h;
        }
    }
}

inline void store_token(const acc_t orow[MAX_H][MAX_D], mult_t m, shift_t s, int8_t* y, int64_t y_hs,
                        int64_t y_ns, int64_t n, int C, int d) {
AE_STORE:
    for (int t = 0; t < C * d; ++t) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 768
#pragma HLS PIPELINE II = 1
        const int c = t / d;
        const int f = t - c * d;
        y[c * y_hs + n * y_ns + f] = int8_t(requantize(orow[c][f], m, s).to_int());
    }
}

inline void token_step(const int8_t* x, int64_t x_hs, int64_t x_ns, const data_t wb[MAX_H][MAX_H],
                       const acc_t bb[MAX_H], mult_t m, shift_t s, int8_t* y, int64_t y_hs, int64_t y_ns,
                       int64_t n, int Hin, int C, int d) {
#pragma HLS DATAFLOW
    data_t xrow[MAX_H][MAX_D];
#pragma HLS ARRAY_PARTITION variable = xrow cyclic factor = LANES dim = 2
    acc_t orow[MAX_H][MAX_D];
#pragma HLS ARRAY_PARTITION variable = orow cyclic factor = AE_L dim = 1
#pragma HLS ARRAY_PARTITION variable = orow cyclic factor = LANES dim = 2
    load_token(x, x_hs, x_ns, n, Hin, d, xrow);
    mix_token(xrow, wb, bb, Hin, C, d, orow);
    store_token(orow, m, s, y, y_hs, y_ns, n, C, d);
}

// y (C heads) = mix of x (H_in heads). Element (h, n, f) of x is at x[h * x_hs + n * x_ns + f], element
// (c, n, f) of y at y[c * y_hs + n * y_ns + f] (strides in bytes: the encoder reads Q or K straight
// out of the qkv GEMM's (N, 3D) output). w is (C, H_in) row-major, b (C,).
inline int ae_mix(const int8_t* x, int64_t x_hs, int64_t x_ns, const int8_t* w, const int32_t* b, int32_t mult,
                  int32_t shift, int8_t* y, int64_t y_hs, int64_t y_ns, int Hin, int C, int N, int d) {
    if (Hin < 1 || Hin > MAX_H || C < 1 || C > MAX_H || N < 1 || N > cfg::MAX_TOKENS || d < 1 || d > MAX_D)
        return ERR_DIMS;
    if (mult < 0 || shift < 0 || shift > 63) return ERR_QUANT;
    // The weights are tiny (H x Hc bytes): registers.
    data_t wb[MAX_H][MAX_H];
#pragma HLS ARRAY_PARTITION variable = wb complete dim = 0
    acc_t bb[MAX_H];
#pragma HLS ARRAY_PARTITION variable = bb complete dim = 1
AE_LOAD_W:
    for (int t = 0; t < C * Hin; ++t) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 144
#pragma HLS PIPELINE II = 1
        const int c = t / Hin;
        wb[c][t - c * Hin] = w[t];
    }
AE_LOAD_B:
    for (int c = 0; c < C; ++c) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 12
#pragma HLS PIPELINE II = 1
        bb[c] = b[c];
    }
AE_TOKENS:
    for (int n = 0; n < N; ++n) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
        token_step(x, x_hs, x_ns, wb, bb, mult_t(mult), shift_t(shift), y, y_hs, y_ns, n, Hin, C, d);
    }
    return OK;
}

}  // namespace ae
}  // namespace vitaccel

#endif  // VITACCEL_KERNELS_AUTOENCODER_H
