// Testbench of revit_top (the whole accelerator) against golden windows from the simulator's model of it
// (vitaccel.sim.revit.top.run_top, written by vitaccel.sim.revit.golden.top_cases).
//
//   revit_tb CASE_DIR [CASE_DIR ...]
// Each CASE_DIR holds params.txt (desc_off, num_instr, mem_bytes, window_bytes, status, hw_id), window.bin
// (the DRAM window before the run) and expected.bin (after it). Every m_axi port points at the window.
// Exit status 0 when status, hw_id and every byte of the window match; 1 at the first mismatch, after
// printing it; 2 for an unreadable case. The cases include hostile descriptors, so a build with
// -fsanitize=address,undefined also shows that no descriptor makes the top touch memory outside the window.
#include <cstdio>
#include <string>
#include <vector>

#include "tb_golden.h"

int revit_top(const int8_t* act_in, int8_t* act_out, int32_t* idx, const int8_t* wgt, const int32_t* wconst,
              uint32_t desc_off, uint32_t num_instr, uint32_t mem_bytes, uint32_t* hw_id, uint32_t* run_count);

static int run_case(const std::string& dir) {
    tb::Params p;
    long long desc_off, num_instr, mem_bytes, window_bytes, status, hw_id;
    if (!tb::read_params(dir, p) || !tb::param(p, dir, "desc_off", &desc_off) ||
        !tb::param(p, dir, "num_instr", &num_instr) || !tb::param(p, dir, "mem_bytes", &mem_bytes) ||
        !tb::param(p, dir, "window_bytes", &window_bytes) || !tb::param(p, dir, "status", &status) ||
        !tb::param(p, dir, "hw_id", &hw_id))
        return 2;
    if (mem_bytes < 0 || mem_bytes > window_bytes || window_bytes % 4 != 0) {
        std::printf("ERROR: %s: mem_bytes %lld / window_bytes %lld not a valid window\n", dir.c_str(), mem_bytes,
                    window_bytes);
        return 2;
    }
    std::vector<int32_t> words;  // int32 words: the window is 4-byte aligned, as the host's buffer is
    std::vector<uint8_t> expected;
    if (!tb::read_array(dir, "window.bin", window_bytes / 4, words) ||
        !tb::read_array(dir, "expected.bin", window_bytes, expected))
        return 2;
    uint8_t* w = reinterpret_cast<uint8_t*>(words.data());
    uint32_t id = 0, runs = 0;
    const int st = revit_top(reinterpret_cast<const int8_t*>(w), reinterpret_cast<int8_t*>(w),
                             reinterpret_cast<int32_t*>(w), reinterpret_cast<const int8_t*>(w),
                             reinterpret_cast<const int32_t*>(w), uint32_t(desc_off), uint32_t(num_instr),
                             uint32_t(mem_bytes), &id, &runs);
    if ((unsigned)st != (unsigned)status || (long long)id != hw_id) {
        std::printf("FAIL %s: status 0x%x hw_id 0x%08x: expected status 0x%llx hw_id 0x%08llx\n", dir.c_str(),
                    (unsigned)st, id, (unsigned long long)status, (unsigned long long)hw_id);
        return 1;
    }
    for (long long i = 0; i < window_bytes; ++i) {
        if (w[i] != expected[i]) {
            std::printf("FAIL %s: window byte %lld: expected %d got %d\n", dir.c_str(), i, int(int8_t(expected[i])),
                        int(int8_t(w[i])));
            return 1;
        }
    }
    std::printf("ok %s: %lld descriptor(s), status 0x%x\n", dir.c_str(), num_instr, (unsigned)st);
    return 0;
}

int main(int argc, char** argv) { return tb::run_cases(argc, argv, run_case); }
