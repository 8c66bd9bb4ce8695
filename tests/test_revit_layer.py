"""One attention layer on the ReViT engines (vitaccel.sim.revit.layer.engine_layer): the engines composed
give revit_attention_layer's bits in every mode (one array, fixed and workload-sized sub-arrays; delta and
raw operands; any column synchronisation; in and out of order), on random layers with a group of one, an
empty group and all tokens in one group, and on the demo's layers; the cycle composition is consistent."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitaccel.sim import numerics as nx
from vitaccel.sim.revit.attention import LayerParams, revit_attention_layer
from vitaccel.sim.revit.layer import engine_layer
from vitaccel.sim.revit.sched import FIXED, ONE_ARRAY, WORKLOAD

VARIANTS = [dict(), dict(mode=ONE_ARRAY), dict(mode=FIXED, fixed_cols=7), dict(delta=False), dict(sync=64),
            dict(out_of_order=False), dict(delta=False, array="int8")]


def _layer(rng, dm=24, heads=2, G=4, combine="joint", hash_rows=None):
    m_exp, s_exp = nx.softmax_params(0.002)
    A = rng.integers(-128, 128, (G, dm)).astype(np.int8) if hash_rows is None else hash_rows
    qm, qs = nx.quantize_multiplier(0.004)
    return LayerParams(heads=heads, num_groups=G, qkv_weight=rng.integers(-128, 128, (3 * dm, dm)).astype(np.int8),
                       qkv_bias=rng.integers(-5000, 5000, 3 * dm).astype(np.int32),
                       qkv_mult=np.full(3 * dm, qm, np.int32), qkv_shift=np.full(3 * dm, qs, np.int32),
                       hash_weight=A, hash_bias=np.zeros(G, np.int32), hash_mult=1 << 30, hash_shift=40,
                       softmax=(m_exp, s_exp), out=nx.quantize_multiplier(1 / 256), block=3, combine=combine)


@pytest.mark.parametrize("n,dm,heads,G,combine,mix", [(17, 24, 2, 4, "joint", "random"), (40, 32, 4, 3, "intra", "random"),
                                                      (9, 24, 3, 4, "joint", "one"), (70, 48, 2, 5, "joint", "empty"),
                                                      (2, 16, 1, 2, "joint", "random"), (33, 24, 2, 4, "sum", "random"),
                                                      (70, 48, 2, 5, "sum", "empty"), (9, 24, 3, 4, "sum", "one")])
def test_engines_give_the_functional_bits(n, dm, heads, G, combine, mix):
    rng = np.random.default_rng(n * 7 + dm + G)
    rows = None
    if mix == "one":                       # identical hash rows: every code ties, every token in group 0
        rows = np.tile(rng.integers(-128, 128, (1, dm)).astype(np.int8), (G, 1))
    if mix == "empty":                     # the last hash row never wins: an empty group
        rows = rng.integers(-128, 128, (G, dm)).astype(np.int8)
        rows[-1] = -128
    lp = _layer(rng, dm, heads, G, combine, rows)
    h8 = rng.integers(-128, 128, (n, dm)).astype(np.int8)
    if mix == "empty":
        h8[1:] = np.abs(h8[1:].astype(np.int16)).clip(0, 127).astype(np.int8)
    ref = revit_attention_layer(h8, lp)
    if mix == "one":
        assert ref.counts[0] == n - 1
    if mix == "empty":
        assert (ref.counts == 0).any()
    for kw in VARIANTS:
        a8, cyc = engine_layer(h8, lp, **kw)
        assert np.array_equal(a8, ref.a8), kw
        assert np.array_equal(cyc.cls_p, ref.cls_p) and np.array_equal(cyc.group_p, ref.group_p)
        tl = cyc.timeline
        assert tl.out_of_order <= tl.in_order
        assert cyc.total == cyc.groupgen + (tl.out_of_order if cyc.out_of_order else tl.in_order) + cyc.tail
        assert set(cyc.intra) == set(np.flatnonzero(ref.counts).tolist())


def test_unknown_combine_is_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="not a ReViT mode"):
        engine_layer(rng.integers(-128, 128, (5, 24)).astype(np.int8), _layer(rng, combine="both"))


def test_demo_layers_and_the_measured_ratios():
    from vitaccel.host.bundle import load_bundle
    from vitaccel.sim.revit.model import compile_revit, run_revit

    demo = Path(__file__).resolve().parents[1] / "models" / "demo"
    bundle = load_bundle(demo / "revit.vcb")
    prog = compile_revit(bundle)
    tr = run_revit(bundle, np.load(demo / "test_images.npz")["images"][:1], trace=True).traces[0]
    tot = {}
    for lp, rec in zip(prog.layers, tr):
        ref = revit_attention_layer(rec["h8"], lp.attn)
        for name, kw in (("revit", {}), ("one_array", dict(mode=ONE_ARRAY)), ("in_order", dict(out_of_order=False))):
            a8, cyc = engine_layer(rec["h8"], lp.attn, **kw)
            assert np.array_equal(a8, ref.a8)
            tot[name] = tot.get(name, 0) + cyc.total
    # Workload-sized sub-arrays beat one array running the groups one by one (KERNELS.md has the figures).
    assert tot["revit"] < tot["one_array"] and tot["revit"] <= tot["in_order"]


def test_head_overlap_bounds():
    """Heads overlapped on the columns and the SIMD slice: at least each resource's own work and one head's
    chain, at most the heads one after another, exactly that for one head."""
    from vitaccel.sim.revit.layer import head_overlap

    rng = np.random.default_rng(2)
    for _ in range(300):
        H = int(rng.integers(1, 13))
        S, M, O = (rng.integers(0, 500, H) for _ in range(3))
        t = head_overlap(S, M, O)
        assert max(int((S + O).sum()), int(M.sum()), int((S + M + O).max())) <= t <= int((S + M + O).sum())
        if H == 1:
            assert t == int((S + M + O).sum())
    assert head_overlap([100] * 6, [100] * 6, [100] * 6) < 0.75 * 1800
