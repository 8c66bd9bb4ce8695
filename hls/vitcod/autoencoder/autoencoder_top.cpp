// Synthesizable top of the encoder/decoder engine alone: y (C, N, d) = mix of x (H_in, N, d) over the
// head axis (KERNELS.md "Auto-encoder"), both contiguous. The accelerator's top (../vitcod_top.cpp) runs
// the same engine with strides, straight on the qkv GEMM output. Returns the engine's status
// (autoencoder.h: 0 ok, 0x201.. errors).
#include "autoencoder.h"

int autoencoder_top(const int8_t* x, const int8_t* w, const int32_t* b, int32_t mult, int32_t shift, int8_t* y,
                    int Hin, int C, int N, int d) {
#pragma HLS INTERFACE m_axi port = x offset = slave bundle = gmem_act max_read_burst_length = 64
#pragma HLS INTERFACE m_axi port = y offset = slave bundle = gmem_act max_write_burst_length = 64
#pragma HLS INTERFACE m_axi port = w offset = slave bundle = gmem_wgt
#pragma HLS INTERFACE m_axi port = b offset = slave bundle = gmem_wgt
#pragma HLS INTERFACE s_axilite port = mult bundle = control
#pragma HLS INTERFACE s_axilite port = shift bundle = control
#pragma HLS INTERFACE s_axilite port = Hin bundle = control
#pragma HLS INTERFACE s_axilite port = C bundle = control
#pragma HLS INTERFACE s_axilite port = N bundle = control
#pragma HLS INTERFACE s_axilite port = d bundle = control
#pragma HLS INTERFACE s_axilite port = return bundle = control
    const int64_t hs = (int64_t)N * d;
    return vitaccel::ae::ae_mix(x, hs, d, w, b, mult, shift, y, hs, d, Hin, C, N, d);
}
