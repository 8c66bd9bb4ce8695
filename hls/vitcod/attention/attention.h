// ViTCoD two-pronged sparse attention for one layer: denser and sparser engines on one MAC array, softmax
// unit, decoder (AE), output requantisation.
//
// (Over 600 lines on purpose: the engines share one head loop and one set of on-chip buffers, and each nest
// here has its term in sim/vitcod/attention.py's cycle model; split across files, the schedule the drift
// test compares would no longer read in one place.)
//
// Bits: KERNELS.md "Attention"; the golden model is vitaccel.sim.vitcod.attention.attention_int, which
// computes the same exact integer sums in another order. For head h, with q', k' the (optionally
// AE-decoded) queries and keys:
//     s[i, j] = sum_f q'[i, f] k'[j, f]            kept (i, j) only
//     p[i, :] = softmax_row(s[i, :], mask[i, :])   NUMERICS.md (max, exp and sum, reciprocal, normalise)
//     o[i, f] = requantize(sum_j p[i, j] v[j, f], m_out, s_out)
//
// Everything on chip lives in the *reordered* key space of sim/vitcod/sparse_format.py: column c is key
// order[h][c]; columns c < g = n_global[h] are the denser engine's, the rest the sparser engine's (CSC:
// colptr / headptr / rowidx, rowidx = query indices, strictly increasing within a column). Softmax is
// invariant under a permutation of a row (max and sum are exact), so p in reordered space is the model's
// p with its columns permuted, and S.V sums the same products. The mask comes in reordered too
// (DESCRIPTOR.md), so a keep row feeds the softmax unit directly.
//
// Schedule (the cycle model, vitaccel/sim/vitcod/attention.py attention_cycles, counts exactly these
// loop nests; tests/test_cycle_model_vs_hls.py compares it with the counters below, perf.h). L =
// MAC_LINES lines of M = MACS_PER_LINE MACs, cpd = ceil(d / M) chunks per feature vector. Heads run one
// after another; per head:
//
//   SDDMM   one loop, one iteration per cycle, two engines on disjoint lines (runtime split):
//           denser engine, lines [0, ld), the cheaper of two dataflows (dense_qstat): K-stationary, a
//             block of ld global columns holds one k vector per line (loaded one line per cycle, full-row
//             K read), then the N queries stream past, one M-byte chunk per cycle broadcast to every line:
//             per block cols + N * cpd cycles; or Q-stationary (few global columns), a block of ld
//             queries, then the g global keys stream past: per block rows + g * cpd.
//           sparser engine, ls lines each with a Q and a K gather port (ls <= SPARSE_Q_PORTS): the head's
//             CSC entries as one stream, ls per round whatever their columns, each line gathering its
//             query and its column's key one chunk per cycle: ceil(nnz / ls) * cpd cycles. rowidx is
//             streamed from DRAM in CSC order (no index buffer to overflow) and checked.
//           iterations = max(denser, sparser); + PIPE_DOT.
//   softmax two stages in DATAFLOW, SOFTMAX_LANES wide: max stage, then exp / sum stage (e written in
//           place of the score), then the pipelined reciprocal divider. A stage visits only a row's
//           live lane blocks (blocks with a kept entry; at least one per row): b_i cycles per row, row i
//           entering the exp stage once the max stage has finished it. sum(b) + max(b) + depths.
//   S.V     one loop, both engines again: denser engine output-stationary (rows dealt to the ld lines,
//           M features per line per cycle, accumulating over the g global columns, V chunk broadcast):
//           ceil(N / ld) * g * cpd; sparser engine row-stationary, a row with kept sparser entries to the
//           next free line, which walks them (mask bits, a priority encoder) chunk-major through its V
//           gather port: nnz_row * cpd per row, rows dealt in order as lines free up (no two lines ever
//           add into one row). p = e * recip is normalised on the fly. + PIPE_DOT.
//   requant (Od + Os) requantised by the lines' requantisers, L outputs per cycle: ceil(N d / L) + PIPE_RQ.
//   decode  (AE) mix engine = all L lines in dot-product mode over the Hc compressed heads, one output
//           per line per ceil(Hc / M) cycles, requantised by the line's requantiser: 2 ceil(N d / L)
//           ceil(Hc / M) + PIPE_MIX. Head 0's decode runs before head 0 (nothing to hide it under).
//   Heads are pipelined (HeadPipeline): the MAC lines run SDDMM(h), S.V(h - 1), decode(h + 1); the
//   softmax unit works on head h and the requantisers on head h - 1 meanwhile (scores, mask rows,
//   reciprocals, V and the accumulators double-buffered). The counters give that schedule's time.
//
// The host compiler chooses the split per head from the masks (sim/vitcod/attention.py line_split) and
// passes ls in the descriptor; the denser engine gets ld = L - ls lines when it has columns.
//
// Off-chip (counted in bytes by the perf counters, in cycles by the DRAM model): per head order, colptr,
// two headptr words, the mask rows, V, and Q and K unless the AE is on; rowidx once (SDDMM);
// the output. With the AE the compressed Q and K (2 Hc N d bytes) and the decoder weights are loaded once
// per layer. The cycle model overlaps head h + 1's loads and head h - 1's store with head h (double
// buffering); this C++ issues them in sequence (no DATAFLOW across heads yet).
//
// Buffers and ports (not verified by synthesis). Q, K and V: one copy each read by broadcast (denser
// engine) plus ceil(SPARSE_Q_PORTS / 2) dual-port copies each, one port per sparser line (qg, kg, vg).
// S: N x N int32, written by up to ld denser lines (consecutive columns of one row, or one column's
// consecutive rows Q-stationary) and ls sparser lines (distinct entries of the CSC stream) every cpd
// cycles; after softmax it holds e (16 bits). Separate denser / sparser output accumulators (Od, and Os
// per S.V row segment: the paper's separate output buffers). The compressed Q and K of the whole layer
// stay on chip (2 Hc N d bytes, head-minor for the mix engine).
#ifndef VITACCEL_KERNELS_ATTENTION_H
#define VITACCEL_KERNELS_ATTENTION_H

#include <stdint.h>

#include <hls_stream.h>

#include "vitaccel_config.h"
#include "vitaccel_numerics.h"
#include "isa/vitcod_isa.h"
#include "perf.h"
#include "vitcod_schedule.h"

namespace vitaccel {
namespace attention {

static const int L = cfg::vitcod::MAC_LINES;
static const int LANES = cfg::vitcod::MACS_PER_LINE;
static const int MAX_N = cfg::MAX_TOKENS;
static const int MAX_H = cfg::MAX_HEADS;
static const int MAX_D = cfg::MAX_HEAD_DIM;
// Lines with a Q gather port: the most the sparser engine can have.
static const int PS = cfg::vitcod::SPARSE_Q_PORTS < cfg::vitcod::MAC_LINES ? cfg::vitcod::SPARSE_Q_PORTS : cfg::vitcod::MAC_LINES;
// Lines without a gather port: they can only ever be denser lines.
static const int DENSE_LINES = L - PS;
// Dual-port copies of the Q buffer that provide the PS gather ports.
static const int NQC = (PS + 1) / 2;
static const int SL = cfg::vitcod::SOFTMAX_LANES;
// Segments a row's sparser entries are cut into at most in S.V (each its own partial-sum buffer).
static const int KSEG = 4;
// Compressed heads are held head-minor, padded to whole M-wide words.
static const int KHMAX = (MAX_H + LANES - 1) / LANES;
static const int CW = KHMAX * LANES;

static_assert(MAX_D % LANES == 0, "MAX_HEAD_DIM must be a multiple of MACS_PER_LINE");
static_assert(MAX_N <= SOFTMAX_MAX_ROW, "rows longer than 65535 overflow the softmax sum");
static_assert(MAX_N < 32768, "token indices are held in 16 bits");
static_assert(MAX_H <= 256, "the descriptor packs n_global and the line split in 16 bits each");

typedef ap_uint<16> idx_t;    // a token index (< MAX_TOKENS)

// The gather copies of Q, K and V (NQC dual-port copies each, one port per sparser line) hold the same
// bytes as the broadcast buffers by construction. Synthesis and the VITACCEL_CSIM_AP_ONLY build write and
// read them; the fast C-simulation reads the broadcast buffer instead (same values, without writing
// 3 NQC copies of every head).
#if defined(__SYNTHESIS__) || defined(VITACCEL_CSIM_AP_ONLY)
#define VITACCEL_GATHER_COPIES 1
#endif
typedef ap_int<9> sprob_t;    // a probability as a signed operand, for p * v
typedef ap_uint<16> expv_t;   // e of a kept entry, 2^15 * 2^-u
typedef ap_uint<26> recip_t;  // 2^40 / sum of a row's e

// Status codes from the generated ISA table (hls/include/isa/vitcod_isa.h, vitaccel/sim/vitcod/isa.py).
static const int OK = isa::OK;
static const int ERR_DIMS = isa::vitcod::ATT_ERR_DIMS;
static const int ERR_QUANT = isa::vitcod::ATT_ERR_QUANT;
static const int ERR_NGLOBAL = isa::vitcod::ATT_ERR_NGLOBAL;
static const int ERR_ORDER = isa::vitcod::ATT_ERR_ORDER;
static const int ERR_PTR = isa::vitcod::ATT_ERR_PTR;
static const int ERR_ROWIDX = isa::vitcod::ATT_ERR_ROWIDX;
static const int ERR_SPLIT = isa::vitcod::ATT_ERR_SPLIT;

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
    int32_t sparse_lines[MAX_H];  // lines of the sparser engine per head (0 when n_global == N)
};

inline bool bad_mult(int32_t m) { return m < 0; }
inline bool bad_shift(int32_t s) { return s < 0 || s > 63; }

// Denser lines of a head with g global columns and ls sparser lines.
// The denser engine's SDDMM dataflow for a head (the cycle model's attention.dense_qstat): Q-stationary
// (blocks of queries, the global keys streamed) when that takes fewer cycles than K-stationary (blocks of
// global keys, the queries streamed): N + ceil(N / ld) g cpd < g + ceil(g / ld) N cpd. The rule needs only
// the descriptor's n_global and line split, so the engine applies it itself.
inline bool dense_qstat(int g, int ld, int N, int cpd) {
    if (g == 0 || ld < 1) return false;
    const int64_t q = (int64_t)N + (int64_t)((N + ld - 1) / ld) * g * cpd;
    const int64_t k = (int64_t)g + (int64_t)((g + ld - 1) / ld) * N * cpd;
    return q < k;
}

inline int dense_lines(int g, int ls) { return g > 0 ? L - ls : 0; }

// The split the host uses when it has no masks at hand (testbenches, descriptors built without one):
// every gather port to the sparser engine, the rest to the denser engine.
inline int default_sparse_lines(int g, int N) {
    if (g >= N) return 0;
    const int most = g > 0 ? L - 1 : L;
    return PS < most ? PS : most;
}

inline bool valid_split(int g, int ls, int N) {
    if (g >= N) return ls == 0;
    if (ls < 1 || ls > PS) return false;
    return g == 0 || ls <= L - 1;
}

// ---- loads (DMA) --------------------------------------------------------------------------------

// The layer's compressed heads (AE), head-minor for the mix engine: enc[n * d + f][c] = src[c * hs +
// n * ns + f], zero for c >= Hc.
inline void load_enc(const int8_t* src, int64_t hs, int64_t ns, int Hc, int N, int d, data_t enc[MAX_N * MAX_D][CW]) {
    const int kw = ((Hc + LANES - 1) / LANES) * LANES;
ATT_LOAD_ENC:
    for (int c = 0; c < kw; ++c) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 16
        for (int t = 0; t < N * d; ++t) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 16384
#pragma HLS PIPELINE II = 1
            const int n = t / d;
            const int f = t - n * d;
            enc[t][c] = (c < Hc) ? data_t(src[c * hs + n * ns + f]) : data_t(0);
        }
    }
    VITACCEL_PERF(perf::add(perf::ATT_BYTES_IN, (int64_t)Hc * N * d));
}

// The element a sparser line reads through gather port `port`.
inline data_t gathered(const data_t b[MAX_N][MAX_D], const data_t copies[NQC][MAX_N][MAX_D], int port, int n, int f) {
#pragma HLS INLINE
#ifdef VITACCEL_GATHER_COPIES
    (void)b;
    return copies[port >> 1][n][f];
#else
    (void)copies;
    (void)port;
    return b[n][f];
#endif
}

// One head of Q, K or V: the broadcast copy and every gather copy are written together (one DMA stream).
inline void load_q_head(const int8_t* src, int64_t hs, int64_t ns, int h, int N, int d, data_t dst[MAX_N][MAX_D],
                        data_t copies[NQC][MAX_N][MAX_D]) {
ATT_LOAD_Q:
    for (int t = 0; t < N * d; ++t) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 16384
#pragma HLS PIPELINE II = 1
        const int n = t / d;
        const int f = t - n * d;
        const data_t x = src[h * hs + n * ns + f];
        dst[n][f] = x;
#ifdef VITACCEL_GATHER_COPIES
        for (int c = 0; c < NQC; ++c) {
#pragma HLS UNROLL
            copies[c][n][f] = x;
        }
#else
        (void)copies;
#endif
    }
    VITACCEL_PERF(perf::add(perf::ATT_BYTES_IN, (int64_t)N * d));
}

// order and colptr of head h, checked; *hp: the head's offset into rowidx.
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
    VITACCEL_PERF(perf::add(perf::ATT_BYTES_IN, 4 * (int64_t)N + 4 * (int64_t)(N + 1) + 8));
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
    VITACCEL_PERF(perf::add(perf::ATT_BYTES_IN, (int64_t)N * mb));
}

// ---- decoder (mix engine on all MAC lines) ------------------------------------------------------

// Head h's Q and K from the compressed heads: out[n][f] = requantize(b + sum_c w[c] enc[n * d + f][c]).
// Line l takes output u = r * L + l of round r and spends ceil(Hc / M) cycles on its dot product over the
// compressed heads (M per cycle), then its requantiser writes the byte. Returns the cycles.
inline int64_t decode_head(const data_t encq[MAX_N * MAX_D][CW], const data_t enck[MAX_N * MAX_D][CW],
                           const data_t wq[CW], acc_t bq, mult_t mq, shift_t sq, const data_t wk[CW], acc_t bk,
                           mult_t mk, shift_t sk, int Hc, int N, int d, data_t qb[MAX_N][MAX_D],
                           data_t qg[NQC][MAX_N][MAX_D], data_t kb[MAX_N][MAX_D], data_t kg[NQC][MAX_N][MAX_D]) {
    const int kh = (Hc + LANES - 1) / LANES;
    const int rounds = (N * d + L - 1) / L;
    accreg_t acc[L];
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 1
    int64_t iters = 0;
    int t = 0, r = 0, j = 0;
ATT_DECODE:
    for (int it = 0; it < 2 * rounds * kh; ++it) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 512
#pragma HLS PIPELINE II = 1
        VITACCEL_PERF(++iters);
        const data_t* w = (t == 0) ? wq : wk;
        for (int l = 0; l < L; ++l) {
#pragma HLS UNROLL
            const int u = r * L + l;
            if (u < N * d) {
                const data_t* e = (t == 0) ? &encq[u][j * LANES] : &enck[u][j * LANES];
                const mac_sum_t dot = dot_int8<LANES>(w + j * LANES, e);
                acc[l] = acc_plus((j == 0) ? accreg_t((t == 0) ? bq : bk) : acc[l], dot);
                if (j == kh - 1) {
                    const int n = u / d;
                    const int f = u - n * d;
                    if (t == 0) {
                        const data_t y = requantize(acc[l], mq, sq);
                        qb[n][f] = y;
#ifdef VITACCEL_GATHER_COPIES
                        for (int q = 0; q < NQC; ++q) {
#pragma HLS UNROLL
                            qg[q][n][f] = y;
                        }
#endif
                    } else {
                        const data_t y = requantize(acc[l], mk, sk);
                        kb[n][f] = y;
#ifdef VITACCEL_GATHER_COPIES
                        for (int q = 0; q < NQC; ++q) {
#pragma HLS UNROLL
                            kg[q][n][f] = y;
                        }
#endif
                    }
                }
            }
        }
        if (++j == kh) {
            j = 0;
            if (++r == rounds) {
                r = 0;
                ++t;
            }
        }
    }
    return iters + vitcod_sched::PIPE_MIX;
}

// ---- SDDMM --------------------------------------------------------------------------------------

// One loop, one iteration per cycle, for the whole MAC array: denser lines [0, ld), sparser slots [0, ls)
// (physically lines L - 1 - s, each with Q and K gather ports s). Writes S[i][c] for every global column
// and every kept sparse entry. iters[0], iters[1]: cycles each engine was busy; returns the status.
inline int sddmm(const data_t qb[MAX_N][MAX_D], const data_t qg[NQC][MAX_N][MAX_D], const data_t kb[MAX_N][MAX_D],
                 const data_t kg[NQC][MAX_N][MAX_D], const idx_t ord[MAX_N], const int cp[MAX_N + 1],
                 const int32_t* rowidx, int g, int ld, int ls, int N, int d, acc_t S[MAX_N][MAX_N], int64_t iters[2]) {
    const int cpd = (d + LANES - 1) / LANES;
    int status = OK;
    // Denser engine, K-stationary (many global columns): block dcb holds columns [dcb * ld, dcb * ld + nb);
    // first a K-load step per line, then N * cpd query chunks broadcast. Q-stationary (few global columns,
    // dense_qstat): block dcb holds queries [dcb * ld, dcb * ld + nb), a Q-load step per line, then the g
    // global keys' chunks broadcast, g * cpd. Each block's lines keep their vectors in vreg.
    const bool qstat = dense_qstat(g, ld, N, cpd);
    const int dunits = qstat ? N : g;       // what the blocks hold: queries or global columns
    const int dstream = qstat ? g : N;      // what streams past each block
    data_t kreg[L][MAX_D];
#pragma HLS ARRAY_PARTITION variable = kreg complete dim = 0
    accreg_t dacc[L];
#pragma HLS ARRAY_PARTITION variable = dacc complete dim = 1
    bool ddone = (g == 0);
    bool dload = true;
    int dcb = 0, dk = 0, di = 0, dch = 0;
    // Sparser engine: the head's CSC entries (columns g.. in order) as one stream, ls per round: slot s
    // takes entry se + s, its query through Q port s and its column's key through K port s, one chunk of
    // each per cycle, so a round is cpd cycles whatever columns its entries belong to. scur: the column of
    // the round's last entry (an index unit turns colptr into per-entry columns); sprev: the previous row
    // of that column (rows strictly increase within a column).
    accreg_t sacc[PS];
    int srow[PS], scol[PS];
    bool sok[PS];
#pragma HLS ARRAY_PARTITION variable = sacc complete dim = 1
#pragma HLS ARRAY_PARTITION variable = srow complete dim = 1
#pragma HLS ARRAY_PARTITION variable = scol complete dim = 1
#pragma HLS ARRAY_PARTITION variable = sok complete dim = 1
    const int e_end = (g < N) ? cp[N] : 0;
    int se = (g < N) ? cp[g] : 0, sch = 0, scur = g, sprev = -1;
    bool sdone = (g >= N) || (se >= e_end);
    int64_t dit = 0, sit = 0, streamed = 0;

ATT_SDDMM:
    while (!(ddone && sdone)) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 8192
#pragma HLS PIPELINE II = 1
        if (!ddone) {
            VITACCEL_PERF(++dit);
            const int base = dcb * ld;
            const int nb = (dunits - base < ld) ? dunits - base : ld;
            if (dload) {  // one line's vector per cycle: a global key (K-stationary) or a query
                for (int f = 0; f < MAX_D; ++f) {
#pragma HLS UNROLL
                    kreg[dk][f] = (f < d) ? (qstat ? qb[base + dk][f] : kb[ord[base + dk]][f]) : data_t(0);
                }
                if (++dk == nb) {
                    dload = false;
                    di = 0;
                    dch = 0;
                }
            } else {
                data_t xv[LANES];
#pragma HLS ARRAY_PARTITION variable = xv complete dim = 1
                for (int u = 0; u < LANES; ++u) {
#pragma HLS UNROLL
                    const int f = dch * LANES + u;
                    // broadcast to every denser line: the next query's chunk, or the next global key's
                    xv[u] = (f < d) ? (qstat ? kb[ord[di]][f] : qb[di][f]) : data_t(0);
                }
                for (int l = 0; l < L; ++l) {
#pragma HLS UNROLL
                    if (l < nb) {
                        const mac_sum_t dot = dot_int8<LANES>(xv, &kreg[l][dch * LANES]);
                        dacc[l] = acc_plus((dch == 0) ? accreg_t(0) : dacc[l], dot);
                        if (dch == cpd - 1) {
                            if (qstat) {
                                S[base + l][di] = dacc[l];
                            } else {
                                S[di][base + l] = dacc[l];
                            }
                        }
                    }
                }
                if (++dch == cpd) {
                    dch = 0;
                    if (++di == dstream) {
                        ++dcb;
                        dk = 0;
                        dload = true;
                        if (dcb * ld >= dunits) ddone = true;
                    }
                }
            }
        }
        if (!sdone) {
            VITACCEL_PERF(++sit);
            if (sch == 0) {  // the round's entries: rows from the rowidx stream, columns from colptr
                for (int s = 0; s < PS; ++s) {
#pragma HLS UNROLL
                    const int e = se + s;
                    sok[s] = false;
                    if (s < ls && e < e_end) {
                        while (cp[scur + 1] <= e) {  // entry e lies past column scur's end
                            ++scur;
                            sprev = -1;
                        }
                        const int32_t i = rowidx[e];
                        VITACCEL_PERF(++streamed);
                        if (i <= sprev || i >= N) {
                            status = ERR_ROWIDX;
                        } else {
                            srow[s] = i;
                            scol[s] = scur;
                            sok[s] = true;
                            sprev = i;
                        }
                    }
                }
            }
            for (int s = 0; s < PS; ++s) {
#pragma HLS UNROLL
                if (sok[s]) {
                    const idx_t j = ord[scol[s]];
                    data_t qx[LANES], kx[LANES];
#pragma HLS ARRAY_PARTITION variable = qx complete dim = 1
#pragma HLS ARRAY_PARTITION variable = kx complete dim = 1
                    for (int u = 0; u < LANES; ++u) {
#pragma HLS UNROLL
                        const int f = sch * LANES + u;
                        qx[u] = (f < d) ? gathered(qb, qg, s, srow[s], f) : data_t(0);  // Q port s
                        kx[u] = (f < d) ? gathered(kb, kg, s, j, f) : data_t(0);        // K port s
                    }
                    const mac_sum_t dot = dot_int8<LANES>(qx, kx);
                    sacc[s] = acc_plus((sch == 0) ? accreg_t(0) : sacc[s], dot);
                    if (sch == cpd - 1) S[srow[s]][scol[s]] = sacc[s];
                }
            }
            if (++sch == cpd) {
                sch = 0;
                se += ls;
                if (se >= e_end) sdone = true;
            }
        }
    }
    iters[0] = dit;
    iters[1] = sit;
    VITACCEL_PERF(perf::add(perf::ATT_BYTES_IN, 4 * streamed));
    return status;
}

// ---- softmax unit -------------------------------------------------------------------------------

// p of a kept entry from its e and its row's reciprocal: NUMERICS.md step 5, as in softmax_row.
inline prob_t normalise(expv_t e, recip_t recip) {
#pragma HLS INLINE
#if !defined(__SYNTHESIS__) && !defined(VITACCEL_CSIM_AP_ONLY)
    {   // C-simulation, in uint64: e <= 2^15 and recip <= 2^25, so the sum stays below 2^41 either way
        const uint64_t pp = ((uint64_t)e.to_uint64() * recip.to_uint64() + (uint64_t(1) << 31)) >> 32;
        return prob_t(pp > 255 ? 255 : (unsigned)pp);
    }
#endif
    const ap_uint<41> scaled = ap_uint<41>(e * recip) + (ap_uint<41>(1) << 31);
    const ap_uint<9> p = scaled >> 32;
    return (p > 255) ? prob_t(255) : prob_t(p);
}

static const int NB_MAX = (MAX_N + SL - 1) / SL;  // lane blocks per row

// The live lane blocks of row i (blocks of SL columns holding a kept entry), in order: what a priority
// encoder over the row's NB_MAX block flags hands the stage, one block per cycle. Returns how many.
inline int live_blocks(const bool keep[MAX_N][MAX_N], int i, int N, int blk[NB_MAX]) {
#pragma HLS INLINE
    int nl = 0;
    for (int b = 0; b < NB_MAX; ++b) {
#pragma HLS UNROLL
        bool any = false;
        for (int u = 0; u < SL; ++u) {
#pragma HLS UNROLL
            const int c = b * SL + u;
            if (c < N && keep[i][c]) any = true;
        }
        if (any) blk[nl++] = b;
    }
    return nl;
}

// What the max stage hands the exp stage per row. c1 (C-simulation only): the cycle at which the max stage
// finished the row, so that the exp stage can time itself against it.
struct RowMax {
    acc_t mx;
    bool any;
    int64_t c1;
};

// Max stage: one flattened pipelined loop over (row, live block), SL lanes per cycle; a row without any
// live block still takes one (empty) iteration.
inline void softmax_max_stage(const acc_t S[MAX_N][MAX_N], const bool keep[MAX_N][MAX_N], int N,
                              hls::stream<RowMax>& out) {
    int blk[NB_MAX];
#pragma HLS ARRAY_PARTITION variable = blk complete dim = 1
    int i = 0, t = 0, nl = live_blocks(keep, 0, N, blk);
    acc_t mx = 0;
    bool any = false;
    int64_t cyc = 0;
ATT_SOFTMAX_MAX:
    while (i < N) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 4096
#pragma HLS PIPELINE II = 1
        VITACCEL_PERF(++cyc);
        if (t < nl) {
            for (int u = 0; u < SL; ++u) {
#pragma HLS UNROLL
                const int c = blk[t] * SL + u;
                if (c < N && keep[i][c] && (!any || S[i][c] > mx)) {
                    mx = S[i][c];
                    any = true;
                }
            }
        }
        if (++t >= nl) {  // the row's last live block (or its one empty iteration)
            RowMax r;
            r.mx = mx;
            r.any = any;
            r.c1 = cyc;
            out.write(r);
            mx = 0;
            any = false;
            t = 0;
            if (++i < N) nl = live_blocks(keep, i, N, blk);
        }
    }
}

// Exp stage: the same walk; e = softmax_exp of every kept entry written over its score, summed per row;
// the row's reciprocal 2^40 / sum from the pipelined divider (0 for a row with nothing kept). Returns the
// cycles of the whole unit (C-simulation; 0 in synthesis).
inline int64_t softmax_exp_stage(acc_t S[MAX_N][MAX_N], const bool keep[MAX_N][MAX_N], int N, mult_t m_exp,
                                 shift_t s_exp, hls::stream<RowMax>& in, recip_t recip[MAX_N]) {
    int blk[NB_MAX];
#pragma HLS ARRAY_PARTITION variable = blk complete dim = 1
    int i = 0, t = 0, nl = 0;
    RowMax r = {0, false, 0};
    ap_uint<32> sum = 0;
    int64_t c2 = 0;  // cycle at which this stage finished its latest row
ATT_SOFTMAX_EXP:
    while (i < N) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 4096
#pragma HLS PIPELINE II = 1
        if (t == 0) {  // a new row: wait for its maximum
            r = in.read();
            nl = live_blocks(keep, i, N, blk);
            sum = 0;
            // The row starts once the max stage has handed it over and this stage is done with the last.
            VITACCEL_PERF(c2 = (c2 > r.c1 + vitcod_sched::PIPE_SM_MAX) ? c2 : r.c1 + vitcod_sched::PIPE_SM_MAX);
        }
        VITACCEL_PERF(++c2);
        if (t < nl) {
            for (int u = 0; u < SL; ++u) {
#pragma HLS UNROLL
                const int c = blk[t] * SL + u;
                if (c < N && keep[i][c]) {
                    const expv_t e = softmax_exp(S[i][c], r.mx, m_exp, s_exp);
                    S[i][c] = acc_t(e);
                    sum += e;
                }
            }
        }
        if (++t >= nl) {
            const ap_uint<41> one = ap_uint<41>(1) << RECIP_BITS;
            recip[i] = r.any ? recip_t(one / sum) : recip_t(0);
            t = 0;
            ++i;
        }
    }
    return c2 + vitcod_sched::PIPE_SM_EXP + vitcod_sched::PIPE_DIV;
}

// The softmax unit: max stage and exp stage in DATAFLOW (a FIFO of row maxima between them), SL lanes
// each, visiting a row's live blocks only. Replaces S[i][c] by e for kept entries and fills recip[i].
// Bits: softmax_row's (max and sum are exact, so the order of the blocks does not matter). Returns the
// cycles (C-simulation): sum over rows of b_i plus the exp stage's waits for the max stage, plus depths.
inline int64_t softmax_unit(acc_t S[MAX_N][MAX_N], const bool keep[MAX_N][MAX_N], int N, mult_t m_exp,
                            shift_t s_exp, recip_t recip[MAX_N]) {
#pragma HLS DATAFLOW
    hls::stream<RowMax> maxima("att_row_max");
#pragma HLS STREAM variable = maxima depth = 4
    softmax_max_stage(S, keep, N, maxima);
    return softmax_exp_stage(S, keep, N, m_exp, s_exp, maxima, recip);
}

// ---- S.V ----------------------------------------------------------------------------------------

// One loop, one iteration per cycle, both engines. Denser lines: rows rb * ld + l, output-stationary over
// the g global columns (chunk-major: for each chunk, every column), results into Od. Sparser slots:
// row-stationary in segments (below), results into Os[k] (osv[k][i]: row i of segment k holds a value).
inline int spmm(const acc_t S[MAX_N][MAX_N], const bool keep[MAX_N][MAX_N], const recip_t recip[MAX_N],
                const data_t vb[MAX_N][MAX_D], const data_t vg[NQC][MAX_N][MAX_D], const idx_t ord[MAX_N], int g,
                int ld, int ls, int N, int d, acc_t Od[MAX_N][MAX_D], acc_t Os[KSEG][MAX_N][MAX_D],
                bool osv[KSEG][MAX_N], int64_t iters[2]) {
    const int cpd = (d + LANES - 1) / LANES;
    accreg_t dacc[L][LANES];
#pragma HLS ARRAY_PARTITION variable = dacc complete dim = 0
    bool ddone = (g == 0);
    int drb = 0, dch = 0, dc = 0;
    // Sparser engine, row-stationary in segments: a row's kept sparser entries are cut into at most KSEG
    // segments of at most seg entries (seg = max(ceil(nnz / ls), ceil(longest row / KSEG)), from the
    // mask's counts), and each segment goes to the next free slot (lowest first, as many per cycle as slots
    // free up), which walks it chunk-major: for each M-feature chunk every entry of the segment in turn
    // (the next kept column found by a priority encoder over the row's mask bits), p * v[c] through V port
    // s. Segment k of row i owns Os[k][i], so no two slots ever add into one accumulator; the requantisers
    // add the segments' partial sums. A segment costs len * cpd cycles; no rowidx (SDDMM has streamed and
    // checked it). Splitting keeps one long row (a CLS query keeping most keys) from setting the makespan.
    int rcount[MAX_N];            // kept sparser entries of each row
    int seg_col[MAX_N][KSEG];     // first column of each segment of each row
    bool sbusy[PS];
    int srow[PS], sk[PS], scol[PS], sch[PS], sleft[PS], slen[PS];
    accreg_t sacc[PS][LANES];
#pragma HLS ARRAY_PARTITION variable = sbusy complete dim = 1
#pragma HLS ARRAY_PARTITION variable = srow complete dim = 1
#pragma HLS ARRAY_PARTITION variable = sk complete dim = 1
#pragma HLS ARRAY_PARTITION variable = scol complete dim = 1
#pragma HLS ARRAY_PARTITION variable = sch complete dim = 1
#pragma HLS ARRAY_PARTITION variable = sleft complete dim = 1
#pragma HLS ARRAY_PARTITION variable = slen complete dim = 1
#pragma HLS ARRAY_PARTITION variable = sacc complete dim = 0
    // (In hardware the counts and segment starts come with the mask rows as they load: a popcount and a
    // prefix count per row.)
    int total = 0, longest = 0;
    for (int i = 0; i < N; ++i) {
        int cnt = 0;
        for (int c = g; c < N; ++c) cnt += keep[i][c] ? 1 : 0;
        rcount[i] = cnt;
        total += cnt;
        if (cnt > longest) longest = cnt;
    }
    const int lsv = ls > 0 ? ls : 1;
    int seg = (total + lsv - 1) / lsv;
    if ((longest + KSEG - 1) / KSEG > seg) seg = (longest + KSEG - 1) / KSEG;
    if (seg < 1) seg = 1;
    for (int i = 0; i < N; ++i) {
        int m = 0;
        for (int c = g; c < N; ++c) {
            if (keep[i][c]) {
                if (m % seg == 0) seg_col[i][m / seg] = c;
                ++m;
            }
        }
    }
    for (int s = 0; s < PS; ++s) sbusy[s] = false;
    int snrow = 0, snk = 0;  // the dispatcher's next segment: row snrow, segment snk
    while (snrow < N && rcount[snrow] == 0) ++snrow;
    bool sdone = (g >= N) || (snrow >= N);
    int64_t dit = 0, sit = 0;

ATT_SPMM:
    while (!(ddone && sdone)) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 8192
#pragma HLS PIPELINE II = 1
        if (!ddone) {
            VITACCEL_PERF(++dit);
            const idx_t j = ord[dc];
            data_t vv[LANES];
#pragma HLS ARRAY_PARTITION variable = vv complete dim = 1
            for (int u = 0; u < LANES; ++u) {
#pragma HLS UNROLL
                const int f = dch * LANES + u;
                vv[u] = (f < d) ? vb[j][f] : data_t(0);  // broadcast
            }
            for (int l = 0; l < L; ++l) {
#pragma HLS UNROLL
                const int i = drb * ld + l;
                if (l < ld && i < N) {
                    const sprob_t p = keep[i][dc] ? sprob_t(normalise(expv_t(S[i][dc]), recip[i])) : sprob_t(0);
                    for (int u = 0; u < LANES; ++u) {
#pragma HLS UNROLL
                        dacc[l][u] = acc_plus((dc == 0) ? accreg_t(0) : dacc[l][u], mul_small(p, vv[u]));
                        const int f = dch * LANES + u;
                        if (dc == g - 1 && f < d) Od[i][f] = dacc[l][u];
                    }
                }
            }
            if (++dc == g) {
                dc = 0;
                if (++dch == cpd) {
                    dch = 0;
                    if (++drb * ld >= N) ddone = true;
                }
            }
        }
        if (!sdone) {
            VITACCEL_PERF(++sit);
            for (int s = 0; s < PS; ++s) {
#pragma HLS UNROLL
                if (s < ls && !sbusy[s] && snrow < N) {  // the dispatcher deals the next segment
                    const int len = rcount[snrow] - snk * seg;
                    sbusy[s] = true;
                    srow[s] = snrow;
                    sk[s] = snk;
                    scol[s] = seg_col[snrow][snk];
                    slen[s] = len < seg ? len : seg;
                    sleft[s] = slen[s];
                    sch[s] = 0;
                    if ((++snk) * seg >= rcount[snrow]) {
                        snk = 0;
                        ++snrow;
                        while (snrow < N && rcount[snrow] == 0) ++snrow;
                    }
                }
                if (sbusy[s]) {
                    const int i = srow[s], c = scol[s];
                    const sprob_t p = sprob_t(normalise(expv_t(S[i][c]), recip[i]));
                    const idx_t j = ord[c];
                    const bool first = (sleft[s] == slen[s]), last = (sleft[s] == 1);
                    int nc = c + 1;
                    while (nc < N && !keep[i][nc]) ++nc;  // the priority encoder
                    for (int u = 0; u < LANES; ++u) {
#pragma HLS UNROLL
                        const int f = sch[s] * LANES + u;
                        const data_t vx = (f < d) ? gathered(vb, vg, s, j, f) : data_t(0);  // V port s
                        sacc[s][u] = acc_plus(first ? accreg_t(0) : sacc[s][u], mul_small(p, vx));
                        if (last && f < d) Os[sk[s]][i][f] = sacc[s][u];
                    }
                    if (!last) {
                        scol[s] = nc;
                        --sleft[s];
                    } else if (++sch[s] == cpd) {
                        sbusy[s] = false;
                        osv[sk[s]][i] = true;
                    } else {
                        scol[s] = seg_col[i][sk[s]];
                        sleft[s] = slen[s];
                    }
                }
            }
            bool any = (snrow < N);
            for (int s = 0; s < PS; ++s) {
#pragma HLS UNROLL
                any = any || sbusy[s];
            }
            sdone = !any;
        }
    }
    iters[0] = dit;
    iters[1] = sit;
    return OK;
}

// ---- output -------------------------------------------------------------------------------------

// ob[n][f] = requantize(Od + the sparser segments' Os): L outputs per cycle (one requantiser per line, with
// a KSEG + 1 input adder). Returns the cycles.
inline int64_t requant_out(const acc_t Od[MAX_N][MAX_D], const acc_t Os[KSEG][MAX_N][MAX_D],
                           const bool osv[KSEG][MAX_N], int g, int N, int d, mult_t m, shift_t s,
                           data_t ob[MAX_N][MAX_D]) {
    const int rounds = (N * d + L - 1) / L;
    int64_t iters = 0;
ATT_REQUANT:
    for (int r = 0; r < rounds; ++r) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
#pragma HLS PIPELINE II = 1
        VITACCEL_PERF(++iters);
        for (int l = 0; l < L; ++l) {
#pragma HLS UNROLL
            const int u = r * L + l;
            if (u < N * d) {
                const int n = u / d;
                const int f = u - n * d;
                acc_t a = (g > 0) ? Od[n][f] : acc_t(0);
                for (int k = 0; k < KSEG; ++k) {
#pragma HLS UNROLL
                    if (osv[k][n]) a = acc_t(a + Os[k][n][f]);  // the segments' partial sums
                }
                ob[n][f] = requantize(a, m, s);
            }
        }
    }
    return iters + vitcod_sched::PIPE_RQ;
}

inline void store_head(const data_t ob[MAX_N][MAX_D], int8_t* out, int64_t hs, int64_t ns, int h, int N, int d) {
ATT_STORE:
    for (int t = 0; t < N * d; ++t) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 16384
#pragma HLS PIPELINE II = 1
        const int n = t / d;
        const int f = t - n * d;
        out[h * hs + n * ns + f] = int8_t(ob[n][f].to_int());
    }
    VITACCEL_PERF(perf::add(perf::ATT_BYTES_OUT, (int64_t)N * d));
}

// ---- the heads pipelined -------------------------------------------------------------------------

// When each phase of a layer can start, from the phases' own lengths (the cycle model's
// attention.head_pipeline follows the same rule). Three resources: the MAC lines (SDDMM, S.V and the AE
// decoder, in the order SDDMM(h), S.V(h - 1), decode(h + 1)), the softmax unit (softmax(h) once SDDMM(h)
// has finished and softmax(h - 1) is done) and the requantisers (requant(h) after S.V(h)). S, the mask
// rows, recip, V and the output accumulators are double-buffered for it. This C++ runs the phases one
// after another; the tracker gives the time the pipelined schedule takes (synthesis would need the head
// loop as a DATAFLOW region, like the cross-head DMA overlap that the cycle model also assumes).
struct HeadPipeline {
    int64_t mac = 0, sm = 0, rq = 0;
    int64_t sm_prev_end = 0, sp_prev = 0, rq_prev = 0;
    bool have_prev = false;

    // Head h's SDDMM, softmax, S.V and requant lengths, and the decode of head h + 1 (0 without one).
    void head(int64_t sddmm, int64_t softmax, int64_t spmm, int64_t requant, int64_t decode_next) {
        mac += sddmm;
        const int64_t sm_start = (mac > sm) ? mac : sm;
        sm = sm_start + softmax;
        flush();
        sm_prev_end = sm;
        sp_prev = spmm;
        rq_prev = requant;
        have_prev = true;
        mac += decode_next;
    }
    // S.V and requant of the previous head.
    void flush() {
        if (!have_prev) return;
        mac = ((mac > sm_prev_end) ? mac : sm_prev_end) + sp_prev;
        rq = ((rq > mac) ? rq : mac) + rq_prev;
        have_prev = false;
    }
    int64_t end() {
        flush();
        return rq;
    }
};

// ---- one layer ----------------------------------------------------------------------------------

// Runs heads 0..H-1. maskbits: (H, N, ceil(N/8)) bytes, reordered (see the top of this file); order
// (H, N), colptr (H, N + 1), headptr (H + 1), rowidx (rowidx_len entries) int32 as written by
// sim/vitcod/sparse_format.py. With a.Hc > 0, q and k are the compressed (Hc, N, d) tensors and dq_w / dk_w
// (H, Hc) int8 row-major, dq_b / dk_b (H,) int32 the decoders. Returns a status code; on an error the
// heads already stored stay written.
inline int attention_layer(const Args& a, const int8_t* q, const int8_t* k, const int8_t* v, int8_t* out,
                           const uint8_t* maskbits, const int32_t* order, const int32_t* colptr,
                           const int32_t* headptr, const int32_t* rowidx, int64_t rowidx_len, const int8_t* dq_w,
                           const int32_t* dq_b, const int8_t* dk_w, const int32_t* dk_b) {
    static data_t encq[MAX_N * MAX_D][CW];
    static data_t enck[MAX_N * MAX_D][CW];
#pragma HLS ARRAY_PARTITION variable = encq cyclic factor = L dim = 1
#pragma HLS ARRAY_PARTITION variable = encq complete dim = 2
#pragma HLS ARRAY_PARTITION variable = enck cyclic factor = L dim = 1
#pragma HLS ARRAY_PARTITION variable = enck complete dim = 2
    static data_t qb[MAX_N][MAX_D];
    static data_t qg[NQC][MAX_N][MAX_D];
    static data_t kb[MAX_N][MAX_D];
    static data_t kg[NQC][MAX_N][MAX_D];
    static data_t vb[MAX_N][MAX_D];
    static data_t vg[NQC][MAX_N][MAX_D];
#pragma HLS ARRAY_PARTITION variable = kg complete dim = 1
#pragma HLS ARRAY_PARTITION variable = kg cyclic factor = LANES dim = 3
#pragma HLS ARRAY_PARTITION variable = vg complete dim = 1
#pragma HLS ARRAY_PARTITION variable = vg cyclic factor = LANES dim = 3
#pragma HLS ARRAY_PARTITION variable = qb complete dim = 2
#pragma HLS ARRAY_PARTITION variable = qg complete dim = 1
#pragma HLS ARRAY_PARTITION variable = qg cyclic factor = LANES dim = 3
#pragma HLS ARRAY_PARTITION variable = kb complete dim = 2
#pragma HLS ARRAY_PARTITION variable = vb cyclic factor = LANES dim = 2
    static idx_t ord[MAX_N];
    static int cp[MAX_N + 1];
    static bool keep[MAX_N][MAX_N];
#pragma HLS ARRAY_PARTITION variable = keep cyclic factor = SL dim = 2
    static acc_t S[MAX_N][MAX_N];
#pragma HLS ARRAY_PARTITION variable = S cyclic factor = L dim = 2
    static recip_t recip[MAX_N];
    static acc_t Od[MAX_N][MAX_D];
    static acc_t Os[KSEG][MAX_N][MAX_D];
#pragma HLS ARRAY_PARTITION variable = Od cyclic factor = LANES dim = 2
#pragma HLS ARRAY_PARTITION variable = Os complete dim = 1
#pragma HLS ARRAY_PARTITION variable = Os cyclic factor = LANES dim = 3
    static bool osv[KSEG][MAX_N];
    static data_t ob[MAX_N][MAX_D];
    data_t wq[MAX_H][CW], wk[MAX_H][CW];
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
        if (!valid_split(a.n_global[h], a.sparse_lines[h], N)) return ERR_SPLIT;
    }
    VITACCEL_PERF(perf::add(perf::ATT_LAYERS, 1); for (int h = 0; h < MAX_H; ++h) for (int x = 0; x < perf::N_HEAD; ++x)
                      perf::counters().head[h][x] = 0);

    if (Hc > 0) {
        load_enc(q, a.q_hs, a.q_ns, Hc, N, d, encq);
        load_enc(k, a.k_hs, a.k_ns, Hc, N, d, enck);
    ATT_LOAD_DEC_W:
        for (int t = 0; t < H * CW; ++t) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 192
#pragma HLS PIPELINE II = 1
            const int h = t / CW;
            const int c = t - h * CW;
            wq[h][c] = (c < Hc) ? data_t(dq_w[h * Hc + c]) : data_t(0);
            wk[h][c] = (c < Hc) ? data_t(dk_w[h * Hc + c]) : data_t(0);
        }
    ATT_LOAD_DEC_B:
        for (int h = 0; h < H; ++h) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 12
#pragma HLS PIPELINE II = 1
            bq[h] = dq_b[h];
            bk[h] = dk_b[h];
        }
        VITACCEL_PERF(perf::add(perf::ATT_BYTES_IN, 2 * (int64_t)H * Hc + 8 * (int64_t)H));
        const int64_t dec0 = decode_head(encq, enck, wq[0], bq[0], mult_t(a.dq_m), shift_t(a.dq_s), wk[0], bk[0],
                                         mult_t(a.dk_m), shift_t(a.dk_s), Hc, N, d, qb, qg, kb, kg);
        VITACCEL_PERF(perf::add(perf::ATT_DECODE_PRO, dec0));
        (void)dec0;
    }

    HeadPipeline pipe;
ATT_HEADS:
    for (int h = 0; h < H; ++h) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 12
        const int g = a.n_global[h];
        const int ls = a.sparse_lines[h];
        const int ld = dense_lines(g, ls);
        VITACCEL_PERF(const int64_t in0 = perf::counters().total[perf::ATT_BYTES_IN];
                      perf::counters().head[h][perf::H_BYTES_IN] = -in0);
        int64_t hp = 0;
        int st = load_indexes(order, colptr, headptr, rowidx_len, h, N, ord, cp, &hp);
        if (st != OK) return st;
        load_mask(maskbits, h, N, keep);
        if (Hc == 0) {
            load_q_head(q, a.q_hs, a.q_ns, h, N, d, qb, qg);
            load_q_head(k, a.k_hs, a.k_ns, h, N, d, kb, kg);
        }
        load_q_head(v, a.v_hs, a.v_ns, h, N, d, vb, vg);
        for (int i = 0; i < MAX_N; ++i) {
#pragma HLS UNROLL
            for (int k = 0; k < KSEG; ++k) osv[k][i] = false;  // register vectors: cleared in one cycle
        }

        int64_t it1[2] = {0, 0};
        st = sddmm(qb, qg, kb, kg, ord, cp, rowidx + hp, g, ld, ls, N, d, S, it1);
        if (st != OK) return st;
        const int64_t t_sddmm = (it1[0] > it1[1] ? it1[0] : it1[1]) + vitcod_sched::PIPE_DOT;

        const int64_t t_soft = softmax_unit(S, keep, N, mult_t(a.m_exp), shift_t(a.s_exp), recip);
        int64_t t_dec = 0;
        if (Hc > 0 && h + 1 < H) {
            t_dec = decode_head(encq, enck, wq[h + 1], bq[h + 1], mult_t(a.dq_m), shift_t(a.dq_s), wk[h + 1],
                                bk[h + 1], mult_t(a.dk_m), shift_t(a.dk_s), Hc, N, d, qb, qg, kb, kg);
        }

        int64_t it3[2] = {0, 0};
        st = spmm(S, keep, recip, vb, vg, ord, g, ld, ls, N, d, Od, Os, osv, it3);
        if (st != OK) return st;
        const int64_t t_spmm = (it3[0] > it3[1] ? it3[0] : it3[1]) + vitcod_sched::PIPE_DOT;

        const int64_t t_req = requant_out(Od, Os, osv, g, N, d, mult_t(a.m_out), shift_t(a.s_out), ob);
        store_head(ob, out, a.o_hs, a.o_ns, h, N, d);

        VITACCEL_PERF({
            perf::Counters& pc = perf::counters();
            pc.total[perf::ATT_SDDMM] += t_sddmm;
            pc.total[perf::ATT_SDDMM_DENSE] += it1[0];
            pc.total[perf::ATT_SDDMM_SPARSE] += it1[1];
            pc.total[perf::ATT_SOFTMAX] += t_soft;
            pc.total[perf::ATT_DECODE] += t_dec;
            pc.total[perf::ATT_SM_PHASE] += (t_soft > t_dec ? t_soft : t_dec);
            pc.total[perf::ATT_SPMM] += t_spmm;
            pc.total[perf::ATT_SPMM_DENSE] += it3[0];
            pc.total[perf::ATT_SPMM_SPARSE] += it3[1];
            pc.total[perf::ATT_REQUANT] += t_req;
            pipe.head(t_sddmm, t_soft, t_spmm, t_req, t_dec);
            int64_t* hr = pc.head[h];
            hr[perf::H_SDDMM] = t_sddmm;
            hr[perf::H_SOFTMAX] = t_soft;
            hr[perf::H_DECODE_NEXT] = t_dec;
            hr[perf::H_SPMM] = t_spmm;
            hr[perf::H_REQUANT] = t_req;
            hr[perf::H_BYTES_IN] += pc.total[perf::ATT_BYTES_IN];
        });
        (void)t_sddmm;
        (void)t_soft;
        (void)t_dec;
        (void)t_spmm;
        (void)t_req;
    }
    VITACCEL_PERF(perf::add(perf::ATT_PIPELINE, pipe.end()));
    return OK;
}

}  // namespace attention
}  // namespace vitaccel

#endif  // VITACCEL_KERNELS_ATTENTION_H
