"""``revit_top``'s instruction set, defined once: descriptor words, opcodes, status codes and messages.

``vitaccel config gen`` renders ``hls/include/isa/revit_isa.h`` and the status table of
``hls/revit/DESCRIPTOR.md`` from :data:`ISA`. Today the top dispatches ``NOP`` only: the engines (group
generation, RMMU, differential softmax, pruner, scheduler) run as standalone FINN-style kernels with their own
tops, and return the engine codes below; their opcodes join this table with the descriptor-driven top
(issue #12, part 3). Standard library only.
"""
from __future__ import annotations

from vitaccel.sim.isa import DISPATCH_STATUS, GEMM_STATUS, VECTOR_STATUS, Isa, Op, Status

__all__ = ["ISA"]

ISA = Isa(
    accelerator="revit",
    desc_words=64,
    max_instr=1 << 16,
    ops=(Op("NOP", 0, "N", ()),),
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
        Status(0x842, "SCH_ERR_MODE", "scheduler", "mode not 0 (one array), 1 (fixed) or 2 (workload), or fixed "
               "sub-array width outside [1, rmmu_cols]"),
    ),
)
