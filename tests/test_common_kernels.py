"""The common vector kernels of the integer whole model (issue #10): integer LayerNorm, the residual add
and the activation table. NumPy model == HLS C++ (C-simulation) bit for bit on random and extreme inputs,
the C++'s loop counters == the Python cycle model, and the float reference within the stated tolerance."""
from __future__ import annotations

import math

import numpy as np
import pytest

from vitaccel.hwconfig import load_config
from vitaccel.sim import golden
from vitaccel.sim.common.csim_vector import csim_add, csim_layernorm, csim_lut
from vitaccel.sim.common.eltwise import add_cycles, add_params, add_requant, gelu_table, lut_cycles, lut_int8
from vitaccel.sim.common.layernorm import isqrt, layernorm_cycles, layernorm_int, layernorm_params, ln_tile_rows
from vitaccel.sim.vitcod import csim_kernels as ck

CONFIGS = ["paper", "pynq-z2"]


def test_isqrt_is_the_floor_square_root():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.integers(0, 1 << 52, 20000), np.arange(0, 2000), [(1 << 52) - 1, 1 << 50]])
    r = isqrt(v)
    assert ((r * r <= v) & ((r + 1) * (r + 1) > v)).all()
    with pytest.raises(ValueError):
        isqrt([-1])


def test_layernorm_hand_made():
    # One row 0, 10, 20, 30: mean 15, c = -15 -5 5 15, var 125 -> sd 11.18; gamma 1, beta 0, out scale
    # 1/64: y = 64 c / 11.18 = -85.9 -28.6 28.6 85.9 -> -86 -29 29 86.
    p = layernorm_params(np.ones(4), np.zeros(4), out_scale=1 / 64, in_scale=1.0, eps=0.0)
    y = layernorm_int(np.array([[0, 10, 20, 30]], np.int16), p["g"], p["b"], p["shift"], p["eps"])
    assert y.tolist() == [[-86, -29, 29, 86]]
    # A constant row has zero variance: every output is beta's.
    p = layernorm_params(np.ones(3), np.array([0.5, -0.25, 0.0]), out_scale=1 / 64, in_scale=1.0, eps=0.0)
    assert layernorm_int(np.full((1, 3), 7, np.int16), p["g"], p["b"], p["shift"], 0).tolist() == [[32, -16, 0]]


@pytest.mark.parametrize("d", [96, 768])
def test_layernorm_against_float(d):
    rng = np.random.default_rng(d)
    errs = []
    for _ in range(5):
        s_in, s_out = float(rng.uniform(0.002, 0.05)), float(rng.uniform(0.02, 0.06))
        x = np.clip(np.rint(rng.normal(size=(64, d)) * rng.uniform(30, 3000)), -32768, 32767).astype(np.int16)
        gamma, beta = rng.normal(1, 0.3, d), rng.normal(0, 0.2, d)
        p = layernorm_params(gamma, beta, s_out, s_in, eps=1e-6)
        y = layernorm_int(x, p["g"], p["b"], p["shift"], p["eps"]).astype(np.int64)
        xf = x * s_in
        ref = (xf - xf.mean(-1, keepdims=True)) / np.sqrt(xf.var(-1, keepdims=True) + 1e-6) * gamma + beta
        errs.append(np.abs(y - np.clip(ref / s_out, -128, 127)))
    err = np.concatenate(errs)
    # Stated tolerance (NUMERICS.md): within 1 LSB of the float LayerNorm, 0.25 LSB on average.
    assert err.max() <= 1.0 and err.mean() <= 0.25, (err.max(), err.mean())


@pytest.mark.csim
@pytest.mark.parametrize("config", CONFIGS)
def test_layernorm_csim_is_bit_exact_and_counts_the_model_cycles(config):
    cfg = load_config(config)
    rng = np.random.default_rng(7)
    # Several tiles too: 300 rows of 96 (256 a tile), 70 of 768 (42 a tile), 3 of 8192 (2 a tile on pynq-z2).
    for rows, d, extreme in [(4, 1, False), (5, 7, True), (33, 96, True), (9, 768, False), (2, 1000, True),
                             (3, 8192, False), (300, 96, True), (70, 768, True)]:
        x, g, b, s, eps = golden.layernorm_vectors(rng, rows, d, extreme=extreme)
        ck.perf_reset(config)
        got = csim_layernorm(x, g, b, s, eps, config)
        assert np.array_equal(got, layernorm_int(x, g, b, s, eps)), (rows, d)
        tot = ck.perf_totals(config)
        rep = layernorm_cycles(cfg, rows, d)
        assert tot["ln_calls"] == 1 and tot["ln_compute"] == rep.compute
        tiles = -(-rows // ln_tile_rows(cfg, rows, d))
        assert (tiles > 1) == ((rows, d) in ((300, 96), (70, 768)) or (config == "pynq-z2" and d == 8192))
        assert tot["ln_bytes_in"] + tot["ln_bytes_out"] == rep.dram_bytes


@pytest.mark.csim
@pytest.mark.parametrize("config", CONFIGS)
def test_add_csim_is_bit_exact_and_counts_the_model_cycles(config):
    cfg = load_config(config)
    rng = np.random.default_rng(3)
    for trial in range(40):
        n = int(rng.choice([1, 7, 64, 1000, 197 * 96]))
        ta, tb = (np.int16 if rng.random() < 0.5 else np.int8 for _ in range(2))
        a = rng.integers(np.iinfo(ta).min, np.iinfo(ta).max + 1, n).astype(ta)
        b = rng.integers(np.iinfo(tb).min, np.iinfo(tb).max + 1, n).astype(tb)
        if trial % 5 == 0:
            a[:] = np.iinfo(ta).min
        ma, mb = (int(rng.choice([0, 1, 1 << 20, (1 << 31) - 1, int(rng.integers(0, 1 << 31))])) for _ in range(2))
        s = int(rng.choice([0, 1, 15, 31, 46, 62]))
        out = 8 if rng.random() < 0.3 else 16
        ck.perf_reset(config)
        got = csim_add(a, ma, b, mb, s, out, config)
        assert np.array_equal(got, add_requant(a, ma, b, mb, s, out)), (trial, ma, mb, s, out)
        tot = ck.perf_totals(config)
        rep = add_cycles(cfg, n, a.itemsize, b.itemsize, out)
        assert tot["elt_compute"] == rep.compute and tot["elt_bytes_in"] + tot["elt_bytes_out"] == rep.dram_bytes


@pytest.mark.csim
def test_lut_csim_is_bit_exact_and_counts_the_model_cycles():
    cfg = load_config("paper")
    rng = np.random.default_rng(5)
    table = rng.integers(-128, 128, 256).astype(np.int8)
    x = np.concatenate([np.arange(-128, 128), rng.integers(-128, 128, 5000)]).astype(np.int8)
    ck.perf_reset("paper")
    assert np.array_equal(csim_lut(x, table), lut_int8(x, table))
    tot = ck.perf_totals("paper")
    rep = lut_cycles(cfg, x.size)
    assert tot["elt_compute"] == rep.compute and tot["elt_bytes_in"] + tot["elt_bytes_out"] == rep.dram_bytes


def test_add_params_and_gelu_table():
    ma, mb, s = add_params(0.01, 0.04, 0.02)
    assert abs(ma / 2 ** s - 0.5) < 1e-9 and abs(mb / 2 ** s - 2.0) < 1e-9 and mb < 2 ** 31
    a = np.array([100, -100, 3], np.int16)
    b = np.array([10, -10, 0], np.int8)
    assert add_requant(a, ma, b, mb, s, 16).tolist() == [70, -70, 2]     # 50 + 20; -50 - 20; 1.5 -> 2
    t = gelu_table(0.05, 0.02)
    q = np.arange(-128, 128) * 0.05
    ref = 0.5 * q * (1 + np.array([math.erf(v / math.sqrt(2)) for v in q])) / 0.02
    assert np.abs(t - np.clip(ref, -128, 127)).max() <= 0.5 + 1e-9
    with pytest.raises(ValueError, match="shift must be in"):
        add_requant(a, ma, b, mb, 63)
    with pytest.raises(ValueError, match="ma must be in"):
        add_requant(a, -1, b, mb, 5)
