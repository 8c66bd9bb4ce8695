"""Differential (delta) arithmetic of ReViT, in integers, bit-exact with the plain computation.

Per semantic group g of the int8 tokens ``x8`` (the qkv GEMM's input):

* **centroid** ``xc8[g] = round-half-up(mean of the members)`` = ``floor((2 sum + n) / (2 n))`` (integer,
  the NUMERICS.md rounding direction); it lies between the members' min and max, so it is int8;
* **deltas** ``dx_i = x8_i - xc8[g_i]``: one bit wider than the inputs (9 bits, |dx| <= 255, stored in
  int16); smaller when the group's members are alike;
* **differential projection**: ``acc_c = W xc8 + b`` (the bias once, on the centroid term only) and
  ``acc_d,i = W dx_i``; ``acc_c + acc_d,i == W x8_i + b`` exactly (integer linearity), so the requantised
  result equals the plain GEMM's bit for bit. Q is reconstructed this way;
* **K/V deltas** are taken in the int8 output domain: ``dk_j = k8_j - kc8[g]`` with ``kc8 = requantize(acc_c)``
  (the centroid's own projection, also what inter-group attention uses). Deltas of the accumulators
  would not survive requantisation (rounding is not linear); int8-domain deltas are exact by construction;
* **differential dot product** ``S_ij = q8_i . kc8 + q8_i . dk_j == q8_i . k8_j`` (the base term per query
  row: REVIT-NOTES' correction of Eq. 7);
* **differential output** ``Z_i = (sum_j p_ij) vc8 + sum_j p_ij dv_j == sum_j p_ij v8_j`` (Eq. 9
  corrected: the row sum of the rounded probabilities is not 256 in integers, so it is kept).

All products are exact integers (float64 BLAS is exact below 2^53; results are checked to fit int32).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from vitaccel.sim import numerics as nx

__all__ = ["imatmul", "centroids_int", "deltas_int", "diff_projection", "diff_scores", "diff_output"]


def imatmul(a, b) -> np.ndarray:
    """Exact integer ``a @ b`` (int8/uint8/int16 operands, batched) as int64, refused outside int32."""
    a, b = np.asarray(a), np.asarray(b)
    for name, arr in (("a", a), ("b", b)):
        if arr.dtype not in (np.int8, np.uint8, np.int16):
            raise TypeError(f"{name} must be int8, uint8 or int16, got {arr.dtype}")
    if a.shape[-1] > (1 << 20):
        raise ValueError("inner dimension too long for an exact float64 product")
    out = np.matmul(a.astype(np.float64), b.astype(np.float64))
    if out.size and np.max(np.abs(out)) >= 2.0 ** 31:
        raise OverflowError("integer matmul result exceeds int32")
    return out.astype(np.int64)


def centroids_int(x8, groups, num_groups: int) -> Tuple[np.ndarray, np.ndarray]:
    """Rounded-mean centroids int8 (G, D) and member counts int64 (G,); an empty group's centroid is 0."""
    x = np.asarray(x8)
    if x.dtype != np.int8 or x.ndim != 2:
        raise ValueError(f"x8 must be int8 (N, D), got {x.dtype} {x.shape}")
    g = np.asarray(groups, np.int64)
    if g.shape != (x.shape[0],) or (g.size and (g.min() < 0 or g.max() >= num_groups)):
        raise ValueError(f"groups must be ({x.shape[0]},) in [0, {num_groups})")
    sums = np.zeros((num_groups, x.shape[1]), np.int64)
    np.add.at(sums, g, x.astype(np.int64))
    n = np.bincount(g, minlength=num_groups).astype(np.int64)
    safe = np.maximum(n, 1)[:, None]
    c = np.floor_divide(2 * sums + safe, 2 * safe)     # round half up; exact integer floor division
    c[n == 0] = 0
    return c.astype(np.int8), n


def deltas_int(x8, groups, centroids8) -> np.ndarray:
    """``x8_i - c8[groups_i]`` as int16 (9-bit values)."""
    return (np.asarray(x8, np.int16) - np.asarray(centroids8, np.int16)[np.asarray(groups, np.int64)]).astype(np.int16)


def diff_projection(x8, groups, num_groups: int, weight, bias) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Differential GEMM accumulators of tokens ``x8`` (N, K) through ``weight`` int8 (O, K), ``bias`` int32.

    Returns ``(acc, acc_c, acc_d, dx)``: ``acc`` int64 (N, O) reconstructed = ``acc_c[groups] + acc_d``,
    ``acc_c`` (G, O) the centroid terms (bias included), ``acc_d`` (N, O) the delta terms, ``dx`` the
    int16 deltas. ``acc`` equals ``x8 @ weight.T + bias`` exactly.
    """
    w = np.asarray(weight)
    xc8, _ = centroids_int(x8, groups, num_groups)
    dx = deltas_int(x8, groups, xc8)
    acc_c = imatmul(xc8, w.T) + np.asarray(bias, np.int64)
    acc_d = imatmul(dx, w.T)
    acc = acc_c[np.asarray(groups, np.int64)] + acc_d
    return acc, acc_c, acc_d, dx


def diff_scores(q8, kc8, dk) -> np.ndarray:
    """``S = q8 . kc8 (per row) + q8 . dk^T``: (H, m, d) int8, (H, d) int8, (H, m, d) int16 -> int64 (H, m, m)."""
    base = imatmul(q8, np.asarray(kc8)[..., None])            # (H, m, 1)
    return base + imatmul(q8, np.swapaxes(np.asarray(dk), -1, -2))


def diff_output(p, vc8, dv) -> np.ndarray:
    """``Z = rowsum(p) vc8 + p . dv``: p uint8 (H, m, m), vc8 int8 (H, d), dv int16 (H, m, d) -> int64 (H, m, d)."""
    p = np.asarray(p)
    rows = p.astype(np.int64).sum(-1, keepdims=True)          # (H, m, 1), not 256 in general
    return rows * np.asarray(vc8, np.int64)[:, None, :] + imatmul(p, dv)


def plain_projection(x8, weight, bias) -> np.ndarray:
    """The reference: ``x8 @ weight.T + bias`` int64."""
    return nx.matmul_int(np.asarray(x8), np.asarray(weight).T).astype(np.int64) + np.asarray(bias, np.int64)
