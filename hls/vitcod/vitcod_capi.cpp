// C entry points over flat arrays for the ViTCoD engines (hls/common/, hls/vitcod/), so that
// vitaccel/sim/vitcod/csim_kernels.py can run them through ctypes and compare them with the simulator's
// functional models. Not synthesised: test glue, so it may allocate.
//
// Build (csim_kernels.py does this, with hls/common and hls/vitcod on the include path):
//   g++ -O2 -std=c++14 -shared -fPIC -DVITACCEL_TARGET_<IDENT> -I hls/common -I hls/vitcod -I hls/include -I hls/include/csim
//       -isystem <ap_types> vitcod/vitcod_capi.cpp vitcod/vitcod_top.cpp
//
// Every function returns the engine's status (0 ok; codes in DESCRIPTOR.md). Shapes are checked against
// the compiled limits before any array is touched; the arrays themselves must have the sizes stated.
#include <stdint.h>

#include <vector>

#include "attention/attention.h"
#include "autoencoder/autoencoder.h"
#include "gemm/gemm.h"
#include "perf.h"
#include "vitcod_schedule.h"
#include "vitaccel_config.h"

// hls/vitcod/vitcod_top.cpp (compiled alongside; a signature mismatch fails to link).
int vitcod_top(const int8_t* act_in, int8_t* act_out, const int32_t* idx, const uint8_t* mask, const int8_t* wgt,
               const int32_t* wconst, uint32_t desc_off, uint32_t num_instr, uint32_t mem_bytes, uint32_t* hw_id,
               uint32_t* run_count);

namespace {

const int ERR_CAPI_ARGS = -1;  // a shape or size the wrapper refuses before calling the engine

}  // namespace

extern "C" {

unsigned vitaccel_kernels_config_hash32(void) { return vitaccel::cfg::CONFIG_HASH32; }

// Compiled limits and engine shapes, in this order (returns how many there are):
// MAX_TOKENS, MAX_HEADS, MAX_HEAD_DIM, MAC_LINES, MACS_PER_LINE, gemm MAX_K, gemm WLINE, gemm XWORDS,
// attention DENSE_LINES (lines without a Q gather port, denser-only), ae AE_L (the config's ae_lines).
int vitaccel_kernels_limits(int32_t* out, int n) {
    using namespace vitaccel;
    const int32_t v[] = {cfg::MAX_TOKENS, cfg::MAX_HEADS, cfg::MAX_HEAD_DIM, cfg::vitcod::MAC_LINES, cfg::vitcod::MACS_PER_LINE,
                         gemm::Gemm<cfg::GemmArray>::MAX_K, gemm::Gemm<cfg::GemmArray>::WLINE, gemm::Gemm<cfg::GemmArray>::XWORDS,      attention::DENSE_LINES, ae::AE_L};
    const int count = static_cast<int>(sizeof(v) / sizeof(v[0]));
    for (int i = 0; i < count && i < n; ++i) out[i] = v[i];
    return count;
}

// The schedule constants (schedule.h and the engines' tile sizes), in this order: PIPE_DOT, PIPE_RQ,
// PIPE_MIX, PIPE_SM_MAX, PIPE_SM_EXP, PIPE_DIV, SOFTMAX_LANES, attention gather ports (PS), AE token tile
// (TN), mix engine lines.
int vitaccel_schedule_constants(int32_t* out, int n) {
    using namespace vitaccel;
    const int32_t v[] = {vitcod_sched::PIPE_DOT,    vitcod_sched::PIPE_RQ,      vitcod_sched::PIPE_MIX, vitcod_sched::PIPE_SM_MAX,
                         vitcod_sched::PIPE_SM_EXP, vitcod_sched::PIPE_DIV,     cfg::vitcod::SOFTMAX_LANES, attention::PS,
                         ae::TN,             ae::LINES};
    const int count = static_cast<int>(sizeof(v) / sizeof(v[0]));
    for (int i = 0; i < count && i < n; ++i) out[i] = v[i];
    return count;
}

// The C-simulation cycle counters (perf.h): reset; the totals in perf::Total order; the per-head values of
// the last attention layer, MAX_HEADS rows of perf::N_HEAD in perf::Head order. Each returns how many
// values there are.
void vitaccel_perf_reset(void) { vitaccel::perf::reset(); }

int vitaccel_perf_totals(int64_t* out, int n) {
    using namespace vitaccel::perf;
    for (int i = 0; i < N_TOTALS && i < n; ++i) out[i] = counters().total[i];
    return N_TOTALS;
}

int vitaccel_perf_heads(int64_t* out, int n) {
    using namespace vitaccel::perf;
    const int count = vitaccel::cfg::MAX_HEADS * N_HEAD;
    for (int i = 0; i < count && i < n; ++i) out[i] = counters().head[i / N_HEAD][i % N_HEAD];
    return count;
}

// x (M, K), w (O, K), bias / mult / shift (O,), y (M, O).
int vitaccel_gemm(const int8_t* x, const int8_t* w, const int32_t* bias, const int32_t* mult, const int32_t* shift,
                  int8_t* y, int M, int K, int O) {
    return vitaccel::gemm::Gemm<vitaccel::cfg::GemmArray>::gemm_layer(x, w, bias, mult, shift, y, M, K, O);
}

// x (Hin, N, d), w (C, Hin), b (C,), y (C, N, d), contiguous.
int vitaccel_ae_mix(const int8_t* x, const int8_t* w, const int32_t* b, int32_t mult, int32_t shift, int8_t* y,
                    int Hin, int C, int N, int d) {
    const int64_t hs = (int64_t)N * d;
    return vitaccel::ae::ae_mix(x, hs, d, w, b, mult, shift, y, hs, d, Hin, C, N, d);
}

// One attention layer over flat arrays:
//   q, k, v, out (H, N, d) int8; mask (H, N, N) uint8 (nonzero = kept), original key order;
//   order (H, N), n_global (H,), colptr (H, N + 1), headptr (H + 1,), rowidx (nnz,) int32;
//   sparse_lines (H,) int32: the sparser engine's lines per head (the host compiler's split);
//   Hc = 0: no AE. Hc > 0: q and k go through encoder and decoder first, as attention_int(ae=...) does:
//     ae_w int8   = [enc_q (Hc, H), dec_q (H, Hc), enc_k (Hc, H), dec_k (H, Hc)]
//     ae_b int32  = [enc_q (Hc,), dec_q (H,), enc_k (Hc,), dec_k (H,)]
//     ae_ms int32 = [enc_q m, s, dec_q m, s, enc_k m, s, dec_k m, s]
// The mask is permuted into reordered columns and bit-packed here, as the host does for the accelerator.
int vitaccel_attention(const int8_t* q, const int8_t* k, const int8_t* v, const uint8_t* mask, const int32_t* order,
                       const int32_t* n_global, const int32_t* sparse_lines, const int32_t* colptr,
                       const int32_t* headptr, const int32_t* rowidx, int nnz, int32_t m_exp, int32_t s_exp,
                       int32_t m_out, int32_t s_out, int Hc, const int8_t* ae_w, const int32_t* ae_b,
                       const int32_t* ae_ms, int8_t* out, int H, int N, int d) {
    using namespace vitaccel;
    if (H < 1 || H > cfg::MAX_HEADS || N < 1 || N > cfg::MAX_TOKENS || d < 1 || d > cfg::MAX_HEAD_DIM || Hc < 0 ||
        Hc > H || nnz < 0)
        return attention::ERR_DIMS;
    for (long i = 0; i < (long)H * N; ++i) {
        if (order[i] < 0 || order[i] >= N) return attention::ERR_ORDER;
    }
    const int mb = (N + 7) / 8;
    std::vector<uint8_t> bits((size_t)H * N * mb, 0);
    for (int h = 0; h < H; ++h) {
        for (int i = 0; i < N; ++i) {
            const uint8_t* row = mask + ((size_t)h * N + i) * N;
            uint8_t* dst = bits.data() + ((size_t)h * N + i) * mb;
            for (int c = 0; c < N; ++c) {
                if (row[order[(size_t)h * N + c]]) dst[c / 8] |= uint8_t(1u << (c % 8));
            }
        }
    }
    attention::Args a;
    a.H = H;
    a.N = N;
    a.d = d;
    a.Hc = Hc;
    a.q_hs = a.k_hs = a.v_hs = a.o_hs = (int64_t)N * d;
    a.q_ns = a.k_ns = a.v_ns = a.o_ns = d;
    a.m_exp = m_exp;
    a.s_exp = s_exp;
    a.m_out = m_out;
    a.s_out = s_out;
    a.dq_m = a.dq_s = a.dk_m = a.dk_s = 0;
    for (int h = 0; h < attention::MAX_H; ++h) {
        a.n_global[h] = h < H ? n_global[h] : 0;
        a.sparse_lines[h] = h < H ? sparse_lines[h] : 0;
    }

    const int32_t dummy_b[1] = {0};
    const int8_t dummy_w[1] = {0};
    const int32_t dummy_idx[1] = {0};
    const int32_t* ri = nnz > 0 ? rowidx : dummy_idx;
    if (Hc == 0) {
        return attention::attention_layer(a, q, k, v, out, bits.data(), order, colptr, headptr, ri, nnz, dummy_w,
                                          dummy_b, dummy_w, dummy_b);
    }
    // Encoder engine on Q and K (what runs after the qkv GEMM), then the attention kernel decodes.
    const size_t hw = (size_t)Hc * H;
    const int8_t* enc_qw = ae_w;
    const int8_t* dec_qw = ae_w + hw;
    const int8_t* enc_kw = ae_w + 2 * hw;
    const int8_t* dec_kw = ae_w + 3 * hw;
    const int32_t* enc_qb = ae_b;
    const int32_t* dec_qb = ae_b + Hc;
    const int32_t* enc_kb = ae_b + Hc + H;
    const int32_t* dec_kb = ae_b + 2 * Hc + H;
    std::vector<int8_t> encq((size_t)Hc * N * d), enck((size_t)Hc * N * d);
    const int64_t hs = (int64_t)N * d;
    int st = ae::ae_mix(q, hs, d, enc_qw, enc_qb, ae_ms[0], ae_ms[1], encq.data(), hs, d, H, Hc, N, d);
    if (st != 0) return st;
    st = ae::ae_mix(k, hs, d, enc_kw, enc_kb, ae_ms[4], ae_ms[5], enck.data(), hs, d, H, Hc, N, d);
    if (st != 0) return st;
    a.dq_m = ae_ms[2];
    a.dq_s = ae_ms[3];
    a.dk_m = ae_ms[6];
    a.dk_s = ae_ms[7];
    return attention::attention_layer(a, encq.data(), enck.data(), v, out, bits.data(), order, colptr, headptr, ri,
                                      nnz, dec_qw, dec_qb, dec_kw, dec_kb);
}

// The accelerator's top-level function on an emulated DRAM window: every m_axi port points at dram
// (which must be 4-byte aligned), as the host sets every base-address register to one buffer.
int vitaccel_run(uint8_t* dram, int64_t dram_bytes, uint32_t desc_off, uint32_t num_instr, uint32_t* hw_id,
                 uint32_t* run_count) {
    if (dram_bytes < 0 || dram_bytes > 0xffffffffLL || (reinterpret_cast<uintptr_t>(dram) & 3)) return ERR_CAPI_ARGS;
    return vitcod_top(reinterpret_cast<const int8_t*>(dram), reinterpret_cast<int8_t*>(dram),
                      reinterpret_cast<const int32_t*>(dram), dram, reinterpret_cast<const int8_t*>(dram),
                      reinterpret_cast<const int32_t*>(dram), desc_off, num_instr, static_cast<uint32_t>(dram_bytes),
                      hw_id, run_count);
}

}  // extern "C"
