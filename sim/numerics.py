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
    a = np.asarray(acc)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"acc must be an integer array, got dtype {a.dtype}")
    m = _as_int64(multiplier, "multiplier")
    s = _as_int64(shift, "shift")
    if np.any(m < 0) or np.any(m >= (1 << 31)):
        raise ValueError("multiplier must be in [0, 2^31)")
    if np.any(s < 0) or np.any(s > 63):
        raise ValueError("shift must be in [0, 63]")
    # int8/int16/uint8/uint16/int32 fit int32 by their type; wider types are checked by value.
    lo = hi = None
    if a.size and a.dtype.itemsize >= 4 and a.dtype != np.int32:
        lo, hi = int(a.min()), int(a.max())
        if lo < -(1 << 31) or hi >= (1 << 31):
            raise ValueError("acc must fit in int32")
    if s.ndim and s.size > 1 and a.size:
        m, s = _common_shift(a, m, s, lo, hi)
    # |acc*m| < 2^62, + rounding term < 2^62: no int64 overflow (after _common_shift: checked there).
    rnd = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    y = np.multiply(a, m, dtype=np.int64)
    y += rnd
    y >>= s
    out = np.empty(y.shape, np.int8)
    np.clip(y, -128, 127, out=out, casting="unsafe")     # in [-128, 127] after the clip: the cast is exact
    return out[()] if out.ndim == 0 else out              # a scalar for a scalar, as NumPy's own operations


def _common_shift(a: np.ndarray, m: np.ndarray, s: np.ndarray, lo: Optional[int] = None, hi: Optional[int] = None):
    """Per-channel ``(m, s)`` of :func:`requantize` as ``(m 2^(S - s), S)`` with one shift ``S = max(s)``,
    when no product can then leave int64; otherwise ``(m, s)`` unchanged. The same bits: with ``k = S - s``
    and ``X = acc m + 2^(s-1)``, ``(acc m 2^k + 2^(S-1)) >> S = floor(X 2^k / 2^(s+k)) = X >> s`` (for
    ``s = 0`` and ``S > 0``: ``floor(acc m + 1/2) = acc m``). One scalar shift and rounding term are
    cheaper element-wise operations than per-channel vectors. ``lo``, ``hi``: ``a.min()``, ``a.max()`` if
    the caller has them."""
    top, low = int(s.max()), int(s.min())
    if top - low > 32:                  # m 2^k could leave int64 (m < 2^31)
        return m, s
    mk = np.left_shift(m, top - s)      # < 2^63: exact; broadcast to the shape of s as well
    if low < top:                       # (all shifts equal: the bound of requantize itself holds)
        if lo is None:
            lo, hi = int(a.min()), int(a.max())
        if max(-lo, hi, 0) * int(mk.max()) + (1 << (top - 1)) >= (1 << 63):
            return m, s
    return mk, np.int64(top)


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


def _softmax_args(scores, keep, m_exp, s_exp):
    """Validate :func:`softmax`'s arguments without converting them: ``(scores, keep or None, m_exp, s_exp)``,
    the scores an integer array whose values fit in int32 (not copied), ``keep`` None when absent."""
    s = np.asarray(scores)
    if not np.issubdtype(s.dtype, np.integer):
        raise TypeError(f"scores must be an integer array, got dtype {s.dtype}")
    if s.ndim == 0:
        raise ValueError("scores must have at least one axis")
    if s.size and s.dtype.itemsize >= 4 and s.dtype != np.int32:   # narrower types and int32 fit by their type
        if int(s.min()) < -(1 << 31) or int(s.max()) >= (1 << 31):
            raise ValueError("scores must fit in int32")
    k = None
    if keep is not None:
        k = np.asarray(keep)
        if k.dtype != np.bool_:
            raise TypeError(f"keep must be a bool array, got dtype {k.dtype}")
        if k.shape != s.shape:
            raise ValueError(f"keep has shape {k.shape}, scores {s.shape}")
    m_exp, s_exp = int(m_exp), int(s_exp)
    if not (0 <= m_exp < (1 << 31)) or not (0 <= s_exp <= 63):
        raise ValueError("m_exp must be in [0, 2^31) and s_exp in [0, 63]")
    return s, k, m_exp, s_exp


def check_softmax_args(scores, keep, m_exp, s_exp):
    """Validate :func:`softmax`'s arguments (shared with the C-simulation wrapper so both refuse the same
    inputs): returns ``(scores as int64, keep as bool, m_exp, s_exp)``."""
    s, k, m_exp, s_exp = _softmax_args(scores, keep, m_exp, s_exp)
    return s.astype(np.int64, copy=False), (np.ones(s.shape, dtype=bool) if k is None else k), m_exp, s_exp


#: ``u`` from which ``e`` is 0 (see :func:`_exp_zero_offset`): ``e(u) = 0`` for every ``u >= _U_ZERO``.
_U_ZERO = 3841


def _exp_of_u(u: np.ndarray) -> np.ndarray:
    """NUMERICS.md softmax step 3 from ``u = -t >= 0`` on: ``q = u >> 8``, ``r = u & 255``,
    ``e = (q > 15) ? 0 : EXP2_LUT[r] >> q`` (int64, like ``u``)."""
    q = np.right_shift(u, EXP_FRAC_BITS)
    r = np.bitwise_and(u, (1 << EXP_FRAC_BITS) - 1)
    return np.where(q > 15, 0, np.right_shift(EXP2_LUT[r], np.minimum(q, 15)))


#: ``e`` for every ``u`` below ``_U_ZERO`` and one 0 at ``_U_ZERO`` (uint16: ``EXP2_LUT[0] = 2^15`` is the
#: largest ``e``).
_EXP_OF_U = _exp_of_u(np.arange(_U_ZERO + 1, dtype=np.int64)).astype(np.uint16)
_EXP_OF_U.setflags(write=False)


def _exp_at_offset(d: np.ndarray, m_exp: int, s_exp: int) -> np.ndarray:
    """NUMERICS.md softmax step 3 for kept entries at offsets ``d = mx - s >= 0`` (int64): ``x = -min(d,
    2^31)``, ``t = (x m) >> s``, ``u = -t``, then ``e`` of ``u``, gathered from ``_EXP_OF_U`` with ``u``
    clipped to ``_U_ZERO`` (where and beyond which ``e`` is 0). uint16, the shape of ``d``."""
    t = np.minimum(d, np.int64(1) << 31)
    np.multiply(t, np.int64(-m_exp), out=t)          # |x m| < 2^62
    np.right_shift(t, np.int64(s_exp), out=t)
    np.negative(t, out=t)                            # u >= 0
    np.minimum(t, _U_ZERO, out=t)
    return _EXP_OF_U.take(t)


def _exp_zero_offset(m_exp: int, s_exp: int) -> int:
    """The smallest offset ``d`` from which every exponential is 0, or 2^31 + 1 if there is none.

    ``u(d) = -floor(-d m / 2^s) = ceil(d m / 2^s)`` never decreases as ``d`` grows. ``e = 0`` exactly when
    ``u >= _U_ZERO = 3841``: ``q > 15`` gives 0 by definition, and at ``q = 15`` every ``EXP2_LUT[r]`` with
    ``r >= 1`` is below 2^15 (only ``EXP2_LUT[0] >> 15 = 1``, at ``u = 3840``). ``ceil(d m / 2^s) > 3840``
    iff ``d m > 3840 2^s`` iff ``d >= floor(3840 2^s / m) + 1``. Beyond 2^31 the contract clamps ``d``,
    so nothing changes past it."""
    if m_exp == 0:
        return (1 << 31) + 1
    return min((1 << 31) + 1, ((3840 << s_exp) // m_exp) + 1)


#: The exponential table :func:`softmax` gathers from covers at most this many offsets (uint16: 512 KiB).
_EXP_TABLE_MAX = 1 << 18
#: Rows of a softmax are processed in blocks of about this many entries (measured fastest; bounds memory).
_SOFTMAX_BLOCK = 1 << 17


def softmax(scores, keep: Optional[np.ndarray], m_exp: int, s_exp: int) -> np.ndarray:
    """Integer softmax over the last axis: int32 scores -> uint8 probabilities (scale 2^-8).

    ``keep`` (bool, same shape, or None for all kept) marks the entries that exist; pruned entries and
    rows with nothing kept give 0. See NUMERICS.md for every step.

    How it is computed (the same bits as the step-by-step definition; ``tests/test_numerics_fast.py``
    compares the two): a kept entry's ``e`` depends only on its offset ``d = mx - s >= 0``. No offset
    exceeds the span ``smax - smin`` of the scores, and from ``D = _exp_zero_offset`` on every ``e`` is 0,
    so ``e`` is gathered from a table of step 3 at ``d = 0 .. min(span, D)`` with ``d`` clipped to that
    range (a pruned entry's clipped offset means nothing: its ``e`` is zeroed afterwards). The table is
    built only if it is shorter than ``_EXP_TABLE_MAX`` and than the input; otherwise step 3 runs per entry.
    When the span is below 2^31 the offsets are int32 (``|mx - s| <= span``). Steps 4-6 are int64
    (``e recip <= 2^15 2^25``).
    """
    s, k, m_exp, s_exp = _softmax_args(scores, keep, m_exp, s_exp)
    n = s.shape[-1]
    if n >= (1 << 16):
        raise ValueError("rows longer than 65535 entries overflow the 32-bit exp sum")
    if s.size == 0:
        return np.zeros(s.shape, np.uint8)
    if k is not None and k.all():
        k = None
    lo, hi = int(s.min()), int(s.max())
    span = hi - lo                                          # >= every kept offset mx - s
    rows = s.reshape(-1, n).astype(np.int64 if span >= (1 << 31) else np.int32, copy=False)
    krows = None if k is None else k.reshape(-1, n)
    last = min(span, _exp_zero_offset(m_exp, s_exp))       # the table's offsets: 0 .. last
    table = None
    if last < min(_EXP_TABLE_MAX, s.size):
        table = _exp_at_offset(np.arange(last + 1, dtype=np.int64), m_exp, s_exp)
    out = np.empty(rows.shape, np.uint8)
    step = max(1, _SOFTMAX_BLOCK // n)
    one = np.int64(1)
    for r0 in range(0, rows.shape[0], step):
        sb = rows[r0:r0 + step]
        kb = None if krows is None else krows[r0:r0 + step]
        if kb is None:
            mx = sb.max(axis=1, keepdims=True)
        else:   # a row with nothing kept gets lo: its offsets stay in range; its e are zeroed below
            mx = sb.max(axis=1, keepdims=True, where=kb, initial=lo)
        d = np.subtract(mx, sb, dtype=sb.dtype)             # int32 when the span allows (see above)
        if table is not None:
            if kb is not None:
                np.clip(d, 0, last, out=d)
            elif last < span:               # all kept: 0 <= d <= span already
                np.minimum(d, last, out=d)
            e = table.take(d)
        else:
            e = _exp_at_offset(np.maximum(d, 0).astype(np.int64, copy=False), m_exp, s_exp)
        if kb is not None:
            e *= kb
        total = e.sum(axis=1, keepdims=True, dtype=np.int64)    # < 2^31 (n <= 65535, e <= 2^15)
        recip = np.where(total > 0, (one << RECIP_BITS) // np.maximum(total, 1), 0)
        p = np.multiply(e, recip, dtype=np.int64)          # <= 2^40
        p += one << 31
        p >>= 32
        np.minimum(p, 255, out=p)
        out[r0:r0 + step] = p                              # in [0, 255]: the cast is exact
    return out.reshape(s.shape)


#: Largest magnitude of each operand type :func:`matmul_int` takes.
_OPERAND_MAX = {np.dtype(np.int8): 128, np.dtype(np.uint8): 255}
#: float32 represents every integer of magnitude <= 2^24 exactly.
_F32_EXACT = 1 << 24


def matmul_int(a, b) -> np.ndarray:
    """Exact integer matrix product ``a @ b`` of int8/uint8 operands into int32 (int8 x int8, or uint8
    probabilities x int8 values), batched over leading axes.

    Uses float32 BLAS over chunks of the inner dimension and sums the chunks in integers. Why that is
    exact on any CPU and with any BLAS kernel: every product of two operands is an integer of magnitude
    at most ``P = max|a| max|b|`` (2^14 for int8 x int8, 255 * 128 for uint8 x int8), exact in float32.
    A chunk has at most ``C = floor(2^24 / P)`` products (1024, 514), so every partial sum a kernel can
    form, in whatever order, blocking or with fused multiply-adds, is an integer of magnitude at most
    ``C P <= 2^24``; float32 represents every such integer, so no addition or FMA ever rounds and each
    chunk's result is its exact integer sum. (This assumes a classic product-and-sum GEMM, as BLAS
    sgemm is, not a Strassen-like one.) The chunks are added in int32 when ``K P < 2^31`` (no sum can
    leave int32), otherwise in int64; the int32 result is the contract's accumulator, and a sum outside
    int32 raises instead of wrapping.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    for name, arr in (("a", a), ("b", b)):
        if arr.dtype not in (np.int8, np.uint8):
            raise TypeError(f"{name} must be int8 or uint8, got {arr.dtype}")
    a32 = a.astype(np.float32)
    b32 = b.astype(np.float32)
    if a.ndim == 0 or b.ndim == 0:
        return np.matmul(a32, b32).astype(np.int32)     # numpy refuses scalars with its own message
    k = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k != kb:     # checked here: chunks of unequal operands could otherwise line up
        raise ValueError(f"matmul_int: inner dimensions differ, a (..., {k}) and b ({kb}, ...)")
    prod = _OPERAND_MAX[a.dtype] * _OPERAND_MAX[b.dtype]
    chunk = _F32_EXACT // prod
    if k <= chunk:
        return np.matmul(a32, b32).astype(np.int32)      # |result| <= 2^24: no overflow possible
    acc_type = np.int32 if k * prod < (1 << 31) else np.int64
    acc = None
    for c0 in range(0, k, chunk):
        bs = b32[c0:c0 + chunk] if b.ndim == 1 else b32[..., c0:c0 + chunk, :]
        part = np.matmul(a32[..., c0:c0 + chunk], bs).astype(acc_type)
        if acc is None:
            acc = part
        else:
            acc += part
    if acc_type is np.int64 and acc.size and (int(acc.max()) >= (1 << 31) or int(acc.min()) <= -(1 << 31)):
        raise OverflowError("integer matmul result exceeds int32")
    return acc.astype(np.int32, copy=False)
