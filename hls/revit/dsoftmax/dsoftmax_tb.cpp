// Testbench of dsoftmax_top against golden files from the simulator (vitaccel.sim.revit.dsoftmax).
//
//   dsoftmax_tb CASE_DIR [CASE_DIR ...]
// Each CASE_DIR holds params.txt (rows, n, m_exp, s_exp, block, lanes, c_max, c_rescale, c_offset, c_exp,
// c_div, c_norm) and scores.bin int32 (rows, n), keep.bin uint8 (rows, n), weights.bin int32 (n,),
// expected.bin uint8 (rows, n). Exit 0 when every case matches (bits and the six cycle counts); 1 at the
// first mismatch; 2 for an unreadable case.
#include <cstdio>
#include <string>
#include <vector>

#include "dsoftmax.h"
#include "tb_golden.h"

int dsoftmax_top(const int32_t* scores, const uint8_t* keep, const int32_t* weights, uint8_t* p, int rows, int n,
                 int32_t m_exp, int32_t s_exp, int block, int lanes, int64_t* cycles);

static int run_case(const std::string& dir) {
    tb::Params p;
    long long rows, n, m_exp, s_exp, block, lanes, want[7];
    const char* names[7] = {"c_max", "c_rescale", "c_offset", "c_exp", "c_div", "c_norm", "c_time"};
    if (!tb::read_params(dir, p) || !tb::param(p, dir, "rows", &rows) || !tb::param(p, dir, "n", &n) ||
        !tb::param(p, dir, "m_exp", &m_exp) || !tb::param(p, dir, "s_exp", &s_exp) ||
        !tb::param(p, dir, "block", &block) || !tb::param(p, dir, "lanes", &lanes))
        return 2;
    for (int i = 0; i < 7; ++i)
        if (!tb::param(p, dir, names[i], &want[i])) return 2;
    std::vector<int32_t> scores, weights;
    std::vector<uint8_t> keep, expected;
    if (!tb::read_array(dir, "scores.bin", rows * n, scores) || !tb::read_array(dir, "keep.bin", rows * n, keep) ||
        !tb::read_array(dir, "weights.bin", n, weights) || !tb::read_array(dir, "expected.bin", rows * n, expected))
        return 2;
    std::vector<uint8_t> got(static_cast<size_t>(rows * n) + 1, 0);
    int64_t cycles[7];
    const int status = dsoftmax_top(scores.data(), keep.data(), weights.data(), got.data(), int(rows), int(n),
                                    int32_t(m_exp), int32_t(s_exp), int(block), int(lanes), cycles);
    if (status != 0) {
        std::printf("FAIL %s: dsoftmax_top returned status 0x%x\n", dir.c_str(), status);
        return 1;
    }
    for (long long i = 0; i < rows * n; ++i) {
        if (got[i] != expected[i]) {
            std::printf("FAIL %s: p[row=%lld, j=%lld] (rows=%lld n=%lld block=%lld): expected %d got %d\n", dir.c_str(),
                        i / n, i % n, rows, n, block, int(expected[i]), int(got[i]));
            return 1;
        }
    }
    for (int i = 0; i < 7; ++i) {
        if (cycles[i] != want[i]) {
            std::printf("FAIL %s: %s cycles expected %lld got %lld\n", dir.c_str(), names[i], want[i], (long long)cycles[i]);
            return 1;
        }
    }
    std::printf("ok %s: differential softmax rows=%lld n=%lld block=%lld\n", dir.c_str(), rows, n, block);
    return 0;
}

int main(int argc, char** argv) { return tb::run_cases(argc, argv, run_case); }
