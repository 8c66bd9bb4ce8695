// C entry points over flat arrays for the ReViT engines (hls/revit/), so that
// vitaccel/sim/revit/csim_engines.py can run them through ctypes and compare them, bits and cycle counters,
// with the simulator's models (vitaccel/sim/revit/). Not synthesised: test glue, so it may allocate.
//
// Every engine function returns the engine's status (0 ok; codes in DESCRIPTOR.md).
//
// Built with -fvisibility=hidden (vitaccel/sim/revit/csim_engines.py), only these extern "C" functions
// exported: the common kernels' templates and function-local statics (GEMM tiles, LayerNorm rows, perf
// counters) have the same mangled names in every accelerator's library but config-dependent sizes, and a
// process that loads the ViTCoD library too must not bind one library's statics to the other's.
#include <stdint.h>

#include "perf.h"
#include "revit_perf.h"
#include "revit_schedule.h"
#include "attn/revit_attn.h"
#include "dsoftmax/dsoftmax.h"
#include "groupgen/groupgen.h"
#include "pruner/pruner.h"
#include "rmmu/rmmu.h"
#include "sched/sched.h"
#include "vitaccel_config.h"

namespace {
typedef vitaccel::rmmu::Rmmu<vitaccel::rmmu::RmmuArray> RMMU;
}  // namespace

int revit_top(const int8_t* act_in, int8_t* act_out, int32_t* idx, const int8_t* wgt, const int32_t* wconst,
              uint32_t desc_off, uint32_t num_instr, uint32_t mem_bytes, uint32_t* hw_id, uint32_t* run_count);

#define REVIT_API __attribute__((visibility("default")))

extern "C" {

REVIT_API unsigned revit_config_hash32(void) { return vitaccel::cfg::CONFIG_HASH32; }

// The top over one DRAM window (what the emulated device would call).
REVIT_API int revit_run(uint8_t* dram, int64_t dram_bytes, uint32_t desc_off, uint32_t num_instr, uint32_t* hw_id,
              uint32_t* run_count) {
    if (dram_bytes < 0 || dram_bytes > 0xFFFFFFFFll || (reinterpret_cast<uintptr_t>(dram) & 3)) return -1;
    const uint32_t mem = (uint32_t)dram_bytes;
    return revit_top(reinterpret_cast<const int8_t*>(dram), reinterpret_cast<int8_t*>(dram),
                     reinterpret_cast<int32_t*>(dram), reinterpret_cast<const int8_t*>(dram),
                     reinterpret_cast<const int32_t*>(dram), desc_off, num_instr, mem, hw_id, run_count);
}

// The C-simulation counters (revit_perf.h): reset, then the totals in perf::Total order.
REVIT_API void revit_perf_reset(void) { vitaccel::revit_perf::reset(); }

REVIT_API int revit_perf_totals(int64_t* out, int n) {
    using namespace vitaccel::revit_perf;
    for (int i = 0; i < N_TOTALS && i < n; ++i) out[i] = counters().total[i];
    return N_TOTALS;
}

// Compiled shapes and schedule constants, in this order: RMMU_COLS, RMMU_LANES, G_PES, P_PES, SIMD_LANES,
// PIPE_RBSP, PIPE_CODE, PIPE_LIST, RMMU MAX_C, MAX_K, MAX_O, SERIAL_BITS, SYNC_COLS, PIPE_PACK, PIPE_PATCH.
REVIT_API int revit_schedule_constants(int32_t* out, int n) {
    using namespace vitaccel;
    const int32_t v[] = {cfg::revit::RMMU_COLS, cfg::revit::RMMU_LANES, cfg::revit::G_PES, cfg::revit::P_PES,
                         cfg::revit::SIMD_LANES, revit_sched::PIPE_RBSP, revit_sched::PIPE_CODE, revit_sched::PIPE_LIST,
                         rmmu::RmmuArray::MAX_C, rmmu::RmmuArray::MAX_K, rmmu::RmmuArray::MAX_O, rmmu::SERIAL_BITS,
                         cfg::revit::SYNC_COLS, revit_sched::PIPE_PACK, revit_sched::PIPE_PATCH};
    const int count = static_cast<int>(sizeof(v) / sizeof(v[0]));
    for (int i = 0; i < count && i < n; ++i) out[i] = v[i];
    return count;
}

// One bit-serial pass: S (C, K) int16, B (O, K) int32, Y (O, C), groups of `sync` columns in lock step;
// cycles[0] receives its cycles. The three uses below take the same `sync`.
REVIT_API int revit_rbsp_pass(const int16_t* S, const int32_t* B, int C, int K, int O, int cols, int sync, int32_t* Y,
                    int64_t* cycles) {
    if (!RMMU::dims_ok(C, K, O, cols, sync)) return vitaccel::rmmu::ERR_DIMS;
    for (int64_t i = 0; i < (int64_t)C * K; ++i)
        if (!RMMU::serial_ok(S[i])) return vitaccel::rmmu::ERR_OPERAND;
    *cycles = RMMU::pass(S, C, K, B, O, cols, sync, Y);
    return 0;
}

REVIT_API int revit_rmmu_project(const int8_t* x, int l, const int8_t* xc, int K, const int8_t* W, const int32_t* bias, int O,
                       int delta, int cols, int sync, int32_t* acc, int64_t* cycles) {
    return RMMU::project(x, l, xc, K, W, bias, O, delta, cols, sync, acc, cycles);
}

REVIT_API int revit_rmmu_scores(const int8_t* q, int m, const int8_t* k, int l, const int8_t* kc, const int8_t* ke, int e, int d,
                      int delta, int cols, int sync, int32_t* s, int64_t* cycles) {
    return RMMU::scores(q, m, k, l, kc, ke, e, d, delta, cols, sync, s, cycles);
}

REVIT_API int revit_rmmu_output(const uint8_t* p, int m, const int8_t* v, int l, const int8_t* vc, const int8_t* ve, int e, int d,
                      int delta, int cols, int sync, int32_t* z, int64_t* cycles) {
    return RMMU::output(p, m, v, l, vc, ve, e, d, delta, cols, sync, z, cycles);
}

// Group generation (groupgen.h): groups, counts, members int32; cycles[4] hash, codes, argmax, lists.
REVIT_API int revit_groupgen(const int8_t* x, int n, int D, const int8_t* A, const int32_t* B, int G, int32_t m, int32_t s,
                   int32_t* groups, int32_t* counts, int32_t* members, int64_t* cycles) {
    return vitaccel::groupgen::generate(x, n, D, A, B, G, m, s, groups, counts, members, cycles);
}

// Differential softmax (dsoftmax.h): p (rows, n) uint8; cycles[7] max, rescale, offset, exp, div, norm, time.
REVIT_API int revit_dsoftmax(const int32_t* scores, const uint8_t* keep, const int32_t* weights, int rows, int n, int32_t m_exp,
                   int32_t s_exp, int block, int lanes, uint8_t* p, int64_t* cycles) {
    return vitaccel::dsoftmax::softmax(scores, keep, weights, rows, n, m_exp, s_exp, block, lanes, p, cycles);
}

// Pruners (pruner.h): keep (n,), keep_g (G,) uint8, scores (n,) int32; cycles[4].
REVIT_API int revit_prune(const uint8_t* group_p, const uint8_t* cls_p, const int32_t* groups, int H, int G, int n,
                int32_t q_groups, int32_t q_patches, uint8_t* keep, uint8_t* keep_g, int32_t* scores, int64_t* cycles) {
    return vitaccel::pruner::prune(group_p, cls_p, groups, H, G, n, q_groups, q_patches, keep, keep_g, scores, cycles);
}

// rSched allocation (sched.h): returns the number of sub-arrays or minus a status; alloc_cycles[0].
REVIT_API int revit_sched_allocate(const int32_t* sizes, int G, int mode, int F, int32_t* sub, int32_t* cols, int32_t* order,
                         int64_t* alloc_cycles) {
    return vitaccel::sched::allocate(sizes, G, mode, F, sub, cols, order, alloc_cycles);
}

// The layer's timeline (sched.h): finish (G,), out[3] = in order, out of order, busy column-cycles.
REVIT_API int revit_sched_timeline(const int32_t* sizes, int G, int mode, int F, const int64_t* t, const int64_t* W,
                         int64_t* finish, int64_t* out) {
    return vitaccel::sched::timeline(sizes, G, mode, F, t, W, finish, out);
}

// One attention layer on the engines (attn/revit_attn.h). flags[7]: N, D, H, G, block, combine (0 intra, 1 joint, 2 sum), mode;
// flags2[4]: F, delta, sync, ooo; q[6]: hash m, s, m_exp, s_exp, out m, s. cycles[7].
REVIT_API int revit_attention_layer(const int8_t* x, const int8_t* w, const int32_t* b, const int32_t* m, const int32_t* s,
                          const int8_t* hw, const int32_t* hb, const int32_t* flags, const int32_t* flags2,
                          const int32_t* q, int8_t* y, int32_t* groups, uint8_t* cls_p, uint8_t* group_p,
                          int64_t* cycles) {
    using namespace vitaccel::revit_attn;
    Args a;
    a.N = flags[0]; a.D = flags[1]; a.H = flags[2]; a.G = flags[3]; a.block = flags[4]; a.combine = flags[5];
    a.mode = flags[6]; a.F = flags2[0]; a.delta = flags2[1]; a.sync = flags2[2]; a.ooo = flags2[3];
    a.x = x; a.w = w; a.b = b; a.m = m; a.s = s; a.hw = hw; a.hb = hb;
    a.hm = q[0]; a.hs = q[1]; a.m_exp = q[2]; a.s_exp = q[3]; a.out_m = q[4]; a.out_s = q[5];
    Out o;
    o.y = y; o.groups = groups; o.cls_p = cls_p; o.group_p = group_p;
    const int st = layer(a, o);
    for (int i = 0; i < 7; ++i) cycles[i] = o.cycles[i];
    return st;
}

// The common kernels' C-simulation counters (hls/common/perf.h, enum Total): reset, and the totals.
REVIT_API void revit_common_perf_reset(void) { vitaccel::perf::reset(); }

REVIT_API int revit_common_perf_totals(int64_t* out, int n) {
    using namespace vitaccel::perf;
    for (int i = 0; i < N_TOTALS && i < n; ++i) out[i] = counters().total[i];
    return N_TOTALS;
}

}  // extern "C"
