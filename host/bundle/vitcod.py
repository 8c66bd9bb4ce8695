"""ViTCoD's rules for a bundle: the fixed sparse attention (mask, column order, CSC) must agree.

The per-tensor rules in ``schema.py`` see one array at a time; a ViTCoD layer is only valid if its
``attn.order`` is the permutation the engines assume (globals first, the rest increasing), its CSC is
well formed, and the CSC is exactly what ``mask_to_csc`` derives from ``attn.mask``: the denser and
sparser engines read the CSC and the reordered columns, never the mask, so a bundle whose CSC drifted from
its mask would run a different model than the one exported, silently.

The check is registered through the schema's per-method hook table (:data:`METHOD_CHECKS`) rather than
called by the validator, so that another method (ReViT) adds its own module beside this one. The
``attn_sparse`` tensors are ViTCoD's format, but schema v1 lets ``revit`` and ``dense`` bundles carry them
too (``METHOD_GROUPS``); wherever they appear the engines read them the same way, so this module registers
its check for every method that allows the group.

NumPy and the standard library only: this runs on a PYNQ board, without torch.
"""
from __future__ import annotations

from typing import Dict, Mapping

import numpy as np

from vitaccel.host.bundle.schema import METHOD_GROUPS, _fail, register_layer_check
from vitaccel.sim.vitcod.sparse_format import mask_to_csc

__all__: list = []  # nothing to import: the module registers its checks when imported


def _check_attn_sparse(t: Mapping[str, np.ndarray], p: str, dims: Dict[str, int]) -> None:
    """Structure of order/n_global/CSC, then agreement with ``mask_to_csc(mask, order, n_global)``."""
    p = p + "attn."
    n, h = dims["N"], dims["H"]
    order = t[p + "order"].astype(np.int64)
    n_global = t[p + "n_global"].astype(np.int64)
    colptr = t[p + "csc_colptr"].astype(np.int64)
    headptr = t[p + "csc_headptr"].astype(np.int64)
    rowidx = t[p + "csc_rowidx"].astype(np.int64)
    mask = t[p + "mask"]
    # order: each row a permutation of 0..N-1 (values are already in [0, N)).
    srt = np.sort(order, axis=1)
    bad_rows = np.any(srt != np.arange(n)[None, :], axis=1)
    if bad_rows.any():
        hh = int(np.argmax(bad_rows))
        dup = srt[hh][np.flatnonzero(np.diff(srt[hh]) == 0)]
        raise _fail(p + "order", f"expected each row to be a permutation of 0..{n - 1}; head {hh} "
                                 f"repeats {int(dup[0]) if dup.size else '?'}")
    # order: after the n_global globals, the other columns in increasing original index.
    col = np.arange(n)[None, :]
    later = (col[:, 1:] > n_global[:, None]) & (np.diff(order, axis=1) <= 0)
    if later.any():
        hh, c = (int(i) for i in np.argwhere(later)[0])
        raise _fail(p + "order", f"expected the non-global columns (c >= n_global = {int(n_global[hh])}) in "
                                 f"increasing key order; head {hh} has {int(order[hh, c])} then "
                                 f"{int(order[hh, c + 1])} at columns {c}, {c + 1}")
    # colptr: starts at 0, non-decreasing, empty global columns.
    if np.any(colptr[:, 0] != 0):
        hh = int(np.argmax(colptr[:, 0] != 0))
        raise _fail(p + "csc_colptr", f"expected colptr[h, 0] == 0, found {int(colptr[hh, 0])} for head {hh}")
    dcol = np.diff(colptr, axis=1)
    if np.any(dcol < 0):
        hh, c = (int(i) for i in np.argwhere(dcol < 0)[0])
        raise _fail(p + "csc_colptr", f"expected non-decreasing offsets; head {hh} goes from "
                                      f"{int(colptr[hh, c])} to {int(colptr[hh, c + 1])} at column {c}")
    glob = (col < n_global[:, None]) & (dcol != 0)
    if glob.any():
        hh, c = (int(i) for i in np.argwhere(glob)[0])
        raise _fail(p + "csc_colptr", f"expected global columns (c < n_global = {int(n_global[hh])}) to be "
                                      f"empty; head {hh} column {c} holds {int(dcol[hh, c])} entries")
    # headptr: starts at 0, segments match colptr, ends at nnz.
    if headptr[0] != 0:
        raise _fail(p + "csc_headptr", f"expected headptr[0] == 0, found {int(headptr[0])}")
    seg = np.diff(headptr)
    if np.any(seg != colptr[:, n]):
        hh = int(np.argmax(seg != colptr[:, n]))
        raise _fail(p + "csc_headptr", f"expected headptr[{hh + 1}] - headptr[{hh}] == colptr[{hh}, N] = "
                                       f"{int(colptr[hh, n])}, found {int(seg[hh])}")
    if headptr[h] != rowidx.shape[0]:
        raise _fail(p + "csc_rowidx", f"expected {int(headptr[h])} entries (headptr[H]), found {rowidx.shape[0]}")
    # rowidx strictly increasing inside every column.
    nnz = rowidx.shape[0]
    if nnz > 1:
        starts = (headptr[:-1, None] + colptr[:, :-1]).ravel()
        is_start = np.zeros(nnz, dtype=bool)
        is_start[starts[starts < nnz]] = True
        bad = (np.diff(rowidx) <= 0) & ~is_start[1:]
        if bad.any():
            i = int(np.argmax(bad)) + 1
            raise _fail(p + "csc_rowidx", f"expected strictly increasing query indices within a column; "
                                          f"entry {i} is {int(rowidx[i])} after {int(rowidx[i - 1])}")
    # Agreement with the mask: the CSC is derived from it in exactly one place.
    e_colptr, _, e_rowidx = mask_to_csc(mask, t[p + "order"], t[p + "n_global"])
    if not np.array_equal(e_colptr, colptr):
        hh, c = (int(i) for i in np.argwhere(np.diff(e_colptr, axis=1) != dcol)[0])
        raise _fail(p + "csc_colptr", f"disagrees with attn.mask: head {hh} reordered column {c} (key "
                                      f"{int(order[hh, c])}) holds {int(dcol[hh, c])} entries, the mask keeps "
                                      f"{int(e_colptr[hh, c + 1] - e_colptr[hh, c])}")
    if not np.array_equal(e_rowidx, rowidx):
        i = int(np.argmax(e_rowidx != rowidx))
        hh = int(np.searchsorted(headptr, i, side="right")) - 1
        c = int(np.searchsorted(colptr[hh], i - headptr[hh], side="right")) - 1
        raise _fail(p + "csc_rowidx", f"disagrees with attn.mask: head {hh} reordered column {c} (key "
                                      f"{int(order[hh, c])}) expected query {int(e_rowidx[i])}, found "
                                      f"{int(rowidx[i])} (entry {i})")




for _method, _rules in METHOD_GROUPS.items():
    if _rules.get("attn_sparse", "forbidden") != "forbidden":
        register_layer_check(_method, "attn_sparse", _check_attn_sparse)
