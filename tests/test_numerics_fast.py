"""The simulator's fast integer paths (issue #10: the simulator at >= 0.5x float PyTorch) against plain
references written out here step by step, the way NUMERICS.md states them (int64 NumPy, np.where passes,
no BLAS): random inputs and the extremes of every bound the fast paths rely on.

* ``numerics.matmul_int``: float32 BLAS over inner-dimension chunks of at most 2^24 / (max|a| max|b|)
  (1024 int8 x int8, 514 uint8 x int8), the chunks summed in integers; the int32 refusal.
* ``numerics.softmax``: the exponential gathered from a per-call table of offsets, int32 offsets when
  the span allows, row blocks; and the per-entry path it falls back to.
* ``numerics.requantize`` with one common shift for per-channel shifts, and its fallback.
* ``layernorm.isqrt`` (math.isqrt) against the hardware's bit-by-bit loop; ``layernorm_int``,
  ``add_requant`` and ``lut_int8`` against their former step-by-step code.
"""
from __future__ import annotations

import numpy as np
import pytest

from vitaccel.sim import numerics as nx
from vitaccel.sim.common import eltwise, layernorm
from vitaccel.sim.common.eltwise import add_requant, lut_int8
from vitaccel.sim.common.layernorm import LN_SQRT_STEPS, isqrt, layernorm_int

from test_integer_only import _float_uses, _source

I32 = 1 << 31


# -- references ------------------------------------------------------------------------------------------

def ref_matmul(a, b):
    out = np.matmul(np.asarray(a).astype(np.int64), np.asarray(b).astype(np.int64))   # integer loops
    if np.size(out) and np.abs(out).max() >= I32:
        raise OverflowError
    return out


def ref_requantize(acc, m, s):
    a = np.asarray(acc).astype(np.int64)
    m = np.asarray(m).astype(np.int64)
    s = np.asarray(s).astype(np.int64)
    rnd = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    return np.clip(np.right_shift(a * m + rnd, s), -128, 127).astype(np.int8)


def ref_exp(x, m_exp, s_exp):
    """NUMERICS.md softmax step 3 for x = s - mx (int64, clamped at -2^31 by the caller)."""
    t = np.right_shift(x * np.int64(m_exp), np.int64(s_exp))
    u = -t
    q = np.right_shift(u, nx.EXP_FRAC_BITS)
    r = np.bitwise_and(u, (1 << nx.EXP_FRAC_BITS) - 1)
    return np.where(q > 15, 0, np.right_shift(nx.EXP2_LUT[r], np.minimum(q, 15)))


def ref_softmax(scores, keep, m_exp, s_exp):
    s = np.asarray(scores).astype(np.int64)
    k = np.ones(s.shape, bool) if keep is None else np.asarray(keep)
    mx = np.max(np.where(k, s, np.int64(-(1 << 62))), axis=-1, keepdims=True)
    x = np.where(k, np.maximum(s - mx, -I32), 0)
    e = np.where(k, ref_exp(x, m_exp, s_exp), 0)
    total = np.sum(e, axis=-1, keepdims=True)
    recip = np.where(total > 0, (np.int64(1) << nx.RECIP_BITS) // np.maximum(total, 1), 0)
    p = np.right_shift(e * recip + (np.int64(1) << 31), 32)
    return np.minimum(p, 255).astype(np.uint8)


def ref_isqrt(v):
    """The hardware's loop (layernorm.h): one result bit per step from the top."""
    v = np.asarray(v, dtype=np.int64)
    root = np.zeros_like(v)
    rem = v.copy()
    for bit in range(LN_SQRT_STEPS - 1, -1, -1):
        trial = (root << (bit + 1)) + (np.int64(1) << (2 * bit))
        take = rem >= trial
        rem = np.where(take, rem - trial, rem)
        root = np.where(take, root | (np.int64(1) << bit), root)
    return root


def ref_layernorm(x, g, b, shift, eps):
    xs = np.asarray(x).astype(np.int64)
    d = xs.shape[-1]
    s1 = xs.sum(axis=-1, keepdims=True)
    mu = (2 * s1 + d) // (2 * d)
    c = xs - mu
    q = (c * c).sum(axis=-1, keepdims=True)
    v = ((q // d) << 16) + (((q % d) << 16) // d) + int(eps)
    sd = np.maximum(ref_isqrt(v), 1)
    r = (np.int64(1) << 40) // sd
    n = (c * r + (1 << 15)) >> 16
    t = n * g.astype(np.int64) + (b.astype(np.int64) << 16) + (np.int64(1) << (shift - 1))
    return np.clip(t >> shift, -128, 127).astype(np.int8)


def ref_add(a, ma, b, mb, s, out_bits):
    acc = np.asarray(a).astype(np.int64) * ma + np.asarray(b).astype(np.int64) * mb + ((1 << (s - 1)) if s else 0)
    lim = 1 << (out_bits - 1)
    return np.clip(acc >> s, -lim, lim - 1).astype(eltwise.OUT_TYPES[out_bits])


def same(got, want):
    got, want = np.asarray(got), np.asarray(want)
    return got.shape == want.shape and np.array_equal(got.astype(np.int64), want.astype(np.int64))


# -- matmul_int ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 2, 63, 512, 513, 514, 515, 1023, 1024, 1025, 2048, 3072])
def test_matmul_random_and_extremes_equal_the_int64_product(k):
    rng = np.random.default_rng(k)
    i8 = lambda *shape: rng.integers(-128, 128, shape, dtype=np.int8)  # noqa: E731
    cases = [
        (i8(5, k), i8(k, 7)),
        (i8(2, 3, k), i8(k, 4)),                                              # batched a
        (i8(2, 3, k), i8(2, k, 5)),                                           # batched both
        (np.full((3, k), -128, np.int8), np.full((k, 2), -128, np.int8)),     # largest positive sums
        (np.full((3, k), -128, np.int8), np.full((k, 2), 127, np.int8)),      # largest negative sums
        (np.full((2, k), 127, np.int8), np.full((k, 2), 127, np.int8)),       # odd products
        (np.where(rng.random((4, k)) < 0.5, -128, 127).astype(np.int8),
         np.where(rng.random((k, 3)) < 0.5, -128, 127).astype(np.int8)),     # mixed signs at the extremes
        (rng.integers(0, 256, (4, k), dtype=np.uint8), i8(k, 6)),             # probabilities x values
        (np.full((2, k), 255, np.uint8), np.full((k, 2), -128, np.int8)),
        (np.full((2, k), 255, np.uint8), np.full((k, 2), 127, np.int8)),
        (np.full((2, k), 255, np.uint8), np.full((k, 2), 255, np.uint8)),
        (i8(k), i8(k, 3)), (i8(3, k), i8(k)), (i8(k), i8(k)),                # vectors
        (i8(6, k), np.ascontiguousarray(i8(9, k)).T),                         # w.T, as the GEMM passes it
        (np.swapaxes(i8(2, k, 5), 1, 2), i8(2, k, 3)),                        # non-contiguous a
    ]
    for a, b in cases:
        got = nx.matmul_int(a, b)
        assert np.asarray(got).dtype == np.int32
        assert same(got, ref_matmul(a, b)), (a.dtype, a.shape, b.dtype, b.shape)


def test_matmul_empty_and_scalar_shapes():
    a = np.zeros((0, 2000), np.int8)
    assert nx.matmul_int(a, np.zeros((2000, 3), np.int8)).shape == (0, 3)
    assert nx.matmul_int(np.zeros((2, 0), np.int8), np.zeros((0, 3), np.int8)).tolist() == [[0] * 3] * 2
    with pytest.raises(ValueError):
        nx.matmul_int(np.int8(3), np.ones(3, np.int8))
    for ka, kb in ((2048, 3000), (3000, 2048), (5, 7), (1100, 1024)):      # chunks must not hide a mismatch
        with pytest.raises(ValueError):
            nx.matmul_int(np.ones((2, ka), np.int8), np.ones((kb, 3), np.int8))
    with pytest.raises(ValueError):
        nx.matmul_int(np.ones((2, 3, 2048), np.int8), np.ones((4, 2048, 3), np.int8))   # batch mismatch
    with pytest.raises(TypeError, match="b must be int8 or uint8"):
        nx.matmul_int(np.ones((2, 2), np.int8), np.ones((2, 2), np.int16))


def test_matmul_refuses_results_outside_int32():
    k = 1 << 17                                         # 2^17 * 2^14 = 2^31: one past int32
    a = np.full((1, k), -128, np.int8)
    with pytest.raises(OverflowError, match="exceeds int32"):
        nx.matmul_int(a, np.full((k, 1), -128, np.int8))
    assert nx.matmul_int(a[:, 1:], np.full((k - 1, 1), -128, np.int8))[0, 0] == (1 << 31) - (1 << 14)
    # exactly -2^31 (as the float64 version, |result| >= 2^31 is refused): 132104 * -16256 - 128 * 8
    b = np.full((132105, 1), 127, np.int8)
    b[-1] = 8
    with pytest.raises(OverflowError):
        nx.matmul_int(np.full((1, 132105), -128, np.int8), b)
    b[-1] = 9                                           # -2^31 - 128: also refused
    with pytest.raises(OverflowError):
        nx.matmul_int(np.full((1, 132105), -128, np.int8), b)
    b[-1] = 7                                           # -2^31 + 128: fits
    assert nx.matmul_int(np.full((1, 132105), -128, np.int8), b)[0, 0] == -(1 << 31) + 128
    # uint8 x int8: 255 * 127 * 66312 > 2^31
    with pytest.raises(OverflowError):
        nx.matmul_int(np.full((1, 66312), 255, np.uint8), np.full((66312, 1), 127, np.int8))
    assert nx.matmul_int(np.full((1, 66311), 255, np.uint8), np.full((66311, 1), 127, np.int8))[0, 0] \
        == 255 * 127 * 66311


def test_matmul_chunking_is_what_makes_float32_exact(monkeypatch):
    """The comparison above can fail: with the chunk bound lifted, float32 rounds long sums whose partial
    sums pass 2^24 (same-sign products: the sums reach ~2^30)."""
    rng = np.random.default_rng(5)
    k = 1 << 16
    a = rng.integers(100, 128, (8, k), dtype=np.int8)
    b = rng.integers(100, 128, (k, 8), dtype=np.int8)
    assert same(nx.matmul_int(a, b), ref_matmul(a, b))
    monkeypatch.setattr(nx, "_F32_EXACT", 1 << 40)     # one chunk of 65536 products in float32
    assert not same(nx.matmul_int(a, b), ref_matmul(a, b))


# -- softmax ---------------------------------------------------------------------------------------------

def _softmax_cases():
    rng = np.random.default_rng(7)
    out = []
    for scale in (1e-6, 1e-4, 1e-3, 1e-2, 0.3, 10.0):
        m, s = nx.softmax_params(scale)
        for lo, hi in ((-3000, 3000), (-40000, 40000), (-(1 << 20), 1 << 20), (-I32, I32)):
            sc = rng.integers(lo, hi, (6, 9, 37), dtype=np.int64).astype(np.int32)
            keep = rng.random(sc.shape) < 0.4
            keep[0, 0] = False                                   # a row with nothing kept
            keep[0, 1] = False
            keep[0, 1, 5] = True                                 # a row with one entry kept
            out += [(sc, keep, m, s), (sc, None, m, s)]
    sc = rng.integers(-1000, 1000, (5, 40), dtype=np.int32)
    keep = rng.random(sc.shape) < 0.5
    for m, s in ((0, 0), (0, 40), (1, 0), ((1 << 31) - 1, 0), ((1 << 31) - 1, 63), (1, 63), (12345, 20)):
        out += [(sc, keep, m, s), (sc, None, m, s)]
    ext = np.array([[-I32, I32 - 1, 0, -1, I32 - 2], [I32 - 1] * 5, [-I32] * 5], np.int64)
    m, s = nx.softmax_params(1e-3)
    out += [(ext, None, m, s), (ext, ext > -I32, m, s), (ext.astype(np.int32), None, m, s)]
    out += [(sc.astype(np.int16), keep, m, s), (sc.astype(np.int64), keep, m, s)]
    out += [(np.ascontiguousarray(sc.T).T, keep, m, s), (sc[:, ::3], keep[:, ::3], m, s)]   # non-contiguous
    out += [(sc[:, :1], None, m, s), (sc[:, :1], keep[:, :1], m, s)]                         # rows of 1
    big = rng.integers(-5000, 5000, (3, 4, 197, 197), dtype=np.int32)
    out += [(big, None, *nx.softmax_params(2e-3)), (big, rng.random(big.shape) < 0.1, *nx.softmax_params(2e-3))]
    return out


def test_softmax_equals_the_step_by_step_definition():
    for sc, keep, m, s in _softmax_cases():
        got = nx.softmax(sc, keep, m, s)
        assert got.dtype == np.uint8
        assert same(got, ref_softmax(sc, keep, m, s)), (sc.dtype, sc.shape, m, s, keep is None)


@pytest.mark.parametrize("table_max,block", [(0, 1 << 17), (1 << 18, 64), (0, 1), (1 << 30, 1 << 17)])
def test_softmax_paths_and_blocks_equal_the_definition(monkeypatch, table_max, block):
    """The per-entry path (no table), one-row and small blocks, and tables longer than the input."""
    monkeypatch.setattr(nx, "_EXP_TABLE_MAX", table_max)
    monkeypatch.setattr(nx, "_SOFTMAX_BLOCK", block)
    for sc, keep, m, s in _softmax_cases()[::3]:
        assert same(nx.softmax(sc, keep, m, s), ref_softmax(sc, keep, m, s)), (sc.shape, m, s)


def test_softmax_zero_offset_is_where_the_exponential_vanishes():
    rng = np.random.default_rng(3)
    params = [nx.softmax_params(v) for v in (1e-7, 1e-5, 1e-3, 0.1, 3.0, 100.0)]
    params += [(int(m), int(s)) for m, s in zip(rng.integers(1, I32, 20), rng.integers(0, 64, 20))]
    for m, s in params:
        dz = nx._exp_zero_offset(m, s)
        if dz > I32:                                     # no zero before the clamp at 2^31
            assert ref_exp(np.array([-I32], np.int64), m, s)[0] > 0
            continue
        d = np.arange(max(0, dz - 50), dz + 2000, dtype=np.int64)
        e = ref_exp(-d, m, s)
        assert np.all(e[d >= dz] == 0) and ref_exp(np.array([-I32], np.int64), m, s)[0] == 0
        assert dz == 0 or e[d == dz - 1][0] > 0           # the smallest such offset
        assert same(nx._exp_at_offset(d, m, s), e)
    assert nx._exp_zero_offset(0, 5) == I32 + 1


def test_softmax_saturates_and_refuses_like_before():
    m, s = nx.softmax_params(1e-3)
    onehot = np.full((2, 50), -I32, np.int32)
    onehot[:, 7] = I32 - 1
    assert nx.softmax(onehot, None, m, s)[0].tolist() == [0] * 7 + [255] + [0] * 42
    longest = np.random.default_rng(0).integers(-20000, 2000, (2, (1 << 16) - 1), dtype=np.int32)
    assert same(nx.softmax(longest, None, m, s), ref_softmax(longest, None, m, s))
    with pytest.raises(ValueError, match="65535"):
        nx.softmax(np.zeros((1, 1 << 16), np.int32), None, m, s)
    with pytest.raises(ValueError, match="fit in int32"):
        nx.softmax(np.array([[0, -I32 - 1]], np.int64), None, m, s)
    with pytest.raises(ValueError, match="fit in int32"):
        nx.softmax(np.array([[0, I32]], np.uint32), None, m, s)
    with pytest.raises(TypeError, match="scores must be an integer"):
        nx.softmax(np.zeros((1, 3), np.float32), None, m, s)
    with pytest.raises(ValueError, match="m_exp"):
        nx.softmax(np.zeros((1, 3), np.int32), None, I32, s)
    assert nx.softmax(np.zeros((0, 3), np.int32), None, m, s).shape == (0, 3)
    s64, k, _, _ = nx.check_softmax_args(np.zeros((2, 3), np.int32), None, m, s)
    assert s64.dtype == np.int64 and k.dtype == np.bool_ and k.all()


# -- requantize ------------------------------------------------------------------------------------------

def test_requantize_equals_the_definition():
    rng = np.random.default_rng(11)
    acc = np.concatenate([rng.integers(-I32, I32, (50, 24)), rng.integers(-(1 << 20), 1 << 20, (50, 24)),
                          np.full((1, 24), -I32), np.full((1, 24), I32 - 1), np.zeros((1, 24), np.int64)])
    shifts = [rng.integers(0, 64, 24), rng.integers(38, 41, 24), np.full(24, 40), np.zeros(24, np.int64),
              np.r_[np.zeros(12, np.int64), np.full(12, 63)]]
    mults = [rng.integers(0, I32, 24), np.full(24, I32 - 1), rng.integers(1 << 30, I32, 24), np.zeros(24, np.int64)]
    for m in mults:
        for s in shifts:
            for a in (acc, acc.astype(np.int32), acc[:, ::-1], acc[:60] >> 16):
                for mm, ss in ((m.astype(np.int32), s.astype(np.int32)), (m, s), (int(m[0]), s), (m, int(s[0]))):
                    got = nx.requantize(a, mm, ss)
                    assert got.dtype == np.int8 and same(got, ref_requantize(a, mm, ss)), (mm, ss)
    for a in (np.int32(5), np.int64(-7), 300):
        assert nx.requantize(a, 3, 1) == ref_requantize(a, 3, 1) and np.ndim(nx.requantize(a, 3, 1)) == 0
    assert nx.requantize(np.zeros((0, 24), np.int32), mults[0], shifts[0]).shape == (0, 24)
    acc16 = rng.integers(-(1 << 15), 1 << 15, (9, 24)).astype(np.int16)
    assert same(nx.requantize(acc16, mults[0], shifts[1]), ref_requantize(acc16, mults[0], shifts[1]))


def test_requantize_common_shift_falls_back_when_int64_would_overflow():
    m = np.array([I32 - 1, I32 - 1])
    s = np.array([31, 33])
    a = np.array([[I32 - 1, -I32]], np.int64)
    assert nx._common_shift(a, m, s)[1] is s                      # (2^31)(2^33) would leave int64
    assert same(nx.requantize(a, m, s), ref_requantize(a, m, s))
    small = np.array([[1000, -1000]], np.int64)
    mk, top = nx._common_shift(small, m, s)
    assert int(top) == 33 and mk.tolist() == [(I32 - 1) << 2, I32 - 1]
    assert same(nx.requantize(small, m, s), ref_requantize(small, m, s))
    col = np.array([[5], [-7]], np.int64)                         # shapes broadcast as before
    for ss in (np.array([30, 30, 30]), np.array([30, 31, 29])):
        assert same(nx.requantize(col, 1 << 30, ss), ref_requantize(col, 1 << 30, ss))
    for gap in (31, 32, 33, 34):                                  # m 2^gap leaves int64 from gap = 33 on
        sg = np.array([40 - gap, 40])
        tiny = np.array([[1, -1], [3, 2]], np.int64)
        assert same(nx.requantize(tiny, m, sg), ref_requantize(tiny, m, sg)), gap


def test_requantize_refuses_like_before():
    with pytest.raises(ValueError, match="acc must fit in int32"):
        nx.requantize(np.array([I32], np.int64), 1, 1)
    with pytest.raises(ValueError, match="acc must fit in int32"):
        nx.requantize(np.array([-I32 - 1], np.int64), 1, 1)
    with pytest.raises(ValueError, match="acc must fit in int32"):
        nx.requantize(np.array([I32], np.uint32), 1, 1)
    with pytest.raises(TypeError, match="acc must be an integer"):
        nx.requantize(np.array([1.0]), 1, 1)
    assert nx.requantize(np.array([I32 - 1, -I32], np.int64), 1, 0).tolist() == [127, -128]


# -- LayerNorm, add, LUT ---------------------------------------------------------------------------------

def test_isqrt_equals_the_bit_by_bit_loop():
    rng = np.random.default_rng(13)
    top = 1 << (2 * LN_SQRT_STEPS)
    sq = rng.integers(0, 1 << LN_SQRT_STEPS, 500) ** 2
    v = np.concatenate([rng.integers(0, top, 3000), rng.integers(0, 1 << 20, 1000), np.arange(300), sq, sq - 1,
                        sq + 1, [top - 1, 1 << 50, (1 << 50) - 1]])
    v = v[(v >= 0) & (v < top)]
    assert same(isqrt(v), ref_isqrt(v))
    assert same(isqrt(v.reshape(-1, 1)[:40]), ref_isqrt(v[:40]).reshape(-1, 1))
    assert isqrt(np.zeros((0, 1), np.int64)).shape == (0, 1)
    for bad in ([-1], [top]):
        with pytest.raises(ValueError):
            isqrt(bad)


@pytest.mark.parametrize("d", [1, 2, 3, 192, 768, 8192])
def test_layernorm_equals_the_step_by_step_code(d):
    rng = np.random.default_rng(d)
    x = rng.integers(-(1 << 15), 1 << 15, (7, d)).astype(np.int16)
    x[1] = 32767
    x[2] = -32768
    x[3] = np.where(rng.random(d) < 0.5, -32768, 32767)
    x[4] = rng.integers(-3, 4, d)
    g = rng.integers(-I32, I32, d).astype(np.int32)
    b = rng.integers(-I32, I32, d).astype(np.int32)
    for shift, eps in ((16, 0), (40, 12345), (62, I32 - 1)):
        assert same(layernorm_int(x, g, b, shift, eps), ref_layernorm(x, g, b, shift, eps)), (shift, eps)
    x3 = x[:6].reshape(2, 3, d)
    assert same(layernorm_int(x3, g, b, 30, 7), ref_layernorm(x3, g, b, 30, 7))
    assert same(layernorm_int(x[:, ::-1], g, b, 30, 7), ref_layernorm(x[:, ::-1], g, b, 30, 7))


def test_add_and_lut_equal_the_step_by_step_code():
    rng = np.random.default_rng(17)
    a16 = rng.integers(-(1 << 15), 1 << 15, (9, 31)).astype(np.int16)
    a16[0] = -32768
    a16[1] = 32767
    b8 = rng.integers(-128, 128, (9, 31)).astype(np.int8)
    for a, b in ((a16, b8), (b8, a16), (a16, a16[::-1]), (b8, b8), (a16, np.broadcast_to(b8[0], a16.shape))):
        for ma, mb, s in ((0, 0, 0), (I32 - 1, I32 - 1, 62), (I32 - 1, 1, 0), (12345, 67890, 17), (1 << 30, 1 << 29, 31)):
            for bits in (8, 16):
                assert same(add_requant(a, ma, b, mb, s, bits), ref_add(a, ma, b, mb, s, bits)), (ma, mb, s, bits)
                assert add_requant(a, ma, b, mb, s, bits).dtype == eltwise.OUT_TYPES[bits]
    table = rng.integers(-128, 128, 256).astype(np.int8)
    x = np.arange(-128, 128, dtype=np.int8)
    assert same(lut_int8(x, table), table)
    xs = rng.integers(-128, 128, (5, 40)).astype(np.int8)
    for xv in (xs, xs.T, xs[:, ::3], xs[0, 0]):
        assert same(lut_int8(xv, table), table[np.asarray(xv).astype(np.int16) + 128])


# -- no float in the new helpers (the static check of test_integer_only, applied to them) ----------------

@pytest.mark.parametrize("module,name", [
    (nx, "_softmax_args"), (nx, "check_softmax_args"), (nx, "_exp_of_u"), (nx, "_exp_at_offset"),
    (nx, "_exp_zero_offset"), (nx, "_common_shift"), (layernorm, "isqrt"), (eltwise, "_int_operand"),
])
def test_fast_helpers_have_no_float_operations(module, name):
    assert not list(_float_uses(_source(module, name)))
