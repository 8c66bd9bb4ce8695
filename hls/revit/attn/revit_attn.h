// One ReViT attention layer on the engines (the fused OP of revit_top): group generation, rSched, per group
// the centroid, the differential Q/K/V pass, requantisation, and per head the scores pass, the differential
// softmax and the output pass; the CLS row; the scheduler's timeline; the output requantisation.
//
// Bits: vitaccel.sim.revit.attention.revit_attention_layer (combine = joint, intra or sum); the golden model of
// the composition and its cycles is vitaccel.sim.revit.layer.engine_layer (same steps, same order).
// Cycles: the engines' own (rmmu.h, dsoftmax.h, groupgen.h, sched.h) composed as engine_layer documents;
// the centroid's accumulation (l ceil(D / Pc) + PIPE_DIV) and the requantisers (ceil(l 3D / c) + PIPE_RQ)
// are this op's own nests.
#ifndef VITACCEL_REVIT_ATTN_H
#define VITACCEL_REVIT_ATTN_H

#include <stdint.h>

#include "dsoftmax/dsoftmax.h"
#include "groupgen/groupgen.h"
#include "isa/revit_isa.h"
#include "rmmu/rmmu.h"
#include "sched/sched.h"
#include "schedule.h"
#include "vitaccel_config.h"

namespace vitaccel {
namespace revit_attn {

static const int MAX_N = cfg::MAX_TOKENS;
static const int MAX_D = cfg::MAX_EMBED_DIM;
static const int MAX_HD = cfg::MAX_HEAD_DIM;
static const int MAX_G = groupgen::MAX_GROUPS;
static const int OK = isa::OK;
static const int ERR_DIMS = isa::revit::ATT_ERR_DIMS;
static const int ERR_QUANT = isa::revit::ATT_ERR_QUANT;
typedef rmmu::Rmmu<rmmu::RmmuArray> RMMU;

struct Args {
    int N, D, H, G, block, combine, mode, F, delta, sync, ooo;   // combine: 0 intra, 1 joint, 2 sum
    const int8_t* x;          // (N, D) LayerNorm-1 tokens, CLS first
    const int8_t* w;          // (3D, D) qkv weight
    const int32_t *b, *m, *s; // (3D,) bias, requantisation multiplier and shift
    const int8_t* hw;         // (G, D) hash weight
    const int32_t* hb;        // (G,)
    int32_t hm, hs, m_exp, s_exp, out_m, out_s;
};

struct Out {
    int8_t* y;                // (N, D)
    int32_t* groups;          // (N - 1,)
    uint8_t* cls_p;           // (H, N)
    uint8_t* group_p;         // (H, G)
    // groupgen, intra (sum of t_g), inter (sum of W_g), in order, out of order, tail, total
    int64_t cycles[7];
};

inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline int8_t rq(int32_t acc, int32_t m, int32_t s) {
    const int64_t half = (int64_t)(((uint64_t)1 << s) >> 1);
    const int64_t y = ((int64_t)acc * (int64_t)m + half) >> s;
    return (int8_t)(y > 127 ? 127 : (y < -128 ? -128 : y));
}

inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// A decoupled column's cycles for one broadcast row over the serial vector v[0..K) (stride st).
inline int64_t column_cost(const int8_t* v, int K, int st) {
    int pos[rmmu::DIGITS], val[rmmu::DIGITS];
    int64_t c = 0;
    for (int k0 = 0; k0 < K; k0 += RMMU::LANES) {
        int len = 1;
        for (int j = k0; j < K && j < k0 + RMMU::LANES; ++j) {
            const int t = rmmu::booth_nonzero(v[(int64_t)j * st], pos, val);
            if (t > len) len = t;
        }
        c += len;
    }
    return c;
}

// A group's heads overlapped on its columns and its SIMD slice (sim/revit/layer.py head_overlap): the
// columns run S[0], then S[h+1] while the slice does head h's softmax, then O[h]; two score and two
// probability buffers.
inline int64_t head_overlap(const int64_t* S, const int64_t* M, const int64_t* O, int H) {
    if (H <= 0) return 0;
    int64_t rm = S[0], fs = S[0], sm = 0;
    for (int h = 0; h < H; ++h) {
        sm = (fs > sm ? fs : sm) + M[h];
        if (h + 1 < H) {
            rm += S[h + 1];
            fs = rm;
        }
        rm = (rm > sm ? rm : sm) + O[h];
    }
    return rm;
}

// Weights of a plain softmax row (every entry once).
inline const int32_t* wts_one(int n) {
    static int32_t w[MAX_N + MAX_G];
    for (int i = 0; i < n; ++i) w[i] = 1;
    return w;
}

inline bool dims_ok(const Args& a) {
    return !(a.N < 2 || a.N > MAX_N || a.D < 1 || a.D > MAX_D || a.H < 1 || a.H > cfg::MAX_HEADS || a.D % a.H != 0 ||
             a.D / a.H > MAX_HD || a.G < 1 || a.G > MAX_G || a.block < 1 || a.sync < 1 || a.sync > RMMU::COLS ||
             a.combine < 0 || a.combine > 2 || (a.delta != 0 && a.delta != 1));
}

inline int layer(const Args& a, Out& o) {
    const int N = a.N, D = a.D, H = a.H, G = a.G;
    if (!dims_ok(a)) return ERR_DIMS;
    if (a.hm < 0 || a.hs < 0 || a.hs > 63 || a.m_exp < 0 || a.s_exp < 0 || a.s_exp > 63 || a.out_m < 0 || a.out_s < 0 ||
        a.out_s > 63)
        return ERR_QUANT;
    for (int i = 0; i < 3 * D; ++i)
        if (a.m[i] < 0 || a.s[i] < 0 || a.s[i] > 63) return ERR_QUANT;
    const int n = N - 1, d = D / H, PN = RMMU::COLS, PC = RMMU::LANES;
    const int8_t* patches = a.x + D;
    static int32_t counts[MAX_G], members[MAX_N], sub[MAX_G], cols[1024], order[MAX_G];
    int64_t gg[4];
    int st = groupgen::generate(patches, n, D, a.hw, a.hb, G, a.hm, a.hs, o.groups, counts, members, gg);
    if (st != OK) return st;
    int64_t ac = 0;
    const int S = sched::allocate(counts, G, a.mode, a.F, sub, cols, order, &ac);
    if (S < 0) return -S;
    static int8_t xc[MAX_G][MAX_D];
    static int8_t q8[MAX_N][3 * MAX_D];
    static int8_t c8[MAX_G][3 * MAX_D];
    static int8_t cls8[3 * MAX_D];
    int offs[MAX_G + 1];
    offs[0] = 0;
    for (int g = 0; g < G; ++g) offs[g + 1] = offs[g] + counts[g];
    for (int g = 0; g < G; ++g)
        for (int k = 0; k < D; ++k) {
            int64_t sum = 0;
            for (int t = offs[g]; t < offs[g + 1]; ++t) sum += patches[(int64_t)members[t] * D + k];
            xc[g][k] = counts[g] ? (int8_t)floor_div(2 * sum + counts[g], 2 * (int64_t)counts[g]) : 0;
        }
    int16_t* SB = RMMU::bufs().S;
    int32_t* BB = RMMU::bufs().B;
    int32_t* YB = RMMU::bufs().Y;
    const int O = 3 * D;
    static int64_t t_g[MAX_G], w_g[MAX_G];
    int gcols[MAX_G];
    for (int g = 0; g < G; ++g) {
        t_g[g] = 0;
        w_g[g] = 0;
        gcols[g] = (a.mode == sched::WORKLOAD) ? cols[g] : cols[0];
    }
    // Projection of every group and its centroid on its sub-array.
    for (int g = 0; g < G; ++g) {
        const int l = counts[g];
        if (l == 0) continue;
        const int c = gcols[g];
        for (int k = 0; k < D; ++k) SB[k] = xc[g][k];
        for (int i = 0; i < l; ++i)
            for (int k = 0; k < D; ++k) {
                const int v = patches[(int64_t)members[offs[g] + i] * D + k];
                SB[(int64_t)(i + 1) * D + k] = (int16_t)(a.delta ? v - xc[g][k] : v);
            }
        for (int64_t t = 0; t < (int64_t)O * D; ++t) BB[t] = a.w[t];
        const int64_t cp = RMMU::pass(SB, l + 1, D, BB, O, c, a.sync, YB);
        for (int oo = 0; oo < O; ++oo) {
            const uint32_t base = (uint32_t)YB[(int64_t)oo * (l + 1)] + (uint32_t)a.b[oo];
            c8[g][oo] = rq((int32_t)base, a.m[oo], a.s[oo]);
            for (int i = 0; i < l; ++i) {
                const uint32_t yi = (uint32_t)YB[(int64_t)oo * (l + 1) + 1 + i];
                const uint32_t acc = a.delta ? base + yi : (uint32_t)a.b[oo] + yi;
                q8[members[offs[g] + i]][oo] = rq((int32_t)acc, a.m[oo], a.s[oo]);
            }
        }
        t_g[g] += (int64_t)l * cdiv(D, PC) + sched::PIPE_DIV + cp + cdiv((int64_t)l * O, c) + sched::PIPE_RQ;
    }
    // CLS's own projection: one raw serial vector on the whole array.
    for (int k = 0; k < D; ++k) SB[k] = a.x[k];
    for (int64_t t = 0; t < (int64_t)O * D; ++t) BB[t] = a.w[t];
    int64_t tail = RMMU::pass(SB, 1, D, BB, O, PN, a.sync, YB) + cdiv(O, PN) + sched::PIPE_RQ;
    for (int oo = 0; oo < O; ++oo) cls8[oo] = rq((int32_t)((uint32_t)YB[oo] + (uint32_t)a.b[oo]), a.m[oo], a.s[oo]);

    static int32_t acc_out[cfg::MAX_HEADS][MAX_N][MAX_HD];
    static int8_t qg[MAX_N * MAX_HD], kg[MAX_N * MAX_HD], vg[MAX_N * MAX_HD], ke[MAX_G * MAX_HD], ve[MAX_G * MAX_HD];
    static int8_t kcg[MAX_HD], vcg[MAX_HD];
    static int32_t sc[MAX_N * (MAX_N + MAX_G)], wts[MAX_N + MAX_G], z[MAX_N * MAX_HD];
    static uint8_t pr[MAX_N * (MAX_N + MAX_G)], ones[MAX_N * (MAX_N + MAX_G)];
    for (int t = 0; t < MAX_N * (MAX_N + MAX_G); ++t) ones[t] = 1;
    int64_t cyc7[7];
    for (int g = 0; g < G; ++g) {
        const int l = counts[g];
        if (l == 0) continue;
        const int c = gcols[g];
        const int lanes = (cfg::revit::SIMD_LANES * c / PN) > 0 ? cfg::revit::SIMD_LANES * c / PN : 1;
        int e = 0;
        int oth[MAX_G];
        if (a.combine == 1)
            for (int h2 = 0; h2 < G; ++h2)
                if (h2 != g && counts[h2] > 0) oth[e++] = h2;
        int64_t hs[cfg::MAX_HEADS], hm[cfg::MAX_HEADS], ho[cfg::MAX_HEADS];
        for (int h = 0; h < H; ++h) {
            for (int i = 0; i < l; ++i) {
                const int tok = members[offs[g] + i];
                for (int f = 0; f < d; ++f) {
                    qg[i * d + f] = q8[tok][h * d + f];
                    kg[i * d + f] = q8[tok][D + h * d + f];
                    vg[i * d + f] = q8[tok][2 * D + h * d + f];
                }
            }
            for (int f = 0; f < d; ++f) {
                kcg[f] = c8[g][D + h * d + f];
                vcg[f] = c8[g][2 * D + h * d + f];
            }
            for (int j = 0; j < e; ++j)
                for (int f = 0; f < d; ++f) {
                    ke[j * d + f] = c8[oth[j]][D + h * d + f];
                    ve[j * d + f] = c8[oth[j]][2 * D + h * d + f];
                }
            int64_t cs = 0, co = 0;
            st = RMMU::scores(qg, l, kg, l, kcg, ke, e, d, a.delta, c, a.sync, sc, &cs);
            if (st != OK) return st;
            for (int j = 0; j < l; ++j) wts[j] = 1;
            for (int j = 0; j < e; ++j) wts[l + j] = counts[oth[j]];
            st = dsoftmax::softmax(sc, ones, wts, l, l + e, a.m_exp, a.s_exp, a.block, lanes, pr, cyc7);
            if (st != OK) return st;
            const int64_t csm = cyc7[6];
            st = RMMU::output(pr, l, vg, l, vcg, ve, e, d, a.delta, c, a.sync, z, &co);
            if (st != OK) return st;
            for (int i = 0; i < l; ++i)
                for (int f = 0; f < d; ++f) acc_out[h][1 + members[offs[g] + i]][f] = z[i * d + f];
            hs[h] = cs;
            hm[h] = csm;
            ho[h] = co;
            // Inter-group work: the CLS query over this group's keys and values, per decoupled column.
            for (int i = 0; i < l; ++i) w_g[g] += column_cost(kg + i * d, d, 1);
            for (int f = 0; f < d; ++f) w_g[g] += column_cost(vg + f, l, d);
        }
        t_g[g] += head_overlap(hs, hm, ho, H);
    }
    // The CLS row and the CLS-to-centroid row, per head.
    for (int h = 0; h < H; ++h) {
        for (int f = 0; f < d; ++f) SB[f] = cls8[D + h * d + f];
        for (int t = 0; t < n; ++t)
            for (int f = 0; f < d; ++f) SB[(int64_t)(t + 1) * d + f] = q8[t][D + h * d + f];
        for (int f = 0; f < d; ++f) BB[f] = cls8[h * d + f];
        RMMU::pass(SB, N, d, BB, 1, PN, a.sync, YB);
        for (int t = 0; t < N; ++t) sc[t] = YB[t];
        dsoftmax::softmax(sc, ones, wts_one(N), 1, N, a.m_exp, a.s_exp, a.block, cfg::revit::SIMD_LANES,
                          o.cls_p + (int64_t)h * N, cyc7);
        tail += cyc7[6];
        for (int f = 0; f < d; ++f) {
            SB[(int64_t)f * N] = cls8[2 * D + h * d + f];
            for (int t = 0; t < n; ++t) SB[(int64_t)f * N + 1 + t] = q8[t][2 * D + h * d + f];
        }
        for (int t = 0; t < N; ++t) BB[t] = o.cls_p[(int64_t)h * N + t];
        RMMU::pass(SB, d, N, BB, 1, PN, a.sync, YB);
        for (int f = 0; f < d; ++f) acc_out[h][0][f] = YB[f];
        int ne = 0, idx[MAX_G];
        for (int g = 0; g < G; ++g)
            if (counts[g] > 0) idx[ne++] = g;
        for (int j = 0; j < ne; ++j)
            for (int f = 0; f < d; ++f) SB[(int64_t)j * d + f] = c8[idx[j]][D + h * d + f];
        for (int f = 0; f < d; ++f) BB[f] = cls8[h * d + f];
        tail += RMMU::pass(SB, ne, d, BB, 1, PN, a.sync, YB);
        for (int j = 0; j < ne; ++j) sc[j] = YB[j];
        uint8_t pg[MAX_G];
        dsoftmax::softmax(sc, ones, wts_one(ne), 1, ne, a.m_exp, a.s_exp, a.block, cfg::revit::SIMD_LANES, pg, cyc7);
        tail += cyc7[6];
        for (int g = 0; g < G; ++g) o.group_p[(int64_t)h * G + g] = 0;
        for (int j = 0; j < ne; ++j) o.group_p[(int64_t)h * G + idx[j]] = pg[j];
        if (a.combine == 2) {
            // sum: attention among the non-empty groups' centroids on the whole array, each group's context
            // added to its members' accumulators (scores: the centroid keys serial, the queries broadcast).
            for (int j = 0; j < ne; ++j)
                for (int f = 0; f < d; ++f) {
                    SB[(int64_t)j * d + f] = c8[idx[j]][D + h * d + f];
                    BB[(int64_t)j * d + f] = c8[idx[j]][h * d + f];
                }
            tail += RMMU::pass(SB, ne, d, BB, ne, PN, a.sync, YB);
            for (int t = 0; t < ne * ne; ++t) sc[t] = YB[t];
            static uint8_t pcc[MAX_G * MAX_G];
            dsoftmax::softmax(sc, ones, wts_one(ne), ne, ne, a.m_exp, a.s_exp, a.block, cfg::revit::SIMD_LANES, pcc,
                              cyc7);
            tail += cyc7[6];
            for (int f = 0; f < d; ++f)
                for (int j = 0; j < ne; ++j) SB[(int64_t)f * ne + j] = c8[idx[j]][2 * D + h * d + f];
            for (int t = 0; t < ne * ne; ++t) BB[t] = pcc[t];
            tail += RMMU::pass(SB, d, ne, BB, ne, PN, a.sync, YB);
            for (int j = 0; j < ne; ++j)
                for (int i = 0; i < counts[idx[j]]; ++i) {
                    const int tok = members[offs[idx[j]] + i];
                    for (int f = 0; f < d; ++f)
                        acc_out[h][1 + tok][f] = (int32_t)((uint32_t)acc_out[h][1 + tok][f] + (uint32_t)YB[(int64_t)j * d + f]);
                }
        }
    }
    tail += cdiv((int64_t)N * D, PN) + sched::PIPE_RQ;
    for (int t = 0; t < N; ++t)
        for (int h = 0; h < H; ++h)
            for (int f = 0; f < d; ++f) o.y[(int64_t)t * D + h * d + f] = rq(acc_out[h][t][f], a.out_m, a.out_s);
    int64_t finish[MAX_G], tl[3];
    st = sched::timeline(counts, G, a.mode, a.F, t_g, w_g, finish, tl);
    if (st != OK) return st;
    int64_t intra = 0, inter = 0;
    for (int g = 0; g < G; ++g) {
        intra += t_g[g];
        inter += w_g[g];
    }
    o.cycles[0] = gg[0] + gg[1] + gg[2] + gg[3];
    o.cycles[1] = intra;
    o.cycles[2] = inter;
    o.cycles[3] = tl[0];
    o.cycles[4] = tl[1];
    o.cycles[5] = tail;
    o.cycles[6] = o.cycles[0] + (a.ooo ? tl[1] : tl[0]) + tail;
    return OK;
}

}  // namespace revit_attn
}  // namespace vitaccel

#endif  // VITACCEL_REVIT_ATTN_H
