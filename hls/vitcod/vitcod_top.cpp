// The ViTCoD accelerator's top-level function: runs a list of descriptors (GEMM, AE mix, attention, LayerNorm,
// residual add, table lookup: the whole model, one start per image batch)
// that the host wrote into DRAM, dispatching each to its engine. Register map: DESCRIPTOR.md. The
// descriptor layout and status codes are the generated hls/include/isa/vitcod_isa.h (from
// vitaccel/sim/vitcod/isa.py); vitcod_desc_layout below reports the compiled values to the tests.
//
// Memory model: one DRAM window of mem_bytes bytes. Every m_axi port's base-address register is set by
// the host to the start of that window (one physically contiguous buffer); descriptors carry byte offsets
// into it. The ports are split into three AXI masters (bundles) so that activations, indexes and weights
// stream in parallel:
//   gmem_act  act_in (int8 reads), act_out (int8 writes)
//   gmem_idx  idx (int32: descriptors, order, colptr, headptr, rowidx), mask (packed mask bits)
//   gmem_wgt  wgt (int8 weights), wconst (int32 biases, multipliers, shifts)
// Every range a descriptor names is checked against mem_bytes before its engine starts, so a bad
// descriptor gets a status code instead of a stray DRAM access.
#include <stdint.h>

#include "attention/attention.h"
#include "autoencoder/autoencoder.h"
#include "autoencoder/qkv_ae.h"
#include "eltwise/eltwise.h"
#include "gemm/gemm.h"
#include "layernorm/layernorm.h"
#include "vitaccel_config.h"
#include "isa/vitcod_isa.h"

namespace vitaccel {
namespace top {

// The descriptor format and status codes: the generated ISA table (vitaccel/sim/vitcod/isa.py).
using namespace isa;
using namespace isa::vitcod;
static_assert(cfg::MAX_HEADS <= NGLOBAL_SLOTS, "n_global needs one descriptor word per head");

typedef uint64_t addr_t;

// [off, off + len) inside the window.
inline bool in_window(uint32_t off, addr_t len, uint32_t mem) { return (addr_t)off + len <= (addr_t)mem; }

// [a, a + alen) and [b, b + blen) share a byte (empty ranges share none).
inline bool overlaps(uint32_t a, addr_t alen, uint32_t b, addr_t blen) {
    return alen > 0 && blen > 0 && (addr_t)a < (addr_t)b + blen && (addr_t)b < (addr_t)a + alen;
}

// Bytes spanned by a (heads, N, d) tensor with byte strides hs, ns.
inline addr_t span3(int heads, int N, int d, int32_t hs, int32_t ns) {
    return (addr_t)(heads - 1) * (addr_t)hs + (addr_t)(N - 1) * (addr_t)ns + (addr_t)d;
}

inline int run_gemm(const int32_t dw[DESC_WORDS], const int8_t* act_in, int8_t* act_out, const int8_t* wgt,
                    const int32_t* wconst, uint32_t mem) {
    const int M = dw[G_M], K = dw[G_K], O = dw[G_O];
    if (M < 1 || K < 1 || O < 1) return GEMM_ERR_DIMS;
    const uint32_t x = dw[G_X], w = dw[G_W], b = dw[G_BIAS], m = dw[G_MULT], s = dw[G_SHIFT], y = dw[G_Y];
    if ((b | m | s) & 3) return ERR_ALIGN;
    if (!in_window(x, (addr_t)M * K, mem) || !in_window(w, (addr_t)O * K, mem) || !in_window(b, 4 * (addr_t)O, mem) ||
        !in_window(m, 4 * (addr_t)O, mem) || !in_window(s, 4 * (addr_t)O, mem) || !in_window(y, (addr_t)M * O, mem))
        return ERR_RANGE;
    // The engine reads inputs while it writes outputs (tile by tile), so the two must not share a byte.
    const addr_t ylen = (addr_t)M * O;
    if (overlaps(y, ylen, x, (addr_t)M * K) || overlaps(y, ylen, w, (addr_t)O * K) || overlaps(y, ylen, b, 4 * (addr_t)O) ||
        overlaps(y, ylen, m, 4 * (addr_t)O) || overlaps(y, ylen, s, 4 * (addr_t)O))
        return ERR_OVERLAP;
    return gemm::Gemm<cfg::GemmArray>::gemm_layer(act_in + x, wgt + w, wconst + b / 4, wconst + m / 4, wconst + s / 4, act_out + y, M, K, O);
}

inline int run_ae(const int32_t dw[DESC_WORDS], const int8_t* act_in, int8_t* act_out, const int8_t* wgt,
                  const int32_t* wconst, uint32_t mem) {
    const int Hin = dw[E_HIN], C = dw[E_C], N = dw[E_N], d = dw[E_D];
    if (Hin < 1 || Hin > cfg::MAX_HEADS || C < 1 || C > cfg::MAX_HEADS || N < 1 || N > cfg::MAX_TOKENS || d < 1 ||
        d > cfg::MAX_HEAD_DIM)
        return AE_ERR_DIMS;
    if (dw[E_X_HS] < 0 || dw[E_X_NS] < 0 || dw[E_Y_HS] < 0 || dw[E_Y_NS] < 0) return ERR_STRIDE;
    const uint32_t x = dw[E_X], w = dw[E_W], b = dw[E_B], y = dw[E_Y];
    if (b & 3) return ERR_ALIGN;
    const addr_t xlen = span3(Hin, N, d, dw[E_X_HS], dw[E_X_NS]), ylen = span3(C, N, d, dw[E_Y_HS], dw[E_Y_NS]);
    if (!in_window(x, xlen, mem) || !in_window(w, (addr_t)C * Hin, mem) || !in_window(b, 4 * (addr_t)C, mem) ||
        !in_window(y, ylen, mem))
        return ERR_RANGE;
    if (overlaps(y, ylen, x, xlen) || overlaps(y, ylen, w, (addr_t)C * Hin) || overlaps(y, ylen, b, 4 * (addr_t)C))
        return ERR_OVERLAP;
    return ae::ae_mix(act_in + x, dw[E_X_HS], dw[E_X_NS], wgt + w, wconst + b / 4, dw[E_MULT], dw[E_SHIFT],
                      act_out + y, dw[E_Y_HS], dw[E_Y_NS], Hin, C, N, d);
}

inline int run_qkv_ae(const int32_t dw[DESC_WORDS], const int8_t* act_in, int8_t* act_out, const int8_t* wgt,
                      const int32_t* wconst, uint32_t mem) {
    const int M = dw[F_M], K = dw[F_K], H = dw[F_H], d = dw[F_D], Hc = dw[F_HC], N = dw[F_N];
    if (M < 1 || K < 1 || H < 1 || H > cfg::MAX_HEADS || d < 1 || d > cfg::MAX_HEAD_DIM || N < 1 ||
        N > cfg::MAX_TOKENS || M % N != 0 || Hc < 1 || Hc > H || (dw[F_STAGE_QK] != 0 && dw[F_STAGE_QK] != 1) ||
        qkv_ae::stage_rows((1 + dw[F_STAGE_QK]) * H * d) < 1)
        return AE_ERR_QKV_DIMS;
    const uint32_t x = dw[F_X], w = dw[F_W], b = dw[F_BIAS], m = dw[F_MULT], s = dw[F_SHIFT], y = dw[F_Y];
    const uint32_t qc = dw[F_QC], kc = dw[F_KC], eqw = dw[F_EQ_W], eqb = dw[F_EQ_B], ekw = dw[F_EK_W], ekb = dw[F_EK_B];
    if ((b | m | s | eqb | ekb) & 3) return ERR_ALIGN;
    const addr_t D3 = 3 * (addr_t)H * d, xlen = (addr_t)M * K, wlen = D3 * K, clen = 4 * D3, ylen = (addr_t)M * D3;
    const addr_t zlen = (addr_t)M * Hc * d, ewlen = (addr_t)Hc * H, eblen = 4 * (addr_t)Hc;
    if (!in_window(x, xlen, mem) || !in_window(w, wlen, mem) || !in_window(b, clen, mem) || !in_window(m, clen, mem) ||
        !in_window(s, clen, mem) || !in_window(y, ylen, mem) || !in_window(qc, zlen, mem) || !in_window(kc, zlen, mem) ||
        !in_window(eqw, ewlen, mem) || !in_window(eqb, eblen, mem) || !in_window(ekw, ewlen, mem) ||
        !in_window(ekb, eblen, mem))
        return ERR_RANGE;
    // No output may share a byte with an input or with another output.
    const uint32_t in_off[9] = {x, w, b, m, s, eqw, eqb, ekw, ekb};
    const addr_t in_len[9] = {xlen, wlen, clen, clen, clen, ewlen, eblen, ewlen, eblen};
    const uint32_t out_off[3] = {y, qc, kc};
    const addr_t out_len[3] = {ylen, zlen, zlen};
    for (int o = 0; o < 3; ++o) {
        for (int i = 0; i < 9; ++i)
            if (overlaps(out_off[o], out_len[o], in_off[i], in_len[i])) return ERR_OVERLAP;
        for (int p = o + 1; p < 3; ++p)
            if (overlaps(out_off[o], out_len[o], out_off[p], out_len[p])) return ERR_OVERLAP;
    }
    if (K > gemm::Gemm<cfg::GemmArray>::MAX_K) return GEMM_ERR_K_TOO_LONG;
    if (dw[F_EQ_M] < 0 || dw[F_EQ_S] < 0 || dw[F_EQ_S] > 63 || dw[F_EK_M] < 0 || dw[F_EK_S] < 0 || dw[F_EK_S] > 63)
        return AE_ERR_QUANT;
    return qkv_ae::qkv_ae(act_in + x, wgt + w, wconst + b / 4, wconst + m / 4, wconst + s / 4, act_out + y, act_out + qc,
                          act_out + kc, wgt + eqw, wconst + eqb / 4, dw[F_EQ_M], dw[F_EQ_S], wgt + ekw, wconst + ekb / 4,
                          dw[F_EK_M], dw[F_EK_S], M, K, H, d, Hc, N, dw[F_STAGE_QK] == 1);
}

inline int run_attention(const int32_t dw[DESC_WORDS], const int8_t* act_in, int8_t* act_out, const int32_t* idx,
                         const uint8_t* mask, const int8_t* wgt, const int32_t* wconst, uint32_t mem) {
    attention::Args a;
    a.H = dw[A_H];
    a.N = dw[A_N];
    a.d = dw[A_D];
    a.Hc = dw[A_HC];
    const int H = a.H, N = a.N, d = a.d, Hc = a.Hc;
    if (H < 1 || H > cfg::MAX_HEADS || N < 1 || N > cfg::MAX_TOKENS || d < 1 || d > cfg::MAX_HEAD_DIM || Hc < 0 ||
        Hc > H)
        return ATT_ERR_DIMS;
    if (dw[A_Q_HS] < 0 || dw[A_Q_NS] < 0 || dw[A_K_HS] < 0 || dw[A_K_NS] < 0 || dw[A_V_HS] < 0 || dw[A_V_NS] < 0 ||
        dw[A_O_HS] < 0 || dw[A_O_NS] < 0)
        return ERR_STRIDE;
    a.q_hs = dw[A_Q_HS];
    a.q_ns = dw[A_Q_NS];
    a.k_hs = dw[A_K_HS];
    a.k_ns = dw[A_K_NS];
    a.v_hs = dw[A_V_HS];
    a.v_ns = dw[A_V_NS];
    a.o_hs = dw[A_O_HS];
    a.o_ns = dw[A_O_NS];
    a.m_exp = dw[A_M_EXP];
    a.s_exp = dw[A_S_EXP];
    a.m_out = dw[A_M_OUT];
    a.s_out = dw[A_S_OUT];
    a.dq_m = dw[A_DQ_M];
    a.dq_s = dw[A_DQ_S];
    a.dk_m = dw[A_DK_M];
    a.dk_s = dw[A_DK_S];
    for (int h = 0; h < attention::MAX_H; ++h) {
#pragma HLS UNROLL
        const uint32_t word = (h < H) ? (uint32_t)dw[A_N_GLOBAL + h] : 0u;
        a.n_global[h] = (int32_t)(word & 0xFFFFu);
        a.sparse_lines[h] = (int32_t)(word >> 16);
    }

    const uint32_t q = dw[A_Q], k = dw[A_K], v = dw[A_V], o = dw[A_O];
    const uint32_t mk = dw[A_MASK], ord = dw[A_ORDER], cp = dw[A_COLPTR], hp = dw[A_HEADPTR], ri = dw[A_ROWIDX];
    const uint32_t dqw = dw[A_DQ_W], dqb = dw[A_DQ_B], dkw = dw[A_DK_W], dkb = dw[A_DK_B];
    if ((ord | cp | hp | ri) & 3) return ERR_ALIGN;
    if (Hc > 0 && ((dqb | dkb) & 3)) return ERR_ALIGN;
    const int hq = Hc > 0 ? Hc : H;
    if (!in_window(q, span3(hq, N, d, a.q_hs, a.q_ns), mem) || !in_window(k, span3(hq, N, d, a.k_hs, a.k_ns), mem) ||
        !in_window(v, span3(H, N, d, a.v_hs, a.v_ns), mem) || !in_window(o, span3(H, N, d, a.o_hs, a.o_ns), mem) ||
        !in_window(mk, (addr_t)H * N * ((N + 7) / 8), mem) || !in_window(ord, 4 * (addr_t)H * N, mem) ||
        !in_window(cp, 4 * (addr_t)H * (N + 1), mem) || !in_window(hp, 4 * (addr_t)(H + 1), mem) ||
        !in_window(ri, 0, mem))
        return ERR_RANGE;
    if (Hc > 0 && (!in_window(dqw, (addr_t)H * Hc, mem) || !in_window(dqb, 4 * (addr_t)H, mem) ||
                   !in_window(dkw, (addr_t)H * Hc, mem) || !in_window(dkb, 4 * (addr_t)H, mem)))
        return ERR_RANGE;
    // The output must share no byte with what the engines read: Q, K, V, the index tables, rowidx up to
    // headptr[H] (clipped to the window; a bad headptr fails later with 0x305) and the decoders.
    {
        const addr_t olen = span3(H, N, d, a.o_hs, a.o_ns);
        const int32_t r_end = idx[hp / 4 + H];
        const addr_t rlen0 = r_end > 0 ? 4 * (addr_t)r_end : 0;
        const addr_t rlen = (addr_t)ri + rlen0 > mem ? (addr_t)mem - ri : rlen0;
        bool ov = overlaps(o, olen, q, span3(hq, N, d, a.q_hs, a.q_ns)) ||
                  overlaps(o, olen, k, span3(hq, N, d, a.k_hs, a.k_ns)) ||
                  overlaps(o, olen, v, span3(H, N, d, a.v_hs, a.v_ns)) ||
                  overlaps(o, olen, mk, (addr_t)H * N * ((N + 7) / 8)) || overlaps(o, olen, ord, 4 * (addr_t)H * N) ||
                  overlaps(o, olen, cp, 4 * (addr_t)H * (N + 1)) || overlaps(o, olen, hp, 4 * (addr_t)(H + 1)) ||
                  overlaps(o, olen, ri, rlen);
        if (Hc > 0)
            ov = ov || overlaps(o, olen, dqw, (addr_t)H * Hc) || overlaps(o, olen, dqb, 4 * (addr_t)H) ||
                 overlaps(o, olen, dkw, (addr_t)H * Hc) || overlaps(o, olen, dkb, 4 * (addr_t)H);
        if (ov) return ERR_OVERLAP;
    }
    // rowidx may run to the end of the window; the engine checks every head's segment against it.
    const int64_t rowidx_len = (int64_t)(mem - ri) / 4;
    return attention::attention_layer(a, act_in + q, act_in + k, act_in + v, act_out + o, mask + mk, idx + ord / 4,
                                      idx + cp / 4, idx + hp / 4, idx + ri / 4, rowidx_len, wgt + dqw, wconst + dqb / 4,
                                      wgt + dkw, wconst + dkb / 4);
}

// The whole model's vector kernels. int16 tensors travel on the activation ports as byte pairs (2-byte
// aligned); g / b are int32 constants on the weight-constant port.
inline int run_layernorm(const int32_t dw[DESC_WORDS], const int8_t* act_in, int8_t* act_out, const int32_t* wconst,
                         uint32_t mem) {
    const int rows = dw[L_ROWS], D = dw[L_D];
    if (rows < 1 || D < 1 || D > layernorm::MAX_D) return LN_ERR_DIMS;
    const uint32_t x = dw[L_X], g = dw[L_G], b = dw[L_B], y = dw[L_Y];
    if ((x & 1) || ((g | b) & 3)) return ERR_ALIGN;
    const addr_t xlen = 2 * (addr_t)rows * D, ylen = (addr_t)rows * D;
    if (!in_window(x, xlen, mem) || !in_window(g, 4 * (addr_t)D, mem) || !in_window(b, 4 * (addr_t)D, mem) ||
        !in_window(y, ylen, mem))
        return ERR_RANGE;
    if (overlaps(y, ylen, x, xlen) || overlaps(y, ylen, g, 4 * (addr_t)D) || overlaps(y, ylen, b, 4 * (addr_t)D))
        return ERR_OVERLAP;
    const int st = layernorm::LayerNorm<cfg::GemmArray>::layer((const int16_t*)(act_in + x), wconst + g / 4,
                                                               wconst + b / 4, dw[L_SHIFT], dw[L_EPS], act_out + y,
                                                               rows, D);
    return st == layernorm::OK ? OK : (st == layernorm::ERR_DIMS ? LN_ERR_DIMS : LN_ERR_PARAM);
}

inline int run_add(const int32_t dw[DESC_WORDS], const int8_t* act_in, int8_t* act_out, uint32_t mem) {
    const int n = dw[R_N];
    if (n < 1) return ADD_ERR_DIMS;
    const int ab = dw[R_A_BITS], bb = dw[R_B_BITS], yb = dw[R_Y_BITS], shift = dw[R_SHIFT];
    if ((ab != 8 && ab != 16) || (bb != 8 && bb != 16) || (yb != 8 && yb != 16) || dw[R_MA] < 0 || dw[R_MB] < 0 ||
        shift < 0 || shift > 62)
        return ADD_ERR_PARAM;
    const uint32_t a = dw[R_A], b = dw[R_B], y = dw[R_Y];
    if ((ab == 16 && (a & 1)) || (bb == 16 && (b & 1)) || (yb == 16 && (y & 1))) return ERR_ALIGN;
    const addr_t alen = (addr_t)n * (ab / 8), blen = (addr_t)n * (bb / 8), ylen = (addr_t)n * (yb / 8);
    if (!in_window(a, alen, mem) || !in_window(b, blen, mem) || !in_window(y, ylen, mem)) return ERR_RANGE;
    if (overlaps(y, ylen, a, alen) || overlaps(y, ylen, b, blen)) return ERR_OVERLAP;
    const int st = eltwise::Eltwise<cfg::GemmArray>::add(act_in + a, ab, dw[R_MA], act_in + b, bb, dw[R_MB], shift,
                                                         act_out + y, yb, n);
    return st == eltwise::OK ? OK : ADD_ERR_PARAM;
}

inline int run_lut(const int32_t dw[DESC_WORDS], const int8_t* act_in, int8_t* act_out, const int8_t* wgt,
                   uint32_t mem) {
    const int n = dw[T_N];
    if (n < 1) return LUT_ERR_DIMS;
    const uint32_t x = dw[T_X], t = dw[T_TABLE], y = dw[T_Y];
    if (!in_window(x, (addr_t)n, mem) || !in_window(t, 256, mem) || !in_window(y, (addr_t)n, mem)) return ERR_RANGE;
    if (overlaps(y, (addr_t)n, x, (addr_t)n) || overlaps(y, (addr_t)n, t, 256)) return ERR_OVERLAP;
    return eltwise::Eltwise<cfg::GemmArray>::lut(act_in + x, wgt + t, act_out + y, n) == eltwise::OK ? OK
                                                                                                   : LUT_ERR_DIMS;
}

}  // namespace top
}  // namespace vitaccel

// Runs descriptors [0, num_instr) found at byte offset desc_off of the window. Returns 0, or
// (index << 16) | code for the first descriptor that failed (the ones before it ran to completion).
// hw_id always receives vitaccel::cfg::CONFIG_HASH32, so a call with num_instr = 0 just reads the ID.
// run_count receives the number of times the top has started since reset, this start included, so the
// host can tell a run that happened from a done bit left over (a start that was lost).
int vitcod_top(const int8_t* act_in, int8_t* act_out, const int32_t* idx, const uint8_t* mask, const int8_t* wgt,
               const int32_t* wconst, uint32_t desc_off, uint32_t num_instr, uint32_t mem_bytes, uint32_t* hw_id,
               uint32_t* run_count) {
#pragma HLS INTERFACE m_axi port = act_in offset = slave bundle = gmem_act max_read_burst_length = 64
#pragma HLS INTERFACE m_axi port = act_out offset = slave bundle = gmem_act max_write_burst_length = 64
#pragma HLS INTERFACE m_axi port = idx offset = slave bundle = gmem_idx max_read_burst_length = 64
#pragma HLS INTERFACE m_axi port = mask offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = wgt offset = slave bundle = gmem_wgt max_read_burst_length = 64
#pragma HLS INTERFACE m_axi port = wconst offset = slave bundle = gmem_wgt
#pragma HLS INTERFACE s_axilite port = desc_off bundle = control
#pragma HLS INTERFACE s_axilite port = num_instr bundle = control
#pragma HLS INTERFACE s_axilite port = mem_bytes bundle = control
#pragma HLS INTERFACE s_axilite port = hw_id bundle = control
#pragma HLS INTERFACE s_axilite port = run_count bundle = control
#pragma HLS INTERFACE s_axilite port = return bundle = control
    using namespace vitaccel::top;
    static uint32_t runs = 0;  // a register: cleared by the block's reset, kept between starts
    *hw_id = vitaccel::cfg::CONFIG_HASH32;
    *run_count = ++runs;
    if (num_instr >= MAX_INSTR) return ERR_COUNT;
    if (desc_off & 3) return ERR_ALIGN;
    if (!in_window(desc_off, (addr_t)num_instr * DESC_WORDS * 4, mem_bytes)) return ERR_RANGE;

    int32_t dw[DESC_WORDS];
#pragma HLS ARRAY_PARTITION variable = dw complete dim = 1
TOP_INSTRUCTIONS:
    for (uint32_t i = 0; i < num_instr; ++i) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 8
    TOP_FETCH:
        for (int w = 0; w < DESC_WORDS; ++w) {
#pragma HLS PIPELINE II = 1
            dw[w] = idx[desc_off / 4 + (addr_t)i * DESC_WORDS + w];
        }
        int status = OK;
        if (dw[W_FLAGS] != 0) {
            status = ERR_OP;
        } else if (dw[W_OP] == OP_NOP) {
            status = OK;
        } else if (dw[W_OP] == OP_GEMM) {
            status = run_gemm(dw, act_in, act_out, wgt, wconst, mem_bytes);
        } else if (dw[W_OP] == OP_AE_MIX) {
            status = run_ae(dw, act_in, act_out, wgt, wconst, mem_bytes);
        } else if (dw[W_OP] == OP_QKV_AE) {
            status = run_qkv_ae(dw, act_in, act_out, wgt, wconst, mem_bytes);
        } else if (dw[W_OP] == OP_ATTENTION) {
            status = run_attention(dw, act_in, act_out, idx, mask, wgt, wconst, mem_bytes);
        } else if (dw[W_OP] == OP_LAYERNORM) {
            status = run_layernorm(dw, act_in, act_out, wconst, mem_bytes);
        } else if (dw[W_OP] == OP_ADD) {
            status = run_add(dw, act_in, act_out, mem_bytes);
        } else if (dw[W_OP] == OP_LUT) {
            status = run_lut(dw, act_in, act_out, wgt, mem_bytes);
        } else {
            status = ERR_OP;
        }
        if (status != OK) return (int)((i << 16) | (uint32_t)status);
    }
    return OK;
}

#ifndef __SYNTHESIS__
// C-simulation only: the descriptor layout, so that the Python descriptor builder can be checked against
// this file. Writes up to n (name index, value) pairs in the order of DESC_LAYOUT_NAMES in
// vitaccel/sim/vitcod/csim_kernels.py; returns how many values the layout has.
extern "C" int vitcod_desc_layout(int32_t* out, int n) {
    using namespace vitaccel::isa::vitcod;
    // The order of Isa.layout() in vitaccel/sim/isa.py: DESC_WORDS, the opcodes, the header words, each
    // operation's words, the extra constants.
    const int32_t v[] = {DESC_WORDS, OP_NOP,   OP_GEMM,   OP_AE_MIX, OP_ATTENTION, OP_LAYERNORM, OP_ADD, OP_LUT,
                         OP_QKV_AE,
                         W_OP,     W_FLAGS,  G_M,
                         G_K,        G_O,      G_X,       G_W,       G_BIAS,       G_MULT,   G_SHIFT,  G_Y,
                         E_HIN,      E_C,      E_N,       E_D,       E_X,          E_X_HS,   E_X_NS,   E_W,
                         E_B,        E_MULT,   E_SHIFT,   E_Y,       E_Y_HS,       E_Y_NS,   A_H,      A_N,
                         A_D,        A_HC,     A_Q,       A_Q_HS,    A_Q_NS,       A_K,      A_K_HS,   A_K_NS,
                         A_V,        A_V_HS,   A_V_NS,    A_O,       A_O_HS,       A_O_NS,   A_MASK,   A_ORDER,
                         A_COLPTR,   A_HEADPTR, A_ROWIDX, A_M_EXP,   A_S_EXP,      A_M_OUT,  A_S_OUT,  A_DQ_W,
                         A_DQ_B,     A_DQ_M,   A_DQ_S,    A_DK_W,    A_DK_B,       A_DK_M,   A_DK_S,   A_N_GLOBAL,
                         L_ROWS,     L_D,      L_X,       L_G,       L_B,          L_SHIFT,  L_EPS,    L_Y,
                         R_N,        R_A,      R_A_BITS,  R_MA,      R_B,          R_B_BITS, R_MB,     R_SHIFT,
                         R_Y,        R_Y_BITS, T_N,       T_X,       T_TABLE,      T_Y,      F_M,      F_K,
                         F_H,        F_D,      F_HC,      F_N,       F_X,          F_W,      F_BIAS,   F_MULT,
                         F_SHIFT,    F_Y,      F_QC,      F_KC,      F_EQ_W,       F_EQ_B,   F_EQ_M,   F_EQ_S,
                         F_EK_W,     F_EK_B,   F_EK_M,    F_EK_S,    F_STAGE_QK, NGLOBAL_SLOTS};
    const int count = static_cast<int>(sizeof(v) / sizeof(v[0]));
    for (int i = 0; i < count && i < n; ++i) out[i] = v[i];
    return count;
}
#endif
