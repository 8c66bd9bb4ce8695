// GEMM mode of the MAC lines (qkv, proj, fc1, fc2): y = requantize(x . w^T + b, mult[o], shift[o]).
//
// Bits: KERNELS.md "GEMM mode" with the arithmetic of NUMERICS.md; the golden model is
// vitaccel.sim.common.gemm.gemm. Every sum is exact in int32, so the tiling below never changes a bit.
//
// Structure (the cycle model, vitaccel/sim/common/gemm.py gemm_tiles / gemm_cycles, follows the same
// nest with the same tile sizes; tests/test_cycle_model_vs_hls.py compares it with the counters):
//
//   for each weight tile (To output rows, with their bias / multiplier / shift)
//     for each activation tile (Tm rows; one tile, loaded once, when x fits half the Q/K/S/V buffer)
//       for each K slice (only when one weight row does not fit a line's share of the weight buffer)
//         DATAFLOW { compute: MAC_LINES lines x MACS_PER_LINE MACs, one chunk of K per cycle:
//                             mh * Rt * cn iterations (II 1) + PIPE_DOT, Rt = ceil(ow / MAC_LINES) the
//                             line groups the tile fills (R, except in a short last tile)
//                    store:   bias + requantise + write y, one line group (MAC_LINES outputs, one
//                             requantiser per line) per cycle, last slice only: + PIPE_RQ after the
//                             last group, since a group takes cn >= 1 cycles to compute }
//
// MAC line l owns the tile's output rows l, l + MAC_LINES, ... and holds their weights in its own bank
// (wbuf[l]); the activation chunk is broadcast to every line. A line computes one output at a time:
// ceil(K / MACS_PER_LINE) cycles per output, MAC_LINES outputs in parallel.
//
// Tiles. The weight buffer's half (the other half is the double buffer) is split evenly over the lines:
// WLINE words of MACS_PER_LINE bytes per line. A tile gives each line R = WLINE / ceil(K / MACS_PER_LINE)
// rows (To = R * MAC_LINES, at most O). When a row is longer than a line's share (K > WLINE *
// MACS_PER_LINE: 512 bytes on the paper config, so every DeiT-Base GEMM) K is cut into slices of WLINE
// chunks, R = 1, and the partial sums of the activation tile wait in `psum` (int32, in the output
// buffer) between slices; the weight slices are then reloaded for every activation tile. The activation
// tile holds as many whole rows as fit half the Q/K/S/V buffer. The constants (12 bytes per output) sit
// in their own registers, not in the weight buffer.
//
// Off-chip traffic is counted in bytes by the perf counters (perf.h); its cycles are the DRAM model's.
// Synthesis notes: x, w, y, bias, mult, shift are m_axi pointers in the tops that call gemm_layer; the
// loads are sequential byte loops, which Vitis can widen to AXI_BITS-wide bursts when the build sets
// the m_axi max_widen_bitwidth (not set in the pragmas: it must be a literal). Weight-tile double
// buffering (load of the next tile under the current one's compute), which the cycle model assumes for
// its data part, is not written out here.
#ifndef VITACCEL_KERNELS_GEMM_H
#define VITACCEL_KERNELS_GEMM_H

#include <stdint.h>

#include <hls_stream.h>

#include "vitaccel_config.h"
#include "vitaccel_numerics.h"
#include "isa/common_isa.h"
#include "perf.h"
#include "schedule.h"

namespace vitaccel {
namespace gemm {

// The status codes come from the generated ISA table (hls/include/isa/common_isa.h, vitaccel/sim/isa.py).
static const int OK = isa::OK;
static const int ERR_DIMS = isa::GEMM_ERR_DIMS;
static const int ERR_K_TOO_LONG = isa::GEMM_ERR_K_TOO_LONG;
static const int ERR_MULT = isa::GEMM_ERR_MULT;
static const int ERR_SHIFT = isa::GEMM_ERR_SHIFT;

// One GEMM engine on the MAC array ARRAY describes (hls4ml's config-struct idiom: each accelerator's config
// header defines cfg::GemmArray, so one GEMM serves every top): ARRAY::LINES lines of ARRAY::LANES MACs,
// tiling by ARRAY::WEIGHT_BYTES of weight buffer and ARRAY::ACT_BYTES of activation buffer.
template <class ARRAY>
struct Gemm {
    static const int LINES = ARRAY::LINES;
    static const int LANES = ARRAY::LANES;
    // Half of each buffer: the other half is the double buffer the cycle model assumes.
    static const int W_HALF = ARRAY::WEIGHT_BYTES / 2;
    static const int A_HALF = ARRAY::ACT_BYTES / 2;
    // Words (MACS_PER_LINE bytes each) of weights per line.
    static const int WLINE = W_HALF / (LINES * LANES);
    // Words of activations in the activation tile.
    static const int XWORDS = A_HALF / LANES;
    // Longest K: one activation row must fit the activation tile.
    static const int MAX_K = XWORDS * LANES;
    // Rows of partial sums: only used when K is sliced, i.e. ceil(K / LANES) > WLINE, so Tm < XWORDS / WLINE.
    static const int PS_ROWS = XWORDS / WLINE;
    // Most output rows a line holds in one tile (K <= LANES).
    static const int RMAX = WLINE;

    static_assert(WLINE >= 1, "the weight buffer must give every MAC line at least one word");
    static_assert(XWORDS >= 1 && PS_ROWS >= 1, "the Q/K/S/V buffer is too small for a GEMM activation tile");

    // The tile shape for one GEMM, fixed before the first load.
    struct Plan {
        int KC;   // chunks of LANES bytes per row: ceil(K / LANES)
        int KS;   // chunks per K slice (== KC unless sliced)
        int NKS;  // number of K slices
        int R;    // output rows per line per weight tile
        int To;   // output rows per weight tile (R * LINES, at most O)
        int Tm;   // activation rows per activation tile
    };

    static Plan plan_tiles(int M, int K, int O) {
        Plan p;
        p.KC = (K + LANES - 1) / LANES;
        p.KS = p.KC < WLINE ? p.KC : WLINE;
        p.NKS = (p.KC + p.KS - 1) / p.KS;
        const int groups = (O + LINES - 1) / LINES;  // rows per line needed for all of O
        int r = (p.NKS == 1) ? WLINE / p.KC : 1;
        if (r > groups) r = groups;
        p.R = r;
        p.To = (r * LINES < O) ? r * LINES : O;
        const int tm = XWORDS / p.KC;
        p.Tm = tm < M ? tm : M;
        return p;
    }

    // R groups of LINES accumulators, one per output row of the line group, for one activation row.
    struct OutGroup {
        acc_t v[LINES];
    };

    // Activation rows [m0, m0 + mh) into xbuf: row m at words m * KC .. m * KC + KC - 1, zero-padded past K.
    static void load_x_tile(const int8_t* x, int64_t m0, int mh, int K, int KC, data_t xbuf[XWORDS][LANES]) {
    GEMM_LOAD_X_ROWS:
        for (int m = 0; m < mh; ++m) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
        GEMM_LOAD_X_K:
            for (int k = 0; k < KC * LANES; ++k) {
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 3072
#pragma HLS PIPELINE II = 1
                const int8_t v = (k < K) ? x[(m0 + m) * K + k] : int8_t(0);
                xbuf[m * KC + k / LANES][k % LANES] = v;
            }
        }
        VITACCEL_PERF(perf::add(perf::GEMM_BYTES_IN, (int64_t)mh * K));
    }

    // Weight rows [o0, o0 + ow), chunks [c0, c0 + cn) of the slice: row r to line r % LINES, word
    // (r / LINES) * KS + c. Zero past K.
    static void load_w_slice(const int8_t* w, int64_t o0, int ow, int K, int c0, int cn, int KS,
                             data_t wbuf[LINES][WLINE][LANES]) {
    GEMM_LOAD_W_ROWS:
        for (int r = 0; r < ow; ++r) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 4096
        GEMM_LOAD_W_K:
            for (int k = 0; k < cn * LANES; ++k) {
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 512
#pragma HLS PIPELINE II = 1
                const int kk = c0 * LANES + k;
                const int8_t v = (kk < K) ? w[(o0 + r) * K + kk] : int8_t(0);
                wbuf[r % LINES][(r / LINES) * KS + k / LANES][k % LANES] = v;
            }
        }
        const int k_end = (c0 + cn) * LANES < K ? (c0 + cn) * LANES : K;
        VITACCEL_PERF(perf::add(perf::GEMM_BYTES_IN, (int64_t)ow * (k_end - c0 * LANES)));
        (void)k_end;
    }

    // Bias, multiplier and shift of the tile's outputs, laid out like the weight rows. Checks the ranges
    // NUMERICS.md allows, because ap_uint would silently wrap a negative multiplier.
    static int load_consts(const int32_t* bias, const int32_t* mult, const int32_t* shift, int64_t o0, int ow,
                           acc_t cb[LINES][RMAX], mult_t cm[LINES][RMAX], shift_t cs[LINES][RMAX]) {
        int status = OK;
    GEMM_LOAD_CONSTS:
        for (int r = 0; r < ow; ++r) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 4096
#pragma HLS PIPELINE II = 1
            const int32_t b = bias[o0 + r];
            const int32_t m = mult[o0 + r];
            const int32_t s = shift[o0 + r];
            if (m < 0) status = ERR_MULT;
            if (s < 0 || s > 63) status = ERR_SHIFT;
            cb[r % LINES][r / LINES] = b;
            cm[r % LINES][r / LINES] = mult_t(m < 0 ? 0 : m);
            cs[r % LINES][r / LINES] = shift_t((s < 0 || s > 63) ? 0 : s);
        }
        VITACCEL_PERF(perf::add(perf::GEMM_BYTES_IN, 12 * (int64_t)ow));
        return status;
    }

    // One K slice of one (weight tile, activation tile): every line accumulates cn chunks for each of its R
    // rows and each activation row. first: start from 0 (else from psum); last: emit the sums to the store
    // stage (else park them in psum).
    static void compute_slice(const data_t xbuf[XWORDS][LANES], const data_t wbuf[LINES][WLINE][LANES],
                              acc_t psum[PS_ROWS][LINES], int mh, int R, int KC, int KS, int c0, int cn, bool first,
                              bool last, hls::stream<OutGroup>& out, int64_t* iters) {
        accreg_t acc[LINES];
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 1
        const int steps = mh * R * cn;
        int m = 0, rr = 0, c = 0;
    GEMM_MAC:
        for (int t = 0; t < steps; ++t) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 65536
#pragma HLS PIPELINE II = 1
    // psum[m] is read at the first chunk of row m and written at its last: distinct rows never overlap.
#pragma HLS DEPENDENCE variable = psum inter false
            VITACCEL_PERF(++*iters);
            data_t xv[LANES];
#pragma HLS ARRAY_PARTITION variable = xv complete dim = 1
            for (int j = 0; j < LANES; ++j) {
#pragma HLS UNROLL
                xv[j] = xbuf[m * KC + c0 + c][j];
            }
            for (int l = 0; l < LINES; ++l) {
#pragma HLS UNROLL
                // The line's adder tree: LANES int8 x int8 products, exact.
                const mac_sum_t dot = dot_int8<LANES>(xv, wbuf[l][rr * KS + c]);
                const accreg_t base = (c == 0) ? (first ? accreg_t(0) : accreg_t(psum[m][l])) : acc[l];
                acc[l] = acc_plus(base, dot);
            }
            if (c == cn - 1) {
                if (last) {
                    OutGroup g;
                    for (int l = 0; l < LINES; ++l) {
#pragma HLS UNROLL
                        g.v[l] = acc[l];
                    }
                    out.write(g);
                } else {
                    for (int l = 0; l < LINES; ++l) {
#pragma HLS UNROLL
                        psum[m][l] = acc[l];
                    }
                }
            }
            // Counters instead of div/mod: c fastest, then the line group rr, then the activation row m.
            if (c == cn - 1) {
                c = 0;
                if (rr == R - 1) {
                    rr = 0;
                    ++m;
                } else {
                    ++rr;
                }
            } else {
                ++c;
            }
        }
    }

    // Bias, requantisation and the write to y for every group compute_slice emitted (none unless last): one
    // group per cycle, MAC_LINES requantisers (one per line). Returns the iterations.
    static int64_t store_tile(hls::stream<OutGroup>& in, const acc_t cb[LINES][RMAX], const mult_t cm[LINES][RMAX],
                              const shift_t cs[LINES][RMAX], int8_t* y, int64_t m0, int mh, int64_t o0, int ow, int R,
                              int64_t ldy, bool y_off_chip, bool last) {
        const int steps = last ? mh * R : 0;
        int64_t iters = 0;
        int m = 0, rr = 0;
    GEMM_STORE:
        for (int t = 0; t < steps; ++t) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 4096
#pragma HLS PIPELINE II = 1
            VITACCEL_PERF(++iters);
            const OutGroup g = in.read();
            for (int l = 0; l < LINES; ++l) {
#pragma HLS UNROLL
                const int o = rr * LINES + l;
                if (o < ow) {
                    const acc_t a = g.v[l] + cb[l][rr];  // |sum| <= 2^30 and |bias| < 2^30 (NUMERICS.md)
                    y[(m0 + m) * ldy + o0 + o] = int8_t(requantize(a, cm[l][rr], cs[l][rr]).to_int());
                }
            }
            if (rr == R - 1) {
                rr = 0;
                ++m;
            } else {
                ++rr;
            }
        }
        const int64_t written = (last && y_off_chip) ? (int64_t)mh * ow : 0;
        VITACCEL_PERF(perf::add(perf::GEMM_BYTES_OUT, written));
        (void)written;
        return iters;
    }

    // Compute and store overlap: the store drains a group while the lines work on the next one. Returns the
    // cycles of the DATAFLOW region: the MAC nest, its depth, and the store's depth after the last group
    // (a group takes cn >= 1 cycles to compute and one to store, so the store never falls behind).
    static int64_t run_slice(const data_t xbuf[XWORDS][LANES], const data_t wbuf[LINES][WLINE][LANES],
                             acc_t psum[PS_ROWS][LINES], const acc_t cb[LINES][RMAX], const mult_t cm[LINES][RMAX],
                             const shift_t cs[LINES][RMAX], int8_t* y, int64_t m0, int mh, int64_t o0, int ow, int R,
                             int KC, int KS, int c0, int cn, bool first, bool last, int64_t ldy, bool y_off_chip) {
#pragma HLS DATAFLOW
        // (hls::stream<T, N> would be the Vitis spelling; the g++ model in hls/include/csim does not convert
        // it to hls::stream<T>&, so the depth is given by pragma.)
        hls::stream<OutGroup> groups("gemm_groups");
#pragma HLS STREAM variable = groups depth = 4
        int64_t mac = 0;
        compute_slice(xbuf, wbuf, psum, mh, R, KC, KS, c0, cn, first, last, groups, &mac);
        const int64_t st = store_tile(groups, cb, cm, cs, y, m0, mh, o0, ow, R, ldy, y_off_chip, last);
        VITACCEL_PERF(perf::add(perf::GEMM_MAC_ITERS, mac));
        (void)st;
        return mac + sched::pipe_dot(LANES) + (last ? sched::PIPE_RQ : 0);
    }

    // y (M, O) = requantize(x (M, K) . w (O, K)^T + bias, mult, shift), x and w row-major, row m of y at
    // y + m * ldy (ldy = O unless the output is a column slice of a wider tensor: the fused qkv+AE op writes
    // the V third of its (M, 3D) output, and the Q and K thirds into an on-chip stage, y_off_chip = false,
    // whose bytes are not DRAM traffic). Returns a status code; on an error the outputs written so far are
    // left as they are.
    static int gemm_layer(const int8_t* x, const int8_t* w, const int32_t* bias, const int32_t* mult,
                          const int32_t* shift, int8_t* y, int M, int K, int O) {
        return gemm_layer(x, w, bias, mult, shift, y, M, K, O, O, true);
    }
    static int gemm_layer(const int8_t* x, const int8_t* w, const int32_t* bias, const int32_t* mult,
                          const int32_t* shift, int8_t* y, int M, int K, int O, int64_t ldy, bool y_off_chip) {
        // Static: one copy in hardware (BRAM), and off the stack in C-simulation.
        static data_t xbuf[XWORDS][LANES];
#pragma HLS ARRAY_PARTITION variable = xbuf complete dim = 2
        static data_t wbuf[LINES][WLINE][LANES];
#pragma HLS ARRAY_PARTITION variable = wbuf complete dim = 1
#pragma HLS ARRAY_PARTITION variable = wbuf complete dim = 3
        static acc_t psum[PS_ROWS][LINES];
#pragma HLS ARRAY_PARTITION variable = psum complete dim = 2
        static acc_t cb[LINES][RMAX];
        static mult_t cm[LINES][RMAX];
        static shift_t cs[LINES][RMAX];
#pragma HLS ARRAY_PARTITION variable = cb complete dim = 1
#pragma HLS ARRAY_PARTITION variable = cm complete dim = 1
#pragma HLS ARRAY_PARTITION variable = cs complete dim = 1

        if (M < 1 || K < 1 || O < 1) return ERR_DIMS;
        if (K > MAX_K) return ERR_K_TOO_LONG;
        const Plan p = plan_tiles(M, K, O);
        const bool resident = p.Tm >= M;
        bool x_loaded = false;
        VITACCEL_PERF(perf::add(perf::GEMM_CALLS, 1));

    GEMM_O_TILES:
        for (int o0 = 0; o0 < O; o0 += p.To) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 72
            const int ow = (O - o0 < p.To) ? O - o0 : p.To;
            const int st = load_consts(bias, mult, shift, o0, ow, cb, cm, cs);
            if (st != OK) return st;
            if (p.NKS == 1) load_w_slice(w, o0, ow, K, 0, p.KC, p.KS, wbuf);
        GEMM_M_TILES:
            for (int m0 = 0; m0 < M; m0 += p.Tm) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 4
                const int mh = (M - m0 < p.Tm) ? M - m0 : p.Tm;
                if (!resident || !x_loaded) {
                    load_x_tile(x, m0, mh, K, p.KC, xbuf);
                    x_loaded = true;
                }
            GEMM_K_SLICES:
                for (int s = 0; s < p.NKS; ++s) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 6
                    const int c0 = s * p.KS;
                    const int cn = (p.KC - c0 < p.KS) ? p.KC - c0 : p.KS;
                    if (p.NKS > 1) load_w_slice(w, o0, ow, K, c0, cn, p.KS, wbuf);
                    // A short last tile (ow < To) runs only the line groups it fills.
                    const int rt = (ow + LINES - 1) / LINES;
                    const int64_t t = run_slice(xbuf, wbuf, psum, cb, cm, cs, y, m0, mh, o0, ow, rt, p.KC, p.KS, c0,
                                                cn, s == 0, s == p.NKS - 1, ldy, y_off_chip);
                    VITACCEL_PERF(perf::add(perf::GEMM_COMPUTE, t));
                    (void)t;
                }
            }
        }
        return OK;
    }
};  // struct Gemm

}  // namespace gemm
}  // namespace vitaccel

#endif  // VITACCEL_KERNELS_GEMM_H
