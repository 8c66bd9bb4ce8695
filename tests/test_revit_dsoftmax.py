"""The differential softmax unit (hls/revit/dsoftmax/dsoftmax.h) against its NumPy model
(vitaccel.sim.revit.dsoftmax): bits equal the one-pass softmax of NUMERICS.md for every block size
(through blockwise_softmax_int), C-sim == NumPy bit for bit, and the C++ counters equal the cycle model
phase by phase, including the data-dependent rescales."""
from __future__ import annotations

import numpy as np
import pytest

from vitaccel.sim import numerics as nx
from vitaccel.sim.revit import csim_engines as ce
from vitaccel.sim.revit.dsoftmax import dsoftmax
from vitaccel.sim.revit.golden import softmax_inputs
from vitaccel.sim.revit.softmax import weighted_softmax

pytestmark = pytest.mark.csim


@pytest.mark.parametrize("rows,n,block,lanes,kind", [(1, 1, 16, 1, "random"), (6, 50, 16, 4, "random"),
                                                     (4, 197, 16, 64, "ascending"), (5, 40, 7, 3, "extreme"),
                                                     (3, 100, 100, 8, "random"), (3, 100, 1, 5, "ascending"),
                                                     (2, 320, 33, 64, "random")])
@pytest.mark.parametrize("weighted", [False, True])
def test_unit_matches_model_and_the_one_pass_softmax(rows, n, block, lanes, kind, weighted):
    rng = np.random.default_rng(rows * 101 + n * 7 + block + weighted)
    s, k, m, e = softmax_inputs(rng, rows, n, kind)
    w = rng.integers(0, 60, n).astype(np.int32) if weighted else None
    p, cyc = dsoftmax(s, k, m, e, block, lanes, weights=w)
    ref = weighted_softmax(s, k, m, e, w) if weighted else nx.softmax(s, k, m, e)
    assert np.array_equal(p, ref)
    lib = ce.engines_library("revit-paper")
    lib.perf_reset()
    p2, cyc2 = ce.csim_dsoftmax(s, k, m, e, block, lanes, weights=w)
    assert np.array_equal(p2, p) and cyc2 == cyc
    t = lib.perf_totals()
    assert t["dsm_rows"] == rows and {ph: t[f"dsm_{ph}"] for ph in cyc} == cyc
    if kind == "ascending" and block < n:
        assert cyc["rescale"] > 0          # every block raises the running max
    if block >= n:
        assert cyc["rescale"] == 0


def test_unit_refuses_bad_arguments():
    s = np.zeros((1, 4), np.int32)
    for kwargs, code in ((dict(block=0), 0x821), (dict(lanes=65), 0x821), (dict(m=-1), 0x822), (dict(e=64), 0x822),
                         (dict(w=np.array([1, -1, 1, 1])), 0x822), (dict(w=np.full(4, 1 << 14)), 0x822)):
        a = dict(block=4, lanes=1, m=1, e=1, w=None)
        a.update(kwargs)
        with pytest.raises(ce.CsimEngineError) as ei:
            ce.csim_dsoftmax(s, None, a["m"], a["e"], a["block"], a["lanes"], weights=a["w"])
        assert ei.value.status == code


def test_demo_rows_and_every_block_size():
    """Real attention rows of the demo model (layer 0, image 0, CLS row and one group's joint rows) in blocks
    of 1, 7, 16 and the whole row."""
    from pathlib import Path

    from vitaccel.host.bundle import load_bundle
    from vitaccel.sim.revit.differential import diff_projection, imatmul
    from vitaccel.sim.revit.model import compile_revit, run_revit

    demo = Path(__file__).resolve().parents[1] / "models" / "demo"
    bundle = load_bundle(demo / "revit.vcb")
    tr = run_revit(bundle, np.load(demo / "test_images.npz")["images"][:1], trace=True).traces[0][0]
    ap = compile_revit(bundle).layers[0].attn
    h8 = tr["h8"]
    acc = nx.matmul_int(h8, ap.qkv_weight.T).astype(np.int64) + ap.qkv_bias
    qkv = nx.requantize(acc, ap.qkv_mult, ap.qkv_shift)
    dm = h8.shape[1]
    q, k = qkv[:, :dm // ap.heads], qkv[:, dm:dm + dm // ap.heads]
    scores = imatmul(q, k.T)
    m, e = ap.softmax
    for block in (1, 7, 16, scores.shape[1]):
        p, cyc = dsoftmax(scores[:9], None, m, e, block, 16)
        assert np.array_equal(p, nx.softmax(scores[:9], None, m, e))
        p2, cyc2 = ce.csim_dsoftmax(scores[:9], None, m, e, block, 16)
        assert np.array_equal(p2, p) and cyc2 == cyc
    del diff_projection


def test_row_pipeline_bounds():
    """The row pipeline takes at least each stage's own work and one row's whole latency, at most the rows one
    after another, and exactly that for a single row."""
    from vitaccel.sim.revit.dsoftmax import row_pipeline
    from vitaccel.sim.schedule import PIPE_DIV

    rng = np.random.default_rng(8)
    for _ in range(200):
        r = int(rng.integers(1, 40))
        a, e, n = (rng.integers(1, 60, r) for _ in range(3))
        t = row_pipeline(a, e, n)
        serial = int((a + e + n).sum()) + r * PIPE_DIV
        assert max(int(a.sum()), int(e.sum()), int(n.sum()), int((a + e + n).max()) + PIPE_DIV) <= t <= serial
        if r == 1:
            assert t == serial
    # Long rows: the stages overlap, the time tends to the slowest stage's work.
    a, e, n = np.full(100, 30), np.full(100, 10), np.full(100, 10)
    assert row_pipeline(a, e, n) < 0.4 * (int((a + e + n).sum()) + 100 * PIPE_DIV)
