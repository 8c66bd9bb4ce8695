"""The pruners (hls/revit/pruner/pruner.h) against their NumPy model (vitaccel.sim.revit.pruner): keep
decisions equal prune_decisions (and its package weights follow from the scores), C-sim == NumPy bit for
bit, and the C++ counters equal the cycle model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitaccel.hwconfig import load_config

from vitaccel.sim.revit import csim_engines as ce
from vitaccel.sim.revit.attention import LayerResult, prune_decisions, revit_attention_layer
from vitaccel.sim.revit.golden import prune_inputs
from vitaccel.sim.revit.pruner import prune_layer

pytestmark = pytest.mark.csim


def _check(gp, cp, groups, G, qg, qp, config="revit-paper"):
    r = prune_layer(gp, cp, groups, G, qg, qp, config)
    counts = np.bincount(groups, minlength=G)
    res = LayerResult(None, np.asarray(groups, np.int64), counts,
                      np.concatenate([np.zeros((cp.shape[0], 1), np.uint8), cp], 1), gp, None)
    keep, w = prune_decisions(res, qg, qp)
    assert np.array_equal(r.keep, keep)
    assert np.array_equal(w, np.where(r.keep, 0.0, r.scores / (256.0 * cp.shape[0])).astype(np.float32))
    lib = ce.engines_library(config)
    lib.perf_reset()
    k2, kg2, s2, c2 = ce.csim_prune(gp, cp, groups, G, qg, qp, config)
    assert np.array_equal(k2, r.keep) and np.array_equal(kg2, r.keep_groups) and np.array_equal(s2, r.scores)
    assert c2 == r.cycles
    t = lib.perf_totals()
    assert t["pr_calls"] == 1 and {k: t[f"pr_{k}"] for k in r.cycles} == r.cycles
    return r


@pytest.mark.parametrize("config", ["revit-paper", "revit-pynq-z2"])
@pytest.mark.parametrize("H,G,n,qg,qp,kind", [(3, 4, 196, 49152, 45875, "random"), (1, 1, 1, 0, 0, "random"),
                                              (6, 8, 100, 1 << 16, 1 << 16, "ties"), (2, 5, 40, 30000, 20000, "single"),
                                              (3, 4, 60, 1, 1, "one"), (12, 64, 255, 40000, 33000, "random"),
                                              (3, 4, 87, 49152, 45875, "ties")])
def test_pruner_matches_the_decisions(config, H, G, n, qg, qp, kind):
    rng = np.random.default_rng(H * 13 + G * 7 + n)
    gp, cp, groups = prune_inputs(rng, H, G, n, kind)
    if H > load_config(config).max_heads:          # both sides refuse what the config cannot hold
        with pytest.raises(ValueError, match="max_heads|H <="):
            prune_layer(gp, cp, groups, G, qg, qp, config)
        with pytest.raises(ce.CsimEngineError):
            ce.csim_prune(gp, cp, groups, G, qg, qp, config)
        return
    r = _check(gp, cp, groups, G, qg, qp, config)
    if qg == qp == 1 << 16:
        assert r.keep.all()
    if kind == "one":
        assert r.keep_groups.sum() == 1 and r.keep.sum() == 1        # ceil(1 * 60 / 2^16) = 1 patch


def test_refusals():
    gp, cp, groups = prune_inputs(np.random.default_rng(1), 2, 4, 10)
    for args, code in (((4, 70000, 1), 0x832), ((4, 1, -1), 0x832), ((3, 1, 1), 0x831)):
        with pytest.raises(ce.CsimEngineError) as e:
            ce.csim_prune(gp[:, :args[0]], cp, groups, args[0], args[1], args[2])
        assert e.value.status == code


def test_demo_pruning_layers():
    from vitaccel.host.bundle import load_bundle
    from vitaccel.sim.revit.model import compile_revit, run_revit

    demo = Path(__file__).resolve().parents[1] / "models" / "demo"
    bundle = load_bundle(demo / "revit.vcb")
    prog = compile_revit(bundle)
    traces = run_revit(bundle, np.load(demo / "test_images.npz")["images"][:3], trace=True).traces
    seen = 0
    for tr in traces:
        for lp, rec in zip(prog.layers, tr):
            if not lp.prunes:
                continue
            res = revit_attention_layer(rec["h8"], lp.attn)
            r = _check(res.group_p, res.cls_p[:, 1:], res.groups.astype(np.int32), lp.attn.num_groups, *lp.keep)
            assert np.array_equal(r.keep, rec["keep"])
            seen += 1
    assert seen == 6
