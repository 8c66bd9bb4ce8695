"""ReViT's rules for a bundle: the integer hash must be the one derived from the float LSH parameters.

The schema checks each ``lsh.*`` and ``prune.*`` tensor alone (dtype, shape, ranges). A ReViT layer is
only valid if its integer hash (``lsh.hash_weight``, ``hash_bias``, ``hash_mult``, ``hash_shift``), which
is what the hardware runs, is exactly ``vitaccel.sim.revit.lsh.hash_params`` of the float ``lsh.alpha``,
``lsh.beta``, ``lsh.gamma`` and the layer's ``qkv.in_scale``: otherwise the bundle would group tokens
differently from the model it documents, silently (the same reason ViTCoD's CSC must agree with its mask).

NumPy and the standard library only: this runs on a PYNQ board, without torch.
"""
from __future__ import annotations

from typing import Dict, Mapping

import numpy as np

from vitaccel.host.bundle.schema import _fail, register_layer_check
from vitaccel.sim.revit.lsh import hash_params

__all__: list = []  # nothing to import: the module registers its checks when imported


def _check_lsh(t: Mapping[str, np.ndarray], p: str, dims: Dict[str, int]) -> None:
    try:
        with np.errstate(all="ignore"):
            A, B, m, s = hash_params(t[p + "lsh.alpha"], t[p + "lsh.beta"], t[p + "lsh.gamma"], t[p + "qkv.in_scale"])
    except (ValueError, OverflowError) as e:
        raise _fail(p + "lsh.hash_mult", f"no integer hash exists for these lsh.alpha / lsh.gamma / qkv.in_scale: {e}") from None
    got_w = t[p + "lsh.hash_weight"]
    if not np.array_equal(got_w, A):
        g, k = (int(i) for i in np.argwhere(got_w != A)[0])
        raise _fail(p + "lsh.hash_weight", f"disagrees with lsh.alpha: expected {int(A[g, k])} at [{g}, {k}] "
                                           f"(alpha at one int8 scale), found {int(got_w[g, k])}")
    got_b = t[p + "lsh.hash_bias"]
    if not np.array_equal(got_b, B):
        g = int(np.argmax(got_b != B))
        raise _fail(p + "lsh.hash_bias", f"disagrees with lsh.beta / qkv.in_scale: expected {int(B[g])} at [{g}], "
                                         f"found {int(got_b[g])}")
    for name, want in (("hash_mult", m), ("hash_shift", s)):
        got = int(t[p + "lsh." + name])
        if got != want:
            raise _fail(p + "lsh." + name, f"disagrees with lsh.gamma and the scales: expected {want}, found {got}")


register_layer_check("revit", "lsh", _check_lsh)
