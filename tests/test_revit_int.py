"""ReViT's integer functional models (vitaccel.sim.revit): known answers and bit-exact identities."""
from __future__ import annotations

import numpy as np
import pytest

from vitaccel.sim import numerics as nx
from vitaccel.sim.revit import (
    LayerParams, blockwise_softmax_int, blockwise_softmax_qmax, booth_digits, booth_terms, centroids_int, deltas_int,
    diff_output, diff_projection, diff_scores, hash_params, lsh_codes_int, lsh_groups_int, plain_projection,
    prune_decisions, revit_attention_layer, softmax_at_reference, zero_offset,
)
from vitaccel.sim.revit.attention import LayerResult
from vitaccel.sim.revit.softmax import BlockTrace, weighted_softmax


# --------------------------------------------------------------------------------------------------
# Booth terms
# --------------------------------------------------------------------------------------------------

def test_booth_known_values() -> None:
    vals = [0, 1, -1, 2, 7, 27, 42, 127]
    assert booth_terms(vals, 8).tolist() == [0, 1, 1, 2, 2, 3, 4, 2]
    allv = np.arange(-128, 128)
    assert booth_terms(allv, 8).mean() == 3.0 and booth_terms(allv, 8).max() == 4
    # The digits reconstruct the value, are in {-2..2}, and a 10-bit delta has at most 5 terms.
    d = booth_digits(allv, 8).astype(np.int64)
    assert np.array_equal((d * 4 ** np.arange(4)).sum(-1), allv) and np.abs(d).max() == 2
    wide = np.arange(-512, 512)
    assert booth_terms(wide, 10).max() == 5 and np.array_equal(booth_terms(allv, 10), booth_terms(allv, 8))
    assert booth_terms([-256], 9).tolist() == [1]           # odd widths sign-extend
    assert (booth_terms(wide, 10) == 0).sum() == 1          # only zero has no term
    with pytest.raises(ValueError):
        booth_terms([128], 8)
    with pytest.raises(TypeError):
        booth_terms([1.5], 8)


# --------------------------------------------------------------------------------------------------
# LSH in integers
# --------------------------------------------------------------------------------------------------

def test_integer_hash_hand_made_ties_lowest() -> None:
    w = np.array([[1, 0], [0, 1], [1, 1]], np.int8)
    b = np.array([0, 5, 0], np.int32)
    x = np.array([[10, 0], [0, 10], [3, 3], [-7, -7]], np.int8)
    # acc = [[10, 5, 10], [0, 15, 10], [3, 8, 6], [-7, -2, -14]]; codes = floor(acc / 4) (m = 2^30, s = 32)
    codes = lsh_codes_int(x, w, b, 1 << 30, 32)
    assert codes.tolist() == [[2, 1, 2], [0, 3, 2], [0, 2, 1], [-2, -1, -4]]
    assert lsh_groups_int(x, w, b, 1 << 30, 32).tolist() == [0, 1, 1, 1]


def test_hash_params_agree_with_float_partition() -> None:
    pytest.importorskip("torch")
    from vitaccel.models.revit import lsh_partition, make_lsh

    rng = np.random.default_rng(0)
    alpha, beta = (a.astype(np.float32) for a in make_lsh(32, 4, 1.0, 5))
    s_in = 0.03
    x8 = rng.integers(-128, 128, (2000, 32)).astype(np.int8)
    A, B, m, s = hash_params(alpha, beta, 1.0, s_in)
    assert A.dtype == np.int8 and np.abs(A).max() == 127 and B.dtype == np.int32
    got = lsh_groups_int(x8, A, B, m, s)
    ref = lsh_partition(x8.astype(np.float64) * np.float32(s_in), alpha, beta, 1.0)
    assert np.mean(got == ref) > 0.97   # int8 alpha moves a few tokens that sit on a bucket boundary
    assert np.array_equal(lsh_groups_int(x8[::-1], A, B, m, s), got[::-1])   # permutation equivariant
    with pytest.raises(ValueError):
        hash_params(alpha, beta, 0.0, s_in)


# --------------------------------------------------------------------------------------------------
# centroids, deltas, differential projection / scores / output
# --------------------------------------------------------------------------------------------------

def test_centroid_rounding_hand_made() -> None:
    x = np.array([[1], [2], [-1], [-2], [5], [127], [127], [-128]], np.int8)
    g = np.array([0, 0, 1, 1, 2, 3, 3, 3])
    c, n = centroids_int(x, g, 5)
    # 1.5 -> 2 and -1.5 -> -1 (half up), 5 -> 5, (127 + 127 - 128) / 3 = 42; empty group -> 0.
    assert c[:, 0].tolist() == [2, -1, 5, 42, 0] and n.tolist() == [2, 2, 1, 3, 0]
    d = deltas_int(x, g, c)
    assert d.dtype == np.int16 and d[:, 0].tolist() == [-1, 0, 0, -1, 0, 85, 85, -170]


def test_centroid_is_the_rounded_mean_and_deltas_are_nine_bit() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (500, 16)).astype(np.int8)
    g = rng.integers(0, 6, 500)
    c, n = centroids_int(x, g, 6)
    for j in range(6):
        mean = x[g == j].astype(np.float64).mean(0)
        assert np.array_equal(c[j], np.floor(mean + 0.5).astype(np.int8))
    ext = np.full((2, 16), 127, np.int8)
    ext[1] = -128
    assert np.abs(deltas_int(ext, [0, 0], centroids_int(ext, [0, 0], 1)[0])).max() <= 255


def test_differential_projection_equals_plain_gemm() -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (197, 48)).astype(np.int8)
    w = rng.integers(-128, 128, (144, 48)).astype(np.int8)
    b = rng.integers(-(1 << 20), 1 << 20, 144).astype(np.int32)
    mult, shift = nx.quantize_multiplier(0.0007)
    for G in (1, 4, 13):
        g = rng.integers(0, G, 197)
        acc, acc_c, acc_d, dx = diff_projection(x, g, G, w, b)
        assert np.array_equal(acc, plain_projection(x, w, b))
        assert np.array_equal(nx.requantize(acc, mult, shift), nx.requantize(plain_projection(x, w, b), mult, shift))
        assert np.array_equal(acc_c - b, centroids_int(x, g, G)[0].astype(np.int64) @ w.T.astype(np.int64))
        assert dx.dtype == np.int16 and np.array_equal(acc_d, dx.astype(np.int64) @ w.T.astype(np.int64))


def test_differential_scores_and_output_equal_plain() -> None:
    rng = np.random.default_rng(3)
    h, m, d = 3, 17, 8
    q = rng.integers(-128, 128, (h, m, d)).astype(np.int8)
    k = rng.integers(-128, 128, (h, m, d)).astype(np.int8)
    v = rng.integers(-128, 128, (h, m, d)).astype(np.int8)
    kc, vc = k[:, 3], v[:, 5]                       # any int8 reference is exact
    dk = k.astype(np.int16) - kc[:, None].astype(np.int16)
    dv = v.astype(np.int16) - vc[:, None].astype(np.int16)
    s = diff_scores(q, kc, dk)
    assert np.array_equal(s, nx.matmul_int(q, np.swapaxes(k, 1, 2)))
    m_exp, s_exp = nx.softmax_params(1e-3)
    p = nx.softmax(s, None, m_exp, s_exp)
    assert not np.all(p.astype(np.int64).sum(-1) == 256)   # Eq. 9's row sum is really needed in integers
    assert np.array_equal(diff_output(p, vc, dv), nx.matmul_int(p, v))


# --------------------------------------------------------------------------------------------------
# blockwise integer softmax
# --------------------------------------------------------------------------------------------------

def test_zero_offset_is_the_first_zero_exponential() -> None:
    for scale in (1e-5, 1e-3, 0.05, 3.0):
        m, s = nx.softmax_params(scale)
        dz = zero_offset(m, s)
        row = np.array([0, -(dz - 1), -dz, -dz - 1, -(1 << 31) + 1])
        e = nx.softmax(row, None, m, s)   # the exponentials are what matters: compare against step 3
        from vitaccel.sim.revit.softmax import exp_from_offset
        ex = exp_from_offset(np.minimum(-row, 1 << 31), m, s)
        assert ex[2] == 0 and ex[3] == 0 and (dz == 1 << 31 or ex[1] > 0)
        assert e.dtype == np.uint8


def test_blockwise_softmax_int_bit_exact_every_block_size_and_order() -> None:
    rng = np.random.default_rng(4)
    for trial in range(40):
        n = int(rng.integers(1, 70))
        s = rng.integers(-30000, 30000, (2, 3, n))
        if trial % 5 == 0:
            s = s * 50000                                  # huge spreads: offsets saturate at 2^31
            s = np.clip(s, -(1 << 31), (1 << 31) - 1)
        keep = rng.random((2, 3, n)) < 0.75
        keep[0, 0] = False                                  # an empty row
        m, sh = nx.softmax_params(float(rng.uniform(1e-4, 2e-2)))
        ref = nx.softmax(s, keep, m, sh)
        for block in sorted({1, 2, 3, 5, 8, n, max(1, n // 2)}):
            nb = -(-n // block)
            for order in (None, list(rng.permutation(nb))):
                got = blockwise_softmax_int(s, keep, m, sh, block, order=order)
                assert got.dtype == np.uint8 and np.array_equal(got, ref), (trial, block, order)
    # The running sum after each block is the one-pass sum of the prefix, recomputed (not shifted).
    s = np.array([[0, 900, -400, 5000, 4990, 12]])
    m, sh = nx.softmax_params(2e-3)
    tr = BlockTrace()
    blockwise_softmax_int(s, None, m, sh, 2, trace=tr)
    from vitaccel.sim.revit.softmax import exp_from_offset
    for b, mx, total in tr:
        pre = s[:, :2 * (b + 1)]
        assert mx[0] == pre.max() and total[0] == exp_from_offset(pre.max() - pre, m, sh).sum()


def test_weighted_softmax_is_repeated_entries() -> None:
    rng = np.random.default_rng(5)
    s = rng.integers(-4000, 4000, (4, 9))
    w = rng.integers(0, 4, (4, 9))
    m, sh = nx.softmax_params(3e-3)
    ref_rep = [nx.softmax(np.repeat(s[i], w[i]), None, m, sh) for i in range(4)]
    got = weighted_softmax(s, None, m, sh, w)
    for i in range(4):
        # entry j's probability, with weight w_j, equals w_j copies' probability times w_j (before rounding)
        e_sum = weighted_softmax(s[i:i + 1], None, m, sh, w[i:i + 1])
        assert e_sum.shape == (1, 9)
        if w[i].sum():
            first = np.cumsum(w[i]) - w[i]
            nz = w[i] > 0
            assert np.all(np.abs(got[i][nz].astype(int) - w[i][nz] * ref_rep[i][first[nz]].astype(int)) <= w[i][nz])
    for block in (1, 4, 9):
        assert np.array_equal(blockwise_softmax_int(s, None, m, sh, block, weights=w), got)
    assert np.array_equal(weighted_softmax(s, None, m, sh, None), nx.softmax(s, None, m, sh))


def test_quantised_max_alternative_is_not_numerics_softmax() -> None:
    """The notes' scheme (exact right shifts at a quantised running max) equals a softmax referenced at
    that quantised max, bit for bit, but not NUMERICS.md's one-pass softmax: the reason for the offsets."""
    rng = np.random.default_rng(6)
    m, sh = 1 << 20, 22                                    # a power-of-two multiplier, as the scheme needs
    rows = rng.integers(-3000, 3000, (2000, 50))
    p, ref = blockwise_softmax_qmax(rows, None, m, sh, 8)
    assert np.array_equal(p, softmax_at_reference(rows, None, m, sh, ref))
    one_pass = nx.softmax(rows, None, m, sh)
    differ = np.mean(np.any(p != one_pass, axis=-1))
    assert 0.05 < differ < 0.5                              # measured: 20% of rows
    assert np.max(np.abs(p.astype(int) - one_pass.astype(int))) <= 2
    assert np.array_equal(blockwise_softmax_int(rows, None, m, sh, 8), one_pass)
    with pytest.raises(ValueError):
        blockwise_softmax_qmax(rows, None, 3 << 20, sh, 8)


# --------------------------------------------------------------------------------------------------
# one attention layer and the pruning decisions
# --------------------------------------------------------------------------------------------------

def _layer(rng, dm=24, heads=2, G=4, combine="joint"):
    m_exp, s_exp = nx.softmax_params(0.002)
    A = rng.integers(-128, 128, (G, dm)).astype(np.int8)
    qm, qs = nx.quantize_multiplier(0.004)
    return LayerParams(heads=heads, num_groups=G, qkv_weight=rng.integers(-128, 128, (3 * dm, dm)).astype(np.int8),
                       qkv_bias=rng.integers(-5000, 5000, 3 * dm).astype(np.int32),
                       qkv_mult=np.full(3 * dm, qm, np.int32), qkv_shift=np.full(3 * dm, qs, np.int32),
                       hash_weight=A, hash_bias=np.zeros(G, np.int32), hash_mult=1 << 30, hash_shift=40,
                       softmax=(m_exp, s_exp), out=nx.quantize_multiplier(1 / 256), block=3, combine=combine)


def _plain_layer(h8, lp):
    """The same layer without any differential arithmetic or blocks: plain GEMM, masks, one-pass softmax."""
    n, dm = h8.shape
    H, G, d = lp.heads, lp.num_groups, dm // lp.heads
    g = lsh_groups_int(h8[1:], lp.hash_weight, lp.hash_bias, lp.hash_mult, lp.hash_shift)
    qkv = nx.requantize(plain_projection(h8, lp.qkv_weight, lp.qkv_bias), lp.qkv_mult, lp.qkv_shift)
    c8, cnt = centroids_int(h8[1:], g, G)
    qkvc = nx.requantize(plain_projection(c8, lp.qkv_weight, lp.qkv_bias), lp.qkv_mult, lp.qkv_shift)
    sp = lambda t: t.reshape(t.shape[0], 3, H, d).transpose(1, 2, 0, 3)
    q, k, v = sp(qkv)
    qc, kc, vc = sp(qkvc)
    m, s = lp.softmax
    acc = np.zeros((H, n, d), np.int64)
    pc = nx.softmax(nx.matmul_int(q[:, :1], np.swapaxes(k, 1, 2)), None, m, s)
    acc[:, :1] = nx.matmul_int(pc, v)
    ne = cnt > 0
    for i in range(1, n):
        own = np.concatenate([[False], g == g[i - 1]])
        if lp.combine == "joint":
            other = ne & (np.arange(G) != g[i - 1])
            sc = np.concatenate([nx.matmul_int(q[:, i:i + 1], np.swapaxes(k, 1, 2)),
                                 nx.matmul_int(q[:, i:i + 1], np.swapaxes(kc, 1, 2))], -1)
            keep = np.broadcast_to(np.concatenate([own, other]), sc.shape).copy()
            w = np.concatenate([np.ones(n, np.int64), np.where(other, cnt, 0)])
            p = weighted_softmax(sc, keep, m, s, w)
            acc[:, i:i + 1] = nx.matmul_int(p[..., :n], v) + nx.matmul_int(p[..., n:], vc)
        else:
            p = nx.softmax(nx.matmul_int(q[:, i:i + 1], np.swapaxes(k, 1, 2)), np.broadcast_to(own, (H, 1, n)).copy(), m, s)
            acc[:, i:i + 1] = nx.matmul_int(p, v)
            if lp.combine == "sum":
                zc = nx.matmul_int(nx.softmax(nx.matmul_int(qc, np.swapaxes(kc, 1, 2)),
                                              np.broadcast_to(ne, (H, G, G)).copy(), m, s), vc)
                acc[:, i] += zc[:, g[i - 1]]
    return nx.requantize(acc, *lp.out).transpose(1, 0, 2).reshape(n, dm), g


@pytest.mark.parametrize("combine", ["joint", "sum", "intra"])
def test_attention_layer_equals_plain_integer_attention(combine) -> None:
    rng = np.random.default_rng(7)
    lp = _layer(rng, combine=combine)
    h8 = rng.integers(-128, 128, (30, 24)).astype(np.int8)
    h8[5] = h8[9]                                              # identical tokens share a group
    res = revit_attention_layer(h8, lp)
    ref, g = _plain_layer(h8, lp)
    assert np.array_equal(res.groups, g) and res.groups[4] == res.groups[8]
    assert np.array_equal(res.a8, ref)
    assert res.cls_p.shape == (2, 30) and res.group_p.shape == (2, 4) and res.deltas.dtype == np.int16
    for block in (1, 7, 64):
        lp.block = block
        assert np.array_equal(revit_attention_layer(h8, lp).a8, ref)


def test_prune_decisions_hand_made() -> None:
    res = LayerResult(a8=np.zeros((6, 2), np.int8), groups=np.array([0, 0, 1, 1, 0]), counts=np.array([3, 2]),
                      cls_p=np.array([[10, 100, 20, 60, 40, 20]], np.uint8),
                      group_p=np.array([[180, 70]], np.uint8), deltas=np.zeros((5, 2), np.int16))
    keep, w = prune_decisions(res, 1 << 15, 1 << 15)          # ratio 0.5: 1 of 2 groups, ceil(3/2) = 2 patches
    # group 0 = tokens 0, 1, 4 with scores 100, 20, 20: token 0, then the tie 1 vs 4 goes to 1
    assert keep.tolist() == [True, True, False, False, False]
    assert np.allclose(w, [0, 0, 60 / 256, 40 / 256, 20 / 256])      # the package token's CLS-attention weights
    keep, _ = prune_decisions(res, 1 << 16, 1 << 16)
    assert keep.all()
    res.cls_p[:] = 50                                          # all tied: lower index first
    keep, _ = prune_decisions(res, 1 << 16, 1)                # ceil(l_g / 2^16) = 1 patch per group
    assert keep.tolist() == [True, False, True, False, False]
