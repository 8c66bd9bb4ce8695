// Synthesizable top of the LayerNorm engine alone (csynth / cosim of this kernel by itself):
// y (rows, D) int8 = layernorm(x (rows, D) int16; g, b (D,) int32, shift, eps). Returns the engine's status.
#include "layernorm.h"

int layernorm_top(const int16_t* x, const int32_t* g, const int32_t* b, int shift, int64_t eps, int8_t* y, int rows,
                  int D) {
#pragma HLS INTERFACE m_axi port = x offset = slave bundle = gmem_act max_read_burst_length = 64
#pragma HLS INTERFACE m_axi port = y offset = slave bundle = gmem_act max_write_burst_length = 64
#pragma HLS INTERFACE m_axi port = g offset = slave bundle = gmem_wgt
#pragma HLS INTERFACE m_axi port = b offset = slave bundle = gmem_wgt
#pragma HLS INTERFACE s_axilite port = shift bundle = control
#pragma HLS INTERFACE s_axilite port = eps bundle = control
#pragma HLS INTERFACE s_axilite port = rows bundle = control
#pragma HLS INTERFACE s_axilite port = D bundle = control
#pragma HLS INTERFACE s_axilite port = return bundle = control
    return vitaccel::layernorm::LayerNorm<vitaccel::cfg::GemmArray>::layer(x, g, b, shift, eps, y, rows, D);
}
