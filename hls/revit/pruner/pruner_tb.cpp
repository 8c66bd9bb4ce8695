// Testbench of pruner_top against golden files from the simulator (vitaccel.sim.revit.pruner).
//
//   pruner_tb CASE_DIR [CASE_DIR ...]
// Each CASE_DIR holds params.txt (H, G, n, q_groups, q_patches, c_group_score, c_group_rank, c_patch_score,
// c_patch_rank) and group_p.bin uint8 (H, G), cls_p.bin uint8 (H, n), groups.bin int32 (n,), expected.bin
// int32 [keep (n), keep_g (G), scores (n)]. Exit 0 when every case matches (bits and the four cycle counts);
// 1 at the first mismatch; 2 for an unreadable case.
#include <cstdio>
#include <string>
#include <vector>

#include "pruner.h"
#include "tb_golden.h"

int pruner_top(const uint8_t* group_p, const uint8_t* cls_p, const int32_t* groups, uint8_t* keep, uint8_t* keep_g,
               int32_t* scores, int H, int G, int n, int32_t q_groups, int32_t q_patches, int64_t* cycles);

static int run_case(const std::string& dir) {
    tb::Params p;
    long long H, G, n, qg, qp, want[4];
    const char* names[4] = {"c_group_score", "c_group_rank", "c_patch_score", "c_patch_rank"};
    if (!tb::read_params(dir, p) || !tb::param(p, dir, "H", &H) || !tb::param(p, dir, "G", &G) ||
        !tb::param(p, dir, "n", &n) || !tb::param(p, dir, "q_groups", &qg) || !tb::param(p, dir, "q_patches", &qp))
        return 2;
    for (int i = 0; i < 4; ++i)
        if (!tb::param(p, dir, names[i], &want[i])) return 2;
    std::vector<uint8_t> gp, cp;
    std::vector<int32_t> groups, expected;
    if (!tb::read_array(dir, "group_p.bin", H * G, gp) || !tb::read_array(dir, "cls_p.bin", H * n, cp) ||
        !tb::read_array(dir, "groups.bin", n, groups) || !tb::read_array(dir, "expected.bin", 2 * n + G, expected))
        return 2;
    std::vector<uint8_t> keep(static_cast<size_t>(n) + 1, 0), keep_g(static_cast<size_t>(G) + 1, 0);
    std::vector<int32_t> scores(static_cast<size_t>(n) + 1, 0);
    int64_t cycles[4];
    const int status = pruner_top(gp.data(), cp.data(), groups.data(), keep.data(), keep_g.data(), scores.data(), int(H),
                                  int(G), int(n), int32_t(qg), int32_t(qp), cycles);
    if (status != 0) {
        std::printf("FAIL %s: pruner_top returned status 0x%x\n", dir.c_str(), status);
        return 1;
    }
    for (long long i = 0; i < 2 * n + G; ++i) {
        const int got = i < n ? keep[i] : (i < n + G ? keep_g[i - n] : scores[i - n - G]);
        if (got != expected[i]) {
            const char* what = i < n ? "keep" : (i < n + G ? "keep_g" : "scores");
            const long long at = i < n ? i : (i < n + G ? i - n : i - n - G);
            std::printf("FAIL %s: %s[%lld] (H=%lld G=%lld n=%lld): expected %d got %d\n", dir.c_str(), what, at, H, G, n,
                        int(expected[i]), got);
            return 1;
        }
    }
    for (int i = 0; i < 4; ++i) {
        if (cycles[i] != want[i]) {
            std::printf("FAIL %s: %s cycles expected %lld got %lld\n", dir.c_str(), names[i], want[i], (long long)cycles[i]);
            return 1;
        }
    }
    std::printf("ok %s: pruner H=%lld G=%lld n=%lld\n", dir.c_str(), H, G, n);
    return 0;
}

int main(int argc, char** argv) { return tb::run_cases(argc, argv, run_case); }
