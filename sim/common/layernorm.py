"""Integer LayerNorm (NUMERICS.md "layernorm"): the bits and the cycles, beside each other.

The residual stream is int16 (KERNELS.md); a LayerNorm reads one int16 row of ``D`` values and writes the
int8 row the next GEMM reads. Every step is an integer operation with a stated rounding, so the NumPy
model here and ``hls/common/layernorm/layernorm.h`` agree bit for bit:

1. ``s1 = sum(x)``; ``mu = floor((2 s1 + D) / (2 D))`` (the mean, rounded half up);
2. ``c = x - mu``; ``q = sum(c^2)`` (exact in 64 bits: ``|c| < 2^17``, ``D <= 8192``);
3. ``v = floor(q 2^16 / D) + eps`` (the variance with 16 fractional bits, computed without overflow as
   ``(q // D) << 16 + ((q % D) << 16) // D``; ``eps`` is LayerNorm's epsilon in the same units);
4. ``sd = max(isqrt(v), 1)`` (floor square root, bit by bit: the standard deviation with 8 fractional bits);
5. ``r = floor(2^40 / sd)`` (one division per row);
6. ``n = (c r + 2^15) >> 16`` (``c / sigma`` with 16 fractional bits, round half up);
7. ``y = clip((n g + (b << 16) + 2^(S-1)) >> S, -128, 127)`` with per-channel ``g, b`` (int32) and one
   shift ``S`` in [16, 62]: ``g = round(gamma 2^(S-16) / s_out)``, ``b = round(beta 2^(S-16) / s_out)``
   (:func:`layernorm_params` picks ``S`` as large as int32 allows, offline).

Cycle model (the loop nests of layernorm.h; ``V`` = the GEMM array's lines, one element per line per
cycle): rows in tiles of :func:`ln_tile_rows` (half the activation buffer, at most ``max_tokens`` rows);
per tile a statistics pass (``s1`` and ``s2 = sum x^2`` of every row in one read: ``th ceil(D / V)``
iterations), the per-row scalar pipeline (mean, variance, root, reciprocal: ``th`` iterations, II 1, depth
three dividers and the root's stages) and the normalising pass from the on-chip tile (``th ceil(D / V)``).
``q`` comes out as ``s2 - 2 mu s1 + D mu^2``, the same integer as step 2's sum, so the bits are unchanged;
the scalar chain's latency is paid once per tile rather than once per row (it was 80% of a row's cycles
on the demo).
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import numpy as np

from vitaccel.hwconfig import HardwareConfig
from vitaccel.sim import schedule
from vitaccel.sim.common.dram import transfer_cycles
from vitaccel.sim.report import KernelReport

__all__ = ["layernorm_int", "layernorm_params", "layernorm_cycles", "isqrt", "LN_EPS_BITS", "LN_RECIP_BITS",
           "LN_SQRT_STEPS", "ln_depths", "ln_tile_rows", "MAX_D"]

#: Fractional bits of the variance (step 3); the standard deviation then has half as many.
LN_EPS_BITS = 16
#: 2^40 / sd (step 5).
LN_RECIP_BITS = 40
#: Iterations of the bit-by-bit square root: v < 2^52 has a root below 2^26.
LN_SQRT_STEPS = 26
#: Longest row.
MAX_D = 8192


def isqrt(v: np.ndarray) -> np.ndarray:
    """Floor square root of non-negative int64 values: what the hardware's bit-by-bit loop computes.

    The floor square root is unique (``r^2 <= v < (r + 1)^2``), so any exact method gives the loop's bits;
    this one is Python's integer ``math.isqrt`` per value (one per LayerNorm row: a few hundred calls cost
    less than the loop's 26 vector steps). ``tests/test_numerics_fast.py`` compares it with the loop."""
    v = np.asarray(v, dtype=np.int64)
    if (v < 0).any() or (v >= (1 << 2 * LN_SQRT_STEPS)).any():
        raise ValueError(f"isqrt takes values in [0, 2^{2 * LN_SQRT_STEPS})")
    return np.array([math.isqrt(t) for t in v.ravel().tolist()], dtype=np.int64).reshape(v.shape)


def layernorm_int(x, g, b, shift: int, eps: int) -> np.ndarray:
    """int16 ``x`` (..., D), int32 ``g`` and ``b`` (D,), ``shift`` S in [16, 62], ``eps`` >= 0 -> int8 (..., D)."""
    x = np.asarray(x)
    g = np.asarray(g)
    b = np.asarray(b)
    if x.dtype != np.int16 or x.ndim < 1:
        raise ValueError(f"x must be int16 (..., D), got {x.dtype} {x.shape}")
    d = x.shape[-1]
    if not 1 <= d <= MAX_D:
        raise ValueError(f"row length D={d} outside [1, {MAX_D}]")
    if g.dtype != np.int32 or b.dtype != np.int32 or g.shape != (d,) or b.shape != (d,):
        raise ValueError(f"g and b must be int32 ({d},), got {g.dtype} {g.shape} and {b.dtype} {b.shape}")
    if not 16 <= int(shift) <= 62:
        raise ValueError(f"shift must be in [16, 62], got {shift}")
    if not 0 <= int(eps) < (1 << 31):
        raise ValueError(f"eps must be in [0, 2^31), got {eps}")
    # int64 throughout, as the module doc's bounds need; steps in place where a temporary is not needed.
    s1 = x.sum(axis=-1, keepdims=True, dtype=np.int64)
    mu = (2 * s1 + d) // (2 * d)                       # floor division, as layernorm.h's floor_div
    c = np.subtract(x, mu, dtype=np.int64)
    q = np.einsum("...i,...i->...", c, c)[..., None]   # sum(c^2), exact in int64
    v = ((q // d) << LN_EPS_BITS) + (((q % d) << LN_EPS_BITS) // d) + int(eps)
    sd = np.maximum(isqrt(v), 1)
    r = (np.int64(1) << LN_RECIP_BITS) // sd
    n = np.multiply(c, r, out=c)
    n += 1 << 15
    n >>= 16
    s = int(shift)
    # n g + (b << 16) + 2^(S-1): the two per-channel terms added first (integer addition is associative).
    t = np.multiply(n, g.astype(np.int64), out=n)
    t += (b.astype(np.int64) << 16) + (np.int64(1) << (s - 1))
    t >>= s
    out = np.empty(t.shape, np.int8)
    np.clip(t, -128, 127, out=out, casting="unsafe")   # in [-128, 127] after the clip: the cast is exact
    return out


def layernorm_params(gamma, beta, out_scale: float, in_scale: float, eps: float = 1e-6) -> Dict[str, object]:
    """Offline (float): ``g``, ``b``, ``shift`` and ``eps`` of a LayerNorm whose input is int16 at
    ``in_scale`` and output int8 at ``out_scale``. ``shift`` is the largest S that keeps every g and b in
    int32 (the most precision)."""
    gamma = np.asarray(gamma, np.float64)
    beta = np.asarray(beta, np.float64)
    if not (np.isfinite(gamma).all() and np.isfinite(beta).all()):
        raise ValueError("gamma and beta must be finite")
    if not (out_scale > 0 and in_scale > 0 and math.isfinite(out_scale) and math.isfinite(in_scale)):
        raise ValueError(f"scales must be finite and > 0, got out {out_scale}, in {in_scale}")
    big = float(max(np.abs(gamma).max(initial=0.0), np.abs(beta).max(initial=0.0))) / out_scale
    e = 0 if big == 0 else math.floor(math.log2((2 ** 31 - 1) / big))
    s = int(min(62, max(16, 16 + e)))
    k = 2.0 ** (s - 16) / out_scale
    g = np.clip(np.rint(gamma * k), -(2 ** 31), 2 ** 31 - 1).astype(np.int32)
    b = np.clip(np.rint(beta * k), -(2 ** 31), 2 ** 31 - 1).astype(np.int32)
    # eps is in units of the real variance; v counts (x / in_scale)^2 with 16 fractional bits.
    eps_q = int(min(2 ** 31 - 1, round(eps / in_scale ** 2 * 2 ** LN_EPS_BITS)))
    return {"g": g, "b": b, "shift": s, "eps": eps_q}


# -- cycles ------------------------------------------------------------------------------------------------

def ln_depths(lanes: int) -> Tuple[int, int, int]:
    """Pipeline depths of the statistics pass, of the per-row scalar pipeline (three dividers and the
    square root's stages) and of the normalising pass."""
    return schedule.pipe_sum(lanes), 3 * schedule.PIPE_DIV + LN_SQRT_STEPS, schedule.PIPE_LN_NORM


def ln_tile_rows(cfg: HardwareConfig, rows: int, d: int) -> int:
    """layernorm.h ``tile_rows``: int16 rows of ``d`` in half the activation buffer, at most ``max_tokens``."""
    return min(rows, cfg.qkvs_buffer_kb * 1024 // 4 // d, cfg.max_tokens)


def layernorm_cycles(cfg: HardwareConfig, rows: int, d: int, *, name: str = "layernorm",
                     layer: Optional[int] = None) -> KernelReport:
    """Cycles of one LayerNorm over ``rows`` rows of ``d``: per tile the statistics pass, the scalar pipeline
    and the normalising pass; the int16 input and int8 output stream through the DRAM model."""
    if rows < 1 or not 1 <= d <= MAX_D:
        raise ValueError(f"rows must be >= 1 and d in [1, {MAX_D}], got rows={rows}, d={d}")
    lanes = cfg.gemm_array[0]
    chunks = -(-d // lanes)
    p_stats, p_scalar, p_norm = ln_depths(lanes)
    t = ln_tile_rows(cfg, rows, d)
    compute = 0
    for r0 in range(0, rows, t):
        th = min(t, rows - r0)
        compute += th * chunks + p_stats + th + p_scalar + th * chunks + p_norm
    load = transfer_cycles(cfg, 2 * rows * d) + transfer_cycles(cfg, 8 * d)
    store = transfer_cycles(cfg, rows * d)
    dram = 2 * rows * d + 8 * d + rows * d
    return KernelReport("layernorm", name, layer, compute, 0, load + store, 0, 0, dram,
                        {"vector": compute, "dma": load + store}, [], [])
