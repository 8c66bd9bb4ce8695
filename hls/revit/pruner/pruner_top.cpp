// Synthesizable top of the pruners alone (pruner.h): a pruning layer's keep decisions. Returns the engine
// status; cycles[4] receives group score, group rank, patch score, patch rank.
#include "pruner.h"

int pruner_top(const uint8_t* group_p, const uint8_t* cls_p, const int32_t* groups, uint8_t* keep, uint8_t* keep_g,
               int32_t* scores, int H, int G, int n, int32_t q_groups, int32_t q_patches, int64_t* cycles) {
#pragma HLS INTERFACE m_axi port = group_p offset = slave bundle = gmem_act
#pragma HLS INTERFACE m_axi port = cls_p offset = slave bundle = gmem_act
#pragma HLS INTERFACE m_axi port = groups offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = keep offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = keep_g offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = scores offset = slave bundle = gmem_idx
#pragma HLS INTERFACE m_axi port = cycles offset = slave bundle = gmem_idx
#pragma HLS INTERFACE s_axilite port = H bundle = control
#pragma HLS INTERFACE s_axilite port = G bundle = control
#pragma HLS INTERFACE s_axilite port = n bundle = control
#pragma HLS INTERFACE s_axilite port = q_groups bundle = control
#pragma HLS INTERFACE s_axilite port = q_patches bundle = control
#pragma HLS INTERFACE s_axilite port = return bundle = control
    return vitaccel::pruner::prune(group_p, cls_p, groups, H, G, n, q_groups, q_patches, keep, keep_g, scores, cycles);
}
