// The ReViT accelerator's top-level function: runs a list of descriptors from DRAM (DESCRIPTOR.md).
//
// Today it dispatches OP_NOP only and returns ERR_OP for every other opcode: the engines (group generation,
// RMMU, differential softmax, pruner, scheduler) are built and tested as standalone kernels under
// hls/revit/<engine>/, and join this dispatcher with their descriptors in issue #12 part 3. What is here is
// the part every program needs first: the ID register, the run counter and the checks of the descriptor
// list itself, with the same status codes as vitcod_top (hls/include/isa/common_isa.h).
#include <stdint.h>

#include "vitaccel_config.h"
#include "isa/revit_isa.h"

namespace vitaccel {
namespace revit_top_impl {

using namespace isa;
using namespace isa::revit;
typedef uint64_t addr_t;

inline bool in_window(uint32_t off, addr_t len, uint32_t mem) { return (addr_t)off + len <= (addr_t)mem; }

}  // namespace revit_top_impl
}  // namespace vitaccel

// hw_id always receives the config hash, so a call with num_instr = 0 just reads the ID.
int revit_top(const int8_t* act_in, int8_t* act_out, const int32_t* idx, const int8_t* wgt, const int32_t* wconst,
              uint32_t desc_off, uint32_t num_instr, uint32_t mem_bytes, uint32_t* hw_id, uint32_t* run_count) {
#pragma HLS INTERFACE m_axi port = act_in offset = slave bundle = gmem_act
#pragma HLS INTERFACE m_axi port = act_out offset = slave bundle = gmem_act
#pragma HLS INTERFACE m_axi port = idx offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = wgt offset = slave bundle = gmem_wgt
#pragma HLS INTERFACE m_axi port = wconst offset = slave bundle = gmem_wgt
#pragma HLS INTERFACE s_axilite port = desc_off bundle = control
#pragma HLS INTERFACE s_axilite port = num_instr bundle = control
#pragma HLS INTERFACE s_axilite port = mem_bytes bundle = control
#pragma HLS INTERFACE s_axilite port = hw_id bundle = control
#pragma HLS INTERFACE s_axilite port = run_count bundle = control
#pragma HLS INTERFACE s_axilite port = return bundle = control
    using namespace vitaccel::revit_top_impl;
    (void)act_in;
    (void)act_out;
    (void)wgt;
    (void)wconst;
    static uint32_t runs = 0;
    *hw_id = vitaccel::cfg::CONFIG_HASH32;
    *run_count = ++runs;
    if (num_instr >= MAX_INSTR) return ERR_COUNT;
    if (desc_off & 3) return ERR_ALIGN;
    if (!in_window(desc_off, (addr_t)num_instr * DESC_WORDS * 4, mem_bytes)) return ERR_RANGE;
    const int32_t* desc = idx + desc_off / 4;
REVIT_DISPATCH:
    for (uint32_t i = 0; i < num_instr; ++i) {
        const int32_t op = desc[(addr_t)i * DESC_WORDS + W_OP];
        const int32_t flags = desc[(addr_t)i * DESC_WORDS + W_FLAGS];
        if (op != OP_NOP || flags != 0) return (int)((i << 16) | ERR_OP);
    }
    return OK;
}
