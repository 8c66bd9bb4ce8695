"""The kernel contract's integer arithmetic in NumPy (see NUMERICS.md at the repository root).

``hls/include/vitaccel_numerics.h`` implements the same functions in C++; tests compare the two bit for
bit. Everything here that runs "inside a kernel" (``requantize``, ``softmax``, ``matmul_int``) is pure
integer arithmetic; ``quantize_multiplier`` and ``softmax_params`` are offline helpers that use floats to
choose constants.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np

__all__ = [
    "NUMERICS_VERSION",
    "EXP_FRAC_BITS",
    "EXP_LUT_BITS",
    "RECIP_BITS",
    "EXP2_LUT",
    "MAX_ACC_ABS",
    "requantize",
    "quantize_multiplier",
    "softmax",
    "softmax_params",
    "matmul_int",
]

NUMERICS_VERSION = 1
EXP_FRAC_BITS = 8
EXP_LUT_BITS = 15
RECIP_BITS = 40
#: Bound on |accumulator| (<=, reached by K = 65536 products of -128 * -128) and on |bias| (strictly <):
#: together they keep acc + bias inside int32.
MAX_ACC_ABS = 1 << 30

# round(2^15 * 2^(-r/256)) for r in 0..255. Computed once in float64 offline; Python's round() on these
# values is never at a tie, so the table is the same on every platform.
EXP2_LUT = np.array(
    [int(round((1 << EXP_LUT_BITS) * 2.0 ** (-r / (1 << EXP_FRAC_BITS)))) for r in range(1 << EXP_FRAC_BITS)],
    dtype=np.int64,
)
EXP2_LUT.setflags(write=False)


def _as_int64(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def requantize(acc, multiplier, shift) -> np.ndarray:
    """int32 accumulator -> int8: ``clip((acc * m + 2^(s-1)) >> s, -128, 127)``, round half up.

    ``multiplier`` in [0, 2^31) and ``shift`` in [0, 63] broadcast against ``acc`` (scalars, or one per
    output channel on the last axis).
    """
    a = _as_int64(acc, "acc")
    m = _as_int64(multiplier, "multiplier")
    s = _as_int64(shift, "shift")
    if np.any(m < 0) or np.any(m >= (1 << 31)):
        raise ValueError("multiplier must be in [0, 2^31)")
    if np.any(s < 0) or np.any(s > 63):
        raise ValueError("shift must be in [0, 63]")
    if np.any(a < -(1 << 31)) or np.any(a >= (1 << 31)):
        raise ValueError("acc must fit in int32")
    # |acc*m| < 2^62, + rounding term < 2^62: no int64 overflow.
    rnd = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    y = np.right_shift(a * m + rnd, s)
    return np.clip(y, -128, 127).astype(np.int8)


def quantize_multiplier(real: float) -> Tuple[int, int]:
    """Offline: choose ``(m, s)`` so that ``m / 2^s`` approximates ``real`` with ``m`` in [2^30, 2^31).

    Precision is best when ``m`` is normalised; for very small ``real`` the shift is capped at 63 and
    ``m`` shrinks (down to 0, which maps everything to 0).
    """
    real = float(real)
    if not math.isfinite(real) or real < 0:
        raise ValueError(f"multiplier scale must be finite and >= 0, got {real!r}")
    if real == 0.0:
        return 0, 0
    if real >= float(1 << 31):
        raise ValueError(f"multiplier scale {real!r} is too large (must be < 2^31)")
    mant, exp = math.frexp(real)  # real = mant * 2^exp, mant in [0.5, 1)
    shift = 31 - exp
    m = int(round(mant * (1 << 31)))
    if m == (1 << 31):  # rounding carried into the next power of two
        m //= 2
        shift -= 1
    if shift > 63:
        m = int(round(real * 2.0 ** 63))
        shift = 63
    return m, shift


def softmax_params(score_scale: float) -> Tuple[int, int]:
    """Offline: ``(m_exp, s_exp)`` for :func:`softmax` when a score ``s`` means ``score_scale * s``."""
    return quantize_multiplier(float(score_scale) * math.log2(math.e) * (1 << EXP_FRAC_BITS))


def check_softmax_args(scores, keep, m_exp, s_exp):
    """Validate :func:`softmax`'s arguments (shared with the C-simulation wrapper so both refuse the same
    inputs): returns ``(scores as int64, keep as bool, m_exp, s_exp)``."""
    s = _as_int64(scores, "scores")
    if s.ndim == 0:
        raise ValueError("scores must have at least one axis")
    if np.any(s < -(1 << 31)) or np.any(s >= (1 << 31)):
        raise ValueError("scores must fit in int32")
    if keep is None:
        k = np.ones(s.shape, dtype=bool)
    else:
        k = np.asarray(keep)
        if k.dtype != np.bool_:
            raise TypeError(f"keep must be a bool array, got dtype {k.dtype}")
        if k.shape != s.shape:
            raise ValueError(f"keep has shape {k.shape}, scores {s.shape}")
    m_exp, s_exp = int(m_exp), int(s_exp)
    if not (0 <= m_exp < (1 << 31)) or not (0 <= s_exp <= 63):
        raise ValueError("m_exp must be in [0, 2^31) and s_exp in [0, 63]")
    return s, k, m_exp, s_exp


def softmax(scores, keep: Optional[np.ndarray], m_exp: int, s_exp: int) -> np.ndarray:
    """Integer softmax over the last axis: int32 scores -> uint8 probabilities (scale 2^-8).

    ``keep`` (bool, same shape, or None for all kept) marks the entries that exist; pruned entries and
    rows with nothing kept give 0. See NUMERICS.md for every step.
    """
    s, k, m_exp, s_exp = check_softmax_args(scores, keep, m_exp, s_exp)
    if s.shape[-1] >= (1 << 16):
        raise ValueError("rows longer than 65535 entries overflow the 32-bit exp sum")

    lowest = np.int64(-(1 << 62))
    mx = np.max(np.where(k, s, lowest), axis=-1, keepdims=True)
    x = np.maximum(s - mx, -(1 << 31))
    x = np.where(k, x, 0)  # pruned entries: any finite value, zeroed below
    t = np.right_shift(x * m_exp, s_exp)
    u = -t
    q = np.right_shift(u, EXP_FRAC_BITS)
    r = np.bitwise_and(u, (1 << EXP_FRAC_BITS) - 1)
    e = np.where(q > 15, 0, np.right_shift(EXP2_LUT[r], np.minimum(q, 15)))
    e = np.where(k, e, 0)
    total = np.sum(e, axis=-1, keepdims=True)
    safe = np.maximum(total, 1)
    recip = np.where(total > 0, (np.int64(1) << RECIP_BITS) // safe, 0)
    p = np.right_shift(e * recip + (np.int64(1) << 31), 32)
    return np.minimum(p, 255).astype(np.uint8)


def matmul_int(a, b) -> np.ndarray:
    """Exact integer matrix product ``a @ b`` of int8/uint8 operands into int32 (int8 x int8, or uint8
    probabilities x int8 values), batched over leading axes.

    Uses float64 BLAS, which is exact while every partial sum stays below 2^53: with 8-bit operands
    that holds for inner dimensions up to 2^37, far beyond any kernel here. The int32 result is the
    contract's accumulator; a sum outside int32 raises instead of wrapping.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    for name, arr in (("a", a), ("b", b)):
        if arr.dtype not in (np.int8, np.uint8):
            raise TypeError(f"{name} must be int8 or uint8, got {arr.dtype}")
    out = np.matmul(a.astype(np.float64), b.astype(np.float64))
    if out.size and np.max(np.abs(out)) >= 2.0 ** 31:
        raise OverflowError("integer matmul result exceeds int32")
    return out.astype(np.int32)
