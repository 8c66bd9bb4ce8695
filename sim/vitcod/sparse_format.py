"""The ViTCoD sparse attention format: fixed per-head masks, a column reordering, and CSC indices.

This is the ONE place in the project where the CSC arrays are derived from a mask: the bundle validator
(``vitaccel.host.bundle``) recomputes them with :func:`mask_to_csc` and compares, and exporters call it
to produce them. NumPy only (runs on a PYNQ board); vectorised over heads.

Conventions (see ``host/BUNDLE.md``, schema v1):

* ``mask`` bool ``(H, N, N)``, ``mask[h, q, k]`` True when query ``q`` attends to key ``k`` (kept),
  in the original token order.
* ``order`` int ``(H, N)``: reordered column ``c`` of head ``h`` is original key ``order[h, c]``. The first
  ``n_global[h]`` entries are the global (denser) key columns, in any order; the remaining entries are the
  other keys in increasing original index. :func:`order_from_globals` builds such an order.
* The CSC covers the sparser part only: reordered columns ``c >= n_global[h]``; global columns are empty
  in it (the denser engine computes them). For head ``h``, column ``c`` holds the query indices
  (original order, strictly increasing) ``rowidx[headptr[h] + colptr[h, c] : headptr[h] + colptr[h, c + 1]]``.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = ["mask_to_csc", "order_from_globals", "INDEX_DTYPE"]

#: dtype of every index array (order, n_global, colptr, headptr, rowidx).
INDEX_DTYPE = np.int32
_INDEX_MAX = int(np.iinfo(INDEX_DTYPE).max)


def _check_mask_order(mask: np.ndarray, order: np.ndarray, n_global: np.ndarray) -> Tuple[int, int]:
    if mask.dtype != np.bool_:
        raise TypeError(f"mask must be a bool array, got dtype {mask.dtype}")
    if mask.ndim != 3 or mask.shape[1] != mask.shape[2]:
        raise ValueError(f"mask must have shape (H, N, N), got {mask.shape}")
    h, n = int(mask.shape[0]), int(mask.shape[1])
    if not np.issubdtype(order.dtype, np.integer) or order.shape != (h, n):
        raise ValueError(f"order must be an integer array of shape {(h, n)}, got {order.dtype} {order.shape}")
    if not np.issubdtype(n_global.dtype, np.integer) or n_global.shape != (h,):
        raise ValueError(f"n_global must be an integer array of shape {(h,)}, got {n_global.dtype} "
                         f"{n_global.shape}")
    if n and not np.array_equal(np.sort(order, axis=1), np.broadcast_to(np.arange(n), (h, n))):
        raise ValueError("every row of order must be a permutation of 0..N-1")
    if np.any(n_global < 0) or np.any(n_global > n):
        raise ValueError(f"n_global must be in [0, {n}]")
    return h, n


def mask_to_csc(mask, order, n_global) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSC of the sparser part of each head's mask, in reordered column space.

    Returns ``(colptr, headptr, rowidx)``, all int32:

    * ``colptr`` ``(H, N + 1)``: per-head column offsets, ``colptr[h, 0] == 0``, non-decreasing, and
      ``colptr[h, c + 1] == colptr[h, c]`` for the global columns ``c < n_global[h]``;
    * ``headptr`` ``(H + 1,)``: offset of each head's segment in ``rowidx``
      (``headptr[h + 1] - headptr[h] == colptr[h, N]``);
    * ``rowidx`` ``(nnz,)``: query indices in original order, strictly increasing within a column.

    Raises ``TypeError``/``ValueError`` on malformed inputs (wrong dtype or shape, ``order`` rows that are
    not permutations, ``n_global`` out of range).
    """
    mask = np.asarray(mask)
    order = np.asarray(order)
    n_global = np.asarray(n_global)
    h, n = _check_mask_order(mask, order, n_global)
    # mr[h, q, c] = mask[h, q, order[h, c]]: the mask with its key columns permuted.
    mr = np.take_along_axis(mask, order[:, None, :].astype(np.intp, copy=False), axis=2)
    sparse_col = np.arange(n)[None, :] >= n_global[:, None]  # (H, N): column c is in the sparser part
    mr &= sparse_col[:, None, :]
    mt = np.ascontiguousarray(mr.transpose(0, 2, 1))  # (H, C, Q): row-major scan = CSC order
    counts = mt.sum(axis=2, dtype=np.int64)  # (H, C)
    nnz = int(counts.sum())
    if nnz > _INDEX_MAX:
        raise ValueError(f"{nnz} kept entries do not fit int32 indices")
    colptr = np.zeros((h, n + 1), dtype=INDEX_DTYPE)
    colptr[:, 1:] = np.cumsum(counts, axis=1)
    headptr = np.zeros(h + 1, dtype=INDEX_DTYPE)
    headptr[1:] = np.cumsum(colptr[:, n].astype(np.int64))
    rowidx = np.nonzero(mt.reshape(-1, n))[1].astype(INDEX_DTYPE)
    return colptr, headptr, rowidx


def order_from_globals(is_global) -> Tuple[np.ndarray, np.ndarray]:
    """Canonical ``(order, n_global)`` from a bool ``(H, N)`` array marking each head's global key columns.

    Global columns come first, then the others, each part in increasing original index (a stable sort).
    """
    g = np.asarray(is_global)
    if g.dtype != np.bool_ or g.ndim != 2:
        raise ValueError(f"is_global must be a bool array of shape (H, N), got {g.dtype} {g.shape}")
    order = np.argsort(~g, axis=1, kind="stable").astype(INDEX_DTYPE)
    n_global = g.sum(axis=1).astype(INDEX_DTYPE)
    return order, n_global
