// Synthesizable top of the element-wise add alone (csynth / cosim of this kernel by itself): the residual
// add of an int16 stream and an int8 tensor into int16, y = clip((a ma + b mb + 2^(s-1)) >> s).
#include "eltwise.h"

int eltwise_top(const int16_t* a, int32_t ma, const int8_t* b, int32_t mb, int shift, int16_t* y, int64_t n) {
#pragma HLS INTERFACE m_axi port = a offset = slave bundle = gmem_act max_read_burst_length = 64
#pragma HLS INTERFACE m_axi port = b offset = slave bundle = gmem_act max_read_burst_length = 64
#pragma HLS INTERFACE m_axi port = y offset = slave bundle = gmem_act max_write_burst_length = 64
#pragma HLS INTERFACE s_axilite port = ma bundle = control
#pragma HLS INTERFACE s_axilite port = mb bundle = control
#pragma HLS INTERFACE s_axilite port = shift bundle = control
#pragma HLS INTERFACE s_axilite port = n bundle = control
#pragma HLS INTERFACE s_axilite port = return bundle = control
    return vitaccel::eltwise::Eltwise<vitaccel::cfg::GemmArray>::add(a, 16, ma, b, 8, mb, shift, y, 16, n);
}
