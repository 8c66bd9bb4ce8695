"""Integer blockwise softmax, bit-exact with the one-pass softmax of NUMERICS.md for every block size.

Eq. 8's online normaliser keeps a running max ``m`` and running sum over key blocks and rescales what it
stored when ``m`` grows. In NUMERICS.md's integer softmax each exponential is ``EXP2_LUT[u & 255] >> (u >> 8)``
with ``u = -floor((s_j - mx) * m_exp / 2^s_exp)``, a floor taken against the *true* row max ``mx``. A stored
exponential (or a stored ``u``) cannot be moved to a new reference exactly: the floor's carry depends on
low bits of ``(s_j - m_old) * m_exp`` that it has thrown away, and an exact right shift of the stored
exponentials exists only when the max moves by a whole multiple of ``2^(s_exp + 8) / m_exp`` score
units, i.e. only for a quantised reference, which the one-pass softmax does not use (see
:func:`blockwise_softmax_qmax`, the measured alternative below: it matches a softmax referenced at the
quantised max, and differs from NUMERICS.md's in some rows).

So the stored per-element state here is the score's **offset below the running max**, ``d_j = m - s_j``,
saturated at ``d_zero`` (:func:`zero_offset`, the first offset whose exponential is 0; at most 2^31, the
contract's own clamp): when the running max grows by ``delta`` every stored offset gets ``+ delta``
(saturating), which is exact, and each block's exponentials and the running sum are recomputed from the
offsets rather than shifted (shifting a sum of floors is not the sum of the shifted floors). After the
last block the offsets are exactly ``min(mx - s_j, d_zero)``, so the exponentials, the sum, the one
reciprocal and the probabilities are those of ``numerics.softmax``, bit for bit, in any block size and
block order. Storage: ``bit_length(d_zero)`` bits per element (15 to 17 for the demo's layers).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from vitaccel.sim import numerics as nx

__all__ = ["zero_offset", "exp_from_offset", "blockwise_softmax_int", "weighted_softmax", "softmax_at_reference",
           "blockwise_softmax_qmax", "BlockTrace"]

_LOW = np.int64(-(1 << 62))


def zero_offset(m_exp: int, s_exp: int) -> int:
    """The smallest offset ``d = mx - s`` from which every exponential is 0, capped at 2^31 (the contract's clamp).

    ``EXP2_LUT[r] >> q`` is 0 exactly when ``u = 256 q + r > 3840`` (``LUT[0] >> 15 = 1``, every other
    entry is below 2^15), and ``u(d) = ceil(d m / 2^s)`` grows with ``d``: so ``d m > 3840 * 2^s``.
    """
    m_exp, s_exp = int(m_exp), int(s_exp)
    if m_exp == 0:
        return 1 << 31
    return min(1 << 31, (3840 << s_exp) // m_exp + 1)


def exp_from_offset(d: np.ndarray, m_exp: int, s_exp: int) -> np.ndarray:
    """NUMERICS.md step 3 for ``x = -d`` (``0 <= d <= 2^31``): the 16-bit exponentials, int64."""
    x = -np.asarray(d, np.int64)
    t = np.right_shift(x * np.int64(m_exp), np.int64(s_exp))
    u = -t
    q = np.right_shift(u, nx.EXP_FRAC_BITS)
    r = np.bitwise_and(u, (1 << nx.EXP_FRAC_BITS) - 1)
    return np.where(q > 15, 0, np.right_shift(nx.EXP2_LUT[r], np.minimum(q, 15)))


def _normalise(e: np.ndarray, weights=None) -> np.ndarray:
    if weights is not None:
        e = e * weights
    total = e.sum(-1, keepdims=True)
    recip = np.where(total > 0, (np.int64(1) << nx.RECIP_BITS) // np.maximum(total, 1), 0)
    p = np.right_shift(e * recip + (np.int64(1) << 31), 32)
    return np.minimum(p, 255).astype(np.uint8)


class BlockTrace(list):
    """Per processed block: ``(block index, running max (...), running sum (...))`` after it."""


def _blocks(n: int, block: int, order: Optional[Sequence[int]]) -> List[int]:
    if not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block must be a positive int, got {block!r}")
    nb = -(-n // int(block)) if n else 0
    blocks = list(range(nb)) if order is None else [int(b) for b in order]
    if sorted(blocks) != list(range(nb)):
        raise ValueError(f"order must be a permutation of the {nb} block indices")
    return blocks


def _weights(weights, shape) -> Optional[np.ndarray]:
    if weights is None:
        return None
    w = np.asarray(weights)
    if not np.issubdtype(w.dtype, np.integer):
        raise TypeError(f"weights must be integer multiplicities, got {w.dtype}")
    w = np.broadcast_to(w.astype(np.int64), shape)
    if w.size and (w.min() < 0 or w.sum(-1).max() >= (1 << 16)):
        raise ValueError("weights must be >= 0 with a row total below 2^16 (the 32-bit exp sum)")
    return w


def weighted_softmax(scores, keep, m_exp: int, s_exp: int, weights=None) -> np.ndarray:
    """The one-pass softmax of NUMERICS.md with integer multiplicities: ``e_j`` (step 3) is multiplied by
    ``weights[j]`` before the sum and the normalisation. ``weights=None`` is ``numerics.softmax`` itself;
    a weight ``l`` stands for ``l`` identical entries (ReViT's "joint" mode weights a centroid by its
    group's size: ``l e^s = e^(s + ln l)``)."""
    s, k, m_exp, s_exp = nx.check_softmax_args(scores, keep, m_exp, s_exp)
    w = _weights(weights, s.shape)
    if w is None:
        return nx.softmax(s, k, m_exp, s_exp)
    mx = np.max(np.where(k, s, _LOW), axis=-1, keepdims=True)
    d = np.where(k, np.minimum(mx - s, 1 << 31), 1 << 31)
    e = np.where(k, exp_from_offset(d, m_exp, s_exp), 0)
    return _normalise(e, w)


def blockwise_softmax_int(scores, keep, m_exp: int, s_exp: int, block: int,
                          order: Optional[Sequence[int]] = None, trace: Optional[BlockTrace] = None,
                          weights=None) -> np.ndarray:
    """Integer softmax over the last axis, block by block (see the module doc); uint8, scale 2^-8.

    Same arguments and result as ``numerics.softmax(scores, keep, m_exp, s_exp)`` (with ``weights``, as
    :func:`weighted_softmax`); ``block`` keys per block, ``order`` the block order. ``trace`` receives the
    running max and running sum after each block (the sum equals the one-pass sum over the blocks seen so
    far, at their max).
    """
    s, k, m_exp, s_exp = nx.check_softmax_args(scores, keep, m_exp, s_exp)
    n = s.shape[-1]
    if n >= (1 << 16):
        raise ValueError("rows longer than 65535 entries overflow the 32-bit exp sum")
    w = _weights(weights, s.shape)
    dz = np.int64(zero_offset(m_exp, s_exp))
    lead = s.shape[:-1]
    run_max = np.full(lead, _LOW, np.int64)
    off = np.full(s.shape, dz, np.int64)                    # offsets of stored (seen, kept) entries
    seen = np.zeros(s.shape, bool)
    for b in _blocks(n, block, order):
        sl = slice(b * block, min(n, (b + 1) * block))
        sb, kb = s[..., sl], k[..., sl]
        new_max = np.maximum(run_max, np.max(np.where(kb, sb, _LOW), axis=-1))
        grow = np.where(run_max > _LOW, new_max - run_max, 0)[..., None]
        off = np.where(seen, np.minimum(off + grow, dz), off)           # exact, saturating
        off[..., sl] = np.where(kb, np.minimum(new_max[..., None] - sb, dz), dz)
        seen[..., sl] = kb
        run_max = new_max
        if trace is not None:
            e = np.where(seen, exp_from_offset(off, m_exp, s_exp), 0)
            trace.append((b, run_max.copy(), (e if w is None else e * w).sum(-1)))   # recomputed, never shifted
    e = np.where(seen, exp_from_offset(off, m_exp, s_exp), 0)
    return _normalise(e, w)


def softmax_at_reference(scores, keep, m_exp: int, s_exp: int, ref) -> np.ndarray:
    """NUMERICS.md's softmax with the reference ``ref`` (..., ) in place of the row max (``ref >= max``)."""
    s, k, m_exp, s_exp = nx.check_softmax_args(scores, keep, m_exp, s_exp)
    x = np.maximum(s - np.asarray(ref, np.int64)[..., None], -(1 << 31))
    e = np.where(k, exp_from_offset(-x, m_exp, s_exp), 0)
    return _normalise(e)


def blockwise_softmax_qmax(scores, keep, m_exp: int, s_exp: int, block: int) -> Tuple[np.ndarray, np.ndarray]:
    """The alternative the notes suggest: store exponentials, quantise the running max up to a multiple of
    ``step = 2^(s_exp + 8) / m_exp`` so a growing max is an exact right shift of every stored value, and
    recompute the sum at the end. Needs ``m_exp`` a power of two (otherwise ``step`` is not an integer).

    Returns ``(p, ref)``: ``p`` equals :func:`softmax_at_reference` at ``ref`` (the final quantised max)
    bit for bit, and generally differs from ``numerics.softmax`` (measured in ``tests/test_revit_int.py``).
    """
    s, k, m_exp, s_exp = nx.check_softmax_args(scores, keep, m_exp, s_exp)
    if m_exp <= 0 or m_exp & (m_exp - 1) or m_exp.bit_length() - 1 > s_exp + 8:
        raise ValueError("the quantised-max scheme needs m_exp = 2^a with a <= s_exp + 8")
    step = np.int64(1 << (s_exp + 8 - (m_exp.bit_length() - 1)))
    n = s.shape[-1]
    ref = np.full(s.shape[:-1], _LOW, np.int64)
    e = np.zeros(s.shape, np.int64)
    for b in _blocks(n, block, None):
        sl = slice(b * block, min(n, (b + 1) * block))
        sb, kb = s[..., sl], k[..., sl]
        bmax = np.max(np.where(kb, sb, _LOW), axis=-1)
        q = np.where(bmax > _LOW, -(-bmax // step) * step, _LOW)          # ceil to the grid
        new_ref = np.maximum(ref, q)
        shift = np.where(ref > _LOW, (new_ref - ref) // step, 0)[..., None]
        e = np.right_shift(e, np.minimum(shift, 62))                       # exact: r is unchanged
        ref = new_ref
        x = np.maximum(sb - ref[..., None], -(1 << 31))
        e[..., sl] = np.where(kb, exp_from_offset(-x, m_exp, s_exp), 0)
    return _normalise(e), ref
