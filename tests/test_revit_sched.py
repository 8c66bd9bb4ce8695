"""rSched and the latency-aware out-of-order scheduler (hls/revit/sched/sched.h) against the NumPy model
(vitaccel.sim.revit.sched): allocations and timelines identical, and the property that out of order is
never later than in order and equal when all groups have the same size."""
from __future__ import annotations

import numpy as np
import pytest

from vitaccel.hwconfig import load_config
from vitaccel.sim.revit import csim_engines as ce
from vitaccel.sim.revit.golden import group_mix
from vitaccel.sim.revit.sched import FIXED, ONE_ARRAY, WORKLOAD, allocate, timeline

pytestmark = pytest.mark.csim

MODES = (ONE_ARRAY, FIXED, WORKLOAD)


def _latency(l: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """A size-determined stand-in for the engines' intra-group latency on c columns: projection plus the
    l x l attention, in column tiles."""
    l = l.astype(np.int64)
    tiles = -(-(l + 1) // np.maximum(cols, 1))
    return np.where(l > 0, tiles * (3 * 32 * 4) + l * tiles * 8 + 50, 0)


def _t_for(l, mode, F=16, config="revit-paper"):
    a = allocate(l, mode, F, config)
    cols = np.array([a.group_cols(g) if l[g] else 1 for g in range(len(l))])
    return _latency(np.asarray(l), cols)


@pytest.mark.parametrize("config", ["revit-paper", "revit-pynq-z2"])
def test_allocation_by_hand_and_against_the_hls(config):
    pn = load_config(config).rmmu_cols
    a = allocate([43, 47, 92, 14], WORKLOAD, config=config)
    assert a.cols.sum() <= pn and (a.cols >= 1).all() and list(a.order) == [2, 1, 0, 3]
    assert a.cols[2] == a.cols.max() and a.cols[3] == a.cols.min()
    e = allocate([0, 5, 0, 1], WORKLOAD, config=config)
    assert e.cols[0] == e.cols[2] == 0 and e.cols.sum() <= pn and e.sub.tolist() == [-1, 1, -1, 3]
    q = allocate([10, 10, 10, 10, 10], WORKLOAD, config=config)       # equal groups, equal sub-arrays
    assert len(set(q.cols.tolist())) == 1 and q.cols.sum() > pn - 5
    rng = np.random.default_rng(0)
    for trial in range(40):
        G = int(rng.integers(1, 9))
        l = group_mix(rng, G, int(rng.integers(1, 200)), ["random", "one", "equal", "single"][trial % 4])
        if l.sum() == 0:
            continue
        for mode in MODES:
            F = int(rng.integers(1, pn + 1))
            a = allocate(l, mode, F, config)
            cols, sub, order, cyc = ce.csim_allocate(l, mode, F, config)
            assert np.array_equal(cols, a.cols) and np.array_equal(order, a.order) and cyc == a.cycles
            if mode == WORKLOAD:
                assert np.array_equal(sub, a.sub) and pn - G < a.cols.sum() <= pn


@pytest.mark.parametrize("mode", MODES)
def test_out_of_order_never_later_and_equal_for_equal_groups(mode):
    rng = np.random.default_rng(100 + mode)
    for trial in range(150):
        G = int(rng.integers(1, 9))
        n = int(rng.integers(1, 257))
        kind = ["random", "one", "equal", "single"][trial % 4]
        l = group_mix(rng, G, n, kind)
        if l.sum() == 0:
            continue
        F = int(rng.integers(1, 65))
        t = _t_for(l, mode, F)
        W = l.astype(np.int64) * int(rng.integers(0, 400))
        tl = timeline(l, t, W, mode, F)
        assert tl.out_of_order <= tl.in_order
        if kind == "equal" and mode == WORKLOAD:
            assert tl.out_of_order == tl.in_order
        if mode == ONE_ARRAY:            # one array: nothing is free before the last group ends
            assert tl.out_of_order == tl.in_order
        lib = ce.engines_library("revit-paper")
        lib.perf_reset()
        f, i, o, b = ce.csim_timeline(l, t, W, mode, F)
        assert np.array_equal(f, tl.finish) and (i, o, b) == (tl.in_order, tl.out_of_order, tl.busy)
        c = lib.perf_totals()
        assert (c["sch_alloc"], c["sch_events"]) == (allocate(l, mode, F).cycles, tl.events)


def test_random_latencies_and_the_paper_example():
    # Arbitrary (not size-determined) latencies: still never later; equal whenever all finish together.
    rng = np.random.default_rng(7)
    for _ in range(100):
        G = int(rng.integers(1, 9))
        l = rng.integers(0, 60, G).astype(np.int32)
        if l.sum() == 0:
            continue
        t = rng.integers(0, 5000, G) * (l > 0)
        W = rng.integers(0, 20000, G)
        tl = timeline(l, t, W, WORKLOAD)
        assert tl.out_of_order <= tl.in_order
        same = np.where(l > 0, 777, 0)
        t2 = timeline(l, same, W, WORKLOAD)
        assert t2.out_of_order == t2.in_order
    # Fig. 12: one large group and three small ones; the small groups' inter-group work starts early.
    l = np.array([120, 20, 20, 16], np.int32)
    t = _t_for(l, WORKLOAD)
    tl = timeline(l, t, l.astype(np.int64) * 300, WORKLOAD)
    assert tl.out_of_order < tl.in_order
    u = tl.utilisation(64)
    assert u["out_of_order"] > u["in_order"]


def test_refusals():
    for args, code in (((np.zeros(3, np.int32), WORKLOAD), 0x841), ((np.ones(65, np.int32), WORKLOAD), 0x841),
                       ((np.ones(3, np.int32), 3), 0x842), ((np.ones(3, np.int32), FIXED, 0), 0x842)):
        with pytest.raises(ce.CsimEngineError) as e:
            ce.csim_allocate(*args)
        assert e.value.status == code
        with pytest.raises(ValueError):
            allocate(*args)
    # More non-empty groups than columns in workload mode (pynq-z2: 32 columns).
    with pytest.raises(ce.CsimEngineError) as e:
        ce.csim_allocate(np.ones(40, np.int32), WORKLOAD, config="revit-pynq-z2")
    assert e.value.status == 0x841
    with pytest.raises(ce.CsimEngineError) as e:
        ce.csim_timeline(np.ones(2, np.int32), np.array([1, -1]), np.zeros(2), WORKLOAD)
    assert e.value.status == 0x841
