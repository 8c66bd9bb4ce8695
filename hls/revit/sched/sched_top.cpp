// Synthesizable top of the scheduler alone (sched.h): one layer's column allocation and timeline. Returns
// the engine status; out[3] receives the in-order and out-of-order makespans and the busy column-cycles.
#include "sched.h"

int sched_top(const int32_t* sizes, const int64_t* t, const int64_t* W, int64_t* finish, int64_t* out, int G, int mode,
              int F) {
#pragma HLS INTERFACE m_axi port = sizes offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = t offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = W offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = finish offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = out offset = slave bundle = gmem_idx
#pragma HLS INTERFACE s_axilite port = G bundle = control
#pragma HLS INTERFACE s_axilite port = mode bundle = control
#pragma HLS INTERFACE s_axilite port = F bundle = control
#pragma HLS INTERFACE s_axilite port = return bundle = control
    return vitaccel::sched::timeline(sizes, G, mode, F, t, W, finish, out);
}
