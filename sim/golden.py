"""Test vectors: the seeded random inputs the C-simulation tests use, and golden case folders for the HLS
testbenches (``hls/<common|vitcod>/<kernel>/<kernel>_tb.cpp``), written from the simulator's functional models.

``vitaccel golden --out DIR`` writes every kernel's cases; ``build.tcl``'s csim step runs each testbench on
them in Vitis HLS, and ``tests/test_csim_kernels.py`` with g++. A case folder holds ``params.txt`` (``name
value`` lines) and one raw little-endian ``<array>.bin`` per input plus ``expected.bin``.
"""
from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from vitaccel.hwconfig import load_config
from vitaccel.sim import numerics as nx
from vitaccel.sim.vitcod.descriptors import pack_mask_bits
from vitaccel.sim.vitcod.attention import AEParams, SparsePlan, attention_int
from vitaccel.sim.vitcod.autoencoder import ae_encode, mix_heads
from vitaccel.sim.common.gemm import gemm
from vitaccel.sim.vitcod.sparse_format import order_from_globals

__all__ = ["write_cases", "write_golden", "rand_i8", "quant_for", "vitcod_mask", "plan_with", "random_ae",
           "attention_params", "special_rows"]


def rand_i8(rng, shape) -> np.ndarray:
    return rng.integers(-128, 128, shape, dtype=np.int8)


def quant_for(acc_std: float, rng, n: Optional[int] = None):
    """Multipliers and shifts that put an accumulator of std acc_std around +-40 (informative int8)."""
    ratio = 40.0 / max(acc_std, 1.0)
    if n is None:
        return nx.quantize_multiplier(ratio)
    pairs = [nx.quantize_multiplier(ratio * 2.0 ** rng.uniform(-1, 1)) for _ in range(n)]
    return np.array([m for m, _ in pairs], np.int32), np.array([s for _, s in pairs], np.int32)


def vitcod_mask(rng, h: int, n: int, density: float = 0.1, n_glob: int = 3) -> np.ndarray:
    """A ViTCoD-like mask: CLS row and column, a diagonal band, a few global columns, random entries."""
    m = rng.random((h, n, n)) < density
    idx = np.arange(n)
    m[:, idx, idx] = True
    m[:, idx[1:], idx[:-1]] = True
    m[:, 0, :] = True
    m[:, :, 0] = True
    for hh in range(h):
        cols = rng.choice(n, size=min(n_glob, n), replace=False)
        m[hh][:, cols] |= rng.random((n, cols.size)) < 0.9
    return m


def plan_with(mask: np.ndarray, mode: str, rng, config="paper") -> SparsePlan:
    """A plan whose denser part is: 'none' (n_global = 0), 'all' (n_global = N), 'auto' (the config's
    threshold), or 'shuffled' (random global columns listed in a random order, as sparse_format allows)."""
    h, n, _ = mask.shape
    if mode == "none":
        return SparsePlan.from_mask(mask, np.tile(np.arange(n, dtype=np.int32), (h, 1)), np.zeros(h, np.int32))
    if mode == "all":
        return SparsePlan.from_mask(mask, np.tile(np.arange(n, dtype=np.int32), (h, 1)), np.full(h, n, np.int32))
    if mode == "auto":
        return SparsePlan.from_mask(mask, config=load_config(config))
    assert mode == "shuffled"
    is_global = rng.random((h, n)) < 0.3
    is_global[0, :] = False  # one head with nothing global
    order, n_global = order_from_globals(is_global)
    for hh in range(h):
        g = int(n_global[hh])
        order[hh, :g] = rng.permutation(order[hh, :g])
    return SparsePlan.from_mask(mask, order, n_global)


def random_ae(rng, h: int, hc: int) -> AEParams:
    em, es = nx.quantize_multiplier(1.0 / (12 * h))
    dm, ds = nx.quantize_multiplier(1.0 / (12 * hc))
    return AEParams(rng.integers(-32, 33, (hc, h), dtype=np.int8), rng.integers(-500, 500, hc).astype(np.int32),
                    em, es, rng.integers(-32, 33, (h, hc), dtype=np.int8), rng.integers(-500, 500, h).astype(np.int32),
                    dm, ds)


def attention_params(d: int):
    # q . k of random int8 vectors has std ~ 74^2 sqrt(d); spread the real scores over a few units.
    m_exp, s_exp = nx.softmax_params(2.0 / (74.0 ** 2 * math.sqrt(d)))
    m_out, s_out = nx.quantize_multiplier(2.0 ** -8 * 3.0)
    return m_exp, s_exp, m_out, s_out


def special_rows(mask: np.ndarray) -> np.ndarray:
    """An all-kept row, a row with only CLS kept and a row with nothing kept in every head; in head 0 also a
    key nobody attends to (an empty CSC column)."""
    m = mask.copy()
    n = m.shape[1]
    m[:, n // 2, :] = True
    if n > 4:
        m[0, :, n - 2] = False
    if n > 2:
        m[:, n - 1, :] = False
        m[:, n - 1, 0] = True
    if n > 3:
        m[:, 1, :] = False
    return m


def _write_case(folder: Path, params: Dict[str, int], arrays: Dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    (folder / "params.txt").write_text("".join(f"{k} {int(v)}\n" for k, v in params.items()))
    for name, a in arrays.items():
        np.ascontiguousarray(a).tofile(folder / f"{name}.bin")
    return folder


def gemm_cases(root: Path, config="paper") -> List[Path]:
    cases = []
    for i, (m, k, o) in enumerate([(5, 17, 3), (20, 773, 70), (33, 64, 130)]):
        rng = np.random.default_rng(500 + i)
        x, w = rand_i8(rng, (m, k)), rand_i8(rng, (o, k))
        bias = rng.integers(-(1 << 16), 1 << 16, o).astype(np.int32)
        mult, shift = quant_for(74.0 ** 2 * math.sqrt(k), rng, o)
        cases.append(_write_case(root / f"gemm{i}", dict(M=m, K=k, O=o), dict(
            x=x, w=w, bias=bias, mult=mult, shift=shift, expected=gemm(x, w, bias, mult, shift))))
    return cases


def ae_cases(root: Path, config="paper") -> List[Path]:
    cases = []
    for i, (h, c, n, d) in enumerate([(12, 6, 65, 64), (3, 2, 5, 32)]):
        rng = np.random.default_rng(600 + i)
        x, w = rand_i8(rng, (h, n, d)), rand_i8(rng, (c, h))
        b = rng.integers(-999, 999, c).astype(np.int32)
        m, s = quant_for(74.0 ** 2 * math.sqrt(h), rng)
        cases.append(_write_case(root / f"ae{i}", dict(Hin=h, C=c, N=n, d=d, mult=m, shift=s),
                                 dict(x=x, w=w, b=b, expected=mix_heads(x, w, b, m, s))))
    return cases


def attention_cases(root: Path, config="paper") -> List[Path]:
    cases = []
    for i, (h, n, d, mode, hc) in enumerate([(3, 17, 32, "shuffled", 2), (6, 65, 64, "auto", 0),
                                             (3, 5, 64, "none", 0)]):
        rng = np.random.default_rng(700 + i)
        q, k, v = (rand_i8(rng, (h, n, d)) for _ in range(3))
        mask = special_rows(vitcod_mask(rng, h, n))
        plan = plan_with(mask, mode, rng, config)
        ae = (random_ae(rng, h, hc), random_ae(rng, h, hc)) if hc else None
        m_exp, s_exp, m_out, s_out = attention_params(d)
        params = dict(H=h, N=n, d=d, Hc=hc, nnz=plan.rowidx.size, m_exp=m_exp, s_exp=s_exp, m_out=m_out,
                      s_out=s_out)
        arrays = dict(q=q, k=k, v=v, maskbits=pack_mask_bits(plan), order=plan.order, n_global=plan.n_global,
                      colptr=plan.colptr, headptr=plan.headptr, rowidx=plan.rowidx,
                      expected=attention_int(q, k, v, mask, m_exp, s_exp, m_out, s_out, ae=ae))
        if ae:
            arrays["q"] = ae_encode(q, ae[0].enc_weight, ae[0].enc_bias, ae[0].enc_mult, ae[0].enc_shift)
            arrays["k"] = ae_encode(k, ae[1].enc_weight, ae[1].enc_bias, ae[1].enc_mult, ae[1].enc_shift)
            arrays.update(dq_w=ae[0].dec_weight, dq_b=ae[0].dec_bias, dk_w=ae[1].dec_weight, dk_b=ae[1].dec_bias)
            params.update(dq_m=ae[0].dec_mult, dq_s=ae[0].dec_shift, dk_m=ae[1].dec_mult, dk_s=ae[1].dec_shift)
        cases.append(_write_case(root / f"attention{i}", params, arrays))
    return cases


def write_cases(kernel: str, root, config="paper") -> List[Path]:
    """Write ``kernel``'s golden cases (a kernel of ``config``'s accelerator, :mod:`vitaccel.accelerators`)
    as folders under ``root`` (which must not hold them yet)."""
    spec = load_config(config).spec
    k = spec.kernel(kernel)
    module, _, name = k.golden.partition(":")
    return getattr(importlib.import_module(module), name)(Path(root), config)


def write_golden(root, config="paper") -> Dict[str, List[Path]]:
    """Every kernel's cases of ``config``'s accelerator under ``root/<kernel>/``: what ``build.tcl``'s csim
    step feeds the testbenches."""
    root = Path(root)
    return {k.name: write_cases(k.name, root / k.name, config) for k in load_config(config).spec.kernels}
