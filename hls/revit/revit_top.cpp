// The ReViT accelerator's top-level function: runs a list of descriptors from DRAM (DESCRIPTOR.md), each
// dispatched to its engine: ATTN (one attention layer on the engines, attn/revit_attn.h), PRUNE (the
// pruners, pruner/pruner.h), COMPACT (the surviving tokens and the package token, and the new token count
// patched into the later descriptors, pruner/compact.h), and the whole model's common kernels GEMM, LAYERNORM, ADD and LUT
// (hls/common/, instantiated on cfg::GemmArray = the RMMU's Pn x Pc in one-large-array mode). Unlike
// vitcod_top, a GEMM's per-channel constants are checked before the engine starts, so a refused GEMM
// writes nothing.
// Descriptor layout and status codes: the generated hls/include/isa/revit_isa.h (vitaccel/sim/revit/isa.py).
//
// Memory model: one DRAM window of mem_bytes bytes that every m_axi port's base register points at; the
// descriptors carry byte offsets into it. act_in / act_out carry int8 and uint8 data, idx the descriptors
// and the int32 index data (group indexes, scores), wgt the int8 weights, wconst the int32 constants.
// Every range is checked against mem_bytes, int32 arrays for 4-byte alignment, and outputs for overlap with
// the inputs and with each other, before the engine starts; the engine's own checks follow.
#include <stdint.h>

#include "attn/revit_attn.h"
#include "eltwise/eltwise.h"
#include "gemm/gemm.h"
#include "layernorm/layernorm.h"
#include "pruner/compact.h"
#include "pruner/pruner.h"
#include "vitaccel_config.h"
#include "isa/revit_isa.h"

namespace vitaccel {
namespace revit_top_impl {

using namespace isa;
using namespace isa::revit;
typedef uint64_t addr_t;
static const int MAX_PATCH = 4096;

inline bool in_window(uint32_t off, addr_t len, uint32_t mem) { return (addr_t)off + len <= (addr_t)mem; }

inline bool overlaps(uint32_t a, addr_t alen, uint32_t b, addr_t blen) {
    return alen > 0 && blen > 0 && (addr_t)a < (addr_t)b + blen && (addr_t)b < (addr_t)a + alen;
}

struct Range {
    uint32_t off;
    addr_t len;
};

// 0 when every range fits, the outputs (the last n_out) overlap no other range; else the status.
inline int check_ranges(const Range* r, int n, int n_out, uint32_t mem) {
    for (int i = 0; i < n; ++i)
        if (!in_window(r[i].off, r[i].len, mem)) return ERR_RANGE;
    for (int i = n - n_out; i < n; ++i)
        for (int j = 0; j < n; ++j)
            if (j != i && overlaps(r[i].off, r[i].len, r[j].off, r[j].len)) return ERR_OVERLAP;
    return OK;
}

inline int run_attn(const int32_t* dw, uint8_t* mem8, uint32_t mem) {
    revit_attn::Args a;
    a.N = dw[V_N]; a.D = dw[V_D]; a.H = dw[V_H]; a.G = dw[V_G]; a.block = dw[V_BLOCK]; a.combine = dw[V_COMBINE];
    a.mode = dw[V_MODE]; a.F = dw[V_F]; a.delta = dw[V_DELTA]; a.sync = dw[V_SYNC]; a.ooo = dw[V_OOO];
    a.hm = dw[V_HM]; a.hs = dw[V_HS]; a.m_exp = dw[V_M_EXP]; a.s_exp = dw[V_S_EXP]; a.out_m = dw[V_OUT_M];
    a.out_s = dw[V_OUT_S];
    if (!revit_attn::dims_ok(a)) return revit_attn::ERR_DIMS;
    if (a.ooo != 0 && a.ooo != 1) return revit_attn::ERR_DIMS;
    const uint32_t x = dw[V_X], w = dw[V_W], b = dw[V_B], m = dw[V_M], s = dw[V_S], hw = dw[V_HW], hb = dw[V_HB],
                   y = dw[V_Y], gr = dw[V_GROUPS], cp = dw[V_CLS_P], gp = dw[V_GROUP_P];
    if ((b | m | s | hb | gr) & 3) return ERR_ALIGN;
    const addr_t N = a.N, D = a.D, H = a.H, G = a.G;
    const Range r[] = {{x, N * D}, {w, 3 * D * D}, {b, 12 * D}, {m, 12 * D}, {s, 12 * D}, {hw, G * D}, {hb, 4 * G},
                       {y, N * D}, {gr, 4 * (N - 1)}, {cp, H * N}, {gp, H * G}};
    const int rc = check_ranges(r, 11, 4, mem);
    if (rc != OK) return rc;
    a.x = reinterpret_cast<const int8_t*>(mem8 + x);
    a.w = reinterpret_cast<const int8_t*>(mem8 + w);
    a.b = reinterpret_cast<const int32_t*>(mem8 + b);
    a.m = reinterpret_cast<const int32_t*>(mem8 + m);
    a.s = reinterpret_cast<const int32_t*>(mem8 + s);
    a.hw = reinterpret_cast<const int8_t*>(mem8 + hw);
    a.hb = reinterpret_cast<const int32_t*>(mem8 + hb);
    revit_attn::Out o;
    o.y = reinterpret_cast<int8_t*>(mem8 + y);
    o.groups = reinterpret_cast<int32_t*>(mem8 + gr);
    o.cls_p = mem8 + cp;
    o.group_p = mem8 + gp;
    return revit_attn::layer(a, o);
}

inline int run_prune(const int32_t* dw, uint8_t* mem8, uint32_t mem) {
    const int H = dw[P_H], G = dw[P_G], n = dw[P_N];
    if (H < 1 || H > cfg::MAX_HEADS || G < 1 || G > pruner::MAX_G || n < 1 || n > pruner::MAX_N) return pruner::ERR_DIMS;
    const uint32_t gp = dw[P_GROUP_P], cp = dw[P_CLS_P], gr = dw[P_GROUPS], k = dw[P_KEEP], kg = dw[P_KEEP_G],
                   sc = dw[P_SCORES];
    if ((gr | sc) & 3) return ERR_ALIGN;
    const addr_t h = H, g = G, nn = n;
    const Range r[] = {{gp, h * g}, {cp, h * (nn + 1)}, {gr, 4 * nn}, {k, nn}, {kg, g}, {sc, 4 * nn}};
    const int rc = check_ranges(r, 6, 3, mem);
    if (rc != OK) return rc;
    // The CLS row over the n non-CLS tokens: columns 1..n of each head's row.
    static uint8_t cls[cfg::MAX_HEADS * pruner::MAX_N];
    for (int hh = 0; hh < H; ++hh)
        for (int i = 0; i < n; ++i) cls[hh * n + i] = mem8[cp + (addr_t)hh * (n + 1) + 1 + i];
    int64_t cyc[4];
    return pruner::prune(mem8 + gp, cls, reinterpret_cast<const int32_t*>(mem8 + gr), H, G, n, dw[P_Q_GROUPS],
                         dw[P_Q_PATCHES], mem8 + k, mem8 + kg, reinterpret_cast<int32_t*>(mem8 + sc), cyc);
}

// COMPACT: every check (the patch list's included) before anything is written, so a refused descriptor
// leaves the window as it was. `prog_lo`/`prog_hi`: the byte range of the later descriptors of this program.
inline int run_compact(const int32_t* dw, uint8_t* mem8, int32_t* idx, uint32_t mem, uint32_t desc_off, addr_t prog_lo,
                       addr_t prog_hi) {
    const int N = dw[C_N], D = dw[C_D], npatch = dw[C_NPATCH];
    if (N < 2 || N > cfg::MAX_TOKENS || D < 1 || D > cfg::MAX_EMBED_DIM || npatch < 0 || npatch > MAX_PATCH)
        return CMP_ERR_DIMS;
    const uint32_t x = dw[C_X], k = dw[C_KEEP], sc = dw[C_SCORES], y = dw[C_Y], cnt = dw[C_COUNT], pt = dw[C_PATCH];
    if (((x | y) & 1) || ((sc | cnt | pt) & 3)) return ERR_ALIGN;
    const addr_t n = N, d = D;
    const Range r[] = {{x, 2 * n * d}, {k, n - 1}, {sc, 4 * (n - 1)}, {pt, 12 * (addr_t)npatch}, {y, 2 * (n + 1) * d},
                       {cnt, 4}};
    const int rc = check_ranges(r, 6, 2, mem);
    if (rc != OK) return rc;
    const int64_t pm = dw[C_PM];
    const int ps = dw[C_PS];
    if (pm < 0 || pm >= compact::MAX_PKG_MULT || ps < 0 || ps > 63) return CMP_ERR_QUANT;
    const uint8_t* keep = mem8 + k;
    int n_out = 2;
    for (int i = 0; i < N - 1; ++i) n_out += keep[i] != 0;
    const int32_t* tri = reinterpret_cast<const int32_t*>(mem8 + pt);
    for (int j = 0; j < npatch; ++j) {
        const addr_t a = (uint32_t)tri[3 * j];
        const int64_t v = (int64_t)tri[3 * j + 1] * n_out + tri[3 * j + 2];
        if ((a & 3) || a < prog_lo || a >= prog_hi || (a - desc_off) / 4 % DESC_WORDS < 2 || v < INT32_MIN ||
            v > INT32_MAX)
            return CMP_ERR_PATCH;
    }
    int64_t cyc[2];
    compact::tokens(reinterpret_cast<const int16_t*>(mem8 + x), keep, reinterpret_cast<const int32_t*>(mem8 + sc), N, D,
                    pm, ps, reinterpret_cast<int16_t*>(mem8 + y), cyc);
    *reinterpret_cast<int32_t*>(mem8 + cnt) = n_out;
    compact::patch(idx, tri, npatch, n_out);
    return OK;
}

inline int run_gemm(const int32_t* dw, uint8_t* mem8, uint32_t mem) {
    const int M = dw[G_M], K = dw[G_K], O = dw[G_O];
    if (M < 1 || K < 1 || O < 1) return GEMM_ERR_DIMS;
    const uint32_t x = dw[G_X], w = dw[G_W], b = dw[G_BIAS], m = dw[G_MULT], s = dw[G_SHIFT], y = dw[G_Y];
    if ((b | m | s) & 3) return ERR_ALIGN;
    const addr_t o4 = 4 * (addr_t)O;
    const Range r[] = {{x, (addr_t)M * K}, {w, (addr_t)O * K}, {b, o4}, {m, o4}, {s, o4}, {y, (addr_t)M * O}};
    const int rc = check_ranges(r, 6, 1, mem);
    if (rc != OK) return rc;
    if (K > gemm::Gemm<cfg::GemmArray>::MAX_K) return GEMM_ERR_K_TOO_LONG;
    const int32_t* mu = reinterpret_cast<const int32_t*>(mem8 + m);
    const int32_t* sh = reinterpret_cast<const int32_t*>(mem8 + s);
    for (int o = 0; o < O; ++o) {
        if (sh[o] < 0 || sh[o] > 63) return GEMM_ERR_SHIFT;
        if (mu[o] < 0) return GEMM_ERR_MULT;
    }
    return gemm::Gemm<cfg::GemmArray>::gemm_layer(reinterpret_cast<const int8_t*>(mem8 + x),
                                                  reinterpret_cast<const int8_t*>(mem8 + w),
                                                  reinterpret_cast<const int32_t*>(mem8 + b), mu, sh,
                                                  reinterpret_cast<int8_t*>(mem8 + y), M, K, O);
}

inline int run_layernorm(const int32_t* dw, uint8_t* mem8, uint32_t mem) {
    const int rows = dw[L_ROWS], D = dw[L_D];
    if (rows < 1 || D < 1 || D > layernorm::MAX_D) return LN_ERR_DIMS;
    const uint32_t x = dw[L_X], g = dw[L_G], b = dw[L_B], y = dw[L_Y];
    if ((x & 1) || ((g | b) & 3)) return ERR_ALIGN;
    const Range r[] = {{x, 2 * (addr_t)rows * D}, {g, 4 * (addr_t)D}, {b, 4 * (addr_t)D}, {y, (addr_t)rows * D}};
    const int rc = check_ranges(r, 4, 1, mem);
    if (rc != OK) return rc;
    if (dw[L_SHIFT] < 16 || dw[L_SHIFT] > 62 || dw[L_EPS] < 0) return LN_ERR_PARAM;
    const int st = layernorm::LayerNorm<cfg::GemmArray>::layer(
        reinterpret_cast<const int16_t*>(mem8 + x), reinterpret_cast<const int32_t*>(mem8 + g),
        reinterpret_cast<const int32_t*>(mem8 + b), dw[L_SHIFT], dw[L_EPS], reinterpret_cast<int8_t*>(mem8 + y), rows, D);
    return st == layernorm::OK ? OK : (st == layernorm::ERR_DIMS ? LN_ERR_DIMS : LN_ERR_PARAM);
}

inline int run_add(const int32_t* dw, uint8_t* mem8, uint32_t mem) {
    const int n = dw[R_N];
    if (n < 1) return ADD_ERR_DIMS;
    const int ab = dw[R_A_BITS], bb = dw[R_B_BITS], yb = dw[R_Y_BITS], shift = dw[R_SHIFT];
    if ((ab != 8 && ab != 16) || (bb != 8 && bb != 16) || (yb != 8 && yb != 16) || dw[R_MA] < 0 || dw[R_MB] < 0 ||
        shift < 0 || shift > 62)
        return ADD_ERR_PARAM;
    const uint32_t a = dw[R_A], b = dw[R_B], y = dw[R_Y];
    if ((ab == 16 && (a & 1)) || (bb == 16 && (b & 1)) || (yb == 16 && (y & 1))) return ERR_ALIGN;
    const Range r[] = {{a, (addr_t)n * (ab / 8)}, {b, (addr_t)n * (bb / 8)}, {y, (addr_t)n * (yb / 8)}};
    const int rc = check_ranges(r, 3, 1, mem);
    if (rc != OK) return rc;
    const int st = eltwise::Eltwise<cfg::GemmArray>::add(mem8 + a, ab, dw[R_MA], mem8 + b, bb, dw[R_MB], shift,
                                                         mem8 + y, yb, n);
    return st == eltwise::OK ? OK : ADD_ERR_PARAM;
}

inline int run_lut(const int32_t* dw, uint8_t* mem8, uint32_t mem) {
    const int n = dw[T_N];
    if (n < 1) return LUT_ERR_DIMS;
    const uint32_t x = dw[T_X], t = dw[T_TABLE], y = dw[T_Y];
    const Range r[] = {{x, (addr_t)n}, {t, 256}, {y, (addr_t)n}};
    const int rc = check_ranges(r, 3, 1, mem);
    if (rc != OK) return rc;
    return eltwise::Eltwise<cfg::GemmArray>::lut(reinterpret_cast<const int8_t*>(mem8 + x),
                                                 reinterpret_cast<const int8_t*>(mem8 + t),
                                                 reinterpret_cast<int8_t*>(mem8 + y), n) == eltwise::OK
               ? OK
               : LUT_ERR_DIMS;
}

}  // namespace revit_top_impl
}  // namespace vitaccel

// hw_id always receives the config hash, so a call with num_instr = 0 just reads the ID. The C-simulation
// passes one window for every pointer; act_out is that window's base for the dispatch.
int revit_top(const int8_t* act_in, int8_t* act_out, int32_t* idx, const int8_t* wgt, const int32_t* wconst,
              uint32_t desc_off, uint32_t num_instr, uint32_t mem_bytes, uint32_t* hw_id, uint32_t* run_count) {
#pragma HLS INTERFACE m_axi port = act_in offset = slave bundle = gmem_act
#pragma HLS INTERFACE m_axi port = act_out offset = slave bundle = gmem_act
#pragma HLS INTERFACE m_axi port = idx offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = wgt offset = slave bundle = gmem_wgt
#pragma HLS INTERFACE m_axi port = wconst offset = slave bundle = gmem_wgt
#pragma HLS INTERFACE s_axilite port = desc_off bundle = control
#pragma HLS INTERFACE s_axilite port = num_instr bundle = control
#pragma HLS INTERFACE s_axilite port = mem_bytes bundle = control
#pragma HLS INTERFACE s_axilite port = hw_id bundle = control
#pragma HLS INTERFACE s_axilite port = run_count bundle = control
#pragma HLS INTERFACE s_axilite port = return bundle = control
    using namespace vitaccel::revit_top_impl;
    (void)act_in;
    (void)wgt;
    (void)wconst;
    static uint32_t runs = 0;
    *hw_id = vitaccel::cfg::CONFIG_HASH32;
    *run_count = ++runs;
    if (num_instr >= MAX_INSTR) return ERR_COUNT;
    if (desc_off & 3) return ERR_ALIGN;
    if (!in_window(desc_off, (addr_t)num_instr * DESC_WORDS * 4, mem_bytes)) return ERR_RANGE;
    uint8_t* mem8 = reinterpret_cast<uint8_t*>(act_out);
    const int32_t* desc = idx + desc_off / 4;
REVIT_DISPATCH:
    for (uint32_t i = 0; i < num_instr; ++i) {
        const int32_t* dw = desc + (addr_t)i * DESC_WORDS;
        int st;
        if (dw[W_FLAGS] != 0) {
            st = ERR_OP;
        } else if (dw[W_OP] == OP_NOP) {
            st = OK;
        } else if (dw[W_OP] == OP_ATTN) {
            st = run_attn(dw, mem8, mem_bytes);
        } else if (dw[W_OP] == OP_PRUNE) {
            st = run_prune(dw, mem8, mem_bytes);
        } else if (dw[W_OP] == OP_COMPACT) {
            st = run_compact(dw, mem8, idx, mem_bytes, desc_off, desc_off + (addr_t)(i + 1) * DESC_WORDS * 4,
                             desc_off + (addr_t)num_instr * DESC_WORDS * 4);
        } else if (dw[W_OP] == OP_GEMM) {
            st = run_gemm(dw, mem8, mem_bytes);
        } else if (dw[W_OP] == OP_LAYERNORM) {
            st = run_layernorm(dw, mem8, mem_bytes);
        } else if (dw[W_OP] == OP_ADD) {
            st = run_add(dw, mem8, mem_bytes);
        } else if (dw[W_OP] == OP_LUT) {
            st = run_lut(dw, mem8, mem_bytes);
        } else {
            st = ERR_OP;
        }
        if (st != OK) return (int)((i << 16) | (uint32_t)st);
    }
    return OK;
}
