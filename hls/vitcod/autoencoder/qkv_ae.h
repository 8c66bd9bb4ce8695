// The qkv projection with the AE encoder on its output stage (OP_QKV_AE): compressed Q and K go to DRAM,
// the full Q and K never do.
//
// Bits: those of OP_GEMM followed by two OP_AE_MIX (KERNELS.md "Auto-encoder"): with q8 / k8 the int8 Q / K
// thirds of requantize(x . w^T + bias), for every row r = img * N + n and feature f < d,
//     qc[img][c][n][f] = requantize(eq_b[c] + sum_h eq_w[c][h] * q8[r][h * d + f], eq_m, eq_s)     c < Hc
// (kc likewise with the k encoder), and V = the last third, written to y (row stride 3D) as OP_GEMM would.
//
// Schedule. The encoder mixes heads, so it needs every head of a token; the GEMM produces a token's heads
// in different weight tiles. So Q (then K) of a chunk of rows is computed into an on-chip stage (the part
// of the output buffer the GEMM's partial sums do not use: STAGE_BYTES), then encoded from it:
//   for each chunk of SR = STAGE_BYTES / D rows (the whole batch when it fits: the weights load once)
//     GEMM of the chunk against the Q weights (rows [0, D)) into the stage     (gemm.h, y on chip)
//     encode the stage: every MAC line one output (c, m, f) at a time over the H heads:
//       ceil(Hc mc d / L) * ceil(H / M) iterations + PIPE_MIX, then store the chunk's qc rows
//     the same for K (rows [D, 2D)) into kc
// or, with `together` (descriptor word stage_qk = 1), SR = STAGE_BYTES / 2D rows per chunk, one GEMM over
// the Q and K weights (rows [0, 2D)) into the stage, then the two encoders. Together wastes no line group
// when D is not a multiple of the MAC lines (D = 96 on 64 lines: 2 + 2 groups apart, 3 together); apart
// stages twice the rows (fewer chunks, fewer weight reloads).
//   GEMM of all M rows against the V weights (rows [2D, 3D)) into y's last third      (gemm.h)
// The stage is banked by head (a line reads M heads of one (m, f) per cycle). When the batch does not fit
// one chunk, the Q and K weights are reloaded per chunk: the cycle model
// (vitaccel/sim/vitcod/autoencoder.py qkv_ae_cycles) charges that, and the host compiler
// (host/vitcod/program.py) falls back to OP_GEMM + OP_AE_MIX when that is predicted cheaper.
#ifndef VITACCEL_KERNELS_QKV_AE_H
#define VITACCEL_KERNELS_QKV_AE_H

#include <stdint.h>

#include "autoencoder.h"
#include "gemm/gemm.h"

namespace vitaccel {
namespace qkv_ae {

typedef gemm::Gemm<cfg::GemmArray> G;
static const int LINES = ae::LINES;
static const int LANES = ae::LANES;
// The output buffer less the GEMM's partial sums (int32, PS_ROWS x LINES).
static const int STAGE_BYTES = cfg::OUTPUT_BUFFER_BYTES - G::PS_ROWS * G::LINES * 4;
static_assert(STAGE_BYTES >= cfg::MAX_EMBED_DIM, "the output buffer must stage at least one row of Q");

// Rows per chunk for embedding width D (0 when a row does not fit: refused by the top).
inline int stage_rows(int D) { return STAGE_BYTES / D; }

// Encode the staged rows [0, mc) (global rows r0 + m) of one of Q / K: out element (img, c, n, f) at
// out + img * (Hc N d) + c * (N d) + n * d + f. Returns the mix cycles.
inline int64_t encode_stage(const int8_t stage[STAGE_BYTES], int ld, int col0, int mc, int64_t r0, int H, int d,
                            int Hc, int N,
                            const data_t wb[ae::MAX_H][ae::CW], const acc_t bb[ae::MAX_H], mult_t m, shift_t s,
                            int8_t* out) {
    const int kh = (H + LANES - 1) / LANES;
    const int per_c = mc * d;
    const int rounds = (Hc * per_c + LINES - 1) / LINES;
    accreg_t acc[LINES];
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 1
    int64_t iters = 0;
    int r = 0, j = 0;
QKV_AE_MIX:
    for (int it = 0; it < rounds * kh; ++it) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 768
#pragma HLS PIPELINE II = 1
        VITACCEL_PERF(++iters);
        for (int l = 0; l < LINES; ++l) {
#pragma HLS UNROLL
            const int u = r * LINES + l;
            if (u < Hc * per_c) {
                const int c = u / per_c;
                const int w = u - c * per_c;
                const int mm = w / d;
                const int f = w - mm * d;
                mac_sum_t dot = 0;
                for (int x = 0; x < LANES; ++x) {
#pragma HLS UNROLL
                    const int h = j * LANES + x;
                    if (h < H) dot += mul_small(wb[c][h], data_t(stage[mm * ld + col0 + h * d + f]));
                }
                // |b| < 2^30 and at most MAX_HEADS products of 2^14: exact in int32.
                acc[l] = acc_plus((j == 0) ? accreg_t(bb[c]) : acc[l], dot);
                if (j == kh - 1) {
                    const int64_t row = r0 + mm;
                    const int64_t img = row / N, n = row - img * N;
                    out[img * ((int64_t)Hc * N * d) + (int64_t)c * N * d + n * d + f] =
                        int8_t(requantize(acc[l], m, s).to_int());
                }
            }
        }
        if (++j == kh) {
            j = 0;
            ++r;
        }
    }
    VITACCEL_PERF(perf::add(perf::AE_BYTES_OUT, (int64_t)Hc * mc * d));
    return iters + vitcod_sched::PIPE_MIX;
}

// x (M, K), w (3D, K), bias / mult / shift (3D,); y (M, 3D) of which only the V third is written; qc, kc
// (M / N images, Hc, N, d). The top has checked every range and dimension (D = H d, N | M, Hc in [1, H], a
// staged row fits); the GEMM's per-tile constant checks still apply (gemm.h) and stop the op where they fail.
inline int qkv_ae(const int8_t* x, const int8_t* w, const int32_t* bias, const int32_t* mult, const int32_t* shift,
                  int8_t* y, int8_t* qc, int8_t* kc, const int8_t* eq_w, const int32_t* eq_b, int32_t eq_m,
                  int32_t eq_s, const int8_t* ek_w, const int32_t* ek_b, int32_t ek_m, int32_t ek_s, int M, int K,
                  int H, int d, int Hc, int N, bool together) {
    static int8_t stage[STAGE_BYTES];
#pragma HLS ARRAY_PARTITION variable = stage cyclic factor = LANES dim = 1
    data_t wq[ae::MAX_H][ae::CW], wk[ae::MAX_H][ae::CW];
#pragma HLS ARRAY_PARTITION variable = wq complete dim = 0
#pragma HLS ARRAY_PARTITION variable = wk complete dim = 0
    acc_t bq[ae::MAX_H], bk[ae::MAX_H];
#pragma HLS ARRAY_PARTITION variable = bq complete dim = 1
#pragma HLS ARRAY_PARTITION variable = bk complete dim = 1
    const int D = H * d;
    // Q and K of a chunk staged together (one GEMM over 2D outputs, half the rows per chunk) or one after
    // the other (two GEMMs over D): the host compiler picks the cheaper per layer and batch.
    const int width = together ? 2 * D : D;
    const int SR = stage_rows(width);
    ae::load_weights(eq_w, eq_b, H, Hc, wq, bq);
    ae::load_weights(ek_w, ek_b, H, Hc, wk, bk);
QKV_AE_CHUNKS:
    for (int r0 = 0; r0 < M; r0 += SR) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 8
        const int mc = (M - r0 < SR) ? M - r0 : SR;
        for (int which = 0; which < 2; ++which) {
            const int64_t o0 = (int64_t)which * D;
            if (!together || which == 0) {
                const int s = G::gemm_layer(x + (int64_t)r0 * K, w + o0 * K, bias + o0, mult + o0, shift + o0, stage,
                                            mc, K, width, width, false);
                if (s != gemm::OK) return s;
            }
            const int col0 = together ? which * D : 0;
            const int64_t t = (which == 0)
                ? encode_stage(stage, width, col0, mc, r0, H, d, Hc, N, wq, bq, mult_t(eq_m), shift_t(eq_s), qc)
                : encode_stage(stage, width, col0, mc, r0, H, d, Hc, N, wk, bk, mult_t(ek_m), shift_t(ek_s), kc);
            VITACCEL_PERF(perf::add(perf::AE_COMPUTE, t));
            (void)t;
        }
    }
    const int64_t v0 = 2 * (int64_t)D;
    return G::gemm_layer(x, w + v0 * K, bias + v0, mult + v0, shift + v0, y + v0, M, K, D, 3 * (int64_t)D, true);
}

}  // namespace qkv_ae
}  // namespace vitaccel

#endif  // VITACCEL_KERNELS_QKV_AE_H
