// Testbench of eltwise_top against golden files from the simulator
// (vitaccel.sim.common.eltwise.add_requant, int16 + int8 -> int16).
//
//   eltwise_tb CASE_DIR [CASE_DIR ...]
// Each CASE_DIR holds params.txt (n, ma, mb, shift) and a.bin int16 (n,), b.bin int8 (n,), expected.bin
// int16 (n,). Exit status 0 when every case matches bit for bit; 1 at the first mismatch, after printing
// where it is, the expected value and the one computed.
#include <cstdio>
#include <string>
#include <vector>

#include "eltwise.h"
#include "tb_golden.h"

int eltwise_top(const int16_t* a, int32_t ma, const int8_t* b, int32_t mb, int shift, int16_t* y, int64_t n);

static int run_case(const std::string& dir) {
    tb::Params p;
    long long n, ma, mb, shift;
    if (!tb::read_params(dir, p) || !tb::param(p, dir, "n", &n) || !tb::param(p, dir, "ma", &ma) ||
        !tb::param(p, dir, "mb", &mb) || !tb::param(p, dir, "shift", &shift))
        return 2;
    std::vector<int16_t> a, expected;
    std::vector<int8_t> b;
    if (!tb::read_array(dir, "a.bin", n, a) || !tb::read_array(dir, "b.bin", n, b) ||
        !tb::read_array(dir, "expected.bin", n, expected))
        return 2;
    std::vector<int16_t> y(static_cast<size_t>(n) + 1, 0);
    const int status = eltwise_top(a.data(), int32_t(ma), b.data(), int32_t(mb), int(shift), y.data(), n);
    if (status != 0) {
        std::printf("FAIL %s: eltwise_top returned status %d\n", dir.c_str(), status);
        return 1;
    }
    for (long long i = 0; i < n; ++i) {
        if (y[i] != expected[i]) {
            std::printf("FAIL %s: y[%lld] (n=%lld): expected %d got %d\n", dir.c_str(), i, n, int(expected[i]),
                        int(y[i]));
            return 1;
        }
    }
    std::printf("ok %s: add n=%lld\n", dir.c_str(), n);
    return 0;
}

int main(int argc, char** argv) { return tb::run_cases(argc, argv, run_case); }
