// Testbench of layernorm_top against golden files from the simulator
// (vitaccel.sim.common.layernorm.layernorm_int).
//
//   layernorm_tb CASE_DIR [CASE_DIR ...]
// Each CASE_DIR holds params.txt (rows, D, shift, eps) and x.bin int16 (rows, D), g.bin, b.bin int32 (D,),
// expected.bin int8 (rows, D). Exit status 0 when every case matches bit for bit; 1 at the first mismatch,
// after printing where it is, the expected value and the one computed.
#include <cstdio>
#include <string>
#include <vector>

#include "layernorm.h"
#include "tb_golden.h"

int layernorm_top(const int16_t* x, const int32_t* g, const int32_t* b, int shift, int64_t eps, int8_t* y, int rows,
                  int D);

static int run_case(const std::string& dir) {
    tb::Params p;
    long long rows, D, shift, eps;
    if (!tb::read_params(dir, p) || !tb::param(p, dir, "rows", &rows) || !tb::param(p, dir, "D", &D) ||
        !tb::param(p, dir, "shift", &shift) || !tb::param(p, dir, "eps", &eps))
        return 2;
    std::vector<int16_t> x;
    std::vector<int32_t> g, b;
    std::vector<int8_t> expected;
    if (!tb::read_array(dir, "x.bin", rows * D, x) || !tb::read_array(dir, "g.bin", D, g) ||
        !tb::read_array(dir, "b.bin", D, b) || !tb::read_array(dir, "expected.bin", rows * D, expected))
        return 2;
    std::vector<int8_t> y(static_cast<size_t>(rows * D) + 1, 0);
    const int status = layernorm_top(x.data(), g.data(), b.data(), int(shift), eps, y.data(), int(rows), int(D));
    if (status != 0) {
        std::printf("FAIL %s: layernorm_top returned status %d\n", dir.c_str(), status);
        return 1;
    }
    for (long long i = 0; i < rows * D; ++i) {
        if (y[i] != expected[i]) {
            std::printf("FAIL %s: y[row=%lld, k=%lld] (rows=%lld D=%lld): expected %d got %d\n", dir.c_str(), i / D,
                        i % D, rows, D, int(expected[i]), int(y[i]));
            return 1;
        }
    }
    std::printf("ok %s: layernorm rows=%lld D=%lld\n", dir.c_str(), rows, D);
    return 0;
}

int main(int argc, char** argv) { return tb::run_cases(argc, argv, run_case); }
