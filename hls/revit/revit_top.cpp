// The ReViT accelerator's top-level function: runs a list of descriptors from DRAM (DESCRIPTOR.md), each
// dispatched to its engine: ATTN (one attention layer on the engines, attn/revit_attn.h) and PRUNE (the
// pruners, pruner/pruner.h). The common GEMM, LayerNorm, add and table kernels are not dispatched yet.
// Descriptor layout and status codes: the generated hls/include/isa/revit_isa.h (vitaccel/sim/revit/isa.py).
//
// Memory model: one DRAM window of mem_bytes bytes that every m_axi port's base register points at; the
// descriptors carry byte offsets into it. act_in / act_out carry int8 and uint8 data, idx the descriptors
// and the int32 index data (group indexes, scores), wgt the int8 weights, wconst the int32 constants.
// Every range is checked against mem_bytes, int32 arrays for 4-byte alignment, and outputs for overlap with
// the inputs and with each other, before the engine starts; the engine's own checks follow.
#include <stdint.h>

#include "attn/revit_attn.h"
#include "pruner/pruner.h"
#include "vitaccel_config.h"
#include "isa/revit_isa.h"

namespace vitaccel {
namespace revit_top_impl {

using namespace isa;
using namespace isa::revit;
typedef uint64_t addr_t;

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
    a.N = dw[V_N]; a.D = dw[V_D]; a.H = dw[V_H]; a.G = dw[V_G]; a.block = dw[V_BLOCK]; a.joint = dw[V_JOINT];
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
        } else {
            st = ERR_OP;
        }
        if (st != OK) return (int)((i << 16) | (uint32_t)st);
    }
    return OK;
}
