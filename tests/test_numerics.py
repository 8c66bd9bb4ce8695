"""The NumPy side of the kernel contract (NUMERICS.md) against hand-worked values and float references.
C++ agreement is in test_csim_numerics.py."""
import math

import numpy as np
import pytest

from vitaccel.sim import numerics as nx
from vitaccel.sim import quant
from vitaccel.sim.selfcheck import SOFTMAX_TOL


def test_requantize_rounds_half_up_and_saturates():
    # shift 1, mult 1: y = floor((acc + 1) / 2)
    acc = np.array([-5, -4, -3, -1, 0, 1, 3, 5, 300, -300], dtype=np.int32)
    y = nx.requantize(acc, 1, 1)
    assert y.tolist() == [-2, -2, -1, 0, 0, 1, 2, 3, 127, -128]
    assert y.dtype == np.int8


def test_requantize_shift_zero_and_extremes():
    assert nx.requantize(np.int32(5), 1, 0) == 5
    assert nx.requantize(np.int32(2**31 - 1), 2**31 - 1, 63) == 0  # (2^62 - 2^31 - ...) >> 63
    assert nx.requantize(np.int32(-(2**31)), 2**31 - 1, 62) == -1
    assert nx.requantize(np.int32(-(2**31)), 2**31 - 1, 0) == -128
    assert nx.requantize(np.int32(123456), 0, 10) == 0


def test_requantize_per_channel_broadcast():
    acc = np.arange(12, dtype=np.int32).reshape(3, 4) * 100
    m = np.array([1 << 30, 1 << 29, 1 << 28, 1 << 27], dtype=np.int32)
    s = np.full(4, 31, dtype=np.int32)
    y = nx.requantize(acc, m, s)
    ref = np.floor(acc * (m / 2.0**31) + 0.5).clip(-128, 127)
    assert (y == ref).all()


def test_requantize_rejects_bad_params():
    with pytest.raises(ValueError, match="multiplier"):
        nx.requantize(np.int32(1), 2**31, 1)
    with pytest.raises(ValueError, match="shift"):
        nx.requantize(np.int32(1), 1, 64)
    with pytest.raises(TypeError, match="acc must be an integer"):
        nx.requantize(np.float32(1), 1, 1)


@pytest.mark.parametrize("real", [1e-9, 3.7e-5, 0.0123, 0.5, 0.999999, 1.0, 3.0, 12345.678, 2.0**30 + 7])
def test_quantize_multiplier_is_accurate(real):
    m, s = nx.quantize_multiplier(real)
    assert 0 <= m < 2**31 and 0 <= s <= 63
    assert m / 2.0**s == pytest.approx(real, rel=2**-29)


def test_quantize_multiplier_edges():
    assert nx.quantize_multiplier(0.0) == (0, 0)
    m, s = nx.quantize_multiplier(1e-25)  # below 2^-63 * 2^31: shift capped, m shrinks
    assert s == 63 and m == round(1e-25 * 2.0**63)
    for bad in (-1.0, float("nan"), float("inf"), 2.0**31):
        with pytest.raises(ValueError):
            nx.quantize_multiplier(bad)


def test_exp_lut():
    assert nx.EXP2_LUT[0] == 32768 and len(nx.EXP2_LUT) == 256
    assert np.all(np.diff(nx.EXP2_LUT) < 0)
    assert nx.EXP2_LUT[128] == round(32768 / math.sqrt(2))


def float_softmax(scores, keep, scale):
    z = np.where(keep, scores.astype(np.float64) * scale, -np.inf)
    z -= z.max(axis=-1, keepdims=True)
    e = np.where(keep, np.exp(z), 0.0)
    return e / e.sum(axis=-1, keepdims=True)


def test_softmax_tracks_float_softmax():
    rng = np.random.default_rng(0)
    for scale in (1e-5, 1e-4, 1e-3, 1e-2, 0.1):
        scores = rng.integers(-3000, 3000, size=(500, 197)).astype(np.int32)
        keep = rng.random((500, 197)) < 0.3
        keep[:, 0] = True
        m, s = nx.softmax_params(scale)
        p = nx.softmax(scores, keep, m, s)
        assert p.dtype == np.uint8
        assert np.all(p[~keep] == 0)
        err = np.abs(p / 256.0 - float_softmax(scores, keep, scale))
        assert err.max() <= SOFTMAX_TOL


def test_softmax_corner_rows():
    m, s = nx.softmax_params(1e-3)
    n = 50
    onehot = np.full((1, n), -(2**31) + 1, dtype=np.int32)
    onehot[0, 7] = 2**31 - 1
    assert nx.softmax(onehot, None, m, s)[0].tolist() == [0] * 7 + [255] + [0] * (n - 8)
    equal = np.full((1, n), 1234, dtype=np.int32)
    p = nx.softmax(equal, None, m, s)
    assert np.all(p == round(256 / n))
    none = np.zeros((1, n), dtype=bool)
    assert np.all(nx.softmax(equal, none, m, s) == 0)
    single = none.copy()
    single[0, 3] = True
    assert nx.softmax(equal, single, m, s)[0, 3] == 255
    assert nx.softmax(equal, single, m, s).sum() == 255


def test_softmax_leading_dims_match_row_by_row():
    rng = np.random.default_rng(1)
    scores = rng.integers(-2**20, 2**20, size=(3, 4, 20)).astype(np.int32)
    keep = rng.random((3, 4, 20)) < 0.5
    m, s = nx.softmax_params(2e-4)
    p = nx.softmax(scores, keep, m, s)
    for i in range(3):
        for j in range(4):
            assert (p[i, j] == nx.softmax(scores[i, j][None], keep[i, j][None], m, s)[0]).all()


def test_softmax_rejects_bad_input():
    m, s = nx.softmax_params(1e-3)
    with pytest.raises(TypeError, match="keep must be a bool"):
        nx.softmax(np.zeros((2, 3), np.int32), np.zeros((2, 3), np.int32), m, s)
    with pytest.raises(ValueError, match="keep has shape"):
        nx.softmax(np.zeros((2, 3), np.int32), np.zeros((2, 4), bool), m, s)
    with pytest.raises(ValueError, match="fit in int32"):
        nx.softmax(np.array([2**31], np.int64), None, m, s)


def test_matmul_int_exact():
    rng = np.random.default_rng(2)
    a = rng.integers(-128, 128, size=(2, 33, 1024)).astype(np.int8)
    b = rng.integers(-128, 128, size=(1024, 17)).astype(np.int8)
    ref = np.matmul(a.astype(np.int64), b.astype(np.int64))
    out = nx.matmul_int(a, b)
    assert out.dtype == np.int32 and (out == ref).all()
    full = np.full((1, 1024), -128, np.int8)
    assert nx.matmul_int(full, full.T)[0, 0] == 1024 * 128 * 128
    p = rng.integers(0, 256, size=(5, 197)).astype(np.uint8)
    assert (nx.matmul_int(p, b[:197]) == p.astype(np.int64) @ b[:197].astype(np.int64)).all()
    with pytest.raises(TypeError):
        nx.matmul_int(a.astype(np.int16), b)


def test_quant_helpers_round_trip():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 32)).astype(np.float32)
    s = quant.absmax_scale(x)
    q = quant.quantize(x, s)
    assert q.dtype == np.int8 and np.abs(q).max() == 127
    assert np.abs(quant.dequantize(q, s) - x).max() <= s / 2 + 1e-7
    sc = quant.absmax_scale(x, axis=1)
    assert sc.shape == (32,)
    qc = quant.quantize(x, sc, axis=1)
    assert (np.abs(qc).max(axis=0) == 127).all()
    assert quant.absmax_scale(np.zeros(4)) > 0
    with pytest.raises(ValueError, match="NaN"):
        quant.absmax_scale(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="scale must be finite"):
        quant.quantize(x, 0.0)


def test_requant_params_compose_with_requantize():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(16, 64))
    w = rng.normal(size=(64, 8)) * 0.1
    sx, sw = quant.absmax_scale(x), quant.absmax_scale(w, axis=1)
    qx, qw = quant.quantize(x, sx), quant.quantize(w, sw, axis=1)
    acc = nx.matmul_int(qx, qw)
    y_real = (qx * float(sx)) @ (qw * sw)
    so = quant.absmax_scale(y_real)
    m, s = quant.requant_params(sx, sw, so)
    y = nx.requantize(acc, m, s)
    assert np.abs(y * float(so) - y_real).max() <= float(so) * 0.5 + 1e-6
