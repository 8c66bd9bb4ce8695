// Testbench of sched_top against golden files from the simulator (vitaccel.sim.revit.sched).
//
//   sched_tb CASE_DIR [CASE_DIR ...]
// Each CASE_DIR holds params.txt (G, mode, F) and sizes.bin int32 (G,), t.bin int64 (G,), W.bin int64 (G,),
// expected.bin int64 [finish (G), in order, out of order, busy]. Exit 0 when every case matches; 1 at the
// first mismatch; 2 for an unreadable case.
#include <cstdio>
#include <string>
#include <vector>

#include "sched.h"
#include "tb_golden.h"

int sched_top(const int32_t* sizes, const int64_t* t, const int64_t* W, int64_t* finish, int64_t* out, int G, int mode,
              int F);

static int run_case(const std::string& dir) {
    tb::Params p;
    long long G, mode, F;
    if (!tb::read_params(dir, p) || !tb::param(p, dir, "G", &G) || !tb::param(p, dir, "mode", &mode) ||
        !tb::param(p, dir, "F", &F))
        return 2;
    std::vector<int32_t> sizes;
    std::vector<int64_t> t, W, expected;
    if (!tb::read_array(dir, "sizes.bin", G, sizes) || !tb::read_array(dir, "t.bin", G, t) ||
        !tb::read_array(dir, "W.bin", G, W) || !tb::read_array(dir, "expected.bin", G + 3, expected))
        return 2;
    std::vector<int64_t> got(static_cast<size_t>(G + 3) + 1, -1);
    const int status = sched_top(sizes.data(), t.data(), W.data(), got.data(), got.data() + G, int(G), int(mode), int(F));
    if (status != 0) {
        std::printf("FAIL %s: sched_top returned status 0x%x\n", dir.c_str(), status);
        return 1;
    }
    const char* tail[3] = {"in_order", "out_of_order", "busy"};
    for (long long i = 0; i < G + 3; ++i) {
        if (got[i] != expected[i]) {
            if (i < G)
                std::printf("FAIL %s: finish[%lld] (G=%lld mode=%lld): expected %lld got %lld\n", dir.c_str(), i, G, mode,
                            (long long)expected[i], (long long)got[i]);
            else
                std::printf("FAIL %s: %s (G=%lld mode=%lld): expected %lld got %lld\n", dir.c_str(), tail[i - G], G, mode,
                            (long long)expected[i], (long long)got[i]);
            return 1;
        }
    }
    std::printf("ok %s: scheduler G=%lld mode=%lld\n", dir.c_str(), G, mode);
    return 0;
}

int main(int argc, char** argv) { return tb::run_cases(argc, argv, run_case); }
