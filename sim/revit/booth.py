"""Effectual terms of the bit-serial PE: non-zero digits of radix-4 modified Booth recoding.

A Bit-Pragmatic style PE (ReViT's RBSP) spends one cycle per effectual term of the serial operand, and
ReViT's offset generator produces those terms by modified Booth encoding. Radix-4 Booth reads a
two's-complement value of ``bits`` bits as digits ``d_i = -2 b_{2i+1} + b_{2i} + b_{2i-1}`` (``b_{-1} = 0``),
``i < ceil(bits / 2)``, each in {-2, -1, 0, 1, 2}: an 8-bit value has at most 4 non-zero digits, a 10-bit
delta at most 5. Zero is the only value with no term.
"""
from __future__ import annotations

import functools

import numpy as np

__all__ = ["booth_terms", "booth_digits"]


def _check(x, bits: int) -> np.ndarray:
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"booth_terms needs integers, got dtype {a.dtype}")
    if not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 62:
        raise ValueError(f"bits must be an int in [2, 62], got {bits!r}")
    a = a.astype(np.int64)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if a.size and (a.min() < lo or a.max() > hi):
        raise ValueError(f"values must fit {bits}-bit two's complement [{lo}, {hi}], got [{a.min()}, {a.max()}]")
    return a


def booth_digits(x, bits: int) -> np.ndarray:
    """Radix-4 Booth digits, int8 (..., ceil(bits / 2)), least significant first; sum(d_i 4^i) == x."""
    a = _check(x, bits)
    width = bits + (bits & 1)  # sign-extend an odd width by one bit: same value, whole digit pairs
    u = np.bitwise_and(a, (np.int64(1) << width) - 1)
    ndig = width // 2
    out = np.empty(a.shape + (ndig,), np.int8)
    prev = np.zeros(a.shape, np.int64)
    for i in range(ndig):
        b0 = (u >> (2 * i)) & 1
        b1 = (u >> (2 * i + 1)) & 1
        out[..., i] = -2 * b1 + b0 + prev
        prev = b1
    return out


@functools.lru_cache(maxsize=None)
def _terms_table(bits: int) -> np.ndarray:
    """Terms of every ``bits``-bit value, indexed by ``value + 2^(bits-1)`` (the simulator's hot path)."""
    v = np.arange(-(1 << (bits - 1)), 1 << (bits - 1), dtype=np.int64)
    t = (booth_digits(v, bits) != 0).sum(-1).astype(np.int64)
    t.setflags(write=False)
    return t


def booth_terms(x, bits: int = 8) -> np.ndarray:
    """Number of non-zero radix-4 Booth digits of each ``bits``-bit two's-complement value, int64.

    0 -> 0, 1 -> 1, -1 -> 1, 2 -> 2, 7 -> 2, 27 -> 3, 42 -> 4, 127 -> 2; the mean over all int8 values is 3.0.
    Up to 16 bits a table of every value's count answers (built once from :func:`booth_digits`).
    """
    if isinstance(bits, (int, np.integer)) and 2 <= bits <= 16:
        a = _check(x, bits)
        return _terms_table(int(bits))[a + (1 << (int(bits) - 1))]
    return (booth_digits(x, bits) != 0).sum(-1).astype(np.int64)
