// Testbench of rmmu_top against golden files from the simulator (vitaccel.sim.revit.rmmu.rbsp_pass).
//
//   rmmu_tb CASE_DIR [CASE_DIR ...]
// Each CASE_DIR holds params.txt (C, K, O, cols, sync, cycles) and S.bin int16 (C, K), B.bin int32 (O, K),
// expected.bin int32 (O, C). Exit 0 when every case matches bit for bit and in cycles; 1 at the first
// mismatch (printing where, the expected value and the one computed); 2 for an unreadable case.
#include <cstdio>
#include <string>
#include <vector>

#include "rmmu.h"
#include "tb_golden.h"

int rmmu_top(const int16_t* S, const int32_t* B, int32_t* Y, int C, int K, int O, int cols, int sync, int64_t* cycles);

static int run_case(const std::string& dir) {
    tb::Params p;
    long long C, K, O, cols, sync, want_cycles;
    if (!tb::read_params(dir, p) || !tb::param(p, dir, "C", &C) || !tb::param(p, dir, "K", &K) ||
        !tb::param(p, dir, "O", &O) || !tb::param(p, dir, "cols", &cols) || !tb::param(p, dir, "sync", &sync) || !tb::param(p, dir, "cycles", &want_cycles))
        return 2;
    std::vector<int16_t> S;
    std::vector<int32_t> B, expected;
    if (!tb::read_array(dir, "S.bin", C * K, S) || !tb::read_array(dir, "B.bin", O * K, B) ||
        !tb::read_array(dir, "expected.bin", O * C, expected))
        return 2;
    std::vector<int32_t> Y(static_cast<size_t>(O * C) + 1, 0);
    int64_t cycles = 0;
    const int status = rmmu_top(S.data(), B.data(), Y.data(), int(C), int(K), int(O), int(cols), int(sync), &cycles);
    if (status != 0) {
        std::printf("FAIL %s: rmmu_top returned status 0x%x\n", dir.c_str(), status);
        return 1;
    }
    for (long long i = 0; i < O * C; ++i) {
        if (Y[i] != expected[i]) {
            std::printf("FAIL %s: Y[o=%lld, c=%lld] (C=%lld K=%lld O=%lld cols=%lld): expected %d got %d\n", dir.c_str(),
                        i / C, i % C, C, K, O, cols, int(expected[i]), int(Y[i]));
            return 1;
        }
    }
    if (cycles != want_cycles) {
        std::printf("FAIL %s: cycles expected %lld got %lld\n", dir.c_str(), want_cycles, (long long)cycles);
        return 1;
    }
    std::printf("ok %s: rbsp pass C=%lld K=%lld O=%lld cols=%lld, %lld cycles\n", dir.c_str(), C, K, O, cols,
                (long long)cycles);
    return 0;
}

int main(int argc, char** argv) { return tb::run_cases(argc, argv, run_case); }
