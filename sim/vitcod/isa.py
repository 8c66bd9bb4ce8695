"""``vitcod_top``'s instruction set, defined once: descriptor words, opcodes, status codes and messages.

``vitaccel config gen`` renders ``hls/include/isa/vitcod_isa.h`` (what ``vitcod_top.cpp`` and the engines
include) and the status table of ``hls/vitcod/DESCRIPTOR.md`` from :data:`ISA`; the NumPy top
(:mod:`vitaccel.sim.vitcod.top`), the descriptor builders and the host's error messages read it too.
"""
from __future__ import annotations

from vitaccel.sim.isa import DISPATCH_STATUS, GEMM_OP, GEMM_STATUS, VECTOR_OPS, VECTOR_STATUS, Isa, Op, Status

__all__ = ["ISA", "N_GLOBAL_WORD"]

#: Word 48 + h of an attention descriptor: n_global[h] in bits 0..15, the sparser engine's lines in 16..31.
N_GLOBAL_WORD = 48

ISA = Isa(
    accelerator="vitcod",
    desc_words=64,
    max_instr=1 << 16,
    ops=(
        Op("NOP", 0, "N", ()),
        GEMM_OP,
        Op("AE_MIX", 2, "E", (("Hin", 2), ("C", 3), ("N", 4), ("d", 5), ("x", 6), ("x_hs", 7), ("x_ns", 8),
                              ("w", 9), ("b", 10), ("mult", 11), ("shift", 12), ("y", 13), ("y_hs", 14),
                              ("y_ns", 15))),
        Op("ATTENTION", 3, "A", (("H", 2), ("N", 3), ("d", 4), ("Hc", 5), ("q", 6), ("q_hs", 7), ("q_ns", 8),
                                 ("k", 9), ("k_hs", 10), ("k_ns", 11), ("v", 12), ("v_hs", 13), ("v_ns", 14),
                                 ("o", 15), ("o_hs", 16), ("o_ns", 17), ("mask", 18), ("order", 19),
                                 ("colptr", 20), ("headptr", 21), ("rowidx", 22), ("m_exp", 23), ("s_exp", 24),
                                 ("m_out", 25), ("s_out", 26), ("dq_w", 27), ("dq_b", 28), ("dq_m", 29),
                                 ("dq_s", 30), ("dk_w", 31), ("dk_b", 32), ("dk_m", 33), ("dk_s", 34),
                                 ("n_global", N_GLOBAL_WORD))),
        *VECTOR_OPS,
        Op("QKV_AE", 7, "F", (("M", 2), ("K", 3), ("H", 4), ("d", 5), ("Hc", 6), ("N", 7), ("x", 8), ("w", 9),
                              ("bias", 10), ("mult", 11), ("shift", 12), ("y", 13), ("qc", 14), ("kc", 15),
                              ("eq_w", 16), ("eq_b", 17), ("eq_m", 18), ("eq_s", 19), ("ek_w", 20), ("ek_b", 21),
                              ("ek_m", 22), ("ek_s", 23), ("stage_qk", 24))),
    ),
    status=DISPATCH_STATUS + GEMM_STATUS + VECTOR_STATUS + (
        Status(0x201, "AE_ERR_DIMS", "AE", "H_in, C, N or d out of `[1, MAX_*]`"),
        Status(0x202, "AE_ERR_QUANT", "AE", "multiplier or shift out of range"),
        Status(0x203, "AE_ERR_QKV_DIMS", "qkv + AE",
               "M or K < 1, H outside [1, MAX_HEADS], d outside [1, MAX_HEAD_DIM], N outside [1, MAX_TOKENS] or "
               "not dividing M, Hc outside [1, H], stage_qk not 0 or 1, or a staged row (H d bytes, 2 H d with stage_qk) "
               "wider than the stage"),
        Status(0x301, "ATT_ERR_DIMS", "attention", "H, N, d out of `[1, MAX_*]`, or Hc outside [0, H]"),
        Status(0x302, "ATT_ERR_QUANT", "attention",
               "a multiplier or shift out of range (softmax, output, decoders)"),
        Status(0x303, "ATT_ERR_NGLOBAL", "attention", "`n_global[h]` outside [0, N]"),
        Status(0x304, "ATT_ERR_ORDER", "attention", "`order[h][c]` outside [0, N)"),
        Status(0x305, "ATT_ERR_PTR", "attention",
               "colptr not starting at 0 / decreasing, `headptr[h+1] - headptr[h] != colptr[h][N]`, or a "
               "head's rowidx segment outside the window"),
        Status(0x306, "ATT_ERR_ROWIDX", "attention",
               "a rowidx entry outside [0, N) or not strictly increasing within its column"),
        Status(0x307, "ATT_ERR_SPLIT", "attention", "an invalid MAC-line split for a head"),
    ),
    constants=(("NGLOBAL_SLOTS", 64 - N_GLOBAL_WORD, "per-head words of an attention descriptor (one per head)"),),
)
