"""C-simulation of the ViTCoD engines in ``hls/vitcod/`` from Python, and a :class:`~vitaccel.sim.vitcod.model.Kernels`
backend built on them.

The HLS C++ (GEMM, AE mix, attention, and the accelerator's top-level dispatcher ``vitcod_top``) is compiled
with g++ by :mod:`vitaccel.sim.csim` into one library (``hls/vitcod/vitcod_capi.cpp`` +
``hls/vitcod/vitcod_top.cpp``) and called through ctypes:

* :func:`csim_gemm`, :func:`csim_mix_heads`, :func:`csim_attention` take the same arguments as the
  simulator's functional models (``sim/common/gemm.py: gemm``, ``sim/vitcod/autoencoder.py: mix_heads``,
  ``sim/vitcod/attention.py: attention_int``) and return the C++'s bits;
* :class:`CsimKernels` plugs them into :func:`vitaccel.sim.vitcod.model.run_model` (``kernels=CsimKernels()``), so a
  whole bundle runs on the HLS engines, bit for bit what the board computes;
* :class:`Dram` and the ``*_descriptor`` builders (:mod:`vitaccel.sim.vitcod.descriptors`, re-exported here) lay out an emulated DRAM window and the layer descriptors of
  ``hls/vitcod/DESCRIPTOR.md``; :func:`run_descriptors` runs them through ``vitcod_top``. The host runtime
  drives the bitstream with the same layout. :class:`CsimTopKernels` is the :class:`Kernels` backend that
  goes through that path;
* :func:`perf_reset`, :func:`perf_totals`, :func:`perf_heads` read the C++'s C-simulation cycle counters
  (``hls/common/perf.h``) and :func:`schedule_constants` its pipeline depths, for
  ``tests/test_cycle_model_vs_hls.py``.

Standard library and numpy only. Compiling takes about ten seconds once per config and C++ version (the
library is cached, see :mod:`vitaccel.sim.csim`).
"""
from __future__ import annotations

import ctypes
import functools
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from vitaccel import accelerators
from vitaccel.hls import HLS_DIR
from vitaccel.sim.csim import Array, CsimError, compile_library
from vitaccel.sim.vitcod.descriptors import (AE_WORDS, ATT_WORDS, DESC_LAYOUT, DESC_WORDS, GEMM_WORDS, OP_AE_MIX,  # noqa: F401
                                     OP_ATTENTION, OP_GEMM, OP_NOP, Dram, ae_descriptor, attention_descriptor,
                                     gemm_descriptor, pack_mask_bits, status_message)
from vitaccel.sim.vitcod.attention import AEParams, SparsePlan, line_split
from vitaccel.sim.vitcod.model import Kernels

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
    "perf_reset",
    "perf_totals",
    "perf_heads",
    "schedule_constants",
    "PERF_TOTALS",
    "PERF_HEAD",
]

_SPEC = accelerators.get("vitcod")
#: Sources of the kernels library, relative to ``hls/`` (the registry's ``csim_sources``).
KERNEL_SOURCES = _SPEC.csim_sources
#: On the include path, so the sources' ``"gemm/gemm.h"`` resolve and the kernel headers are in the cache key.
KERNELS_INCLUDE_DIR = tuple(HLS_DIR / d for d in _SPEC.include_dirs)


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
            ("n_global", Array(i32)), ("sparse_lines", Array(i32)), ("colptr", Array(i32)), ("headptr", Array(i32)),
            ("rowidx", Array(i32)),
            ("nnz", c_int), ("m_exp", c_i32), ("s_exp", c_i32), ("m_out", c_i32), ("s_out", c_i32), ("Hc", c_int),
            ("ae_w", Array(i8)), ("ae_b", Array(i32)), ("ae_ms", Array(i32)), ("out", Array(i8, out=True)),
            ("H", c_int), ("N", c_int), ("d", c_int)])
        self.run = lib.bind("vitaccel_run", [
            ("dram", Array(u8, out=True)), ("dram_bytes", ctypes.c_int64), ("desc_off", ctypes.c_uint32),
            ("num_instr", ctypes.c_uint32), ("hw_id", Array(np.uint32, out=True)),
            ("run_count", Array(np.uint32, out=True))])
        self.config_hash32 = lib.bind("vitaccel_kernels_config_hash32", [], restype=ctypes.c_uint32)
        self._limits = lib.bind("vitaccel_kernels_limits", [("out", Array(i32, out=True)), ("n", c_int)])
        self._layout = lib.bind("vitcod_desc_layout", [("out", Array(i32, out=True)), ("n", c_int)])
        self.perf_reset = lib.bind("vitaccel_perf_reset", [], restype=None)
        self._perf_totals = lib.bind("vitaccel_perf_totals", [("out", Array(np.int64, out=True)), ("n", c_int)])
        self._perf_heads = lib.bind("vitaccel_perf_heads", [("out", Array(np.int64, out=True)), ("n", c_int)])
        self._sched = lib.bind("vitaccel_schedule_constants", [("out", Array(i32, out=True)), ("n", c_int)])

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

    def perf_totals(self) -> Dict[str, int]:
        out = np.zeros(len(PERF_TOTALS), np.int64)
        n = self._perf_totals(out, out.size)
        if n != len(PERF_TOTALS):
            raise CsimError(f"vitaccel_perf_totals reports {n} values, expected {len(PERF_TOTALS)}")
        return {k: int(v) for k, v in zip(PERF_TOTALS, out)}

    def perf_heads(self) -> np.ndarray:
        rows = self.limits["max_heads"]
        out = np.zeros(rows * len(PERF_HEAD), np.int64)
        n = self._perf_heads(out, out.size)
        if n != out.size:
            raise CsimError(f"vitaccel_perf_heads reports {n} values, expected {out.size}")
        return out.reshape(rows, len(PERF_HEAD))

    @functools.cached_property
    def schedule(self) -> Dict[str, int]:
        out = np.zeros(len(SCHEDULE_CONSTANTS), np.int32)
        n = self._sched(out, out.size)
        if n != len(SCHEDULE_CONSTANTS):
            raise CsimError(f"vitaccel_schedule_constants reports {n} values, expected {len(SCHEDULE_CONSTANTS)}")
        return {k: int(v) for k, v in zip(SCHEDULE_CONSTANTS, out)}


#: The C-simulation counters (hls/common/perf.h, enum Total), in the order vitaccel_perf_totals reports them.
PERF_TOTALS = ("att_layers", "att_decode_prologue", "att_sddmm", "att_sddmm_dense", "att_sddmm_sparse",
               "att_softmax", "att_decode", "att_softmax_phase", "att_spmm", "att_spmm_dense", "att_spmm_sparse",
               "att_requant", "att_pipeline", "att_bytes_in", "att_bytes_out", "gemm_calls", "gemm_compute", "gemm_mac_iters",
               "gemm_bytes_in", "gemm_bytes_out", "ae_calls", "ae_compute", "ae_bytes_in", "ae_bytes_out",
               "ln_calls", "ln_compute", "ln_bytes_in", "ln_bytes_out", "elt_calls", "elt_compute", "elt_bytes_in",
               "elt_bytes_out")
#: Per head of the last attention layer (enum Head).
PERF_HEAD = ("sddmm", "softmax", "decode_next", "spmm", "requant", "bytes_in")
#: hls/common/schedule.h and tile sizes, in the order vitaccel_schedule_constants reports them.
SCHEDULE_CONSTANTS = ("pipe_dot", "pipe_rq", "pipe_mix", "pipe_sm_max", "pipe_sm_exp", "pipe_div", "softmax_lanes",
                      "gather_ports", "ae_tile_tokens", "mix_lines")


@functools.lru_cache(maxsize=None)
def kernels_library(config="paper", ap_only: bool = False) -> _KernelsLib:
    """The kernels library compiled for ``config`` with its functions bound. Memoised per process
    (``kernels_library.cache_clear()`` after editing the C++ in a session). ``ap_only`` builds it with
    ``VITACCEL_CSIM_AP_ONLY``: every MAC tree, accumulation and requantisation through ap_int as synthesis
    sees them, instead of the native-int fast paths of ``vitaccel_numerics.h`` (same bits, several times
    slower; tests compare the two builds)."""
    lib = compile_library("kernels_ap" if ap_only else "kernels", list(KERNEL_SOURCES), config=config,
                          include_dirs=KERNELS_INCLUDE_DIR, defines=("VITACCEL_CSIM_AP_ONLY",) if ap_only else ())
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
    """:func:`vitaccel.sim.common.gemm.gemm` on the HLS GEMM engine: x int8 (M, K), w int8 (O, K), bias int32
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
    """:func:`vitaccel.sim.vitcod.autoencoder.mix_heads` on the HLS encoder/decoder engine:
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
                   config="paper", sparse_lines: Optional[Sequence[int]] = None) -> np.ndarray:
    """:func:`vitaccel.sim.vitcod.attention.attention_int` on the HLS attention engines.

    ``plan`` fixes the split into denser and sparser columns (order, n_global, CSC); without it one is derived
    from ``mask`` with the config's default threshold (:meth:`SparsePlan.from_mask`). ``mask`` may be None
    when ``plan`` is given. ``sparse_lines`` (H,): the sparser engine's MAC lines per head, by default the
    host compiler's choice (:func:`~vitaccel.sim.vitcod.attention.line_split`); the bits do not depend on
    it. Returns int8 (H, N, d).
    """
    from vitaccel.hwconfig import load_config

    q, k, v = (_i8(a, nm, 3) for a, nm in ((q, "q"), (k, "k"), (v, "v")))
    if not q.shape == k.shape == v.shape:
        raise ValueError(f"q, k, v must share a shape; got {q.shape}, {k.shape}, {v.shape}")
    h, n, d = q.shape
    if plan is None:
        if mask is None:
            raise ValueError("give a mask or a plan")
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
    if sparse_lines is None:
        sparse_lines = line_split(load_config(config), plan, d)[1]
    ls = np.asarray(sparse_lines, dtype=np.int64)
    if ls.shape != (h,):
        raise ValueError(f"sparse_lines must have H={h} entries, got shape {ls.shape}")
    rowidx = plan.rowidx if plan.rowidx.size else np.zeros(1, np.int32)
    out = np.empty((h, n, d), np.int8)
    i32 = lambda a: np.ascontiguousarray(a, dtype=np.int32)  # noqa: E731
    _check(lib.attention(q, k, v, np.ascontiguousarray(plan.mask).view(np.uint8), i32(plan.order),
                         i32(plan.n_global), i32(ls), i32(plan.colptr), i32(plan.headptr), i32(rowidx), int(plan.rowidx.size),
                         _scalar32(m_exp, "m_exp"), _scalar32(s_exp, "s_exp"), _scalar32(m_out, "m_out"),
                         _scalar32(s_out, "s_out"), hc, ae_w, ae_b, ae_ms, out, h, n, d), "attention")
    return out


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
    hw_id, runs = np.zeros(1, np.uint32), np.zeros(1, np.uint32)
    buf = dram.buffer
    status = int(lib.run(buf, buf.size, off, len(descs), hw_id, runs))
    if check and status != 0:
        raise CsimKernelError("vitcod_top", status)
    return status, int(hw_id[0])


# -- the C-simulation cycle counters -------------------------------------------------------------------------

def perf_reset(config="paper") -> None:
    """Zero the C++'s cycle counters (``hls/common/perf.h``) of ``config``'s library."""
    kernels_library(config).perf_reset()


def perf_totals(config="paper") -> Dict[str, int]:
    """The counters' totals since the last :func:`perf_reset`, by name (:data:`PERF_TOTALS`)."""
    return kernels_library(config).perf_totals()


def perf_heads(config="paper") -> np.ndarray:
    """(MAX_HEADS, len(PERF_HEAD)) per-head values of the last attention layer run."""
    return kernels_library(config).perf_heads()


def schedule_constants(config="paper") -> Dict[str, int]:
    """The pipeline depths and tile sizes the C++ schedules with (``hls/common/schedule.h``)."""
    return dict(kernels_library(config).schedule)


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
    :func:`vitaccel.sim.vitcod.model.run_model` (``kernels=CsimKernels("paper")``)."""

    name = "csim"

    def __init__(self, config="paper"):
        self.config = config

    def gemm(self, x, w, bias, mult, shift):
        return csim_gemm(x, w, bias, mult, shift, config=self.config)

    def mix_heads(self, x, weight, bias, mult, shift):
        return csim_mix_heads(x, weight, bias, mult, shift, config=self.config)

    def layernorm(self, x16, g, b, shift, eps):
        from vitaccel.sim.common.csim_vector import csim_layernorm

        return csim_layernorm(x16, g, b, shift, eps, self.config)

    def add(self, a, ma, b, mb, shift, out_bits):
        from vitaccel.sim.common.csim_vector import csim_add

        return csim_add(a, ma, b, mb, shift, out_bits, self.config)

    def lut(self, x8, table):
        from vitaccel.sim.common.csim_vector import csim_lut

        return csim_lut(x8, table, self.config)

    def attention(self, q, k, v, plan, m_exp, s_exp, m_out, s_out):
        out = np.empty_like(np.asarray(q))
        for sl, qi, ki, vi in _per_image(q, k, v, plan):
            out[sl] = csim_attention(qi, ki, vi, None, m_exp, s_exp, m_out, s_out, plan=plan, config=self.config)
        return out


class CsimTopKernels(Kernels):
    layernorm = CsimKernels.layernorm   # the vector kernels' C API (their own top tests are test_sim_top's)
    add = CsimKernels.add
    lut = CsimKernels.lut

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
        from vitaccel.hwconfig import load_config

        out = np.empty_like(np.asarray(q))
        h, n = plan.shape
        d = np.shape(q)[2]
        split = line_split(load_config(self.config), plan, d)[1]
        for sl, qi, ki, vi in _per_image(q, k, v, plan):
            dram = Dram()
            hs = n * d
            t = dict(q=dram.put(_i8(qi, "q", 3)), k=dram.put(_i8(ki, "k", 3)), v=dram.put(_i8(vi, "v", 3)),
                     o=dram.alloc(h * hs), mask=dram.put(pack_mask_bits(plan)), order=dram.put(plan.order),
                     colptr=dram.put(plan.colptr), headptr=dram.put(plan.headptr), rowidx=dram.put(plan.rowidx))
            desc = attention_descriptor(H=h, N=n, d=d, n_global=plan.n_global, q_hs=hs, q_ns=d, k_hs=hs, k_ns=d,
                                        v_hs=hs, v_ns=d, o_hs=hs, o_ns=d, m_exp=m_exp, s_exp=s_exp, m_out=m_out,
                                        s_out=s_out, sparse_lines=split, config=self.config, **t)
            run_descriptors(dram, [desc], self.config)
            out[sl] = dram.get(t["o"], (h, n, d), np.int8)
        return out
