// Testbench of gemm_top against golden files from the simulator (vitaccel.sim.kernels.gemm.gemm).
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

int gemm_top(const int8_t* x, const int8_t* w, const int32_t* bias, const int32_t* mult, const int32_t* shift,
             int8_t* y, int M, int K, int O);

// ---- golden files (written by tests/test_csim_kernels.py from the simulator) ----------------------
// A case is a folder: params.txt ("name value" per line) and one raw little-endian .bin file per array.
namespace tb {

typedef std::map<std::string, long long> Params;

bool read_params(const std::string& dir, Params& p) {
    std::ifstream f((dir + "/params.txt").c_str());
    if (!f) {
        std::printf("ERROR: cannot open %s/params.txt\n", dir.c_str());
        return false;
    }
    std::string key;
    long long value;
    while (f >> key >> value) p[key] = value;
    return true;
}

bool param(const Params& p, const std::string& dir, const char* key, long long* out) {
    Params::const_iterator it = p.find(key);
    if (it == p.end()) {
        std::printf("ERROR: %s/params.txt has no '%s'\n", dir.c_str(), key);
        return false;
    }
    *out = it->second;
    return true;
}

// Reads exactly count elements of T; a file of another size is an error (a stale or truncated golden).
template <typename T>
bool read_array(const std::string& dir, const char* name, long long count, std::vector<T>& out) {
    const std::string path = dir + "/" + name;
    std::ifstream f(path.c_str(), std::ios::binary | std::ios::ate);
    if (!f) {
        std::printf("ERROR: cannot open %s\n", path.c_str());
        return false;
    }
    const long long bytes = static_cast<long long>(f.tellg());
    if (count < 0 || bytes != count * static_cast<long long>(sizeof(T))) {
        std::printf("ERROR: %s has %lld bytes, expected %lld (%lld elements of %d bytes)\n", path.c_str(), bytes,
                    count * static_cast<long long>(sizeof(T)), count, static_cast<int>(sizeof(T)));
        return false;
    }
    // One spare element so that .data() of an empty array is still a valid pointer.
    out.assign(static_cast<size_t>(count) + 1, T(0));
    f.seekg(0);
    if (count > 0 && !f.read(reinterpret_cast<char*>(out.data()), bytes)) {
        std::printf("ERROR: reading %s failed\n", path.c_str());
        return false;
    }
    return true;
}

}  // namespace tb

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

int main(int argc, char** argv) {
    if (argc < 2) {
        std::printf("usage: %s CASE_DIR [CASE_DIR ...]\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; ++i) {
        const int rc = run_case(argv[i]);
        if (rc != 0) return rc;
    }
    std::printf("PASS: %d case(s)\n", argc - 1);
    return 0;
}
