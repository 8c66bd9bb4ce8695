// ViTCoD two-pronged sparse attention for one layer: denser engine, sparser engine, softmax unit, S.V.
//
// Bits: KERNELS.md "Attention"; the golden model is vitaccel.sim.kernels.attention.attention_int, which
// computes the same exact integer sums in another order. For head h, with q', k' the (optionally
// AE-decoded) queries and keys:
//     s[i, j] = sum_f q'[i, f] k'[j, f]            kept (i, j) only
//     p[i, :] = softmax_row(s[i, :], mask[i, :])   NUMERICS.md
//     o[i, f] = requantize(sum_j p[i, j] v[j, f], m_out, s_out)
//
// Everything on chip lives in the *reordered* key space of sim/sparse_format.py: column c is key
// order[h][c]; columns c < n_global[h] are the denser engine's, the rest the sparser engine's (CSC:
// colptr / headptr / rowidx, rowidx = query indices, strictly increasing within a column). Softmax is
// invariant under a permutation of a row (max and sum are exact), so p in reordered space is the
// model's p with its columns permuted, and S.V sums the same products. The mask comes in reordered too
// (DESCRIPTOR.md: one bit per (query, reordered column)), so the keep row feeds softmax_row directly.
//
// Per head (heads run one after another, all lines on the current head, as in the cycle model of
// sim/kernels/attention.py):
//   load     order, colptr, mask rows; Q and K either loaded (strided, straight from the qkv GEMM
//            output) or decoded from the layer's compressed Hc heads held on chip; V loaded.
//   SDDMM    denser engine: DENSE_LINES lines, K-stationary: each line holds one global key column's
//            k vector in registers, queries stream past (broadcast), MACS_PER_LINE features per cycle:
//            ceil(d / MACS_PER_LINE) cycles per score, DENSE_LINES scores in parallel. Pruned entries in
//            global columns are computed and then dropped by the mask.
//            sparser engine: per CSC column, its k vector held, its kept queries gathered by rowidx,
//            one score per cycle (the whole feature vector in one cycle).
//   softmax  softmax_row on each complete row of the score buffer with the row's keep bits.
//   S.V      denser part output-stationary over the global columns (query row by row); sparser part
//            per CSC column, scattering p * v into the query's int32 accumulators.
//   store    requantise to int8, strided (can write the (N, D) concat-heads layout directly).
//
// Synthesis notes. The two SDDMM engines write disjoint columns of one score buffer; the paper gives
// them separate output buffers so they run in parallel, which would double the largest memory (S):
// here they run one after the other. Heads are not overlapped (no DATAFLOW across heads): rowidx is
// streamed from DRAM twice per head (SDDMM and S.V) rather than held in the 20 KB index buffer, which
// a dense-ish sparser part (n_global = 0) would overflow.
//
// Where this differs from the cycle model (attention_cycles), for whoever aligns the two: the line split
// is fixed at compile time (DENSE_LINES = MAC_LINES - SPARSE_Q_PORTS) instead of proportional to each
// head's work; the sparser SDDMM does one kept entry per cycle with MAX_HEAD_DIM MACs (the model:
// ceil(d / MACS_PER_LINE) cycles per entry per line, at most SPARSE_Q_PORTS rows per cycle); the denser
// S.V does one global column per cycle with MAX_HEAD_DIM MACs (N * n_global cycles; the model spreads
// query rows over the denser lines); softmax_row is one lane, three passes (the model: two passes at
// SOFTMAX_LANES per cycle); the engines run one after the other (the model: max of the two); rowidx is
// read twice per head; the compressed Q/K of the whole layer sit on chip (2 * Hc * N * d bytes).
#ifndef VITACCEL_KERNELS_ATTENTION_H
#define VITACCEL_KERNELS_ATTENTION_H

#include <stdint.h>

#include "vitaccel_config.h"
#include "vitaccel_numerics.h"

namespace vitaccel {
namespace attention {

static const int LANES = cfg::MACS_PER_LINE;
static const int MAX_N = cfg::MAX_TOKENS;
static const int MAX_H = cfg::MAX_HEADS;
static const int MAX_D = cfg::MAX_HEAD_DIM;
// Lines of the denser engine: the sparser engine can use at most SPARSE_Q_PORTS lines (the cycle
// model's cap), the rest are the denser engine's.
static const int DENSE_LINES =
    cfg::MAC_LINES > cfg::SPARSE_Q_PORTS ? cfg::MAC_LINES - cfg::SPARSE_Q_PORTS : cfg::MAC_LINES;

static_assert(MAX_D % LANES == 0, "MAX_HEAD_DIM must be a multiple of MACS_PER_LINE");
static_assert(MAX_N <= SOFTMAX_MAX_ROW, "rows longer than 65535 overflow the softmax sum");
static_assert(MAX_N < 32768, "token indices are held in 16 bits");

typedef ap_uint<16> idx_t;  // a token index (< MAX_TOKENS)
typedef ap_int<9> sprob_t;  // a probability as a signed operand, for p * v

static const int OK = 0;
static const int ERR_DIMS = 0x301;     // H, N, d or Hc out of range
static const int ERR_QUANT = 0x302;    // a multiplier or shift out of range
static const int ERR_NGLOBAL = 0x303;  // n_global[h] outside [0, N]
static const int ERR_ORDER = 0x304;    // order[h][c] outside [0, N)
static const int ERR_PTR = 0x305;      // colptr / headptr inconsistent or outside rowidx
static const int ERR_ROWIDX = 0x306;   // rowidx outside [0, N) or not strictly increasing in a column

// Scalar arguments of one attention layer (the descriptor's fields, DESCRIPTOR.md).
struct Args {
    int H, N, d;
    int Hc;  // compressed heads of the AE; 0: no AE, q and k hold the H heads themselves
    // Element (h, n, f) of a tensor is at ptr[h * hs + n * ns + f] (bytes). With the AE, q and k hold
    // the compressed (Hc, N, d) tensors.
    int64_t q_hs, q_ns, k_hs, k_ns, v_hs, v_ns, o_hs, o_ns;
    int32_t m_exp, s_exp, m_out, s_out;
    int32_t dq_m, dq_s, dk_m, dk_s;  // decoder requantisation of Q and K (Hc > 0)
    int32_t n_global[MAX_H];
};

inline bool bad_mult(int32_t m) { return m < 0; }
inline bool bad_shift(int32_t s) { return s < 0 || s > 63; }

// ---- loads ----------------------------------------------------------------------------------------

// The layer's compressed heads (AE): enc[c * MAX_N + n][f] = src[c * hs + n * ns + f].
inline void load_enc(const int8_t* src, int64_t hs, int64_t ns, int Hc, int N, int d, data_t enc[MAX_H * MAX_N][MAX_D]) {
ATT_LOAD_ENC:
    for (int c = 0; c < Hc; ++c) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 12
        for (int t = 0; t < N * d; ++t) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 16384
#pragma HLS PIPELINE II = 1
            const int n = t / d;
            const int f = t - n * d;
            enc[c * MAX_N + n][f] = src[c * hs + n * ns + f];
        }
    }
}

// Decoder engine for one head: dst[n][f] = requantize(sum_c w[c] enc[c][n][f] + b, m, s), all MAX_D
// features of a token per cycle (one compressed head per cycle), then one requantisation per cycle.
inline void decode_head(const data_t enc[MAX_H * MAX_N][MAX_D], const data_t w[MAX_H], acc_t b, mult_t m, shift_t s,
                        int Hc, int N, int d, data_t dst[MAX_N][MAX_D]) {
    acc_t acc[MAX_D];
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 1
ATT_DECODE_TOKENS:
    for (int n = 0; n < N; ++n) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
    ATT_DECODE_MAC:
        for (int c = 0; c < Hc; ++c) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 12
#pragma HLS PIPELINE II = 1
            for (int f = 0; f < MAX_D; ++f) {
#pragma HLS UNROLL
                const acc_t base = (c == 0) ? b : acc[f];
                acc[f] = base + w[c] * enc[c * MAX_N + n][f];
            }
        }
    ATT_DECODE_REQ:
        for (int f = 0; f < d; ++f) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 64
#pragma HLS PIPELINE II = 1
            dst[n][f] = requantize(acc[f], m, s);
        }
    }
}

// One head of an uncompressed tensor: dst[n][f] = src[h * hs + n * ns + f].
inline void load_head(const int8_t* src, int64_t hs, int64_t ns, int h, int N, int d, data_t dst[MAX_N][MAX_D]) {
ATT_LOAD_HEAD:
    for (int t = 0; t < N * d; ++t) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 16384
#pragma HLS PIPELINE II = 1
        const int n = t / d;
        const int f = t - n * d;
        dst[n][f] = src[h * hs + n * ns + f];
    }
}

// order and colptr of head h, checked; *hp, *nnz: the head's segment of rowidx.
inline int load_indexes(const int32_t* order, const int32_t* colptr, const int32_t* headptr, int64_t rowidx_len,
                        int h, int N, idx_t ord[MAX_N], int cp[MAX_N + 1], int64_t* hp) {
    int status = OK;
ATT_LOAD_ORDER:
    for (int c = 0; c < N; ++c) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
#pragma HLS PIPELINE II = 1
        const int32_t v = order[(int64_t)h * N + c];
        if (v < 0 || v >= N) status = ERR_ORDER;
        ord[c] = (v < 0 || v >= N) ? 0 : v;
    }
    int prev = 0;
ATT_LOAD_COLPTR:
    for (int c = 0; c <= N; ++c) {
#pragma HLS LOOP_TRIPCOUNT min = 2 max = 257
#pragma HLS PIPELINE II = 1
        const int32_t v = colptr[(int64_t)h * (N + 1) + c];
        if ((c == 0 && v != 0) || v < prev) status = ERR_PTR;
        prev = v;
        cp[c] = v;
    }
    const int32_t h0 = headptr[h];
    const int32_t h1 = headptr[h + 1];
    if (h0 < 0 || (int64_t)h1 - h0 != cp[N] || (int64_t)h1 > rowidx_len) status = ERR_PTR;
    *hp = h0;
    return status;
}

// Mask rows of head h, reordered and bit-packed: bit (c % 8) of byte c / 8 of row i.
inline void load_mask(const uint8_t* bits, int h, int N, bool keep[MAX_N][MAX_N]) {
    const int mb = (N + 7) / 8;
ATT_LOAD_MASK:
    for (int t = 0; t < N * mb; ++t) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 8192
#pragma HLS PIPELINE II = 1
        const int i = t / mb;
        const int b = t - i * mb;
        const uint8_t byte = bits[((int64_t)h * N + i) * mb + b];
        for (int u = 0; u < 8; ++u) {
#pragma HLS UNROLL
            const int c = b * 8 + u;
            if (c < N) keep[i][c] = (byte >> u) & 1;
        }
    }
}

// ---- SDDMM ----------------------------------------------------------------------------------------

// Denser engine: columns [0, g) for every query. Line l holds column cb * DENSE_LINES + l.
inline void sddmm_dense(const data_t qb[MAX_N][MAX_D], const data_t kb[MAX_N][MAX_D], const idx_t ord[MAX_N],
                        int g, int N, int d, acc_t S[MAX_N][MAX_N]) {
    data_t kreg[DENSE_LINES][MAX_D];
#pragma HLS ARRAY_PARTITION variable = kreg complete dim = 0
    acc_t acc[DENSE_LINES];
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 1
    const int cpd = (d + LANES - 1) / LANES;
ATT_DENSE_COLUMN_BLOCKS:
    for (int cb = 0; cb * DENSE_LINES < g; ++cb) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 6
    ATT_DENSE_LOAD_K:
        for (int l = 0; l < DENSE_LINES; ++l) {
#pragma HLS PIPELINE II = 1
            const int c = cb * DENSE_LINES + l;
            const idx_t j = (c < g) ? ord[c] : idx_t(0);
            for (int f = 0; f < MAX_D; ++f) {
#pragma HLS UNROLL
                // Zero past d (and for lines without a column): the chunk loop may read past d.
                kreg[l][f] = (c < g && f < d) ? kb[j][f] : data_t(0);
            }
        }
        int i = 0, ch = 0;
    ATT_DENSE_QUERIES:
        for (int t = 0; t < N * cpd; ++t) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 2048
#pragma HLS PIPELINE II = 1
            data_t qv[LANES];
#pragma HLS ARRAY_PARTITION variable = qv complete dim = 1
            for (int u = 0; u < LANES; ++u) {
#pragma HLS UNROLL
                qv[u] = qb[i][ch * LANES + u];  // broadcast to every line
            }
            for (int l = 0; l < DENSE_LINES; ++l) {
#pragma HLS UNROLL
                ap_int<16 + 8> dot = 0;
                for (int u = 0; u < LANES; ++u) {
#pragma HLS UNROLL
                    dot += qv[u] * kreg[l][ch * LANES + u];
                }
                acc[l] = ((ch == 0) ? acc_t(0) : acc[l]) + dot;
                const int c = cb * DENSE_LINES + l;
                if (ch == cpd - 1 && c < g) S[i][c] = acc[l];
            }
            if (ch == cpd - 1) {
                ch = 0;
                ++i;
            } else {
                ++ch;
            }
        }
    }
}

// Sparser engine: the kept entries of columns [g, N), column by column (K-stationary).
inline int sddmm_sparse(const data_t qb[MAX_N][MAX_D], const data_t kb[MAX_N][MAX_D], const idx_t ord[MAX_N],
                        const int cp[MAX_N + 1], const int32_t* rowidx, int g, int N, int d, acc_t S[MAX_N][MAX_N]) {
    int status = OK;
    data_t kv[MAX_D];
#pragma HLS ARRAY_PARTITION variable = kv complete dim = 1
ATT_SPARSE_COLUMNS:
    for (int c = g; c < N; ++c) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 256
        const idx_t j = ord[c];
        for (int f = 0; f < MAX_D; ++f) {
#pragma HLS UNROLL
            kv[f] = (f < d) ? kb[j][f] : data_t(0);
        }
        int prev = -1;
    ATT_SPARSE_ENTRIES:
        for (int e = cp[c]; e < cp[c + 1]; ++e) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 256 avg = 8
#pragma HLS PIPELINE II = 1
            const int32_t i = rowidx[e];
            if (i <= prev || i >= N) {
                status = ERR_ROWIDX;
            } else {
                ap_int<16 + 8> dot = 0;
                for (int f = 0; f < MAX_D; ++f) {
#pragma HLS UNROLL
                    dot += qb[i][f] * kv[f];
                }
                S[i][c] = dot;
                prev = i;
            }
        }
    }
    return status;
}

// ---- softmax unit ---------------------------------------------------------------------------------

inline void softmax_rows(const acc_t S[MAX_N][MAX_N], const bool keep[MAX_N][MAX_N], int N, mult_t m_exp,
                         shift_t s_exp, prob_t P[MAX_N][MAX_N]) {
    acc_t srow[MAX_N];
    bool krow[MAX_N];
    prob_t prow[MAX_N];
ATT_SOFTMAX_ROWS:
    for (int i = 0; i < N; ++i) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
    ATT_SOFTMAX_IN:
        for (int c = 0; c < N; ++c) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
#pragma HLS PIPELINE II = 1
            srow[c] = S[i][c];
            krow[c] = keep[i][c];
        }
        softmax_row<MAX_N>(srow, krow, N, m_exp, s_exp, prow);
    ATT_SOFTMAX_OUT:
        for (int c = 0; c < N; ++c) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
#pragma HLS PIPELINE II = 1
            P[i][c] = prow[c];
        }
    }
}

// ---- S.V ------------------------------------------------------------------------------------------

// Denser part, output-stationary: o[i] = sum_{c < g} p[i][c] v[order[c]]. Initialises every row of oacc
// (to 0 when g == 0), so the sparser part only adds.
inline void spmm_dense(const prob_t P[MAX_N][MAX_N], const data_t vb[MAX_N][MAX_D], const idx_t ord[MAX_N], int g,
                       int N, acc_t oacc[MAX_N][MAX_D]) {
    acc_t acc[MAX_D];
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 1
ATT_SPMM_DENSE_ROWS:
    for (int i = 0; i < N; ++i) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
        for (int f = 0; f < MAX_D; ++f) {
#pragma HLS UNROLL
            acc[f] = 0;
        }
    ATT_SPMM_DENSE_COLS:
        for (int c = 0; c < g; ++c) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 256
#pragma HLS PIPELINE II = 1
            const sprob_t p = P[i][c];
            const idx_t j = ord[c];
            for (int f = 0; f < MAX_D; ++f) {
#pragma HLS UNROLL
                acc[f] += p * vb[j][f];
            }
        }
        for (int f = 0; f < MAX_D; ++f) {
#pragma HLS UNROLL
            oacc[i][f] = acc[f];
        }
    }
}

// Sparser part: for each CSC column, p[i][c] * v[order[c]] into the accumulators of its kept queries.
inline int spmm_sparse(const prob_t P[MAX_N][MAX_N], const data_t vb[MAX_N][MAX_D], const idx_t ord[MAX_N],
                       const int cp[MAX_N + 1], const int32_t* rowidx, int g, int N, acc_t oacc[MAX_N][MAX_D]) {
    int status = OK;
    data_t vv[MAX_D];
#pragma HLS ARRAY_PARTITION variable = vv complete dim = 1
ATT_SPMM_SPARSE_COLUMNS:
    for (int c = g; c < N; ++c) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 256
        const idx_t j = ord[c];
        for (int f = 0; f < MAX_D; ++f) {
#pragma HLS UNROLL
            vv[f] = vb[j][f];
        }
        int prev = -1;
    ATT_SPMM_SPARSE_ENTRIES:
        for (int e = cp[c]; e < cp[c + 1]; ++e) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 256 avg = 8
#pragma HLS PIPELINE II = 1
// Queries are strictly increasing within a column (checked below), so no two iterations of this loop
// update the same accumulator row.
#pragma HLS DEPENDENCE variable = oacc inter false
            const int32_t i = rowidx[e];
            if (i <= prev || i >= N) {
                status = ERR_ROWIDX;
            } else {
                const sprob_t p = P[i][c];
                for (int f = 0; f < MAX_D; ++f) {
#pragma HLS UNROLL
                    oacc[i][f] += p * vv[f];
                }
                prev = i;
            }
        }
    }
    return status;
}

inline void store_head(const acc_t oacc[MAX_N][MAX_D], mult_t m, shift_t s, int8_t* out, int64_t hs, int64_t ns,
                       int h, int N, int d) {
ATT_STORE:
    for (int t = 0; t < N * d; ++t) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 16384
#pragma HLS PIPELINE II = 1
        const int n = t / d;
        const int f = t - n * d;
        out[h * hs + n * ns + f] = int8_t(requantize(oacc[n][f], m, s).to_int());
    }
}

// ---- one layer ------------------------------------------------------------------------------------

// Runs heads 0..H-1. maskbits: (H, N, ceil(N/8)) bytes, reordered (see the top of this file); order
// (H, N), colptr (H, N + 1), headptr (H + 1), rowidx (rowidx_len entries) int32 as written by
// sim/sparse_format.py. With a.Hc > 0, q and k are the compressed (Hc, N, d) tensors and dq_w / dk_w
// (H, Hc) int8 row-major, dq_b / dk_b (H,) int32 the decoders. Returns a status code; on an error the
// heads already stored stay written.
inline int attention_layer(const Args& a, const int8_t* q, const int8_t* k, const int8_t* v, int8_t* out,
                           const uint8_t* maskbits, const int32_t* order, const int32_t* colptr,
                           const int32_t* headptr, const int32_t* rowidx, int64_t rowidx_len, const int8_t* dq_w,
                           const int32_t* dq_b, const int8_t* dk_w, const int32_t* dk_b) {
    static data_t encq[MAX_H * MAX_N][MAX_D];
    static data_t enck[MAX_H * MAX_N][MAX_D];
#pragma HLS ARRAY_PARTITION variable = encq complete dim = 2
#pragma HLS ARRAY_PARTITION variable = enck complete dim = 2
    static data_t qb[MAX_N][MAX_D];
    static data_t kb[MAX_N][MAX_D];
    static data_t vb[MAX_N][MAX_D];
#pragma HLS ARRAY_PARTITION variable = qb complete dim = 2
#pragma HLS ARRAY_PARTITION variable = kb complete dim = 2
#pragma HLS ARRAY_PARTITION variable = vb complete dim = 2
    static idx_t ord[MAX_N];
    static int cp[MAX_N + 1];
    static bool keep[MAX_N][MAX_N];
#pragma HLS ARRAY_PARTITION variable = keep cyclic factor = 8 dim = 2
    static acc_t S[MAX_N][MAX_N];
#pragma HLS ARRAY_PARTITION variable = S cyclic factor = DENSE_LINES dim = 2
    static prob_t P[MAX_N][MAX_N];
    static acc_t oacc[MAX_N][MAX_D];
#pragma HLS ARRAY_PARTITION variable = oacc complete dim = 2
    data_t wq[MAX_H][MAX_H], wk[MAX_H][MAX_H];
#pragma HLS ARRAY_PARTITION variable = wq complete dim = 2
#pragma HLS ARRAY_PARTITION variable = wk complete dim = 2
    acc_t bq[MAX_H], bk[MAX_H];

    const int H = a.H, N = a.N, d = a.d, Hc = a.Hc;
    if (H < 1 || H > MAX_H || N < 1 || N > MAX_N || d < 1 || d > MAX_D || Hc < 0 || Hc > H) return ERR_DIMS;
    if (bad_mult(a.m_exp) || bad_shift(a.s_exp) || bad_mult(a.m_out) || bad_shift(a.s_out)) return ERR_QUANT;
    if (Hc > 0 && (bad_mult(a.dq_m) || bad_shift(a.dq_s) || bad_mult(a.dk_m) || bad_shift(a.dk_s))) return ERR_QUANT;
ATT_CHECK_NGLOBAL:
    for (int h = 0; h < H; ++h) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 12
        if (a.n_global[h] < 0 || a.n_global[h] > N) return ERR_NGLOBAL;
    }

    if (Hc > 0) {
        load_enc(q, a.q_hs, a.q_ns, Hc, N, d, encq);
        load_enc(k, a.k_hs, a.k_ns, Hc, N, d, enck);
    ATT_LOAD_DEC_W:
        for (int t = 0; t < H * Hc; ++t) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 144
#pragma HLS PIPELINE II = 1
            const int h = t / Hc;
            wq[h][t - h * Hc] = dq_w[t];
            wk[h][t - h * Hc] = dk_w[t];
        }
    ATT_LOAD_DEC_B:
        for (int h = 0; h < H; ++h) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 12
#pragma HLS PIPELINE II = 1
            bq[h] = dq_b[h];
            bk[h] = dk_b[h];
        }
    }

ATT_HEADS:
    for (int h = 0; h < H; ++h) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 12
        const int g = a.n_global[h];
        int64_t hp = 0;
        int st = load_indexes(order, colptr, headptr, rowidx_len, h, N, ord, cp, &hp);
        if (st != OK) return st;
        load_mask(maskbits, h, N, keep);
        if (Hc > 0) {
            decode_head(encq, wq[h], bq[h], mult_t(a.dq_m), shift_t(a.dq_s), Hc, N, d, qb);
            decode_head(enck, wk[h], bk[h], mult_t(a.dk_m), shift_t(a.dk_s), Hc, N, d, kb);
        } else {
            load_head(q, a.q_hs, a.q_ns, h, N, d, qb);
            load_head(k, a.k_hs, a.k_ns, h, N, d, kb);
        }
        load_head(v, a.v_hs, a.v_ns, h, N, d, vb);

        sddmm_dense(qb, kb, ord, g, N, d, S);
        st = sddmm_sparse(qb, kb, ord, cp, rowidx + hp, g, N, d, S);
        if (st != OK) return st;
        softmax_rows(S, keep, N, mult_t(a.m_exp), shift_t(a.s_exp), P);
        spmm_dense(P, vb, ord, g, N, oacc);
        st = spmm_sparse(P, vb, ord, cp, rowidx + hp, g, N, oacc);
        if (st != OK) return st;
        store_head(oacc, mult_t(a.m_out), shift_t(a.s_out), out, a.o_hs, a.o_ns, h, N, d);
    }
    return OK;
}

}  // namespace attention
}  // namespace vitaccel

#endif  // VITACCEL_KERNELS_ATTENTION_H
