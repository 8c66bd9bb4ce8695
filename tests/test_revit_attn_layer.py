"""The fused attention layer on the HLS engines (hls/revit/attn/revit_attn.h, revit_top's attention op)
against its NumPy model (vitaccel.sim.revit.layer.engine_layer): the same bits (revit_attention_layer's)
and every cycle term identical, in every mode, on random layers (a group of one, an empty group, all tokens
in one group) and the demo's layers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitaccel.sim.revit import csim_engines as ce
from vitaccel.sim.revit.attention import revit_attention_layer
from vitaccel.sim.revit.layer import engine_layer
from vitaccel.sim.revit.sched import FIXED, ONE_ARRAY

from test_revit_layer import _layer  # noqa: E402  (the random layers of the NumPy composition's tests)

pytestmark = pytest.mark.csim

VARIANTS = [dict(), dict(mode=ONE_ARRAY), dict(mode=FIXED, fixed_cols=7), dict(delta=False), dict(sync=64),
            dict(out_of_order=False)]


def _same(h8, lp, ref, **kw):
    a8, cyc = engine_layer(h8, lp, **kw)
    y, groups, cls_p, group_p, c = ce.csim_attention_layer(h8, lp, **kw)
    assert np.array_equal(y, a8) and np.array_equal(a8, ref.a8), kw
    assert np.array_equal(groups, ref.groups) and np.array_equal(cls_p, ref.cls_p)
    assert np.array_equal(group_p, ref.group_p)
    want = dict(groupgen=cyc.groupgen, intra=sum(cyc.intra.values()), inter=sum(cyc.inter_work.values()),
                in_order=cyc.timeline.in_order, out_of_order=cyc.timeline.out_of_order, tail=cyc.tail, total=cyc.total)
    assert c == want, kw


@pytest.mark.parametrize("n,dm,heads,G,combine,mix", [(17, 24, 2, 4, "joint", "random"), (40, 32, 4, 3, "intra", "random"),
                                                      (9, 24, 3, 4, "joint", "one"), (70, 48, 2, 5, "joint", "empty"),
                                                      (2, 16, 1, 2, "joint", "random"), (33, 24, 2, 4, "sum", "random"),
                                                      (70, 48, 2, 5, "sum", "empty"), (9, 24, 3, 4, "sum", "one")])
def test_fused_layer_matches_the_model(n, dm, heads, G, combine, mix):
    rng = np.random.default_rng(n * 7 + dm + G)
    rows = None
    if mix == "one":
        rows = np.tile(rng.integers(-128, 128, (1, dm)).astype(np.int8), (G, 1))
    if mix == "empty":
        rows = rng.integers(-128, 128, (G, dm)).astype(np.int8)
        rows[-1] = -128
    lp = _layer(rng, dm, heads, G, combine, rows)
    h8 = rng.integers(-128, 128, (n, dm)).astype(np.int8)
    if mix == "empty":
        h8[1:] = np.abs(h8[1:].astype(np.int16)).clip(0, 127).astype(np.int8)
    ref = revit_attention_layer(h8, lp)
    for kw in VARIANTS:
        _same(h8, lp, ref, **kw)


def test_fused_layer_on_the_demo_and_refusals():
    from vitaccel.host.bundle import load_bundle
    from vitaccel.sim.revit.model import compile_revit, run_revit

    demo = Path(__file__).resolve().parents[1] / "models" / "demo"
    bundle = load_bundle(demo / "revit.vcb")
    prog = compile_revit(bundle)
    tr = run_revit(bundle, np.load(demo / "test_images.npz")["images"][1:2], trace=True).traces[0]
    for lp, rec in zip(prog.layers, tr):
        _same(rec["h8"], lp.attn, revit_attention_layer(rec["h8"], lp.attn))
    lp = prog.layers[0].attn
    with pytest.raises(ce.CsimEngineError) as e:
        ce.csim_attention_layer(tr[0]["h8"][:1], lp)                     # N = 1
    assert e.value.status == 0x851
    import dataclasses

    with pytest.raises(ce.CsimEngineError) as e:
        ce.csim_attention_layer(tr[0]["h8"], dataclasses.replace(lp, hash_shift=64))
    assert e.value.status == 0x852


@pytest.mark.parametrize("config", ["revit-pynq-z2", "revit-kv260", "revit-zcu104"])
def test_fused_layer_on_the_fpga_configs(config):
    rng = np.random.default_rng(42)
    lp = _layer(rng, 48, 3, 4, "joint")
    h8 = rng.integers(-128, 128, (57, 48)).astype(np.int8)
    ref = revit_attention_layer(h8, lp)
    for kw in (dict(), dict(mode=FIXED, fixed_cols=5), dict(delta=False)):
        a8, cyc = engine_layer(h8, lp, config, **kw)
        y, groups, cls_p, group_p, c = ce.csim_attention_layer(h8, lp, config, **kw)
        assert np.array_equal(y, ref.a8) and np.array_equal(a8, ref.a8)
        assert c["total"] == cyc.total and c["intra"] == sum(cyc.intra.values()) and c["tail"] == cyc.tail
