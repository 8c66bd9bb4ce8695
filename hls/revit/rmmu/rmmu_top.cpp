// Synthesizable top of one RMMU pass alone: Y (O, C) = B (O, K) . S (C, K)^T on sub-arrays of `cols`
// columns, groups of `sync` columns in lock step (rmmu.h). The projection, score and output uses build S and B with the delta generator around
// this pass (rmmu.h; C API revit_capi.cpp). Returns the engine status; *cycles receives the pass's cycles.
#include "rmmu.h"

int rmmu_top(const int16_t* S, const int32_t* B, int32_t* Y, int C, int K, int O, int cols, int sync, int64_t* cycles) {
#pragma HLS INTERFACE m_axi port = S offset = slave bundle = gmem_act
#pragma HLS INTERFACE m_axi port = B offset = slave bundle = gmem_wgt
#pragma HLS INTERFACE m_axi port = Y offset = slave bundle = gmem_act
#pragma HLS INTERFACE s_axilite port = C bundle = control
#pragma HLS INTERFACE s_axilite port = K bundle = control
#pragma HLS INTERFACE s_axilite port = O bundle = control
#pragma HLS INTERFACE s_axilite port = cols bundle = control
#pragma HLS INTERFACE s_axilite port = sync bundle = control
#pragma HLS INTERFACE s_axilite port = cycles bundle = control
#pragma HLS INTERFACE s_axilite port = return bundle = control
    using namespace vitaccel::rmmu;
    typedef Rmmu<RmmuArray> R;
    if (!R::dims_ok(C, K, O, cols, sync)) return ERR_DIMS;
    for (int64_t i = 0; i < (int64_t)C * K; ++i)
        if (!R::serial_ok(S[i])) return ERR_OPERAND;
    *cycles = R::pass(S, C, K, B, O, cols, sync, Y);
    return OK;
}
