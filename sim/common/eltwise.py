"""Element-wise integer kernels of the whole model (NUMERICS.md "add" and "lut"): the bits and the cycles.

* :func:`add_requant`: ``y = clip((a ma + b mb + 2^(s-1)) >> s)`` to int16 or int8, the residual adds
  (two tensors at different scales, brought to the output's by dyadic multipliers ``ma / 2^s``,
  ``mb / 2^s``), and the CLS / position-embedding add. 64-bit accumulation: ``|a|, |b| < 2^15``,
  ``0 <= ma, mb < 2^31``, so the sum is below 2^47.
* :func:`lut_int8`: ``y = table[x + 128]``, a 256-entry int8 table per layer, made offline from the
  float function at the input and output scales (:func:`gelu_table`). Exact for any activation, 256
  bytes of on-chip memory.

Cycles: one element per line per cycle over the GEMM array's ``V`` lines (``ceil(n / V)`` iterations of a
pipelined loop) plus its depth; operands and result stream through the DRAM model.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from vitaccel.hwconfig import HardwareConfig
from vitaccel.sim import schedule
from vitaccel.sim.common.dram import transfer_cycles
from vitaccel.sim.report import KernelReport

__all__ = ["add_requant", "lut_int8", "gelu_table", "add_params", "add_cycles", "lut_cycles", "OUT_TYPES"]

#: Output widths add_requant can produce.
OUT_TYPES = {8: np.int8, 16: np.int16}


def _int_operand(a, name: str) -> np.ndarray:
    """``a`` as an int8 or int16 array (not converted: the arithmetic widens it)."""
    a = np.asarray(a)
    if a.dtype not in (np.int8, np.int16):
        raise ValueError(f"{name} must be int8 or int16, got {a.dtype}")
    return a


def add_requant(a, ma: int, b, mb: int, shift: int, out_bits: int = 16) -> np.ndarray:
    """``clip((a ma + b mb + 2^(shift-1)) >> shift)`` to ``out_bits`` (8 or 16); a, b int8 or int16, same shape."""
    av, bv = _int_operand(a, "a"), _int_operand(b, "b")
    if av.shape != bv.shape:
        raise ValueError(f"a {av.shape} and b {bv.shape} must have the same shape")
    for nm, m in (("ma", ma), ("mb", mb)):
        if not 0 <= int(m) < (1 << 31):
            raise ValueError(f"{nm} must be in [0, 2^31), got {m}")
    if not 0 <= int(shift) <= 62:
        raise ValueError(f"shift must be in [0, 62], got {shift}")
    if out_bits not in OUT_TYPES:
        raise ValueError(f"out_bits must be 8 or 16, got {out_bits}")
    s = int(shift)
    acc = np.multiply(av, np.int64(ma), dtype=np.int64)        # int64 throughout (see the module doc)
    acc += np.multiply(bv, np.int64(mb), dtype=np.int64)
    if s:
        acc += np.int64(1 << (s - 1))
        acc >>= s
    lim = 1 << (out_bits - 1)
    out = np.empty(acc.shape, OUT_TYPES[out_bits])
    np.clip(acc, -lim, lim - 1, out=out, casting="unsafe")    # in range after the clip: the cast is exact
    return out


def add_params(scale_a: float, scale_b: float, scale_out: float):
    """Offline: ``(ma, mb, shift)`` with ``ma / 2^shift ~= scale_a / scale_out`` (and b likewise), the shift
    as large as keeps both multipliers below 2^31."""
    ra, rb = scale_a / scale_out, scale_b / scale_out
    if not (ra > 0 and rb > 0 and math.isfinite(ra) and math.isfinite(rb)):
        raise ValueError(f"scales must be finite and > 0, got {scale_a}, {scale_b}, {scale_out}")
    s = min(62, math.floor(math.log2((2 ** 31 - 1) / max(ra, rb))))
    if s < 0:
        raise ValueError(f"scale ratio {max(ra, rb):g} too large for a 31-bit multiplier")
    return int(round(ra * 2 ** s)), int(round(rb * 2 ** s)), int(s)


def lut_int8(x, table) -> np.ndarray:
    """``table[x + 128]`` for int8 x and an int8 table of 256 entries."""
    x = np.asarray(x)
    t = np.asarray(table)
    if x.dtype != np.int8:
        raise ValueError(f"x must be int8, got {x.dtype}")
    if t.dtype != np.int8 or t.shape != (256,):
        raise ValueError(f"table must be int8 (256,), got {t.dtype} {t.shape}")
    # x's bits read as uint8 are x mod 256; rolled[(x mod 256)] = table[(x mod 256 + 128) mod 256] = table[x + 128].
    rolled = np.roll(t, 128)
    return rolled.take(x.view(np.uint8))


def gelu_table(in_scale: float, out_scale: float) -> np.ndarray:
    """Offline (float): the int8 table of GELU (erf form) from int8 at ``in_scale`` to int8 at ``out_scale``,
    round half to even and saturate, as every offline quantisation here."""
    q = np.arange(-128, 128, dtype=np.float64) * in_scale
    gelu = 0.5 * q * (1.0 + np.vectorize(math.erf)(q / math.sqrt(2.0)))
    return np.clip(np.rint(gelu / out_scale), -128, 127).astype(np.int8)


def _elementwise(cfg: HardwareConfig, kernel: str, n: int, depth: int, bytes_in: int, bytes_out: int, name: str,
                 layer: Optional[int]) -> KernelReport:
    if n < 1:
        raise ValueError(f"{kernel}: element count must be >= 1, got {n}")
    compute = -(-n // cfg.gemm_array[0]) + depth
    data = transfer_cycles(cfg, bytes_in) + transfer_cycles(cfg, bytes_out)
    return KernelReport(kernel, name, layer, compute, 0, data, 0, 0, bytes_in + bytes_out,
                        {"vector": compute, "dma": data}, [], [])


def add_cycles(cfg: HardwareConfig, n: int, a_bytes: int = 2, b_bytes: int = 1, out_bits: int = 16, *,
               name: str = "add", layer: Optional[int] = None) -> KernelReport:
    """``n`` elements of add_requant with operands of ``a_bytes``, ``b_bytes`` bytes each."""
    return _elementwise(cfg, "add", n, schedule.PIPE_ADD, n * (a_bytes + b_bytes), n * out_bits // 8, name, layer)


def lut_cycles(cfg: HardwareConfig, n: int, *, name: str = "gelu", layer: Optional[int] = None) -> KernelReport:
    """``n`` int8 elements through the table (its 256 bytes loaded first)."""
    return _elementwise(cfg, "lut", n, schedule.PIPE_LUT, n + 256, n, name, layer)
