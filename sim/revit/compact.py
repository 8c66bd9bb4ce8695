"""Token compaction after a pruning layer (``COMPACT``; mirrors ``hls/revit/pruner/compact.h``): the int16
residual stream keeps CLS and the surviving patches, in token order, and gets the package token appended;
the new token count is written to DRAM and into the later descriptors that depend on it.

Bits. Input ``x`` int16 (N, D), ``keep`` (N-1,) (non-zero: the patch survives), ``scores`` int32 (N-1,) (the
patch pruner's head sums of the uint8 CLS probabilities). Output rows: ``x[0]``, the kept rows of ``x[1:]`` in
order, then the package token (EViT's fused token, as the float model's ``sum over pruned of a_i x_i`` with
``a_i = score_i / (256 H)``)::

    acc_c = sum over pruned i of score_i * x[1 + i, c]           (int64: |acc| < 2^(8 + log2 H + 15 + log2 N))
    pkg_c = clip((acc_c * m + 2^(s-1)) >> s, -32768, 32767)      (m / 2^s ~ 1 / (256 H), m < 2^16)

so ``acc * m`` stays below 2^63 for every shape the config allows. All zero when nothing was pruned (the
float model appends it anyway, so the token count is ``kept + 2`` whatever happens).

Patching. The descriptor names ``npatch`` int32 triples ``(byte address, a, c)``: each address is a word of a
later descriptor of the same program (after this one, not its opcode or flags word), which receives
``a * n_out + c``. That is how the token-dependent fields of the rest of an image's program (GEMM ``M``,
LayerNorm ``rows``, ADD / LUT ``n``, ATTN ``N``, PRUNE ``n``, the next COMPACT's ``N``) follow the pruning
without a round trip to the host: the top reads each descriptor from DRAM when it reaches it.

Cycles (the SIMD unit, ``simd_lanes`` int16 elements per cycle)::

    rows      N ceil(D / L) + PIPE_PACK       (every row read once: copied or accumulated)
    package   ceil(D / L) + PIPE_RQ
    patch     npatch + PIPE_PATCH
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from vitaccel.sim.revit.schedule import PIPE_PACK, PIPE_PATCH
from vitaccel.sim.schedule import PIPE_RQ

__all__ = ["package_params", "compact_tokens", "compact_cycles", "patched_words", "MAX_PKG_MULT"]

#: The package multiplier is below 2^16, so ``acc * m`` (acc below 2^47) fits int64.
MAX_PKG_MULT = 1 << 16


def package_params(heads: int) -> Tuple[int, int]:
    """``(m, s)`` with ``m / 2^s`` the nearest to ``1 / (256 heads)`` for ``m`` in [2^15, 2^16)."""
    h = int(heads)
    if h < 1:
        raise ValueError(f"heads must be >= 1, got {heads!r}")
    s = 23 + (h - 1).bit_length()
    m = ((1 << s) + 128 * h) // (256 * h)          # round half up of 2^s / (256 h)
    return int(m), int(s)


def compact_tokens(x16: np.ndarray, keep: np.ndarray, scores: np.ndarray, m: int, s: int) -> np.ndarray:
    """int16 ``(kept + 2, D)``: CLS, the kept patches in order, the package token."""
    x = np.asarray(x16)
    if x.dtype != np.int16 or x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"x16 must be int16 (N >= 2, D), got {x.dtype} {x.shape}")
    k = np.asarray(keep).astype(bool)
    sc = np.asarray(scores, np.int64)
    if k.shape != (x.shape[0] - 1,) or sc.shape != k.shape:
        raise ValueError(f"keep and scores must be (N-1,) = ({x.shape[0] - 1},), got {k.shape}, {sc.shape}")
    if not (0 <= int(m) < MAX_PKG_MULT and 0 <= int(s) <= 63):
        raise ValueError(f"package multiplier must be in [0, 2^16) and shift in [0, 63], got {m}, {s}")
    patches = x[1:].astype(np.int64)
    w = np.where(k, 0, sc)
    acc = (w[:, None] * patches).sum(0)
    y = acc * int(m)
    if s > 0:
        y = (y + (1 << (int(s) - 1))) >> int(s)
    pkg = np.clip(y, -32768, 32767).astype(np.int16)
    return np.concatenate([x[:1], x[1:][k], pkg[None]]).astype(np.int16)


def compact_cycles(config, n: int, d: int, npatch: int) -> Dict[str, int]:
    """The three nests' cycles for ``n`` input tokens of width ``d`` and ``npatch`` patched words."""
    lanes = config.simd_lanes
    c = -(-int(d) // lanes)
    return {"rows": int(n) * c + PIPE_PACK, "package": c + PIPE_RQ, "patch": int(npatch) + PIPE_PATCH}


def patched_words(prunes, i: int) -> int:
    """How many descriptor words the COMPACT of pruning layer ``i`` patches in the host compiler's program
    (``vitaccel.host.revit.program``; ``prunes[l]``: layer l prunes): the rest of layer i (LayerNorm-2 rows,
    fc1 M, GELU n, fc2 M, add2 n), then per later layer LayerNorm-1 rows, ATTN N, proj M, add1 n and either
    the next PRUNE's n and COMPACT's N (where the next COMPACT takes over) or the MLP's five."""
    words = 5
    for l in range(int(i) + 1, len(prunes)):
        words += 4
        if prunes[l]:
            return words + 2
        words += 5
    return words
