// Testbench of groupgen_top against golden files from the simulator (vitaccel.sim.revit.groupgen).
//
//   groupgen_tb CASE_DIR [CASE_DIR ...]
// Each CASE_DIR holds params.txt (n, D, G, m, s, c_hash, c_codes, c_argmax, c_lists) and x.bin int8 (n, D),
// A.bin int8 (G, D), B.bin int32 (G,), expected.bin int32 [groups (n), counts (G), members (n)]. Exit 0 when
// every case matches (bits and the four cycle counts); 1 at the first mismatch; 2 for an unreadable case.
#include <cstdio>
#include <string>
#include <vector>

#include "groupgen.h"
#include "tb_golden.h"

int groupgen_top(const int8_t* x, const int8_t* A, const int32_t* B, int32_t* groups, int32_t* counts,
                 int32_t* members, int n, int D, int G, int32_t m, int32_t s, int64_t* cycles);

static int run_case(const std::string& dir) {
    tb::Params p;
    long long n, D, G, m, s, want[4];
    const char* names[4] = {"c_hash", "c_codes", "c_argmax", "c_lists"};
    if (!tb::read_params(dir, p) || !tb::param(p, dir, "n", &n) || !tb::param(p, dir, "D", &D) ||
        !tb::param(p, dir, "G", &G) || !tb::param(p, dir, "m", &m) || !tb::param(p, dir, "s", &s))
        return 2;
    for (int i = 0; i < 4; ++i)
        if (!tb::param(p, dir, names[i], &want[i])) return 2;
    std::vector<int8_t> x, A;
    std::vector<int32_t> B, expected;
    if (!tb::read_array(dir, "x.bin", n * D, x) || !tb::read_array(dir, "A.bin", G * D, A) ||
        !tb::read_array(dir, "B.bin", G, B) || !tb::read_array(dir, "expected.bin", 2 * n + G, expected))
        return 2;
    std::vector<int32_t> got(static_cast<size_t>(2 * n + G) + 1, -1);
    int64_t cycles[4] = {0, 0, 0, 0};
    const int status = groupgen_top(x.data(), A.data(), B.data(), got.data(), got.data() + n, got.data() + n + G,
                                    int(n), int(D), int(G), int32_t(m), int32_t(s), cycles);
    if (status != 0) {
        std::printf("FAIL %s: groupgen_top returned status 0x%x\n", dir.c_str(), status);
        return 1;
    }
    for (long long i = 0; i < 2 * n + G; ++i) {
        if (got[i] != expected[i]) {
            const char* what = i < n ? "groups" : (i < n + G ? "counts" : "members");
            const long long at = i < n ? i : (i < n + G ? i - n : i - n - G);
            std::printf("FAIL %s: %s[%lld] (n=%lld D=%lld G=%lld): expected %d got %d\n", dir.c_str(), what, at, n, D, G,
                        int(expected[i]), int(got[i]));
            return 1;
        }
    }
    for (int i = 0; i < 4; ++i) {
        if (cycles[i] != want[i]) {
            std::printf("FAIL %s: %s cycles expected %lld got %lld\n", dir.c_str(), names[i], want[i], (long long)cycles[i]);
            return 1;
        }
    }
    std::printf("ok %s: group generation n=%lld D=%lld G=%lld\n", dir.c_str(), n, D, G);
    return 0;
}

int main(int argc, char** argv) { return tb::run_cases(argc, argv, run_case); }
