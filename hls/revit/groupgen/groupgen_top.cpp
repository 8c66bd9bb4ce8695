// Synthesizable top of the semantic group generation engine alone (groupgen.h): the tokens' group indexes,
// group sizes and member lists. Returns the engine status; cycles[4] receives hash, codes, argmax, lists.
#include "groupgen.h"

int groupgen_top(const int8_t* x, const int8_t* A, const int32_t* B, int32_t* groups, int32_t* counts,
                 int32_t* members, int n, int D, int G, int32_t m, int32_t s, int64_t* cycles) {
#pragma HLS INTERFACE m_axi port = x offset = slave bundle = gmem_act
#pragma HLS INTERFACE m_axi port = A offset = slave bundle = gmem_wgt
#pragma HLS INTERFACE m_axi port = B offset = slave bundle = gmem_wgt
#pragma HLS INTERFACE m_axi port = groups offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = counts offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = members offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = cycles offset = slave bundle = gmem_idx
#pragma HLS INTERFACE s_axilite port = n bundle = control
#pragma HLS INTERFACE s_axilite port = D bundle = control
#pragma HLS INTERFACE s_axilite port = G bundle = control
#pragma HLS INTERFACE s_axilite port = m bundle = control
#pragma HLS INTERFACE s_axilite port = s bundle = control
#pragma HLS INTERFACE s_axilite port = return bundle = control
    return vitaccel::groupgen::generate(x, n, D, A, B, G, m, s, groups, counts, members, cycles);
}
