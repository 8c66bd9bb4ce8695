// Testbench of autoencoder_top against golden files from the simulator
// (vitaccel.sim.vitcod.autoencoder.mix_heads).
//
//   autoencoder_tb CASE_DIR [CASE_DIR ...]
// Each CASE_DIR holds params.txt (Hin, C, N, d, mult, shift) and x.bin int8 (Hin, N, d), w.bin int8 (C, Hin),
// b.bin int32 (C,), expected.bin int8 (C, N, d). Exit status 0 when every case matches bit for bit; 1 at
// the first mismatch, after printing where it is, the expected value and the one computed.
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "autoencoder.h"
#include "tb_golden.h"

int autoencoder_top(const int8_t* x, const int8_t* w, const int32_t* b, int32_t mult, int32_t shift, int8_t* y,
                    int Hin, int C, int N, int d);

static int run_case(const std::string& dir) {
    tb::Params p;
    long long Hin, C, N, d, mult, shift;
    if (!tb::read_params(dir, p) || !tb::param(p, dir, "Hin", &Hin) || !tb::param(p, dir, "C", &C) ||
        !tb::param(p, dir, "N", &N) || !tb::param(p, dir, "d", &d) || !tb::param(p, dir, "mult", &mult) ||
        !tb::param(p, dir, "shift", &shift))
        return 2;
    std::vector<int8_t> x, w, expected;
    std::vector<int32_t> b;
    if (!tb::read_array(dir, "x.bin", Hin * N * d, x) || !tb::read_array(dir, "w.bin", C * Hin, w) ||
        !tb::read_array(dir, "b.bin", C, b) || !tb::read_array(dir, "expected.bin", C * N * d, expected))
        return 2;
    std::vector<int8_t> y(static_cast<size_t>(C * N * d) + 1, 0);
    const int status = autoencoder_top(x.data(), w.data(), b.data(), int32_t(mult), int32_t(shift), y.data(), int(Hin),
                                       int(C), int(N), int(d));
    if (status != 0) {
        std::printf("FAIL %s: autoencoder_top returned status 0x%x\n", dir.c_str(), status);
        return 1;
    }
    for (long long i = 0; i < C * N * d; ++i) {
        if (y[i] != expected[i]) {
            std::printf("FAIL %s: y[c=%lld, n=%lld, f=%lld] (Hin=%lld C=%lld N=%lld d=%lld): expected %d got %d\n",
                        dir.c_str(), i / (N * d), (i / d) % N, i % d, Hin, C, N, d, int(expected[i]), int(y[i]));
            return 1;
        }
    }
    std::printf("ok %s: ae mix Hin=%lld C=%lld N=%lld d=%lld\n", dir.c_str(), Hin, C, N, d);
    return 0;
}

int main(int argc, char** argv) { return tb::run_cases(argc, argv, run_case); }
