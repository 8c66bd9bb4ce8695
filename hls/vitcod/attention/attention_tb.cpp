// Testbench of attention_top against golden files from the simulator
// (vitaccel.sim.vitcod.attention.attention_int).
//
//   attention_tb CASE_DIR [CASE_DIR ...]
// Each CASE_DIR holds params.txt (H, N, d, Hc, nnz, m_exp, s_exp, m_out, s_out and, with Hc > 0, dq_m,
// dq_s, dk_m, dk_s) and
//   q.bin, k.bin   int8 (H, N, d), or the compressed (Hc, N, d) when Hc > 0
//   v.bin          int8 (H, N, d)
//   maskbits.bin   uint8 (H, N, ceil(N/8)): mask rows in reordered column order, bit c % 8 of byte c / 8
//   order.bin int32 (H, N), n_global.bin int32 (H,), colptr.bin int32 (H, N+1), headptr.bin int32 (H+1,),
//   rowidx.bin int32 (nnz,)
//   dq_w.bin, dk_w.bin int8 (H, Hc), dq_b.bin, dk_b.bin int32 (H,)      only when Hc > 0
//   expected.bin   int8 (H, N, d)
// Exit status 0 when every case matches bit for bit; 1 at the first mismatch, after printing where it is,
// the expected value and the one computed.
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "attention.h"
#include "tb_golden.h"

int attention_top(const int8_t* q, const int8_t* k, const int8_t* v, int8_t* out, const uint8_t* maskbits,
                  const int32_t* order, const int32_t* colptr, const int32_t* headptr, const int32_t* rowidx,
                  const int8_t* dq_w, const int32_t* dq_b, const int8_t* dk_w, const int32_t* dk_b,
                  const int32_t n_global[vitaccel::cfg::MAX_HEADS],
                  const int32_t sparse_lines[vitaccel::cfg::MAX_HEADS], int H, int N, int d, int Hc, int nnz,
                  int32_t m_exp, int32_t s_exp, int32_t m_out, int32_t s_out, int32_t dq_m, int32_t dq_s,
                  int32_t dk_m, int32_t dk_s);

static int run_case(const std::string& dir) {
    tb::Params p;
    long long H, N, d, Hc, nnz, m_exp, s_exp, m_out, s_out;
    long long dq_m = 0, dq_s = 0, dk_m = 0, dk_s = 0;
    if (!tb::read_params(dir, p) || !tb::param(p, dir, "H", &H) || !tb::param(p, dir, "N", &N) ||
        !tb::param(p, dir, "d", &d) || !tb::param(p, dir, "Hc", &Hc) || !tb::param(p, dir, "nnz", &nnz) ||
        !tb::param(p, dir, "m_exp", &m_exp) || !tb::param(p, dir, "s_exp", &s_exp) ||
        !tb::param(p, dir, "m_out", &m_out) || !tb::param(p, dir, "s_out", &s_out))
        return 2;
    if (H < 1 || H > vitaccel::cfg::MAX_HEADS) {
        std::printf("ERROR: %s: H=%lld outside [1, %d]\n", dir.c_str(), H, vitaccel::cfg::MAX_HEADS);
        return 2;
    }
    if (Hc > 0 && (!tb::param(p, dir, "dq_m", &dq_m) || !tb::param(p, dir, "dq_s", &dq_s) ||
                   !tb::param(p, dir, "dk_m", &dk_m) || !tb::param(p, dir, "dk_s", &dk_s)))
        return 2;
    const long long hq = Hc > 0 ? Hc : H;
    const long long mb = (N + 7) / 8;
    std::vector<int8_t> q, k, v, expected, dq_w(2, 0), dk_w(2, 0);
    std::vector<uint8_t> maskbits;
    std::vector<int32_t> order, n_global, colptr, headptr, rowidx, dq_b(2, 0), dk_b(2, 0);
    if (!tb::read_array(dir, "q.bin", hq * N * d, q) || !tb::read_array(dir, "k.bin", hq * N * d, k) ||
        !tb::read_array(dir, "v.bin", H * N * d, v) || !tb::read_array(dir, "maskbits.bin", H * N * mb, maskbits) ||
        !tb::read_array(dir, "order.bin", H * N, order) || !tb::read_array(dir, "n_global.bin", H, n_global) ||
        !tb::read_array(dir, "colptr.bin", H * (N + 1), colptr) || !tb::read_array(dir, "headptr.bin", H + 1, headptr) ||
        !tb::read_array(dir, "rowidx.bin", nnz, rowidx) || !tb::read_array(dir, "expected.bin", H * N * d, expected))
        return 2;
    if (Hc > 0 && (!tb::read_array(dir, "dq_w.bin", H * Hc, dq_w) || !tb::read_array(dir, "dq_b.bin", H, dq_b) ||
                   !tb::read_array(dir, "dk_w.bin", H * Hc, dk_w) || !tb::read_array(dir, "dk_b.bin", H, dk_b)))
        return 2;
    // The golden files carry no line split: the one a host without masks uses (every gather port to the
    // sparser engine). The bits do not depend on it.
    int32_t ng[vitaccel::cfg::MAX_HEADS] = {0};
    int32_t ls[vitaccel::cfg::MAX_HEADS] = {0};
    for (long long h = 0; h < H; ++h) {
        ng[h] = n_global[h];
        ls[h] = vitaccel::attention::default_sparse_lines(n_global[h], int(N));
    }
    std::vector<int8_t> out(static_cast<size_t>(H * N * d) + 1, 0);
    const int status = attention_top(q.data(), k.data(), v.data(), out.data(), maskbits.data(), order.data(),
                                     colptr.data(), headptr.data(), rowidx.data(), dq_w.data(), dq_b.data(),
                                     dk_w.data(), dk_b.data(), ng, ls, int(H), int(N), int(d), int(Hc), int(nnz),
                                     int32_t(m_exp), int32_t(s_exp), int32_t(m_out), int32_t(s_out), int32_t(dq_m),
                                     int32_t(dq_s), int32_t(dk_m), int32_t(dk_s));
    if (status != 0) {
        std::printf("FAIL %s: attention_top returned status 0x%x\n", dir.c_str(), status);
        return 1;
    }
    for (long long i = 0; i < H * N * d; ++i) {
        if (out[i] != expected[i]) {
            std::printf("FAIL %s: out[h=%lld, n=%lld, f=%lld] (H=%lld N=%lld d=%lld Hc=%lld): expected %d got %d\n",
                        dir.c_str(), i / (N * d), (i / d) % N, i % d, H, N, d, Hc, int(expected[i]), int(out[i]));
            return 1;
        }
    }
    std::printf("ok %s: attention H=%lld N=%lld d=%lld Hc=%lld nnz=%lld\n", dir.c_str(), H, N, d, Hc, nnz);
    return 0;
}

int main(int argc, char** argv) { return tb::run_cases(argc, argv, run_case); }
