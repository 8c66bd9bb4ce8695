"""``revit_top``'s instruction set, defined once: descriptor words, opcodes, status codes and messages.

``vitaccel config gen`` renders ``hls/include/isa/revit_isa.h`` and the status table of
``hls/revit/DESCRIPTOR.md`` from :data:`ISA`. The top dispatches ``NOP``, ``ATTN`` (one attention layer on
the engines: group generation, rSched, differential projection, scores, softmax and output, the CLS rows, the
scheduler; ``hls/revit/attn/revit_attn.h``), ``PRUNE`` (the pruners), ``COMPACT`` (the surviving tokens and the
package token after a pruning layer, and the token count patched into the later descriptors;
``hls/revit/pruner/compact.h``), and the whole model's common kernels (``GEMM``,
``LAYERNORM``, ``ADD``, ``LUT``: the same words and codes as every top, :mod:`vitaccel.sim.isa`). Standard
library only.
"""
from __future__ import annotations

from vitaccel.sim.isa import DISPATCH_STATUS, GEMM_OP, GEMM_STATUS, VECTOR_OPS, VECTOR_STATUS, Isa, Op, Status

__all__ = ["ISA", "COMBINE_CODES"]

#: ``ATTN``'s ``combine`` word: how a patch's intra-group attention meets the other groups.
COMBINE_CODES = {"intra": 0, "joint": 1, "sum": 2}

ISA = Isa(
    accelerator="revit",
    desc_words=64,
    max_instr=1 << 16,
    ops=(
        Op("NOP", 0, "N", ()),
        GEMM_OP,
        *VECTOR_OPS,
        Op("ATTN", 8, "V", (("N", 2), ("D", 3), ("H", 4), ("G", 5), ("block", 6), ("combine", 7), ("mode", 8),
                            ("F", 9), ("delta", 10), ("sync", 11), ("ooo", 12), ("x", 13), ("w", 14), ("b", 15),
                            ("m", 16), ("s", 17), ("hw", 18), ("hb", 19), ("hm", 20), ("hs", 21), ("m_exp", 22),
                            ("s_exp", 23), ("out_m", 24), ("out_s", 25), ("y", 26), ("groups", 27), ("cls_p", 28),
                            ("group_p", 29))),
        Op("PRUNE", 9, "P", (("H", 2), ("G", 3), ("n", 4), ("q_groups", 5), ("q_patches", 6), ("group_p", 7),
                             ("cls_p", 8), ("groups", 9), ("keep", 10), ("keep_g", 11), ("scores", 12))),
        Op("COMPACT", 10, "C", (("N", 2), ("D", 3), ("x", 4), ("keep", 5), ("scores", 6), ("pm", 7), ("ps", 8),
                                ("y", 9), ("count", 10), ("patch", 11), ("npatch", 12))),
    ),
    status=DISPATCH_STATUS + GEMM_STATUS + VECTOR_STATUS + (
        Status(0x801, "GG_ERR_DIMS", "group generation",
               "N outside [1, MAX_TOKENS], D outside [1, MAX_EMBED_DIM], or G outside [1, MAX_GROUPS]"),
        Status(0x802, "GG_ERR_QUANT", "group generation", "hash multiplier outside [0, 2^31) or shift outside [0, 63]"),
        Status(0x811, "RMMU_ERR_DIMS", "RMMU",
               "C, K or O outside the engine's limits, or a sub-array of columns outside [1, rmmu_cols]"),
        Status(0x812, "RMMU_ERR_OPERAND", "RMMU", "a serial operand wider than the RBSP's 10-bit Booth input"),
        Status(0x821, "DSM_ERR_DIMS", "softmax",
               "rows < 1, n outside [1, MAX_TOKENS + 64], block < 1, or lanes outside [1, simd_lanes]"),
        Status(0x822, "DSM_ERR_QUANT", "softmax",
               "m_exp outside [0, 2^31), s_exp outside [0, 63], a negative weight, or weights summing to 2^16 or more"),
        Status(0x831, "PR_ERR_DIMS", "pruner",
               "H outside [1, MAX_HEADS], G outside [1, 64], n outside [1, MAX_TOKENS], or a group index outside [0, G)"),
        Status(0x832, "PR_ERR_RATIO", "pruner", "a keep ratio outside [0, 2^16]"),
        Status(0x841, "SCH_ERR_DIMS", "scheduler",
               "G outside [1, 64], a negative group size, latency or work, no token in any group, or more non-empty "
               "groups than columns in workload mode"),
        Status(0x851, "ATT_ERR_DIMS", "attention layer",
               "N outside [2, MAX_TOKENS], D outside [1, MAX_EMBED_DIM] or not a multiple of H, H outside "
               "[1, MAX_HEADS], D / H above MAX_HEAD_DIM, G outside [1, 64], block < 1, sync outside [1, rmmu_cols], "
               "combine not 0 (intra), 1 (joint) or 2 (sum), or a flag not 0 or 1"),
        Status(0x852, "ATT_ERR_QUANT", "attention layer", "a multiplier or shift out of range (qkv, hash, softmax, output)"),
        Status(0x861, "CMP_ERR_DIMS", "compaction", "N outside [2, MAX_TOKENS], D outside [1, MAX_EMBED_DIM], or npatch "
               "outside [0, 4096]"),
        Status(0x862, "CMP_ERR_QUANT", "compaction", "package multiplier outside [0, 2^16) or shift outside [0, 63]"),
        Status(0x863, "CMP_ERR_PATCH", "compaction",
               "a patched word not 4-byte aligned, not in a later descriptor of the program, in its opcode or flags "
               "word, or a patched value outside the int32 range"),
        Status(0x842, "SCH_ERR_MODE", "scheduler", "mode not 0 (one array), 1 (fixed) or 2 (workload), or fixed "
               "sub-array width outside [1, rmmu_cols]"),
    ),
)
