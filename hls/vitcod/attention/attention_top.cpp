// Synthesizable top of the attention engines alone (one layer, heads in turn): q, k, v, out contiguous
// (H, N, d) (with the AE, q and k are the compressed (Hc, N, d) tensors and dq_* / dk_* the decoders),
// mask bits reordered and packed as in DESCRIPTOR.md, CSC arrays as sim/vitcod/sparse_format.py writes them,
// nnz = headptr[H]; sparse_lines[h]: the sparser engine's lines for head h (the host compiler's split,
// attention.h). Returns the engine's status (attention.h: 0 ok, 0x301.. errors).
#include "attention.h"

int attention_top(const int8_t* q, const int8_t* k, const int8_t* v, int8_t* out, const uint8_t* maskbits,
                  const int32_t* order, const int32_t* colptr, const int32_t* headptr, const int32_t* rowidx,
                  const int8_t* dq_w, const int32_t* dq_b, const int8_t* dk_w, const int32_t* dk_b,
                  const int32_t n_global[vitaccel::cfg::MAX_HEADS],
                  const int32_t sparse_lines[vitaccel::cfg::MAX_HEADS], int H, int N, int d, int Hc, int nnz,
                  int32_t m_exp, int32_t s_exp, int32_t m_out, int32_t s_out, int32_t dq_m, int32_t dq_s,
                  int32_t dk_m, int32_t dk_s) {
#pragma HLS INTERFACE m_axi port = q offset = slave bundle = gmem_act max_read_burst_length = 64
#pragma HLS INTERFACE m_axi port = k offset = slave bundle = gmem_act max_read_burst_length = 64
#pragma HLS INTERFACE m_axi port = v offset = slave bundle = gmem_act max_read_burst_length = 64
#pragma HLS INTERFACE m_axi port = out offset = slave bundle = gmem_act max_write_burst_length = 64
#pragma HLS INTERFACE m_axi port = maskbits offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = order offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = colptr offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = headptr offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = rowidx offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = dq_w offset = slave bundle = gmem_wgt
#pragma HLS INTERFACE m_axi port = dq_b offset = slave bundle = gmem_wgt
#pragma HLS INTERFACE m_axi port = dk_w offset = slave bundle = gmem_wgt
#pragma HLS INTERFACE m_axi port = dk_b offset = slave bundle = gmem_wgt
#pragma HLS INTERFACE s_axilite port = n_global bundle = control
#pragma HLS INTERFACE s_axilite port = sparse_lines bundle = control
#pragma HLS INTERFACE s_axilite port = H bundle = control
#pragma HLS INTERFACE s_axilite port = N bundle = control
#pragma HLS INTERFACE s_axilite port = d bundle = control
#pragma HLS INTERFACE s_axilite port = Hc bundle = control
#pragma HLS INTERFACE s_axilite port = nnz bundle = control
#pragma HLS INTERFACE s_axilite port = m_exp bundle = control
#pragma HLS INTERFACE s_axilite port = s_exp bundle = control
#pragma HLS INTERFACE s_axilite port = m_out bundle = control
#pragma HLS INTERFACE s_axilite port = s_out bundle = control
#pragma HLS INTERFACE s_axilite port = dq_m bundle = control
#pragma HLS INTERFACE s_axilite port = dq_s bundle = control
#pragma HLS INTERFACE s_axilite port = dk_m bundle = control
#pragma HLS INTERFACE s_axilite port = dk_s bundle = control
#pragma HLS INTERFACE s_axilite port = return bundle = control
    using namespace vitaccel::attention;
    Args a;
    a.H = H;
    a.N = N;
    a.d = d;
    a.Hc = Hc;
    a.q_hs = a.k_hs = a.v_hs = a.o_hs = (int64_t)N * d;
    a.q_ns = a.k_ns = a.v_ns = a.o_ns = d;
    a.m_exp = m_exp;
    a.s_exp = s_exp;
    a.m_out = m_out;
    a.s_out = s_out;
    a.dq_m = dq_m;
    a.dq_s = dq_s;
    a.dk_m = dk_m;
    a.dk_s = dk_s;
    for (int h = 0; h < MAX_H; ++h) {
#pragma HLS PIPELINE II = 1
        a.n_global[h] = (h < H) ? n_global[h] : 0;
        a.sparse_lines[h] = (h < H) ? sparse_lines[h] : 0;
    }
    return attention_layer(a, q, k, v, out, maskbits, order, colptr, headptr, rowidx, nnz, dq_w, dq_b, dk_w, dk_b);
}
