"""Float <-> int8 helpers around the kernel contract (NUMERICS.md): choosing scales, quantising,
dequantising, and turning scale ratios into requantisation multipliers.

These run offline (``models/`` export) and in the host's reports; never inside a kernel. Quantisation is
symmetric with zero point 0: ``real = scale * q``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from vitaccel.sim.numerics import quantize_multiplier

__all__ = [
    "absmax_scale",
    "percentile_scale",
    "quantize",
    "dequantize",
    "requant_params",
]

QMAX = 127


def _reduce_axes(ndim: int, axis: Optional[int]) -> Optional[Tuple[int, ...]]:
    if axis is None:
        return None
    axis = axis % ndim
    return tuple(i for i in range(ndim) if i != axis)


def _finish_scale(amax: np.ndarray) -> np.ndarray:
    # An all-zero tensor (or channel) still needs a usable positive scale.
    amax = np.where(np.isfinite(amax) & (amax > 0), amax, 1.0)
    return (amax / QMAX).astype(np.float32)


def absmax_scale(x, axis: Optional[int] = None) -> np.ndarray:
    """Scale that maps the largest |x| (per tensor, or per slice along ``axis``) to 127."""
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("cannot choose a scale for a tensor with NaN or inf")
    return _finish_scale(np.max(np.abs(x), axis=_reduce_axes(x.ndim, axis)) if x.size else np.float64(0))


def percentile_scale(x, pct: float = 99.99, axis: Optional[int] = None) -> np.ndarray:
    """Scale that maps the ``pct``-th percentile of |x| to 127 (outliers saturate): robust for activations."""
    if not 0 < pct <= 100:
        raise ValueError(f"pct must be in (0, 100], got {pct}")
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("cannot choose a scale for a tensor with NaN or inf")
    return _finish_scale(np.percentile(np.abs(x), pct, axis=_reduce_axes(x.ndim, axis)))


def _broadcast_scale(scale, ndim: int, axis: Optional[int]) -> np.ndarray:
    s = np.asarray(scale, dtype=np.float64)
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError("scale must be finite and > 0")
    if axis is None or s.ndim == 0:
        return s
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return s.reshape(shape)


def quantize(x, scale, axis: Optional[int] = None) -> np.ndarray:
    """``clip(rint(x / scale), -128, 127)`` as int8 (round half to even); ``scale`` per tensor or along ``axis``."""
    x = np.asarray(x, dtype=np.float64)
    q = np.rint(x / _broadcast_scale(scale, x.ndim, axis))
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize(q, scale, axis: Optional[int] = None) -> np.ndarray:
    """``scale * q`` as float32."""
    q = np.asarray(q)
    return (q.astype(np.float64) * _broadcast_scale(scale, q.ndim, axis)).astype(np.float32)


def requant_params(in_scale, w_scale, out_scale) -> Tuple[np.ndarray, np.ndarray]:
    """Multiplier and shift arrays for ``requantize`` after an int8 x int8 product.

    The accumulator means ``in_scale * w_scale * acc``; the int8 output means ``out_scale * y``, so the
    ratio ``in_scale * w_scale / out_scale`` (per output channel when ``w_scale`` is a vector) is what the
    integer multiplier and shift approximate.
    """
    ratio = np.asarray(in_scale, np.float64) * np.asarray(w_scale, np.float64) / np.asarray(out_scale, np.float64)
    flat = [quantize_multiplier(r) for r in np.ravel(ratio)]
    mult = np.array([m for m, _ in flat], dtype=np.int32).reshape(ratio.shape)
    shift = np.array([s for _, s in flat], dtype=np.int32).reshape(ratio.shape)
    return mult, shift
