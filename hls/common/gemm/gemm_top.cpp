// Synthesizable top of the GEMM engine alone (csynth / cosim of this kernel by itself; the accelerator's
// top is ../vitcod_top.cpp). y (M, O) = requantize(x (M, K) . w (O, K)^T + bias, mult, shift).
// Returns the engine's status (gemm.h: 0 ok, 0x101.. errors) in the ap_return register.
#include "gemm.h"

int gemm_top(const int8_t* x, const int8_t* w, const int32_t* bias, const int32_t* mult, const int32_t* shift,
             int8_t* y, int M, int K, int O) {
#pragma HLS INTERFACE m_axi port = x offset = slave bundle = gmem_act max_read_burst_length = 64
#pragma HLS INTERFACE m_axi port = y offset = slave bundle = gmem_act max_write_burst_length = 64
#pragma HLS INTERFACE m_axi port = w offset = slave bundle = gmem_wgt max_read_burst_length = 64
#pragma HLS INTERFACE m_axi port = bias offset = slave bundle = gmem_wgt
#pragma HLS INTERFACE m_axi port = mult offset = slave bundle = gmem_wgt
#pragma HLS INTERFACE m_axi port = shift offset = slave bundle = gmem_wgt
#pragma HLS INTERFACE s_axilite port = M bundle = control
#pragma HLS INTERFACE s_axilite port = K bundle = control
#pragma HLS INTERFACE s_axilite port = O bundle = control
#pragma HLS INTERFACE s_axilite port = return bundle = control
    return vitaccel::gemm::Gemm<vitaccel::cfg::GemmArray>::gemm_layer(x, w, bias, mult, shift, y, M, K, O);
}
