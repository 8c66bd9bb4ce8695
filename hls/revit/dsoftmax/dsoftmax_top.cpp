// Synthesizable top of the differential softmax unit alone (dsoftmax.h). Returns the unit's status;
// cycles[7] receives max, rescale, offset, exp, div, norm, and the row pipeline's time.
#include "dsoftmax.h"

int dsoftmax_top(const int32_t* scores, const uint8_t* keep, const int32_t* weights, uint8_t* p, int rows, int n,
                 int32_t m_exp, int32_t s_exp, int block, int lanes, int64_t* cycles) {
#pragma HLS INTERFACE m_axi port = scores offset = slave bundle = gmem_act
#pragma HLS INTERFACE m_axi port = keep offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = weights offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = p offset = slave bundle = gmem_act
#pragma HLS INTERFACE m_axi port = cycles offset = slave bundle = gmem_idx
#pragma HLS INTERFACE s_axilite port = rows bundle = control
#pragma HLS INTERFACE s_axilite port = n bundle = control
#pragma HLS INTERFACE s_axilite port = m_exp bundle = control
#pragma HLS INTERFACE s_axilite port = s_exp bundle = control
#pragma HLS INTERFACE s_axilite port = block bundle = control
#pragma HLS INTERFACE s_axilite port = lanes bundle = control
#pragma HLS INTERFACE s_axilite port = return bundle = control
    return vitaccel::dsoftmax::softmax(scores, keep, weights, rows, n, m_exp, s_exp, block, lanes, p, cycles);
}
