"""``vitcod_top``'s program format: descriptor builders over the ISA table (hls/vitcod/DESCRIPTOR.md).

Pure numpy, so the host runtime (``vitaccel.host``), the NumPy model of the top-level function
(:mod:`vitaccel.sim.vitcod.top`) and the C-simulation (:mod:`vitaccel.sim.vitcod.csim_kernels`) all build and read the
same bytes. ``tests/test_csim_kernels.py`` checks the word indices against the C++ (``vitcod_desc_layout``).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from vitaccel.sim.isa import HEADER_WORDS
from vitaccel.sim.vitcod.attention import SparsePlan, default_sparse_lines
from vitaccel.sim.vitcod.isa import ISA
from vitaccel.sim.window import Dram

__all__ = [
    "DESC_WORDS", "OP_NOP", "OP_GEMM", "OP_AE_MIX", "OP_ATTENTION", "OP_LAYERNORM", "OP_ADD", "OP_LUT",
    "GEMM_WORDS", "AE_WORDS", "ATT_WORDS", "LN_WORDS", "ADD_WORDS", "LUT_WORDS", "layernorm_descriptor",
    "add_descriptor", "lut_descriptor", "OP_QKV_AE", "QKV_AE_WORDS", "qkv_ae_descriptor",
    "DESC_LAYOUT", "STATUS_CODES", "status_message", "pack_mask_bits", "Dram", "gemm_descriptor",
    "ae_descriptor", "attention_descriptor",
]

# -- the descriptor layout: the ISA table (vitaccel.sim.vitcod.isa), under the names the builders use ------

DESC_WORDS = ISA.desc_words
OP_NOP, OP_GEMM, OP_AE_MIX, OP_ATTENTION = (ISA.opcode(o) for o in ("NOP", "GEMM", "AE_MIX", "ATTENTION"))
W_OP, W_FLAGS = (w for _, w in HEADER_WORDS)
GEMM_WORDS = ISA.words("GEMM")
AE_WORDS = ISA.words("AE_MIX")
ATT_WORDS = ISA.words("ATTENTION")
OP_LAYERNORM, OP_ADD, OP_LUT = (ISA.opcode(o) for o in ("LAYERNORM", "ADD", "LUT"))
LN_WORDS = ISA.words("LAYERNORM")
ADD_WORDS = ISA.words("ADD")
LUT_WORDS = ISA.words("LUT")
OP_QKV_AE = ISA.opcode("QKV_AE")
QKV_AE_WORDS = ISA.words("QKV_AE")

#: Every constant of the layout, in the order ``vitcod_desc_layout`` (vitcod_top.cpp) reports them.
DESC_LAYOUT: Tuple[Tuple[str, int], ...] = ISA.layout()

#: Status code -> message (DESCRIPTOR.md's table, generated from the same ISA table).
STATUS_CODES = ISA.messages
status_message = ISA.status_message


def pack_mask_bits(plan: SparsePlan) -> np.ndarray:
    """The mask as ``vitcod_top`` reads it: uint8 (H, N, ceil(N / 8)), row i of head h holding bit c % 8 of
    byte c / 8 for reordered column c (key ``order[h, c]``)."""
    mr = np.take_along_axis(plan.mask, plan.order[:, None, :].astype(np.intp), axis=2)
    return np.packbits(mr, axis=2, bitorder="little")


def _desc(op: int, layout: Dict[str, int], values: Dict[str, int]) -> np.ndarray:
    d = np.zeros(DESC_WORDS, np.int64)
    d[W_OP] = op
    for name, value in values.items():
        d[layout[name]] = int(value)
    if np.any(d < -(1 << 31)) or np.any(d >= (1 << 32)):
        raise ValueError("a descriptor field does not fit 32 bits")
    return (d & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


def gemm_descriptor(*, M: int, K: int, O: int, x: int, w: int, bias: int, mult: int, shift: int, y: int) -> np.ndarray:
    """OP_GEMM: offsets of x int8 (M, K), w int8 (O, K), bias / mult / shift int32 (O,), y int8 (M, O)."""
    return _desc(OP_GEMM, GEMM_WORDS, dict(M=M, K=K, O=O, x=x, w=w, bias=bias, mult=mult, shift=shift, y=y))


def ae_descriptor(*, Hin: int, C: int, N: int, d: int, x: int, x_hs: int, x_ns: int, w: int, b: int, mult: int,
                  shift: int, y: int, y_hs: int, y_ns: int) -> np.ndarray:
    """OP_AE_MIX: x (Hin, N, d) at x + h * x_hs + n * x_ns + f, w int8 (C, Hin), b int32 (C,), y likewise."""
    return _desc(OP_AE_MIX, AE_WORDS, dict(Hin=Hin, C=C, N=N, d=d, x=x, x_hs=x_hs, x_ns=x_ns, w=w, b=b,
                                               mult=mult, shift=shift, y=y, y_hs=y_hs, y_ns=y_ns))


def qkv_ae_descriptor(*, M: int, K: int, H: int, d: int, Hc: int, N: int, x: int, w: int, bias: int, mult: int,
                      shift: int, y: int, qc: int, kc: int, eq_w: int, eq_b: int, eq_m: int, eq_s: int, ek_w: int,
                      ek_b: int, ek_m: int, ek_s: int, stage_qk: int = 0) -> np.ndarray:
    """OP_QKV_AE: the qkv GEMM (x int8 (M, K), w int8 (3 H d, K), bias / mult / shift int32 (3 H d,)) with the
    AE encoders on its output stage: only V is written to y (int8 (M, 3 H d), last third), and the
    compressed qc / kc, int8 (M / N images, Hc, N, d); encoders int8 (Hc, H) weights, int32 (Hc,) biases.
    ``stage_qk``: 1 stages Q and K of a chunk together, 0 one after the other (qkv_ae.h)."""
    return _desc(OP_QKV_AE, QKV_AE_WORDS, dict(M=M, K=K, H=H, d=d, Hc=Hc, N=N, x=x, w=w, bias=bias, mult=mult,
                                               shift=shift, y=y, qc=qc, kc=kc, eq_w=eq_w, eq_b=eq_b, eq_m=eq_m,
                                               eq_s=eq_s, ek_w=ek_w, ek_b=ek_b, ek_m=ek_m, ek_s=ek_s,
                                               stage_qk=stage_qk))


def attention_descriptor(*, H: int, N: int, d: int, n_global: Sequence[int], q: int, q_hs: int, q_ns: int, k: int,
                         k_hs: int, k_ns: int, v: int, v_hs: int, v_ns: int, o: int, o_hs: int, o_ns: int,
                         mask: int, order: int, colptr: int, headptr: int, rowidx: int, m_exp: int, s_exp: int,
                         m_out: int, s_out: int, Hc: int = 0, dq_w: int = 0, dq_b: int = 0, dq_m: int = 0,
                         dq_s: int = 0, dk_w: int = 0, dk_b: int = 0, dk_m: int = 0, dk_s: int = 0,
                         sparse_lines: Optional[Sequence[int]] = None, config="paper") -> np.ndarray:
    """OP_ATTENTION: see DESCRIPTOR.md. With ``Hc > 0``, q and k are the compressed (Hc, N, d) tensors and
    dq_* / dk_* the decoders (weights int8 (H, Hc), biases int32 (H,)). ``sparse_lines`` (H,): the sparser
    engine's MAC lines per head (the host compiler's :func:`~vitaccel.sim.vitcod.attention.line_split`);
    without it, the mask-free default of ``config`` (every gather port to the sparser engine)."""
    ng = [int(g) for g in n_global]
    if len(ng) != H or H > DESC_WORDS - ATT_WORDS["n_global"]:
        raise ValueError(f"n_global must have H={H} entries (at most {DESC_WORDS - ATT_WORDS['n_global']})")
    if sparse_lines is None:
        from vitaccel.hwconfig import load_config

        cfg = load_config(config)
        sparse_lines = [default_sparse_lines(cfg, g, N) for g in ng]
    sl = [int(x) for x in sparse_lines]
    if len(sl) != H:
        raise ValueError(f"sparse_lines must have H={H} entries")
    for g, x in zip(ng, sl):
        if not (0 <= g < (1 << 16) and 0 <= x < (1 << 16)):
            raise ValueError(f"n_global ({g}) and sparse_lines ({x}) must each fit 16 bits")
    d_ = _desc(OP_ATTENTION, ATT_WORDS, dict(
        H=H, N=N, d=d, Hc=Hc, q=q, q_hs=q_hs, q_ns=q_ns, k=k, k_hs=k_hs, k_ns=k_ns, v=v, v_hs=v_hs, v_ns=v_ns,
        o=o, o_hs=o_hs, o_ns=o_ns, mask=mask, order=order, colptr=colptr, headptr=headptr, rowidx=rowidx,
        m_exp=m_exp, s_exp=s_exp, m_out=m_out, s_out=s_out, dq_w=dq_w, dq_b=dq_b, dq_m=dq_m, dq_s=dq_s,
        dk_w=dk_w, dk_b=dk_b, dk_m=dk_m, dk_s=dk_s))
    # Word 48 + h: n_global[h] in bits 0..15, the sparser engine's lines in bits 16..31.
    packed = np.array([g | (x << 16) for g, x in zip(ng, sl)], np.int64)
    d_[ATT_WORDS["n_global"]:ATT_WORDS["n_global"] + H] = (packed & 0xFFFFFFFF).astype(np.uint32).view(np.int32)
    return d_


def layernorm_descriptor(*, rows: int, D: int, x: int, g: int, b: int, shift: int, eps: int, y: int) -> np.ndarray:
    """OP_LAYERNORM: x int16 (rows, D), g / b int32 (D,), y int8 (rows, D); NUMERICS.md layernorm."""
    return _desc(OP_LAYERNORM, LN_WORDS, dict(rows=rows, D=D, x=x, g=g, b=b, shift=shift, eps=eps, y=y))


def add_descriptor(*, n: int, a: int, a_bits: int, ma: int, b: int, b_bits: int, mb: int, shift: int, y: int,
                   y_bits: int) -> np.ndarray:
    """OP_ADD: ``y = clip((a ma + b mb + 2^(shift-1)) >> shift)`` over ``n`` elements of the given widths."""
    return _desc(OP_ADD, ADD_WORDS, dict(n=n, a=a, a_bits=a_bits, ma=ma, b=b, b_bits=b_bits, mb=mb, shift=shift,
                                         y=y, y_bits=y_bits))


def lut_descriptor(*, n: int, x: int, table: int, y: int) -> np.ndarray:
    """OP_LUT: ``y = table[x + 128]`` over ``n`` int8 elements, the table int8 (256,)."""
    return _desc(OP_LUT, LUT_WORDS, dict(n=n, x=x, table=table, y=y))
