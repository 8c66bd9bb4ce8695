"""The papers' baselines (vitaccel.sim.vitcod.baselines): Sanger's load balance, mask prediction and cycles,
SpAtten's cascade pruning, top-k engine and cycles, and ViTALiTy's documented refusal."""
import math

import numpy as np
import pytest

from vitaccel.hwconfig import load_config
from vitaccel.sim.vitcod.api import attention_baselines
from vitaccel.sim.vitcod.attention import SparsePlan
from vitaccel.sim.vitcod.baselines import (SANGER_ARRAYS, SpAttenArray, quickselect, quickselect_cycles,
                                           sanger_array, sanger_cycles, sanger_load_balance, sanger_predict_mask,
                                           sanger_subrows, spatten_array, spatten_cascade, spatten_cycles,
                                           vitality_cycles)

CFG = load_config("paper")


# -- Sanger: pack & split ------------------------------------------------------------------------------------

def test_load_balance_formula_on_hand_made_vectors():
    # Three non-empty 64-wide vectors (20, 16 and 1 kept) and one empty one, P = 16:
    # sum(nnz/P) = 37/16, sum(ceil(nnz/P)) = 2 + 1 + 1 = 4.
    m = np.zeros((1, 4, 64), bool)
    m[0, 0, :20] = True
    m[0, 1, 10:26] = True
    m[0, 2, 63] = True
    assert sanger_load_balance(m, 16) == pytest.approx((37 / 16) / 4)
    assert sanger_load_balance(m, 16, skip=False) == pytest.approx((37 / 16) / 5)  # the empty one takes a subrow
    assert sanger_load_balance(m, 32) == pytest.approx((37 / 32) / 3)
    assert sanger_subrows(m, 16).tolist() == [[4]]
    assert sanger_subrows(m, 16, skip=False).tolist() == [[5]]


def test_load_balance_is_one_for_full_vectors_and_segments_split_rows():
    m = np.zeros((2, 3, 128), bool)
    m[:, :, :32] = True   # 32 kept in segment 0: two full subrows of 16
    m[:, :, 64:80] = True  # 16 in segment 1: one full subrow
    assert sanger_load_balance(m, 16) == 1.0
    assert sanger_subrows(m, 16).tolist() == [[6, 3], [6, 3]]
    # N not a multiple of 64: the row is padded, the tail segment counts its own entries
    t = np.zeros((1, 1, 70), bool)
    t[0, 0, 60:70] = True  # 4 in segment 0, 6 in segment 1
    assert sanger_subrows(t, 16).tolist() == [[1, 1]]
    assert sanger_load_balance(t, 16) == pytest.approx((10 / 16) / 2)


def test_named_arrays():
    assert (SANGER_ARRAYS["code"].rows, SANGER_ARRAYS["code"].pes) == (64, 16)
    assert (SANGER_ARRAYS["table3"].rows, SANGER_ARRAYS["table3"].pes) == (64, 64)
    assert SANGER_ARRAYS["code-p32"].pes == 32 and SANGER_ARRAYS["code-p32"].macs == SANGER_ARRAYS["code"].macs
    iso = sanger_array(CFG)
    assert iso.rows * iso.pes == CFG.peak_macs_per_cycle and iso.pes == 16
    with pytest.raises(ValueError, match="unknown Sanger array"):
        sanger_array(CFG, "nope")


# -- Sanger: mask prediction -----------------------------------------------------------------------------------

def test_prediction_threshold_and_quantisation():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(2, 40, 16))
    k = rng.normal(size=(2, 40, 16))
    k[:, 3] = 4 * q[:, :, :].mean(axis=1)  # a key every query likes
    lo = sanger_predict_mask(q, k, threshold=0.01)
    hi = sanger_predict_mask(q, k, threshold=0.05)
    assert (hi <= lo).all() and hi.sum() < lo.sum()  # a higher threshold keeps a subset
    # a row whose scores are all equal has softmax 1/N everywhere: kept iff 1/N > threshold
    same = np.ones((1, 10, 4))
    assert sanger_predict_mask(same, same, threshold=0.09).all()
    assert not sanger_predict_mask(same, same, threshold=0.11).any()


def test_prediction_uses_low_bit_scores():
    """4-bit symmetric codes: at most 15 levels per tensor, and the predicted mask is not the full-precision one."""
    from vitaccel.sim.vitcod.baselines import _quant_sym

    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 8))
    assert len(np.unique(_quant_sym(x, 4))) <= 15
    assert len(np.unique(_quant_sym(x, 8))) > 15
    q = rng.normal(size=(2, 60, 16)) * 2
    k = rng.normal(size=(2, 60, 16)) * 2
    four = sanger_predict_mask(q, k, bits=4)
    full = sanger_predict_mask(q, k, bits=16)
    assert (four != full).any() and four.any()


# -- Sanger: cycles ----------------------------------------------------------------------------------------------

def _mask(rng, h, n, keep):
    m = rng.random((h, n, n)) < keep
    m[:, np.arange(n), np.arange(n)] = True
    return m


def test_prediction_is_charged_even_with_nothing_kept():
    empty = np.zeros((3, 64, 64), bool)
    serial = sanger_cycles(CFG, empty, 64, predict="serial")
    arr = sanger_array(CFG)
    tiles = math.ceil(64 / arr.rows) * math.ceil(64 / arr.pes)
    assert serial.preprocess == 3 * tiles * (64 + arr.segment + 1)
    assert serial.heads[0]["passes"] == 0
    over = sanger_cycles(CFG, empty, 64, predict="overlap")
    assert 0 < over.preprocess <= serial.preprocess and over.total_cycles <= serial.total_cycles
    assert over.macs >= 3 * 64 * 64 * 64  # the dense low-bit Q.K^T is counted as work


def test_prediction_grows_with_n_squared_and_sparse_work_with_subrows():
    rng = np.random.default_rng(3)
    a = sanger_cycles(CFG, np.zeros((1, 64, 64), bool), 64, predict="serial").preprocess
    b = sanger_cycles(CFG, np.zeros((1, 128, 128), bool), 64, predict="serial").preprocess
    assert b == 4 * a
    sparse = sanger_cycles(CFG, _mask(rng, 2, 128, 0.05), 64)
    denser = sanger_cycles(CFG, _mask(rng, 2, 128, 0.4), 64)
    assert denser.compute > sparse.compute
    assert sum(h["subrows"] for h in denser.heads) > sum(h["subrows"] for h in sparse.heads)


def test_bigger_array_fewer_passes():
    rng = np.random.default_rng(4)
    m = _mask(rng, 2, 197, 0.2)
    small = sanger_cycles(CFG, m, 64, array=SANGER_ARRAYS["code"])
    big = sanger_cycles(CFG, m, 64, array=SANGER_ARRAYS["table3"])
    assert sum(h["passes"] for h in big.heads) <= sum(h["passes"] for h in small.heads)
    with pytest.raises(ValueError, match="predict must be"):
        sanger_cycles(CFG, m, 64, predict="never")


def test_attention_baselines_still_has_sanger():
    rng = np.random.default_rng(5)
    plan = SparsePlan.from_mask(_mask(rng, 3, 65, 0.1), config=CFG)
    b = attention_baselines(plan, 64, config=CFG)
    assert b["sanger"].preprocess > 0  # the prediction is on it now


# -- SpAtten -----------------------------------------------------------------------------------------------------

def test_quickselect_finds_the_kth_largest_and_wider_is_faster():
    rng = np.random.default_rng(6)
    x = rng.random(500)
    for k in (1, 17, 250, 499):
        cyc, thr = quickselect(x, k, 4, seed=k)
        assert thr == np.sort(x)[-k] and cyc > 0
    assert quickselect_cycles(x, 0, 4) == 0 and quickselect_cycles(x, 500, 4) == 0
    assert quickselect_cycles(x, 100, 16, seed=1) < quickselect_cycles(x, 100, 4, seed=1)
    ties = np.repeat([1.0, 2.0, 3.0], 10)
    assert quickselect(ties, 15, 4)[1] == 2.0


def _maps(rng, layers, h, n):
    out = []
    for _ in range(layers):
        a = rng.random((h, n, n)) ** 4
        out.append(a / a.sum(axis=2, keepdims=True))
    return out


def test_cascade_prunes_monotonically_and_keeps_cls_and_the_important():
    rng = np.random.default_rng(7)
    maps = _maps(rng, 6, 3, 50)
    for a in maps:
        a[:, :, 7] += 5.0  # token 7 receives much attention everywhere
        a /= a.sum(axis=2, keepdims=True)
    casc = spatten_cascade(maps, [1.0, 1.0, 0.7, 0.7, 0.49, 0.3])
    counts = [len(c.tokens) for c in casc]
    assert counts == [50, 50, 35, 35, 24, 15]
    for prev, cur in zip(casc, casc[1:]):
        assert set(cur.tokens) <= set(prev.tokens)  # once pruned, gone
    assert all(0 in c.tokens and 7 in c.tokens for c in casc)
    with pytest.raises(ValueError, match="non-increasing"):
        spatten_cascade(maps, [1.0, 0.5, 0.7, 0.7, 0.5, 0.5])
    with pytest.raises(ValueError, match="must be 1"):
        spatten_cascade(maps, [0.9] * 6)
    with pytest.raises(ValueError, match="head_scores"):
        spatten_cascade(maps, [1.0] * 6, head_keep=[1.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    hc = spatten_cascade(maps, [1.0] * 6, head_keep=[1.0, 1.0, 0.67, 0.67, 0.34, 0.34],
                         head_scores=[np.array([3.0, 1.0, 2.0])] * 6)
    assert [len(c.heads) for c in hc] == [3, 3, 2, 2, 1, 1] and hc[-1].heads.tolist() == [0]


def test_spatten_cycles_monotone_in_pruning():
    rng = np.random.default_rng(8)
    maps = _maps(rng, 4, 4, 64)
    totals = []
    for keep in (1.0, 0.8, 0.5, 0.25):
        casc = spatten_cascade(maps, [1.0] + [keep] * 3)
        totals.append(sum(spatten_cycles(CFG, lay, 64, index=i).total_cycles for i, lay in enumerate(casc)))
    assert totals == sorted(totals, reverse=True) and totals[0] > totals[-1]


def test_spatten_topk_and_dram_are_charged():
    rng = np.random.default_rng(9)
    maps = _maps(rng, 2, 2, 64)
    keep, prune = spatten_cascade(maps, [1.0, 0.5])
    r = spatten_cycles(CFG, keep, 64)
    assert r.preprocess > 0 and r.engines["topk"] == r.preprocess  # layer 0 selects for layer 1
    r_last = spatten_cycles(CFG, prune, 64)
    assert r_last.preprocess == 0  # nothing selected after the last layer
    ser = spatten_cycles(CFG, keep, 64, array=spatten_array(CFG))
    ov = spatten_cycles(CFG, keep, 64, array=SpAttenArray("x", spatten_array(CFG).multipliers, overlap_dram=True))
    assert ov.total_cycles < ser.total_cycles and ser.data == ser.engines["dma"]
    # the released code's datapath: 512 multipliers per module, 64-dim heads -> 8 keys per cycle
    code = spatten_cycles(CFG, keep, 64, array=spatten_array(CFG, "code"))
    assert code.engines["qk_pv"] == 2 * 64 * math.ceil(64 / 8)


def test_vitality_refuses_honestly():
    with pytest.raises(NotImplementedError, match="not modelled"):
        vitality_cycles(CFG)
