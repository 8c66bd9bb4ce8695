"""The common vector kernels' C++ (hls/common/layernorm, hls/common/eltwise) from Python, through the
C-simulation library of the config's accelerator (its registry entry compiles ``common/vector_capi.cpp``
in), with the same arguments as the NumPy models :func:`~vitaccel.sim.common.layernorm.layernorm_int`,
:func:`~vitaccel.sim.common.eltwise.add_requant` and :func:`~vitaccel.sim.common.eltwise.lut_int8`."""
from __future__ import annotations

import ctypes
import functools

import numpy as np

from vitaccel.hwconfig import load_config
from vitaccel.sim.csim import Array, CsimError

__all__ = ["csim_layernorm", "csim_add", "csim_lut"]


class _Vector:
    def __init__(self, lib):
        c_int, c_i32, c_i64 = ctypes.c_int, ctypes.c_int32, ctypes.c_int64
        self.layernorm = lib.bind("vitaccel_layernorm", [
            ("x", Array(np.int16)), ("g", Array(np.int32)), ("b", Array(np.int32)), ("shift", c_int), ("eps", c_i64),
            ("y", Array(np.int8, out=True)), ("rows", c_int), ("D", c_int)])
        self.add = lib.bind("vitaccel_add", [
            ("a", ctypes.c_void_p), ("a_bits", c_int), ("ma", c_i32), ("b", ctypes.c_void_p), ("b_bits", c_int),
            ("mb", c_i32), ("shift", c_int), ("y", ctypes.c_void_p), ("out_bits", c_int), ("n", c_i64)])
        self.lut = lib.bind("vitaccel_lut", [("x", Array(np.int8)), ("table", Array(np.int8)),
                                             ("y", Array(np.int8, out=True)), ("n", c_i64)])


@functools.lru_cache(maxsize=None)
def _vector(config_name: str) -> _Vector:
    cfg = load_config(config_name)
    return _Vector(cfg.spec.load("csim_library")(cfg.name).lib)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise CsimError(f"{what}: the C++ returned status {rc}")


def csim_layernorm(x, g, b, shift: int, eps: int, config="paper") -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.int16)
    rows, d = x.reshape(-1, x.shape[-1]).shape
    y = np.zeros(x.shape, np.int8)
    _check(_vector(load_config(config).name).layernorm(x, np.ascontiguousarray(g, np.int32),
                                                       np.ascontiguousarray(b, np.int32), int(shift), int(eps), y,
                                                       rows, d), "layernorm")
    return y


def csim_add(a, ma: int, b, mb: int, shift: int, out_bits: int = 16, config="paper") -> np.ndarray:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    if a.shape != b.shape or a.dtype not in (np.int8, np.int16) or b.dtype not in (np.int8, np.int16):
        raise ValueError("a and b must be int8 or int16 arrays of one shape")
    y = np.zeros(a.shape, np.int16 if out_bits == 16 else np.int8)
    _check(_vector(load_config(config).name).add(a.ctypes.data, 8 * a.itemsize, int(ma), b.ctypes.data,
                                                 8 * b.itemsize, int(mb), int(shift), y.ctypes.data, int(out_bits),
                                                 a.size), "add")
    return y


def csim_lut(x, table, config="paper") -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.int8)
    y = np.zeros_like(x)
    _check(_vector(load_config(config).name).lut(x, np.ascontiguousarray(table, np.int8), y, x.size), "lut")
    return y
