"""C-simulation of the ViTCoD engines in ``hls/kernels/`` from Python, and a :class:`~vitaccel.sim.model.Kernels`
backend built on them.

The HLS C++ (GEMM, AE mix, attention, and the accelerator's top-level dispatcher ``vitcod_top``) is compiled
with g++ by :mod:`vitaccel.sim.csim` into one library (``hls/capi/kernels_capi.cpp`` +
``hls/kernels/vitcod_top.cpp``) and called through ctypes:

* :func:`csim_gemm`, :func:`csim_mix_heads`, :func:`csim_attention` take the same arguments as the
  simulator's functional models (``sim/kernels/gemm.py: gemm``, ``sim/kernels/autoencoder.py: mix_heads``,
  ``sim/kernels/attention.py: attention_int``) and return the C++'s bits;
* :class:`CsimKernels` plugs them into :func:`vitaccel.sim.model.run_model` (``kernels=CsimKernels()``), so a
  whole bundle runs on the HLS engines, bit for bit what the board computes;
* :class:`Dram` and the ``*_descriptor`` builders lay out an emulated DRAM window and the layer descriptors of
  ``hls/kernels/DESCRIPTOR.md``; :func:`run_descriptors` runs them through ``vitcod_top``. The host runtime
  drives the bitstream with the same layout. :class:`CsimTopKernels` is the :class:`Kernels` backend that
  goes through that path.

Standard library and numpy only. Compiling takes about ten seconds once per config and C++ version (the
library is cached, see :mod:`vitaccel.sim.csim`).
"""
from __future__ import annotations

import ctypes
import functools
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from vitaccel.hls import HLS_DIR
from vitaccel.sim.csim import Array, CsimError, compile_library
from vitaccel.sim.kernels.attention import AEParams, SparsePlan
from vitaccel.sim.model import Kernels

__all__ = [
    "KERNEL_SOURCES",
    "KERNELS_INCLUDE_DIR",
    "CsimKernelError",
    "kernels_library",
    "csim_gemm",
    "csim_mix_heads",
    "csim_attention",
    "pack_mask_bits",
    "Dram",
    "gemm_descriptor",
    "ae_descriptor",
    "attention_descriptor",
    "run_descriptors",
    "status_message",
    "CsimKernels",
    "CsimTopKernels",
    "DESC_WORDS",
    "OP_NOP",
    "OP_GEMM",
    "OP_AE_MIX",
    "OP_ATTENTION",
    "DESC_LAYOUT",
]

#: Sources of the kernels library, relative to ``hls/``.
KERNEL_SOURCES = ("capi/kernels_capi.cpp", "kernels/vitcod_top.cpp")
#: On the include path, so the sources' ``"gemm/gemm.h"`` resolve and the kernel headers are in the cache key.
KERNELS_INCLUDE_DIR = HLS_DIR / "kernels"

# -- the descriptor layout (hls/kernels/DESCRIPTOR.md; checked against vitcod_top.cpp by the tests) ---------

DESC_WORDS = 64
OP_NOP, OP_GEMM, OP_AE_MIX, OP_ATTENTION = 0, 1, 2, 3
_W_OP, _W_FLAGS = 0, 1
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
    ("OP_ATTENTION", OP_ATTENTION), ("W_OP", _W_OP), ("W_FLAGS", _W_FLAGS),
    *((f"G_{k}", v) for k, v in GEMM_WORDS.items()),
    *((f"E_{k}", v) for k, v in AE_WORDS.items()),
    *((f"A_{k}", v) for k, v in ATT_WORDS.items()),
)

_STATUS = {
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
    -1: "C API: bad arguments (DRAM window too large or misaligned)",
}


def status_message(status: int) -> str:
    """Human-readable form of an engine or ``vitcod_top`` status (``(index << 16) | code``)."""
    status = int(status)
    if status == 0:
        return "ok"
    if status < 0:
        return _STATUS.get(status, f"C API error {status}")
    index, code = status >> 16, status & 0xFFFF
    what = _STATUS.get(code, f"unknown code 0x{code:03x}")
    return f"descriptor {index}: {what} (0x{code:03x})" if index else f"{what} (0x{code:03x})"


class CsimKernelError(CsimError, ValueError):
    """The C++ refused its input; ``status`` is the code it returned (DESCRIPTOR.md)."""

    def __init__(self, what: str, status: int):
        super().__init__(f"{what}: {status_message(status)}")
        self.status = int(status)


# -- the library ---------------------------------------------------------------------------------------------

class _KernelsLib:
    def __init__(self, lib):
        i8, u8, i32 = np.int8, np.uint8, np.int32
        c_int, c_i32 = ctypes.c_int, ctypes.c_int32
        self.lib = lib
        self.gemm = lib.bind("vitaccel_gemm", [
            ("x", Array(i8)), ("w", Array(i8)), ("bias", Array(i32)), ("mult", Array(i32)), ("shift", Array(i32)),
            ("y", Array(i8, out=True)), ("M", c_int), ("K", c_int), ("O", c_int)])
        self.ae_mix = lib.bind("vitaccel_ae_mix", [
            ("x", Array(i8)), ("w", Array(i8)), ("b", Array(i32)), ("mult", c_i32), ("shift", c_i32),
            ("y", Array(i8, out=True)), ("Hin", c_int), ("C", c_int), ("N", c_int), ("d", c_int)])
        self.attention = lib.bind("vitaccel_attention", [
            ("q", Array(i8)), ("k", Array(i8)), ("v", Array(i8)), ("mask", Array(u8)), ("order", Array(i32)),
            ("n_global", Array(i32)), ("colptr", Array(i32)), ("headptr", Array(i32)), ("rowidx", Array(i32)),
            ("nnz", c_int), ("m_exp", c_i32), ("s_exp", c_i32), ("m_out", c_i32), ("s_out", c_i32), ("Hc", c_int),
            ("ae_w", Array(i8)), ("ae_b", Array(i32)), ("ae_ms", Array(i32)), ("out", Array(i8, out=True)),
            ("H", c_int), ("N", c_int), ("d", c_int)])
        self.run = lib.bind("vitaccel_run", [
            ("dram", Array(u8, out=True)), ("dram_bytes", ctypes.c_int64), ("desc_off", ctypes.c_uint32),
            ("num_instr", ctypes.c_uint32), ("hw_id", Array(np.uint32, out=True))])
        self.config_hash32 = lib.bind("vitaccel_kernels_config_hash32", [], restype=ctypes.c_uint32)
        self._limits = lib.bind("vitaccel_kernels_limits", [("out", Array(i32, out=True)), ("n", c_int)])
        self._layout = lib.bind("vitcod_desc_layout", [("out", Array(i32, out=True)), ("n", c_int)])

    @functools.cached_property
    def limits(self) -> Dict[str, int]:
        names = ("max_tokens", "max_heads", "max_head_dim", "mac_lines", "macs_per_line", "gemm_max_k",
                 "gemm_wline", "gemm_xwords", "dense_lines", "ae_lines")
        out = np.zeros(len(names), np.int32)
        n = self._limits(out, out.size)
        if n != len(names):
            raise CsimError(f"vitaccel_kernels_limits reports {n} values, expected {len(names)}")
        return {k: int(v) for k, v in zip(names, out)}

    def desc_layout(self) -> List[int]:
        out = np.zeros(256, np.int32)
        n = self._layout(out, out.size)
        return [int(v) for v in out[:n]]


@functools.lru_cache(maxsize=None)
def kernels_library(config="paper") -> _KernelsLib:
    """The kernels library compiled for ``config`` with its functions bound. Memoised per process
    (``kernels_library.cache_clear()`` after editing the C++ in a session)."""
    lib = compile_library("kernels", list(KERNEL_SOURCES), config=config, include_dirs=[KERNELS_INCLUDE_DIR])
    return _KernelsLib(lib)


def _check(status: int, what: str) -> None:
    if status != 0:
        raise CsimKernelError(what, status)


def _i8(a, name: str, ndim: int) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.int8 or a.ndim != ndim:
        raise ValueError(f"{name} must be int8 with {ndim} axes, got {a.dtype} {a.shape}")
    return np.ascontiguousarray(a)


def _per_channel(v, n: int, name: str) -> np.ndarray:
    a = np.asarray(v)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must be integer, got {a.dtype}")
    if np.any(a < -(1 << 31)) or np.any(a >= (1 << 31)):
        raise ValueError(f"{name} must fit in int32")
    return np.ascontiguousarray(np.broadcast_to(a, (n,)), dtype=np.int32)


def _scalar32(v, name: str) -> int:
    v = int(v)
    if not -(1 << 31) <= v < (1 << 31):
        raise ValueError(f"{name} must fit in int32, got {v}")
    return v


# -- the engines over flat arrays ----------------------------------------------------------------------------

def csim_gemm(x, w, bias, mult, shift, config="paper") -> np.ndarray:
    """:func:`vitaccel.sim.kernels.gemm.gemm` on the HLS GEMM engine: x int8 (M, K), w int8 (O, K), bias int32
    (O,), mult / shift scalars or (O,). Returns int8 (M, O)."""
    x = _i8(x, "x", 2)
    w = _i8(w, "w", 2)
    m_rows, k = x.shape
    o = w.shape[0]
    if w.shape[1] != k:
        raise ValueError(f"w must be (O, {k}), got {w.shape}")
    b = np.asarray(bias)
    if b.dtype != np.int32 or b.shape != (o,):
        raise ValueError(f"bias must be int32 ({o},), got {b.dtype} {b.shape}")
    lib = kernels_library(config)
    if min(m_rows, k, o) < 1:
        raise ValueError(f"GEMM dims must be >= 1, got M={m_rows}, K={k}, O={o}")
    if k > lib.limits["gemm_max_k"]:
        raise ValueError(f"K={k} exceeds the GEMM engine's {lib.limits['gemm_max_k']} for config {config!r}")
    y = np.empty((m_rows, o), np.int8)
    _check(lib.gemm(x, w, np.ascontiguousarray(b), _per_channel(mult, o, "mult"), _per_channel(shift, o, "shift"),
                    y, m_rows, k, o), "gemm")
    return y


def csim_mix_heads(x, weight, bias, mult, shift, config="paper") -> np.ndarray:
    """:func:`vitaccel.sim.kernels.autoencoder.mix_heads` on the HLS encoder/decoder engine:
    x int8 (H_in, N, d), weight int8 (C, H_in), bias int32 (C,). Returns int8 (C, N, d)."""
    x = _i8(x, "x", 3)
    w = _i8(weight, "weight", 2)
    hin, n, d = x.shape
    c = w.shape[0]
    if w.shape[1] != hin:
        raise ValueError(f"weight must be (C, {hin}), got {w.shape}")
    b = np.asarray(bias)
    if b.dtype != np.int32 or b.shape != (c,):
        raise ValueError(f"bias must be int32 ({c},), got {b.dtype} {b.shape}")
    lib = kernels_library(config)
    lim = lib.limits
    if not (1 <= hin <= lim["max_heads"] and 1 <= c <= lim["max_heads"] and 1 <= n <= lim["max_tokens"]
            and 1 <= d <= lim["max_head_dim"]):
        raise ValueError(f"mix_heads (H_in={hin}, C={c}, N={n}, d={d}) outside the limits of config {config!r}: "
                         f"heads <= {lim['max_heads']}, N <= {lim['max_tokens']}, d <= {lim['max_head_dim']}")
    y = np.empty((c, n, d), np.int8)
    _check(lib.ae_mix(x, w, np.ascontiguousarray(b), _scalar32(mult, "mult"), _scalar32(shift, "shift"), y,
                      hin, c, n, d), "mix_heads")
    return y


def _ae_arrays(ae: Optional[Tuple[AEParams, AEParams]], h: int):
    if ae is None:
        return 0, np.zeros(1, np.int8), np.zeros(1, np.int32), np.zeros(8, np.int32)
    hc = ae[0].compressed_heads
    ws, bs, ms = [], [], []
    for p in ae:
        if p.enc_weight.shape != (hc, h) or p.dec_weight.shape != (h, hc):
            raise ValueError(f"AE weights must be ({hc}, {h}) and ({h}, {hc}), got {p.enc_weight.shape} and "
                             f"{p.dec_weight.shape}")
        for a, nm in ((p.enc_weight, "enc_weight"), (p.dec_weight, "dec_weight")):
            if np.asarray(a).dtype != np.int8:
                raise ValueError(f"AE {nm} must be int8")
        for a, nm, sz in ((p.enc_bias, "enc_bias", hc), (p.dec_bias, "dec_bias", h)):
            if np.asarray(a).dtype != np.int32 or np.shape(a) != (sz,):
                raise ValueError(f"AE {nm} must be int32 ({sz},)")
        ws += [np.ravel(p.enc_weight), np.ravel(p.dec_weight)]
        bs += [np.ravel(p.enc_bias), np.ravel(p.dec_bias)]
        ms += [p.enc_mult, p.enc_shift, p.dec_mult, p.dec_shift]
    return (hc, np.concatenate(ws).astype(np.int8), np.concatenate(bs).astype(np.int32),
            np.array([_scalar32(v, "AE multiplier/shift") for v in ms], np.int32))


def csim_attention(q, k, v, mask, m_exp: int, s_exp: int, m_out: int, s_out: int,
                   ae: Optional[Tuple[AEParams, AEParams]] = None, *, plan: Optional[SparsePlan] = None,
                   config="paper") -> np.ndarray:
    """:func:`vitaccel.sim.kernels.attention.attention_int` on the HLS attention engines.

    ``plan`` fixes the split into denser and sparser columns (order, n_global, CSC); without it one is derived
    from ``mask`` with the config's default threshold (:meth:`SparsePlan.from_mask`). ``mask`` may be None
    when ``plan`` is given. Returns int8 (H, N, d).
    """
    q, k, v = (_i8(a, nm, 3) for a, nm in ((q, "q"), (k, "k"), (v, "v")))
    if not q.shape == k.shape == v.shape:
        raise ValueError(f"q, k, v must share a shape; got {q.shape}, {k.shape}, {v.shape}")
    h, n, d = q.shape
    if plan is None:
        if mask is None:
            raise ValueError("give a mask or a plan")
        from vitaccel.hwconfig import load_config

        plan = SparsePlan.from_mask(np.asarray(mask), config=load_config(config))
    elif mask is not None and not np.array_equal(np.asarray(mask), plan.mask):
        raise ValueError("mask differs from plan.mask")
    if plan.mask.shape != (h, n, n):
        raise ValueError(f"the plan's mask is {plan.mask.shape}, q is {q.shape}")
    lib = kernels_library(config)
    lim = lib.limits
    if not (h <= lim["max_heads"] and n <= lim["max_tokens"] and d <= lim["max_head_dim"]):
        raise ValueError(f"attention (H={h}, N={n}, d={d}) exceeds config {config!r}: H <= {lim['max_heads']}, "
                         f"N <= {lim['max_tokens']}, d <= {lim['max_head_dim']}")
    hc, ae_w, ae_b, ae_ms = _ae_arrays(ae, h)
    rowidx = plan.rowidx if plan.rowidx.size else np.zeros(1, np.int32)
    out = np.empty((h, n, d), np.int8)
    i32 = lambda a: np.ascontiguousarray(a, dtype=np.int32)  # noqa: E731
    _check(lib.attention(q, k, v, np.ascontiguousarray(plan.mask).view(np.uint8), i32(plan.order),
                         i32(plan.n_global), i32(plan.colptr), i32(plan.headptr), i32(rowidx), int(plan.rowidx.size),
                         _scalar32(m_exp, "m_exp"), _scalar32(s_exp, "s_exp"), _scalar32(m_out, "m_out"),
                         _scalar32(s_out, "s_out"), hc, ae_w, ae_b, ae_ms, out, h, n, d), "attention")
    return out


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
    d[_W_OP] = op
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
                         dq_s: int = 0, dk_w: int = 0, dk_b: int = 0, dk_m: int = 0, dk_s: int = 0) -> np.ndarray:
    """OP_ATTENTION: see DESCRIPTOR.md. With ``Hc > 0``, q and k are the compressed (Hc, N, d) tensors and
    dq_* / dk_* the decoders (weights int8 (H, Hc), biases int32 (H,))."""
    ng = [int(g) for g in n_global]
    if len(ng) != H or H > DESC_WORDS - ATT_WORDS["n_global"]:
        raise ValueError(f"n_global must have H={H} entries (at most {DESC_WORDS - ATT_WORDS['n_global']})")
    d_ = _desc(OP_ATTENTION, ATT_WORDS, dict(
        H=H, N=N, d=d, Hc=Hc, q=q, q_hs=q_hs, q_ns=q_ns, k=k, k_hs=k_hs, k_ns=k_ns, v=v, v_hs=v_hs, v_ns=v_ns,
        o=o, o_hs=o_hs, o_ns=o_ns, mask=mask, order=order, colptr=colptr, headptr=headptr, rowidx=rowidx,
        m_exp=m_exp, s_exp=s_exp, m_out=m_out, s_out=s_out, dq_w=dq_w, dq_b=dq_b, dq_m=dq_m, dq_s=dq_s,
        dk_w=dk_w, dk_b=dk_b, dk_m=dk_m, dk_s=dk_s))
    d_[ATT_WORDS["n_global"]:ATT_WORDS["n_global"] + H] = ng
    return d_


def run_descriptors(dram: Dram, descriptors: Iterable[np.ndarray], config="paper", *,
                    check: bool = True) -> Tuple[int, int]:
    """Append ``descriptors`` to ``dram``, run them through ``vitcod_top`` and return ``(status, hw_id)``.
    With ``check`` a nonzero status raises :class:`CsimKernelError`."""
    descs = [np.asarray(d, np.int32) for d in descriptors]
    for i, d in enumerate(descs):
        if d.shape != (DESC_WORDS,):
            raise ValueError(f"descriptor {i} has shape {d.shape}, expected ({DESC_WORDS},)")
    off = dram.put(np.concatenate(descs) if descs else np.zeros(0, np.int32))
    lib = kernels_library(config)
    hw_id = np.zeros(1, np.uint32)
    buf = dram.buffer
    status = int(lib.run(buf, buf.size, off, len(descs), hw_id))
    if check and status != 0:
        raise CsimKernelError("vitcod_top", status)
    return status, int(hw_id[0])


# -- Kernels backends -----------------------------------------------------------------------------------------

def _per_image(q, k, v, plan: SparsePlan):
    hp = plan.mask.shape[0]
    if q.shape[0] % hp:
        raise ValueError(f"{q.shape[0]} stacked heads are not a multiple of the plan's {hp}")
    for j in range(q.shape[0] // hp):
        sl = slice(j * hp, (j + 1) * hp)
        yield sl, q[sl], k[sl], v[sl]


class CsimKernels(Kernels):
    """The HLS engines through their C API (one call per kernel and image), for
    :func:`vitaccel.sim.model.run_model` (``kernels=CsimKernels("paper")``)."""

    name = "csim"

    def __init__(self, config="paper"):
        self.config = config

    def gemm(self, x, w, bias, mult, shift):
        return csim_gemm(x, w, bias, mult, shift, config=self.config)

    def mix_heads(self, x, weight, bias, mult, shift):
        return csim_mix_heads(x, weight, bias, mult, shift, config=self.config)

    def attention(self, q, k, v, plan, m_exp, s_exp, m_out, s_out):
        out = np.empty_like(np.asarray(q))
        for sl, qi, ki, vi in _per_image(q, k, v, plan):
            out[sl] = csim_attention(qi, ki, vi, None, m_exp, s_exp, m_out, s_out, plan=plan, config=self.config)
        return out


class CsimTopKernels(Kernels):
    """Every kernel through the accelerator's top-level function: operands laid out in an emulated DRAM window,
    one descriptor, ``vitcod_top`` (the path a bitstream takes, minus the AXI transactions)."""

    name = "csim-top"

    def __init__(self, config="paper"):
        self.config = config

    def gemm(self, x, w, bias, mult, shift):
        x = _i8(x, "x", 2)
        w = _i8(w, "w", 2)
        m_rows, k = x.shape
        o = w.shape[0]
        dram = Dram()
        offs = dict(x=dram.put(x), w=dram.put(w), bias=dram.put(np.asarray(bias, np.int32)),
                    mult=dram.put(_per_channel(mult, o, "mult")), shift=dram.put(_per_channel(shift, o, "shift")),
                    y=dram.alloc(m_rows * o))
        run_descriptors(dram, [gemm_descriptor(M=m_rows, K=k, O=o, **offs)], self.config)
        return dram.get(offs["y"], (m_rows, o), np.int8)

    def mix_heads(self, x, weight, bias, mult, shift):
        x = _i8(x, "x", 3)
        hin, n, d = x.shape
        c = np.shape(weight)[0]
        dram = Dram()
        xo, wo, bo = dram.put(x), dram.put(_i8(weight, "weight", 2)), dram.put(np.asarray(bias, np.int32))
        yo = dram.alloc(c * n * d)
        run_descriptors(dram, [ae_descriptor(Hin=hin, C=c, N=n, d=d, x=xo, x_hs=n * d, x_ns=d, w=wo, b=bo,
                                             mult=mult, shift=shift, y=yo, y_hs=n * d, y_ns=d)], self.config)
        return dram.get(yo, (c, n, d), np.int8)

    def attention(self, q, k, v, plan, m_exp, s_exp, m_out, s_out):
        out = np.empty_like(np.asarray(q))
        h, n = plan.shape
        d = np.shape(q)[2]
        for sl, qi, ki, vi in _per_image(q, k, v, plan):
            dram = Dram()
            hs = n * d
            t = dict(q=dram.put(_i8(qi, "q", 3)), k=dram.put(_i8(ki, "k", 3)), v=dram.put(_i8(vi, "v", 3)),
                     o=dram.alloc(h * hs), mask=dram.put(pack_mask_bits(plan)), order=dram.put(plan.order),
                     colptr=dram.put(plan.colptr), headptr=dram.put(plan.headptr), rowidx=dram.put(plan.rowidx))
            desc = attention_descriptor(H=h, N=n, d=d, n_global=plan.n_global, q_hs=hs, q_ns=d, k_hs=hs, k_ns=d,
                                        v_hs=hs, v_ns=d, o_hs=hs, o_ns=d, m_exp=m_exp, s_exp=s_exp, m_out=m_out,
                                        s_out=s_out, **t)
            run_descriptors(dram, [desc], self.config)
            out[sl] = dram.get(t["o"], (h, n, d), np.int8)
        return out
