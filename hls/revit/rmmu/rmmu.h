// The reconfigurable matrix multiplication unit (RMMU) of reconfigurable bit-serial PEs (RBSP).
//
// Bits: KERNELS.md "ReViT accelerator"; golden model vitaccel.sim.revit.rmmu. One bit-serial pass computes
//     Y[o][c] = sum_k B[o][k] * S[c][k]            (int32 accumulator, wrapping like a 32-bit adder)
// with S the serial operand (raw int8 or a 9-bit delta, read as 10-bit two's complement) and B the broadcast
// operand (weights, queries, probabilities: up to 18 bits). Column c of the sub-array holds S[c] (a patch, a
// key, a feature), its Pc lanes take Pc elements of it per step; the broadcast row B[o] goes to every column.
//
// RBSP: each lane's offset generator recodes its serial element in radix-4 modified Booth and emits the
// non-zero digits d * 4^i, one per cycle, least significant first (sim/revit/booth.py: booth_digits); each
// digit steers a shifter (B << 2i or 2i + 1, negated for d < 0) into the column's adder tree. A step is one
// (broadcast row, chunk of Pc elements); the sub-array's columns share the broadcast bus and move in lock step,
// so a step takes max(1, the most non-zero digits of any lane of any of its columns) cycles (the
// Bit-Pragmatic / DNNsim rule without run-ahead); a lane with fewer digits idles. Distinct sub-arrays
// (column ranges, the reconfiguration) run independently. Within a sub-array the config's sync_cols decides
// how far columns are decoupled: groups of sync_cols columns share a step length (1: every column has a FIFO
// of broadcast operands and runs ahead; rmmu_cols: the whole sub-array in lock step), and a column tile
// takes as long as its slowest group.
//
// The three uses (each a serial operand set built by the delta generator, then the DRP):
//   project  S = [x_c; x_i - x_c] (MUX 1) or [x_i] (MUX 0), B = W; DRP: acc_i = Y[o][0] + bias + Y[o][i]
//   scores   S = [k_c; k_j - k_c; raw keys], B = queries;      DRP: s_oj = Y[o][0] + Y[o][j] (delta keys only)
//   output   S[f] = [v_jf - v_cf ...; raw values ...; v_cf], B[o] = [p_oj ...; rowsum_o]: the centroid term
//            enters as one more element, its broadcast value the row sum of the group's own probabilities
//            (the softmax unit's normalisation pass produces it), so no DRP is needed.
// Schedule: per column tile of a pass, one pipelined nest over (o, chunk, digit): sum of step lengths +
// PIPE_RBSP. The cycle model (rbsp_cycles) is the same sum in closed form.
#ifndef VITACCEL_REVIT_RMMU_H
#define VITACCEL_REVIT_RMMU_H

#include <stdint.h>

#include "isa/revit_isa.h"
#include "revit_perf.h"
#include "revit_schedule.h"
#include "vitaccel_config.h"

namespace vitaccel {
namespace rmmu {

// The RMMU's shape and the largest operands its buffers hold.
struct RmmuArray {
    static const int COLS = cfg::revit::RMMU_COLS;
    static const int LANES = cfg::revit::RMMU_LANES;
    static const int SYNC = cfg::revit::SYNC_COLS;
    // Serial vectors: every token of a group, its centroid and the other groups' centroids (joint rows).
    static const int MAX_C = cfg::MAX_TOKENS + 64 + 1;
    // Serial vector length: a model row, or a probability row plus its centroid element.
    static const int MAX_K = (cfg::MAX_EMBED_DIM > cfg::MAX_TOKENS + 65) ? cfg::MAX_EMBED_DIM : cfg::MAX_TOKENS + 65;
    static const int MAX_O = 3 * cfg::MAX_EMBED_DIM;
};

static const int OK = isa::OK;
static const int ERR_DIMS = isa::revit::RMMU_ERR_DIMS;
static const int ERR_OPERAND = isa::revit::RMMU_ERR_OPERAND;
// Serial operands are read as 10-bit two's complement: 5 radix-4 digits.
static const int SERIAL_BITS = 10;
static const int DIGITS = SERIAL_BITS / 2;

// Non-zero radix-4 Booth digits of v (10-bit two's complement), least significant first: pos[t], val[t].
inline int booth_nonzero(int v, int pos[DIGITS], int val[DIGITS]) {
    const unsigned u = (unsigned)v & ((1u << SERIAL_BITS) - 1);
    int n = 0, prev = 0;
    for (int i = 0; i < DIGITS; ++i) {
#pragma HLS UNROLL
        const int b0 = (u >> (2 * i)) & 1, b1 = (u >> (2 * i + 1)) & 1;
        const int d = -2 * b1 + b0 + prev;
        prev = b1;
        if (d != 0) {
            pos[n] = i;
            val[n] = d;
            ++n;
        }
    }
    return n;
}

// One shifter: d * 4^pos * b, d in {-2, -1, 1, 2}, in 32-bit two's complement.
inline uint32_t shifted(int32_t b, int pos, int d) {
    const int sh = 2 * pos + ((d == 2 || d == -2) ? 1 : 0);
    const uint32_t t = (uint32_t)b << sh;
    return d < 0 ? 0u - t : t;
}

template <class CFG>
struct Rmmu {
    static const int COLS = CFG::COLS;
    static const int LANES = CFG::LANES;

    // The operand buffers the delta generator fills (serial S, broadcast B) and the output registers Y.
    struct Buffers {
        int16_t S[CFG::MAX_C * CFG::MAX_K];
        int32_t B[CFG::MAX_O * CFG::MAX_K];
        int32_t Y[CFG::MAX_O * CFG::MAX_C];
    };
    static Buffers& bufs() {
        static Buffers b;
        return b;
    }

    // Y (O, C) = B (O, K) . S (C, K)^T on sub-arrays of `cols` columns, C / cols tiles one after another.
    // Within a tile, groups of sync_cols columns (the config's by default) share one step length; groups run ahead of each other (each
    // column has a FIFO of broadcast operands), so a tile takes its slowest group's steps. Returns the cycles
    // (also added to the counters).
    static int64_t pass(const int16_t* S, int C, int K, const int32_t* B, int O, int cols, int sync_cols, int32_t* Y) {
        static int pos[CFG::COLS][CFG::LANES][DIGITS], val[CFG::COLS][CFG::LANES][DIGITS];
        static int nz[CFG::COLS][CFG::LANES];
        const int chunks = (K + LANES - 1) / LANES;
        const int sync = (sync_cols < cols) ? sync_cols : cols;
        int64_t cycles = 0;
    RBSP_TILES:
        for (int c0 = 0; c0 < C; c0 += cols) {
            const int cw = (C - c0 < cols) ? C - c0 : cols;
            int64_t tile_steps = 0, terms = 0;
        RBSP_SYNC_GROUPS:
            for (int g0 = 0; g0 < cw; g0 += sync) {
                const int gw = (cw - g0 < sync) ? cw - g0 : sync;
                int64_t steps = 0;
            RBSP_ROWS:
                for (int o = 0; o < O; ++o) {
                    uint32_t acc[CFG::COLS];
                    for (int c = 0; c < gw; ++c) acc[c] = 0;
                RBSP_CHUNKS:
                    for (int kc = 0; kc < chunks; ++kc) {
                        // Offset generators of every lane (they run one step ahead of the shifters).
                        int len = 1;
                        for (int c = 0; c < gw; ++c) {
                            for (int j = 0; j < LANES; ++j) {
                                const int k = kc * LANES + j;
                                const int v = (k < K) ? S[(int64_t)(c0 + g0 + c) * K + k] : 0;
                                nz[c][j] = booth_nonzero(v, pos[c][j], val[c][j]);
                                terms += nz[c][j];
                                if (nz[c][j] > len) len = nz[c][j];
                            }
                        }
                    RBSP_DIGITS:
                        for (int t = 0; t < len; ++t) {
#pragma HLS PIPELINE II = 1
                            ++steps;
                            for (int c = 0; c < gw; ++c) {
#pragma HLS UNROLL
                                uint32_t tree = 0;
                                for (int j = 0; j < LANES; ++j) {
#pragma HLS UNROLL
                                    if (t < nz[c][j]) {
                                        const int k = kc * LANES + j;
                                        tree += shifted(B[(int64_t)o * K + k], pos[c][j][t], val[c][j][t]);
                                    }
                                }
                                acc[c] += tree;
                            }
                        }
                    }
                    for (int c = 0; c < gw; ++c) Y[(int64_t)o * C + c0 + g0 + c] = (int32_t)acc[c];
                }
                if (steps > tile_steps) tile_steps = steps;
            }
            const int64_t t_cyc = tile_steps + revit_sched::pipe_rbsp(LANES);
            cycles += t_cyc;
            REVIT_PERF(revit_perf::add(revit_perf::RBSP_TILES, 1); revit_perf::add(revit_perf::RBSP_STEPS, tile_steps);
                       revit_perf::add(revit_perf::RBSP_CYCLES, t_cyc); revit_perf::add(revit_perf::RBSP_TERMS, terms);
                       revit_perf::add(revit_perf::RBSP_SLOTS, tile_steps * (int64_t)cols * LANES));
        }
        REVIT_PERF(revit_perf::add(revit_perf::RBSP_PASSES, 1));
        return cycles;
    }

    static bool serial_ok(int v) { return v >= -(1 << (SERIAL_BITS - 1)) && v < (1 << (SERIAL_BITS - 1)); }
    static bool dims_ok(int C, int K, int O, int cols, int sync) {
        return C >= 1 && C <= CFG::MAX_C && K >= 1 && K <= CFG::MAX_K && O >= 1 && O <= CFG::MAX_O && cols >= 1 &&
               cols <= COLS && sync >= 1 && sync <= COLS;
    }

    // Differential (delta = 1) or plain projection of one group's l tokens x (l, K) through W (O, K):
    // acc (l, O) int32 = x W^T + bias, the centroid xc (K,) taken as column 0 of the pass when delta = 1.
    static int project(const int8_t* x, int l, const int8_t* xc, int K, const int8_t* W, const int32_t* bias, int O,
                       int delta, int cols, int sync, int32_t* acc, int64_t* cycles) {
        const int C = l + (delta ? 1 : 0);
        if (l < 1 || !dims_ok(C, K, O, cols, sync)) return ERR_DIMS;
        int16_t* S = bufs().S;
        int32_t* B = bufs().B;
        int32_t* Y = bufs().Y;
        // Delta generator (MUX 1) or the raw tokens (MUX 0).
        for (int k = 0; k < K; ++k) {
            if (delta) S[k] = xc[k];
            for (int i = 0; i < l; ++i)
                S[(int64_t)(i + (delta ? 1 : 0)) * K + k] = delta ? int16_t(x[(int64_t)i * K + k] - xc[k]) : x[(int64_t)i * K + k];
        }
        for (int64_t t = 0; t < (int64_t)O * K; ++t) B[t] = W[t];
        *cycles = pass(S, C, K, B, O, cols, sync, Y);
        // DRP: the centroid term (bias once) back onto every delta column.
        for (int o = 0; o < O; ++o)
            for (int i = 0; i < l; ++i) {
                const uint32_t base = delta ? (uint32_t)Y[(int64_t)o * C] : 0u;
                acc[(int64_t)i * O + o] = (int32_t)(base + (uint32_t)bias[o] + (uint32_t)Y[(int64_t)o * C + i + (delta ? 1 : 0)]);
            }
        return OK;
    }

    // Scores of m queries q (m, d) against a group: its l keys k (l, d) as deltas to kc (delta = 1) or raw,
    // then e raw keys ke (e, d) (the other groups' centroids of a joint row). s (m, l + e) int32.
    static int scores(const int8_t* q, int m, const int8_t* k, int l, const int8_t* kc, const int8_t* ke, int e, int d,
                      int delta, int cols, int sync, int32_t* s, int64_t* cycles) {
        const int off = delta ? 1 : 0;
        const int C = off + l + e;
        if (m < 1 || l < 0 || e < 0 || l + e < 1 || !dims_ok(C, d, m, cols, sync)) return ERR_DIMS;
        int16_t* S = bufs().S;
        int32_t* B = bufs().B;
        int32_t* Y = bufs().Y;
        for (int f = 0; f < d; ++f) {
            if (delta) S[f] = kc[f];
            for (int j = 0; j < l; ++j) S[(int64_t)(off + j) * d + f] = delta ? int16_t(k[(int64_t)j * d + f] - kc[f]) : k[(int64_t)j * d + f];
            for (int j = 0; j < e; ++j) S[(int64_t)(off + l + j) * d + f] = ke[(int64_t)j * d + f];
        }
        for (int64_t t = 0; t < (int64_t)m * d; ++t) B[t] = q[t];
        *cycles = pass(S, C, d, B, m, cols, sync, Y);
        for (int o = 0; o < m; ++o) {
            const uint32_t base = delta ? (uint32_t)Y[(int64_t)o * C] : 0u;
            for (int j = 0; j < l; ++j) s[(int64_t)o * (l + e) + j] = (int32_t)(base + (uint32_t)Y[(int64_t)o * C + off + j]);
            for (int j = 0; j < e; ++j) s[(int64_t)o * (l + e) + l + j] = Y[(int64_t)o * C + off + l + j];
        }
        return OK;
    }

    // Output rows z (m, d) = p (m, l + e) . [v (l, d); ve (e, d)], the group's l values as deltas to vc
    // (delta = 1, the centroid term as the extra element: rowsum of p's first l entries times vc) or raw.
    static int output(const uint8_t* p, int m, const int8_t* v, int l, const int8_t* vc, const int8_t* ve, int e, int d,
                      int delta, int cols, int sync, int32_t* z, int64_t* cycles) {
        const int K = l + e + (delta ? 1 : 0);
        if (m < 1 || l < 0 || e < 0 || l + e < 1 || !dims_ok(d, K, m, cols, sync)) return ERR_DIMS;
        int16_t* S = bufs().S;
        int32_t* B = bufs().B;
        int32_t* Y = bufs().Y;
        for (int f = 0; f < d; ++f) {
            for (int j = 0; j < l; ++j) S[(int64_t)f * K + j] = delta ? int16_t(v[(int64_t)j * d + f] - vc[f]) : v[(int64_t)j * d + f];
            for (int j = 0; j < e; ++j) S[(int64_t)f * K + l + j] = ve[(int64_t)j * d + f];
            if (delta) S[(int64_t)f * K + l + e] = vc[f];
        }
        for (int o = 0; o < m; ++o) {
            int32_t rs = 0;
            for (int j = 0; j < l + e; ++j) {
                B[(int64_t)o * K + j] = p[(int64_t)o * (l + e) + j];
                if (j < l) rs += p[(int64_t)o * (l + e) + j];
            }
            if (delta) B[(int64_t)o * K + l + e] = rs;
        }
        *cycles = pass(S, d, K, B, m, cols, sync, Y);
        for (int64_t t = 0; t < (int64_t)m * d; ++t) z[t] = Y[t];
        return OK;
    }
};

}  // namespace rmmu
}  // namespace vitaccel

#endif  // VITACCEL_REVIT_RMMU_H
