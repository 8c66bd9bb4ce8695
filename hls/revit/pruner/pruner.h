// The pruners (group pruner and patch pruner on one P-PE design) of one pruning layer.
//
// Bits: KERNELS.md "ReViT", pruning; golden model vitaccel.sim.revit.pruner.prune_layer (equal to
// vitaccel.sim.revit.attention.prune_decisions). The importance score is the bundle's choice,
// `cls_attention`: a candidate's score is the sum over heads of its CLS probabilities (uint8), so the P-PE's
// norm generator (||V|| x attention) is bypassed. A P-PE holds one candidate's score and streams the
// candidate set past it, counting those ranked above it (a higher score, or an equal one at a lower index);
// it keeps the candidate when its rank is below k = ceil(q m / 2^16) (q the layer's Q16 keep ratio, m the
// number of valid candidates). Group pruner: candidates the G groups (valid: non-empty), scores from the
// CLS-to-centroid row. Patch pruner: per kept group, its members (ascending token order, the member list
// of group generation), scores from the CLS row. A token survives when its group is kept and it is kept
// within its group; CLS is never a candidate. The patch scores of every token are an output too: the
// package token's weights (host, score / (256 H)).
// Schedule, p_pes P-PEs, four nests one after another:
//   group score  ceil(G / p_pes) * H + PIPE_SCORE        group rank  ceil(G / p_pes) * G + PIPE_RANK
//   patch score  ceil(n / p_pes) * H + PIPE_SCORE        patch rank  per kept group ceil(l / p_pes) * l + PIPE_RANK
#ifndef VITACCEL_REVIT_PRUNER_H
#define VITACCEL_REVIT_PRUNER_H

#include <stdint.h>

#include "isa/revit_isa.h"
#include "revit_perf.h"
#include "revit_schedule.h"
#include "vitaccel_config.h"

namespace vitaccel {
namespace pruner {

static const int MAX_G = 64;
static const int MAX_N = cfg::MAX_TOKENS;
static const int P_PES = cfg::revit::P_PES;
static const int OK = isa::OK;
static const int ERR_DIMS = isa::revit::PR_ERR_DIMS;
static const int ERR_RATIO = isa::revit::PR_ERR_RATIO;

inline int64_t keep_count(int64_t q, int64_t m) { return (q * m + 65535) >> 16; }

// Score of candidate i: sum over H heads of p[h * stride + i]. Returns the nest's cycles.
inline int64_t score(const uint8_t* p, int H, int stride, int m, int32_t* out) {
    int64_t it = 0;
PR_SCORE:
    for (int i0 = 0; i0 < m; i0 += P_PES) {
        for (int h = 0; h < H; ++h) {
#pragma HLS PIPELINE II = 1
            ++it;
            for (int u = 0; u < P_PES && i0 + u < m; ++u) {
#pragma HLS UNROLL
                out[i0 + u] = (h == 0 ? 0 : out[i0 + u]) + p[(int64_t)h * stride + i0 + u];
            }
        }
    }
    return it + revit_sched::PIPE_SCORE;
}

// keep[i] = valid[i] && rank(i) < k over candidates cand[0..m) (indexes into s). Returns the nest's cycles.
inline int64_t rank_keep(const int32_t* s, const int32_t* cand, const uint8_t* valid, int m, int64_t k, uint8_t* keep) {
    int64_t it = 0;
PR_RANK:
    for (int i0 = 0; i0 < m; i0 += P_PES) {
        int32_t above[P_PES];
        for (int u = 0; u < P_PES; ++u) above[u] = 0;
        for (int j = 0; j < m; ++j) {
#pragma HLS PIPELINE II = 1
            ++it;
            for (int u = 0; u < P_PES && i0 + u < m; ++u) {
#pragma HLS UNROLL
                const int i = i0 + u;
                const int32_t si = s[cand[i]], sj = s[cand[j]];
                if (valid[j] && (sj > si || (sj == si && j < i))) ++above[u];
            }
        }
        for (int u = 0; u < P_PES && i0 + u < m; ++u) keep[i0 + u] = (valid[i0 + u] && above[u] < k) ? 1 : 0;
    }
    return it + revit_sched::PIPE_RANK;
}

// group_p (H, G) uint8, cls_p (H, n) uint8 (the CLS row over the n non-CLS tokens), groups (n,) int32.
// Outputs keep (n,), keep_g (G,) 0/1, sp (n,) the patch scores. cycles[4]: group score, group rank, patch
// score, patch rank.
inline int prune(const uint8_t* group_p, const uint8_t* cls_p, const int32_t* groups, int H, int G, int n,
                 int32_t q_groups, int32_t q_patches, uint8_t* keep, uint8_t* keep_g, int32_t* sp, int64_t cycles[4]) {
    if (H < 1 || H > cfg::MAX_HEADS || G < 1 || G > MAX_G || n < 1 || n > MAX_N) return ERR_DIMS;
    if (q_groups < 0 || q_groups > 65536 || q_patches < 0 || q_patches > 65536) return ERR_RATIO;
    int32_t counts[MAX_G];
    for (int g = 0; g < G; ++g) counts[g] = 0;
    for (int i = 0; i < n; ++i) {
        if (groups[i] < 0 || groups[i] >= G) return ERR_DIMS;
        ++counts[groups[i]];
    }
    int32_t sg[MAX_G], gidx[MAX_G];
    uint8_t gvalid[MAX_G];
    int ne = 0;
    for (int g = 0; g < G; ++g) {
        gidx[g] = g;
        gvalid[g] = counts[g] > 0;
        ne += gvalid[g];
    }
    cycles[0] = score(group_p, H, G, G, sg);
    cycles[1] = rank_keep(sg, gidx, gvalid, G, keep_count(q_groups, ne), keep_g);
    cycles[2] = score(cls_p, H, n, n, sp);
    cycles[3] = 0;
    static int32_t members[MAX_N];
    static uint8_t ones[MAX_N], kept[MAX_N];
    for (int i = 0; i < n; ++i) {
        keep[i] = 0;
        ones[i] = 1;
    }
PR_GROUPS:
    for (int g = 0; g < G; ++g) {
        if (!keep_g[g]) continue;
        int l = 0;
        for (int i = 0; i < n; ++i)
            if (groups[i] == g) members[l++] = i;
        cycles[3] += rank_keep(sp, members, ones, l, keep_count(q_patches, l), kept);
        for (int t = 0; t < l; ++t) keep[members[t]] = kept[t];
    }
    REVIT_PERF(revit_perf::add(revit_perf::PR_CALLS, 1); revit_perf::add(revit_perf::PR_GROUP_SCORE, cycles[0]);
               revit_perf::add(revit_perf::PR_GROUP_RANK, cycles[1]); revit_perf::add(revit_perf::PR_PATCH_SCORE, cycles[2]);
               revit_perf::add(revit_perf::PR_PATCH_RANK, cycles[3]));
    return OK;
}

}  // namespace pruner
}  // namespace vitaccel

#endif  // VITACCEL_REVIT_PRUNER_H
