"""A quick, user-facing check of the kernel contract: NumPy integer numerics against float references,
and against the HLS C++ compiled for C-simulation when g++ and hls4ml are present.

The tests go much further; this is what ``vitaccel selfcheck`` runs on a user's machine (or a board) to
show the arithmetic they are about to trust.
"""
from __future__ import annotations

import time
from typing import Dict, List, Optional

import numpy as np

from vitaccel.sim import numerics as nx

#: Most random rows per check: each case costs about 1.6 KB at the peak (a 197-wide row in int64 and
#: float64 with its mask), so 100,000 cases stay near 160 MB, and `--cases 100000000` cannot ask for 147 GiB.
MAX_CASES = 100_000
#: Largest |p_int/256 - p_float| the integer softmax may show; see NUMERICS.md.
SOFTMAX_TOL = 2.0 / 256


def _random_rows(rng: np.random.Generator, cases: int, n: int = 197):
    scores = rng.integers(-(1 << 15), 1 << 15, size=(cases, n), dtype=np.int64).astype(np.int32)
    keep = rng.random((cases, n)) < rng.uniform(0.05, 1.0, size=(cases, 1))
    keep[:, 0] = True  # the CLS column is always kept
    return scores, keep


def check_softmax_vs_float(cases: int, seed: int) -> Dict:
    rng = np.random.default_rng(seed)
    scores, keep = _random_rows(rng, cases)
    worst = 0.0
    for scale in (1e-4, 1e-3, 4e-3):
        m, s = nx.softmax_params(scale)
        p = nx.softmax(scores, keep, m, s).astype(np.float64) / 256
        z = np.where(keep, scores.astype(np.float64) * scale, -np.inf)
        z = z - z.max(axis=-1, keepdims=True)
        ref = np.where(keep, np.exp(z), 0.0)
        ref /= ref.sum(axis=-1, keepdims=True)
        worst = max(worst, float(np.max(np.abs(p - ref))))
    ok = worst <= SOFTMAX_TOL
    return {"name": "integer softmax vs float softmax", "status": "pass" if ok else "fail",
            "detail": f"max |error| {worst:.5f} over {3 * cases} rows (tolerance {SOFTMAX_TOL:.5f})",
            "max_error": worst}


def check_requant_vs_float(cases: int, seed: int) -> Dict:
    rng = np.random.default_rng(seed + 1)
    acc = rng.integers(-(1 << 20), 1 << 20, size=cases * 16).astype(np.int32)
    real = rng.uniform(1e-6, 1e-2, size=acc.shape)
    ms = [nx.quantize_multiplier(r) for r in real]
    m = np.array([a for a, _ in ms], dtype=np.int64)
    s = np.array([b for _, b in ms], dtype=np.int64)
    y = nx.requantize(acc, m, s).astype(np.float64)
    ref = np.clip(acc * real, -128, 127)
    worst = float(np.max(np.abs(y - ref)))
    ok = worst <= 0.5 + 1e-6
    return {"name": "requantize vs float rounding", "status": "pass" if ok else "fail",
            "detail": f"max |error| {worst:.4f} LSB over {acc.size} values (tolerance 0.5 LSB)",
            "max_error": worst}


def check_csim(cases: int, seed: int, required: Optional[bool], config: str) -> List[Dict]:
    name = "C-simulation (g++ + ap_types) == NumPy, bit for bit"
    if required is False:
        return [{"name": name, "status": "skip", "detail": "--no-csim given"}]
    try:
        from vitaccel.sim import csim
    except ImportError as e:  # pragma: no cover - the module ships with the package
        return [{"name": name, "status": "fail", "detail": f"cannot import the harness: {e}"}]
    try:
        t0 = time.perf_counter()
        rng = np.random.default_rng(seed + 2)
        scores, keep = _random_rows(rng, cases)
        m, s = nx.softmax_params(2e-3)
        got = csim.csim_softmax(scores, keep, m, s, config=config)
        want = nx.softmax(scores, keep, m, s)
        acc = rng.integers(-(1 << 31), 1 << 31, size=cases * 16, dtype=np.int64).astype(np.int32)
        mult = rng.integers(0, 1 << 31, size=acc.shape, dtype=np.int64).astype(np.int32)
        shift = rng.integers(0, 64, size=acc.shape).astype(np.int32)
        got_r = csim.csim_requantize(acc, mult, shift, config=config)
        want_r = nx.requantize(acc, mult, shift)
        dt = time.perf_counter() - t0
    except csim.CsimUnavailable as e:
        status = "fail" if required else "skip"
        return [{"name": name, "status": status, "detail": str(e)}]
    bad_s = int(np.count_nonzero(got != want))
    bad_r = int(np.count_nonzero(got_r != want_r))
    ok = bad_s == 0 and bad_r == 0
    return [{"name": name, "status": "pass" if ok else "fail",
             "detail": f"softmax {cases} rows, requantize {acc.size} values: {bad_s + bad_r} mismatches "
                       f"({dt:.1f} s incl. compile or cache load)"}]


def run(cases: int = 2000, seed: int = 0, csim: Optional[bool] = None, config: str = "paper") -> Dict:
    if isinstance(cases, bool) or not isinstance(cases, (int, np.integer)) or not 1 <= cases <= MAX_CASES:
        raise ValueError(f"cases (--cases) must be an integer in [1, {MAX_CASES}], got {cases!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 63:
        raise ValueError(f"seed (--seed) must be an integer in [0, 2^63), got {seed!r}")
    checks = [check_softmax_vs_float(cases, seed), check_requant_vs_float(cases, seed)]
    checks += check_csim(cases, seed, csim, config)
    return {"numerics_version": nx.NUMERICS_VERSION, "checks": checks}
