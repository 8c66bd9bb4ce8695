"""The RMMU of bit-serial PEs (hls/revit/rmmu/rmmu.h) against its NumPy model (vitaccel.sim.revit.rmmu):
the bits equal the functional definitions of vitaccel.sim.revit.differential, the C-simulation equals the
model bit for bit, and the C++'s own counters equal the cycle model exactly (the drift test)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from vitaccel.hwconfig import load_config
from vitaccel.sim.revit import csim_engines as ce
from vitaccel.sim.revit import golden as rg
from vitaccel.sim.revit.booth import booth_terms
from vitaccel.sim.revit.differential import centroids_int, diff_output, diff_projection, diff_scores, imatmul
from vitaccel.sim.revit.rmmu import RbspCycles, rbsp_cycles, rbsp_pass, rmmu_output, rmmu_project, rmmu_scores
from vitaccel.sim.revit.schedule import pipe_rbsp, PIPE_CODE, PIPE_LIST

pytestmark = pytest.mark.csim

CONFIG = "revit-paper"


@pytest.fixture(scope="module")
def lib():
    return ce.engines_library(CONFIG)


def _rbsp_counters(t: dict) -> RbspCycles:
    return RbspCycles(**{f.name: t[f"rbsp_{f.name}"] for f in dataclasses.fields(RbspCycles)})


def test_schedule_constants_agree(lib):
    cfg = load_config(CONFIG)
    s = lib.schedule
    assert (s["rmmu_cols"], s["rmmu_lanes"], s["g_pes"], s["p_pes"], s["simd_lanes"]) == (
        cfg.rmmu_cols, cfg.rmmu_lanes, cfg.g_pes, cfg.p_pes, cfg.simd_lanes)
    assert (s["pipe_rbsp"], s["pipe_code"], s["pipe_list"]) == (pipe_rbsp(cfg.rmmu_lanes), PIPE_CODE, PIPE_LIST)
    assert s["serial_bits"] == 10 and lib.config_hash32() == cfg.hash32


def test_cycle_rule_by_hand():
    # One column, 2 lanes: the step costs the slower lane's digits (42 -> 4 digits), zero steps cost 1.
    assert rbsp_cycles(np.array([[42, 1]]), 1, 1, 2).steps == 4
    assert rbsp_cycles(np.array([[0, 0]]), 3, 1, 2).steps == 3
    # Two columns in lock step share the slowest; decoupled (sync 1) the tile waits for the slower only once
    # over all its rows; on two one-column tiles they run one after the other.
    s = np.array([[42, 0], [1, 0]])
    assert rbsp_cycles(s, 1, 2, 2).steps == 4 and rbsp_cycles(s, 1, 1, 2).steps == 4 + 1
    s2 = np.array([[42, 1], [1, 42]])   # chunk 0: 4 vs 1 digits; chunk 1 (lanes 2..3 empty) none
    assert rbsp_cycles(np.array([[42, 0, 1, 0], [1, 0, 42, 0]]), 1, 2, 2, sync=2).steps == 8
    assert rbsp_cycles(np.array([[42, 0, 1, 0], [1, 0, 42, 0]]), 1, 2, 2, sync=1).steps == 5
    del s2
    c = rbsp_cycles(s, 5, 1, 2)
    assert (c.tiles, c.steps, c.cycles, c.terms) == (2, 25, 25 + 2 * pipe_rbsp(2), 5 * 5)


# -- the pass: C-sim == NumPy, bits and every counter ----------------------------------------------------

PASS_CASES = [  # (C, K, O, cols, kind)
    (1, 1, 1, 1, "raw"), (5, 17, 3, 4, "raw"), (64, 64, 2, 64, "delta"), (65, 65, 2, 64, "delta"),
    (70, 200, 3, 9, "extreme"), (3, 9, 2, 1, "zero"), (200, 96, 1, 64, "delta"), (17, 321, 4, 17, "raw"),
]


@pytest.mark.parametrize("c,k,o,cols,kind", PASS_CASES)
@pytest.mark.parametrize("sync", ["one", "three", "all"])
def test_pass_matches_model_bits_and_counters(lib, c, k, o, cols, kind, sync):
    sync = {"one": 1, "three": 3, "all": cols}[sync]
    rng = np.random.default_rng(c * 1009 + k * 31 + o)
    s = {"raw": lambda: rng.integers(-128, 128, (c, k)), "delta": lambda: rng.integers(-7, 8, (c, k)),
         "extreme": lambda: rng.choice([-512, 511, -256, 255, 170, -171, 0], (c, k)),
         "zero": lambda: np.zeros((c, k), np.int64)}[kind]()
    b = rng.integers(-(1 << 17), 1 << 17, (o, k))
    want, cyc = rbsp_pass(s, b, cols, load_config(CONFIG).rmmu_lanes, sync)
    exact = b @ s.T
    assert np.array_equal(want, ((exact + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32))
    lib.perf_reset()
    got, cycles = ce.csim_rbsp_pass(s, b, cols, CONFIG, sync=sync)
    assert np.array_equal(got, want)
    assert cycles == cyc.cycles and _rbsp_counters(lib.perf_totals()) == cyc


def test_pass_refuses_wide_operands_and_bad_dims(lib):
    with pytest.raises(ce.CsimEngineError) as e:
        ce.csim_rbsp_pass(np.array([[512]]), np.array([[1]]), 1, CONFIG)
    assert e.value.status == 0x812
    with pytest.raises(ValueError, match="10-bit"):
        rbsp_pass(np.array([[-513]]), np.array([[1]]), 1, 64)
    for cols in (0, 65):
        with pytest.raises(ce.CsimEngineError) as e:
            ce.csim_rbsp_pass(np.array([[1]]), np.array([[1]]), cols, CONFIG)
        assert e.value.status == 0x811


# -- the three uses: == the functional definitions, C-sim == NumPy ---------------------------------------

def _groups(rng, n, g, mix):
    if mix == "one":           # every token in group 0
        return np.zeros(n, np.int64)
    gr = rng.integers(0, g, n)
    if mix == "single":         # a group of one and an empty group
        gr[gr == g - 1] = 0
        gr[0] = g - 1
        gr[gr == 1] = 2 % g
    return gr


@pytest.mark.parametrize("n,dm,g,mix,cols", [(40, 48, 4, "random", 64), (23, 96, 4, "single", 7),
                                             (17, 32, 2, "one", 64), (65, 24, 3, "random", 16)])
def test_projection_equals_the_differential_definition(lib, n, dm, g, mix, cols):
    sync = 1 + n % 5
    rng = np.random.default_rng(n + dm + g)
    x8 = rg.similar_tokens(rng, 1, n, dm, spread=20) if mix == "one" else rng.integers(-128, 128, (n, dm)).astype(np.int8)
    w = rng.integers(-128, 128, (3 * dm, dm)).astype(np.int8)
    bias = rng.integers(-5000, 5000, 3 * dm).astype(np.int32)
    groups = _groups(rng, n, g, mix)
    acc, _, _, _ = diff_projection(x8, groups, g, w, bias)
    xc, counts = centroids_int(x8, groups, g)
    for gg in np.flatnonzero(counts):
        idx = np.flatnonzero(groups == gg)
        for delta in (True, False):
            want, cyc = rmmu_project(x8[idx], xc[gg], w, bias, delta=delta, cols=cols, lanes=64, sync=sync)
            assert np.array_equal(want.astype(np.int64), acc[idx])
            lib.perf_reset()
            got, cycles = ce.csim_rmmu_project(x8[idx], xc[gg], w, bias, delta=delta, cols=cols, config=CONFIG,
                                               sync=sync)
            assert np.array_equal(got, want) and cycles == cyc.cycles
            assert _rbsp_counters(lib.perf_totals()) == cyc


@pytest.mark.parametrize("l,e,d,cols", [(1, 0, 32, 64), (9, 3, 32, 4), (40, 0, 64, 64), (70, 2, 17, 13), (0, 3, 32, 8)])
def test_scores_and_output_equal_the_differential_definitions(lib, l, e, d, cols):
    sync = 1 + l % 4
    rng = np.random.default_rng(l * 7 + e * 3 + d)
    h = 1
    k8 = rng.integers(-128, 128, (max(l, 1), d)).astype(np.int8)[:l]
    v8 = rng.integers(-128, 128, (max(l, 1), d)).astype(np.int8)[:l]
    q8 = rng.integers(-128, 128, (max(l, 2), d)).astype(np.int8)
    kc8 = rng.integers(-128, 128, d).astype(np.int8)
    vc8 = rng.integers(-128, 128, d).astype(np.int8)
    ke = rng.integers(-128, 128, (e, d)).astype(np.int8)
    ve = rng.integers(-128, 128, (e, d)).astype(np.int8)
    p = rng.integers(0, 256, (q8.shape[0], l + e)).astype(np.uint8)
    dk = k8.astype(np.int16) - kc8.astype(np.int16)
    dv = v8.astype(np.int16) - vc8.astype(np.int16)
    s_want = np.concatenate([diff_scores(q8[None], kc8[None], dk[None])[0] if l else np.zeros((q8.shape[0], 0), np.int64),
                             imatmul(q8, ke.T)], 1)
    z_want = (diff_output(p[None, :, :l], vc8[None], dv[None])[0] if l else 0) + imatmul(p[:, l:], ve)
    for delta in (True, False):
        s, cs = rmmu_scores(q8, k8, kc8, ke, delta=delta, cols=cols, lanes=64, sync=sync)
        z, cz = rmmu_output(p, v8, vc8, ve, delta=delta, cols=cols, lanes=64, sync=sync)
        assert np.array_equal(s, s_want) and np.array_equal(z, z_want)
        lib.perf_reset()
        s2, c2 = ce.csim_rmmu_scores(q8, k8, kc8, ke, delta=delta, cols=cols, config=CONFIG, sync=sync)
        assert np.array_equal(s2, s) and c2 == cs.cycles and _rbsp_counters(lib.perf_totals()) == cs
        lib.perf_reset()
        z2, c3 = ce.csim_rmmu_output(p, v8, vc8, ve, delta=delta, cols=cols, config=CONFIG, sync=sync)
        assert np.array_equal(z2, z) and c3 == cz.cycles and _rbsp_counters(lib.perf_totals()) == cz
    del h


# -- real demo inputs: the first layer of a shipped-demo image, every group ---------------------------------

@pytest.fixture(scope="module")
def demo_layer():
    from vitaccel.host.bundle import load_bundle
    from vitaccel.sim.revit.model import compile_revit, run_revit

    demo = Path(__file__).resolve().parents[1] / "models" / "demo"
    bundle = load_bundle(demo / "revit.vcb")
    img = np.load(demo / "test_images.npz")["images"][:1]
    tr = run_revit(bundle, img, trace=True).traces[0][0]
    return compile_revit(bundle).layers[0], tr


def test_demo_layer_projection_bits_cycles_and_effectual_terms(lib, demo_layer):
    lp, tr = demo_layer
    ap = lp.attn
    x8 = tr["h8"][1:]
    groups = tr["groups"]
    G = ap.num_groups
    acc, _, _, dx = diff_projection(x8, groups, G, ap.qkv_weight, ap.qkv_bias)
    xc, counts = centroids_int(x8, groups, G)
    # Effectual terms per element: deltas to the group centroid against the raw tokens (the RBSP's gain).
    raw_terms, delta_terms = booth_terms(x8).mean(), booth_terms(dx, 10).mean()
    assert delta_terms < raw_terms
    tot = {}
    for sync in (1, 64):
        for gg in np.flatnonzero(counts):
            idx = np.flatnonzero(groups == gg)
            for delta in (True, False):
                want, cyc = rmmu_project(x8[idx], xc[gg], ap.qkv_weight, ap.qkv_bias, delta=delta, cols=64, lanes=64,
                                         sync=sync)
                assert np.array_equal(want.astype(np.int64), acc[idx])
                got, cycles = ce.csim_rmmu_project(x8[idx], xc[gg], ap.qkv_weight, ap.qkv_bias, delta=delta, cols=64,
                                                   config=CONFIG, sync=sync)
                assert np.array_equal(got, want) and cycles == cyc.cycles
                tot[sync, delta] = tot.get((sync, delta), 0) + cyc.cycles
    # Decoupled columns never take longer than the sub-array in lock step (a max of sums <= a sum of maxes).
    # Whether deltas beat raw tokens depends on the image: a step waits for its worst lane, and a 9-bit delta
    # can have 5 digits where an int8 has at most 4 (KERNELS.md has the demo's figures).
    assert tot[1, True] <= tot[64, True] and tot[1, False] <= tot[64, False]
