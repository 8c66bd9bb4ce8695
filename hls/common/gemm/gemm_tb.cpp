// Testbench of gemm_top against golden files from the simulator (vitaccel.sim.common.gemm.gemm).
//
//   gemm_tb CASE_DIR [CASE_DIR ...]
// Each CASE_DIR holds params.txt (M, K, O) and x.bin int8 (M, K), w.bin int8 (O, K), bias.bin, mult.bin,
// shift.bin int32 (O,), expected.bin int8 (M, O). Exit status 0 when every case matches bit for bit;
// 1 at the first mismatch, after printing where it is, the expected value and the one computed.
// Build: g++ -std=c++14 -DVITACCEL_TARGET_<IDENT> -I hls/include -I hls/include/csim -isystem <ap_types>
//        gemm_tb.cpp gemm_top.cpp
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "gemm.h"
#include "tb_golden.h"

int gemm_top(const int8_t* x, const int8_t* w, const int32_t* bias, const int32_t* mult, const int32_t* shift,
             int8_t* y, int M, int K, int O);

static int run_case(const std::string& dir) {
    tb::Params p;
    long long M, K, O;
    if (!tb::read_params(dir, p) || !tb::param(p, dir, "M", &M) || !tb::param(p, dir, "K", &K) ||
        !tb::param(p, dir, "O", &O))
        return 2;
    std::vector<int8_t> x, w, expected;
    std::vector<int32_t> bias, mult, shift;
    if (!tb::read_array(dir, "x.bin", M * K, x) || !tb::read_array(dir, "w.bin", O * K, w) ||
        !tb::read_array(dir, "bias.bin", O, bias) || !tb::read_array(dir, "mult.bin", O, mult) ||
        !tb::read_array(dir, "shift.bin", O, shift) || !tb::read_array(dir, "expected.bin", M * O, expected))
        return 2;
    std::vector<int8_t> y(static_cast<size_t>(M * O) + 1, 0);
    const int status = gemm_top(x.data(), w.data(), bias.data(), mult.data(), shift.data(), y.data(), int(M), int(K),
                                int(O));
    if (status != 0) {
        std::printf("FAIL %s: gemm_top returned status 0x%x\n", dir.c_str(), status);
        return 1;
    }
    for (long long m = 0; m < M; ++m) {
        for (long long o = 0; o < O; ++o) {
            const long long i = m * O + o;
            if (y[i] != expected[i]) {
                std::printf("FAIL %s: y[m=%lld, o=%lld] (M=%lld K=%lld O=%lld): expected %d got %d\n", dir.c_str(), m,
                            o, M, K, O, int(expected[i]), int(y[i]));
                return 1;
            }
        }
    }
    std::printf("ok %s: gemm M=%lld K=%lld O=%lld\n", dir.c_str(), M, K, O);
    return 0;
}

int main(int argc, char** argv) { return tb::run_cases(argc, argv, run_case); }
