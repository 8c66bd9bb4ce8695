"""The semantic group generation engine (hls/revit/groupgen/groupgen.h) against its NumPy model
(vitaccel.sim.revit.groupgen): groups equal lsh_groups_int, member lists and sizes are a stable counting
sort, C-sim == NumPy bit for bit, and the C++ counters equal the cycle model nest by nest."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitaccel.hwconfig import load_config
from vitaccel.sim.revit import csim_engines as ce
from vitaccel.sim.revit.golden import hash_inputs
from vitaccel.sim.revit.groupgen import generate_groups
from vitaccel.sim.revit.lsh import lsh_groups_int
from vitaccel.sim.revit.schedule import PIPE_CODE, PIPE_LIST, pipe_argmax

pytestmark = pytest.mark.csim


def _same(r, got):
    groups, counts, members, cycles = got
    assert np.array_equal(groups, r.groups) and np.array_equal(counts, r.counts)
    assert np.array_equal(members, r.members) and cycles == r.cycles


@pytest.mark.parametrize("config", ["revit-paper", "revit-pynq-z2"])
@pytest.mark.parametrize("n,d,g,kind", [(1, 8, 1, "random"), (196, 96, 4, "clustered"), (196, 96, 4, "random"),
                                        (37, 48, 7, "ties"), (64, 24, 64, "random"), (255, 384, 4, "clustered"),
                                        (5, 200, 16, "random")])
def test_engine_matches_model_and_lsh(config, n, d, g, kind):
    rng = np.random.default_rng(n * 31 + d * 7 + g)
    x, a, b, m, s = hash_inputs(rng, n, d, g, kind)
    r = generate_groups(x, a, b, m, s, config)
    assert np.array_equal(r.groups, lsh_groups_int(x, a, b, m, s))
    # Member lists: each group's tokens in ascending order, groups in order; offsets from the sizes.
    for gg in range(g):
        assert np.array_equal(r.members[r.offsets[gg]:r.offsets[gg + 1]], np.flatnonzero(r.groups == gg))
    if kind == "ties":
        assert (r.groups == 0).all() and r.counts[0] == n
    cfg = load_config(config)
    per = -(-n // cfg.g_pes)
    assert r.cycles["codes"] == per + PIPE_CODE and r.cycles["argmax"] == per + pipe_argmax(g)
    assert r.cycles["lists"] == 2 * n + g + 3 * PIPE_LIST
    lib = ce.engines_library(config)
    lib.perf_reset()
    _same(r, ce.csim_groupgen(x, a, b, m, s, config))
    t = lib.perf_totals()
    assert (t["gg_calls"], t["gg_hash"], t["gg_codes"], t["gg_argmax"], t["gg_lists"]) == (
        1, r.cycles["hash"], r.cycles["codes"], r.cycles["argmax"], r.cycles["lists"])
    assert (t["rbsp_steps"], t["rbsp_terms"], t["rbsp_tiles"]) == (r.hash_pass.steps, r.hash_pass.terms, r.hash_pass.tiles)


def test_extreme_codes_and_refusals():
    rng = np.random.default_rng(5)
    x = np.full((9, 64), -128, np.int8)
    x[::2] = 127
    a = np.full((3, 64), -128, np.int8)
    a[1] = 127
    b = np.array([(1 << 30) - 1, -(1 << 30) + 1, 0], np.int32)
    for m, s in ((0, 0), ((1 << 31) - 1, 63), ((1 << 31) - 1, 0), (1, 31)):
        r = generate_groups(x, a, b, m, s)
        assert np.array_equal(r.groups, lsh_groups_int(x, a, b, m, s))
        _same(r, ce.csim_groupgen(x, a, b, m, s))
    for m, s, code in ((-1, 3, 0x802), (1, 64, 0x802)):
        with pytest.raises(ce.CsimEngineError) as e:
            ce.csim_groupgen(x, a, b, m, s)
        assert e.value.status == code
    with pytest.raises(ce.CsimEngineError) as e:
        ce.csim_groupgen(x, np.zeros((65, 64), np.int8), np.zeros(65, np.int32), 1, 1)
    assert e.value.status == 0x801
    del rng


def test_demo_layers_group_exactly_as_the_reference():
    from vitaccel.host.bundle import load_bundle
    from vitaccel.sim.revit.model import compile_revit, run_revit

    demo = Path(__file__).resolve().parents[1] / "models" / "demo"
    bundle = load_bundle(demo / "revit.vcb")
    prog = compile_revit(bundle)
    traces = run_revit(bundle, np.load(demo / "test_images.npz")["images"][:2], trace=True).traces
    for tr in traces:
        for lp, rec in zip(prog.layers, tr):
            ap = lp.attn
            x8 = rec["h8"][1:]
            r = generate_groups(x8, ap.hash_weight, ap.hash_bias, ap.hash_mult, ap.hash_shift)
            assert np.array_equal(r.groups, rec["groups"]) and np.array_equal(r.counts, rec["counts"])
            _same(r, ce.csim_groupgen(x8, ap.hash_weight, ap.hash_bias, ap.hash_mult, ap.hash_shift))
