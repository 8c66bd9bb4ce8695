"""The accelerator's program format: descriptors, status codes and the DRAM window (hls/vitcod/DESCRIPTOR.md).

Pure numpy, so the host runtime (``vitaccel.host``), the NumPy model of the top-level function
(:mod:`vitaccel.sim.vitcod.top`) and the C-simulation (:mod:`vitaccel.sim.vitcod.csim_kernels`) all build and read the
same bytes. ``tests/test_csim_kernels.py`` checks the word indices against the C++ (``vitcod_desc_layout``).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from vitaccel.sim.vitcod.attention import SparsePlan, default_sparse_lines

__all__ = [
    "DESC_WORDS", "OP_NOP", "OP_GEMM", "OP_AE_MIX", "OP_ATTENTION", "GEMM_WORDS", "AE_WORDS", "ATT_WORDS",
    "DESC_LAYOUT", "STATUS_CODES", "status_message", "pack_mask_bits", "Dram", "gemm_descriptor",
    "ae_descriptor", "attention_descriptor",
]

# -- the descriptor layout (hls/vitcod/DESCRIPTOR.md; checked against vitcod_top.cpp by the tests) ---------

DESC_WORDS = 64
OP_NOP, OP_GEMM, OP_AE_MIX, OP_ATTENTION = 0, 1, 2, 3
W_OP, W_FLAGS = 0, 1
GEMM_WORDS = {"M": 2, "K": 3, "O": 4, "x": 5, "w": 6, "bias": 7, "mult": 8, "shift": 9, "y": 10}
AE_WORDS = {"Hin": 2, "C": 3, "N": 4, "d": 5, "x": 6, "x_hs": 7, "x_ns": 8, "w": 9, "b": 10, "mult": 11,
            "shift": 12, "y": 13, "y_hs": 14, "y_ns": 15}
ATT_WORDS = {"H": 2, "N": 3, "d": 4, "Hc": 5, "q": 6, "q_hs": 7, "q_ns": 8, "k": 9, "k_hs": 10, "k_ns": 11,
             "v": 12, "v_hs": 13, "v_ns": 14, "o": 15, "o_hs": 16, "o_ns": 17, "mask": 18, "order": 19,
             "colptr": 20, "headptr": 21, "rowidx": 22, "m_exp": 23, "s_exp": 24, "m_out": 25, "s_out": 26,
             "dq_w": 27, "dq_b": 28, "dq_m": 29, "dq_s": 30, "dk_w": 31, "dk_b": 32, "dk_m": 33, "dk_s": 34,
             "n_global": 48}

#: Every constant of the layout, in the order ``vitcod_desc_layout`` (vitcod_top.cpp) reports them.
DESC_LAYOUT: Tuple[Tuple[str, int], ...] = (
    ("DESC_WORDS", DESC_WORDS), ("OP_NOP", OP_NOP), ("OP_GEMM", OP_GEMM), ("OP_AE_MIX", OP_AE_MIX),
    ("OP_ATTENTION", OP_ATTENTION), ("W_OP", W_OP), ("W_FLAGS", W_FLAGS),
    *((f"G_{k}", v) for k, v in GEMM_WORDS.items()),
    *((f"E_{k}", v) for k, v in AE_WORDS.items()),
    *((f"A_{k}", v) for k, v in ATT_WORDS.items()),
)

STATUS_CODES = {
    0x001: "unknown opcode or nonzero reserved word",
    0x002: "an int32 array or the descriptor list is not 4-byte aligned",
    0x003: "a range outside the DRAM window",
    0x004: "a negative stride",
    0x005: "too many descriptors (>= 65536)",
    0x101: "GEMM: M, K or O < 1",
    0x102: "GEMM: K too long for the activation buffer",
    0x103: "GEMM: multiplier outside [0, 2^31)",
    0x104: "GEMM: shift outside [0, 63]",
    0x201: "AE: H_in, C, N or d out of range",
    0x202: "AE: multiplier or shift out of range",
    0x301: "attention: H, N, d or Hc out of range",
    0x302: "attention: a multiplier or shift out of range",
    0x303: "attention: n_global outside [0, N]",
    0x304: "attention: order outside [0, N)",
    0x305: "attention: colptr / headptr inconsistent or outside rowidx",
    0x306: "attention: rowidx outside [0, N) or not increasing within a column",
    0x307: "attention: invalid MAC-line split for a head",
    -1: "C API: bad arguments (DRAM window too large or misaligned)",
}


def status_message(status: int) -> str:
    """Human-readable form of an engine or ``vitcod_top`` status (``(index << 16) | code``)."""
    status = int(status)
    if status == 0:
        return "ok"
    if status < 0:
        return STATUS_CODES.get(status, f"C API error {status}")
    index, code = status >> 16, status & 0xFFFF
    what = STATUS_CODES.get(code, f"unknown code 0x{code:03x}")
    return f"descriptor {index}: {what} (0x{code:03x})" if index else f"{what} (0x{code:03x})"



def pack_mask_bits(plan: SparsePlan) -> np.ndarray:
    """The mask as ``vitcod_top`` reads it: uint8 (H, N, ceil(N / 8)), row i of head h holding bit c % 8 of
    byte c / 8 for reordered column c (key ``order[h, c]``)."""
    mr = np.take_along_axis(plan.mask, plan.order[:, None, :].astype(np.intp), axis=2)
    return np.packbits(mr, axis=2, bitorder="little")


# -- the top-level function on an emulated DRAM window ------------------------------------------------------

class Dram:
    """An emulated DRAM window: a growable byte buffer with an aligned bump allocator. Offsets are what
    descriptors carry."""

    ALIGN = 64

    def __init__(self, capacity: int = 1 << 20):
        self._buf = np.zeros(max(int(capacity), 64), np.uint8)
        self.used = 0

    @property
    def buffer(self) -> np.ndarray:
        """The window, ``used`` bytes long (a view: writes go to DRAM)."""
        return self._buf[:self.used]

    def alloc(self, nbytes: int, align: int = ALIGN) -> int:
        off = -(-self.used // align) * align
        end = off + max(int(nbytes), 0)
        if end > (1 << 32) - 1:
            raise ValueError("the DRAM window would exceed 4 GiB (32-bit offsets)")
        if end > self._buf.size:
            grown = np.zeros(max(end, 2 * self._buf.size), np.uint8)
            grown[:self.used] = self._buf[:self.used]
            self._buf = grown
        self.used = end
        return off

    def put(self, array, align: int = ALIGN) -> int:
        """Copy ``array`` (its bytes, C order) into a fresh region; returns its offset."""
        a = np.ascontiguousarray(array)
        off = self.alloc(a.nbytes, align)
        self._buf[off:off + a.nbytes] = a.reshape(-1).view(np.uint8)
        return off

    def write(self, offset: int, array) -> None:
        """Overwrite the region at ``offset`` with ``array``'s bytes (what the host does between programs)."""
        a = np.ascontiguousarray(array)
        if offset < 0 or offset + a.nbytes > self.used:
            raise ValueError("region outside the window")
        self._buf[offset:offset + a.nbytes] = a.reshape(-1).view(np.uint8)

    def get(self, offset: int, shape, dtype) -> np.ndarray:
        """A copy of the region at ``offset`` as an array of ``shape`` and ``dtype``."""
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        raw = self._buf[offset:offset + count * dt.itemsize]
        if raw.size != count * dt.itemsize:
            raise ValueError("region outside the window")
        return raw.copy().view(dt).reshape(shape)


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
