"""The simulator's attention layer: exact bits against a naive reference, a float reference within a
stated tolerance, and cycle reports that respect the roofline and cover every head."""
import math

import numpy as np
import pytest

from vitaccel.hwconfig import load_config
from vitaccel.sim import numerics as nx
from vitaccel.sim.vitcod.api import attention, attention_baselines
from vitaccel.sim.vitcod.attention import AEParams, SparsePlan, attention_cycles, default_theta_d
from vitaccel.sim.vitcod.baselines import sanger_cycles
from vitaccel.sim.common.gemm import gemm, gemm_cycles

CONFIGS = ["paper", "zcu104", "kv260", "pynq-z2"]


def rand_qkv(rng, h, n, d):
    return tuple(rng.integers(-128, 128, size=(h, n, d)).astype(np.int8) for _ in range(3))


def vitcod_like_mask(rng, h, n, keep=0.08, n_glob=6):
    m = rng.random((h, n, n)) < keep
    for i in range(h):
        m[i][:, rng.choice(n, n_glob, replace=False)] = True
        m[i] |= np.eye(n, dtype=bool)
    m[:, :, 0] = True
    return m


def rand_ae(rng, h, hc):
    def one():
        return AEParams(rng.integers(-128, 128, (hc, h)).astype(np.int8), rng.integers(-500, 500, hc).astype(np.int32),
                        *nx.quantize_multiplier(1 / 300), rng.integers(-128, 128, (h, hc)).astype(np.int8),
                        rng.integers(-500, 500, h).astype(np.int32), *nx.quantize_multiplier(1 / 200))
    return one(), one()


def naive_attention(q, k, v, mask, m_exp, s_exp, m_out, s_out):
    """Entry by entry, in Python integers: what KERNELS.md says, with no NumPy matmul."""
    h, n, d = q.shape
    out = np.zeros((h, n, d), dtype=np.int8)
    qi, ki, vi = (x.astype(np.int64) for x in (q, k, v))
    for a in range(h):
        s = np.zeros((n, n), dtype=np.int64)
        for i in range(n):
            for j in range(n):
                if mask[a, i, j]:
                    s[i, j] = int(np.dot(qi[a, i], ki[a, j]))
        p = nx.softmax(s.astype(np.int32), mask[a], m_exp, s_exp).astype(np.int64)
        for i in range(n):
            acc = [int(sum(p[i, j] * vi[a, j, f] for j in range(n) if mask[a, i, j])) for f in range(d)]
            out[a, i] = nx.requantize(np.array(acc, dtype=np.int32), m_out, s_out)
    return out


def test_bits_match_naive_reference():
    rng = np.random.default_rng(0)
    q, k, v = rand_qkv(rng, 2, 11, 8)
    mask = vitcod_like_mask(rng, 2, 11, keep=0.3, n_glob=2)
    mask[1, 4] = False  # a row with nothing kept
    res = attention(q, k, v, mask, config="paper", score_scale=1 / 2000, out_ratio=1 / 256)
    m_exp, s_exp = nx.softmax_params(1 / 2000)
    ref = naive_attention(q, k, v, mask, m_exp, s_exp, *nx.quantize_multiplier(1 / 256))
    assert (res.output == ref).all()
    assert (res.output[1, 4] == 0).all()


def test_ae_path_is_encode_then_decode():
    rng = np.random.default_rng(1)
    q, k, v = rand_qkv(rng, 6, 20, 16)
    mask = vitcod_like_mask(rng, 6, 20)
    ae = rand_ae(rng, 6, 3)
    res = attention(q, k, v, mask, config="paper", ae=ae)
    plain = attention(ae[0].roundtrip(q), ae[1].roundtrip(k), v, mask, config="paper")
    assert (res.output == plain.output).all()
    assert res.report.kernels[0].engines["decoder"] > 0


def test_order_does_not_change_bits_only_cycles():
    rng = np.random.default_rng(2)
    q, k, v = rand_qkv(rng, 3, 40, 32)
    mask = vitcod_like_mask(rng, 3, 40)
    # pynq-z2: 4 gather ports for 16 lines, so where the globals run matters for the cycles.
    a = attention(q, k, v, mask, config="pynq-z2")
    b = attention(q, k, v, mask, config="pynq-z2", order=np.tile(np.arange(40), (3, 1)), n_global=np.zeros(3, int))
    assert (a.output == b.output).all()
    assert a.report.total_cycles != b.report.total_cycles


def float_masked_attention(q, k, v, mask, qk_scale, v_scale):
    qf, kf, vf = q * qk_scale, k * qk_scale, v * v_scale
    s = np.einsum("hid,hjd->hij", qf, kf) / math.sqrt(q.shape[2])
    s = np.where(mask, s, -np.inf)
    s -= s.max(axis=-1, keepdims=True)
    p = np.where(mask, np.exp(s), 0)
    p /= p.sum(axis=-1, keepdims=True)
    return p @ vf


def test_float_reference_within_stated_tolerance():
    """Tolerance: each probability is within 2/256 of float (NUMERICS.md), so an output can move by up to
    sum_j |dp_j| |v_j|; in practice the errors are small and of both signs. We require mean |error| <= 0.5
    LSB of v's scale and max <= 4 LSB over 6 heads x 197 tokens x 64 features."""
    rng = np.random.default_rng(3)
    h, n, d = 6, 197, 64
    q, k, v = rand_qkv(rng, h, n, d)
    mask = vitcod_like_mask(rng, h, n)
    res = attention(q, k, v, mask, config="paper")  # defaults: q, k mean x/32; output keeps v's scale
    ref = float_masked_attention(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), mask, 1 / 32, 1.0)
    err = np.abs(res.output.astype(np.float64) - ref)
    assert err.mean() <= 0.5
    assert err.max() <= 4.0


@pytest.mark.parametrize("name", CONFIGS)
def test_roofline_and_breakdown_hold(name):
    cfg = load_config(name)
    rng = np.random.default_rng(4)
    h = min(6, cfg.max_heads)
    mask = vitcod_like_mask(rng, h, 197)
    plan = SparsePlan.from_mask(mask, config=cfg)
    for hc in (None, 3):
        for label, rep in attention_baselines(plan, 64, config=cfg, compressed_heads=hc).items():
            floor = max(rep.macs / cfg.peak_macs_per_cycle, rep.dram_bytes / cfg.bytes_per_cycle)
            assert rep.total_cycles >= floor, (label, rep.total_cycles, floor)
            assert min(rep.compute, rep.preprocess, rep.data) >= 0
            assert len(rep.heads) == h
            assert sum(x["compute"] + x.get("preprocess", 0) + x["data"] for x in rep.heads) == rep.total_cycles
    g = gemm_cycles(cfg, 197, 384, 1152)
    assert g.total_cycles >= max(g.macs / cfg.peak_macs_per_cycle, g.dram_bytes / cfg.bytes_per_cycle)


def test_every_head_is_simulated():
    rng = np.random.default_rng(5)
    mask = vitcod_like_mask(rng, 12, 50)
    mask[7, :, 1:] = False  # head 7: CLS column only
    rep = attention_cycles(load_config("paper"), SparsePlan.from_mask(mask, config=load_config("paper")), 64)
    assert [x["head"] for x in rep.heads] == list(range(12))
    costs = [x["compute"] for x in rep.heads]
    assert costs[7] == min(costs)
    assert rep.heads[7]["n_global"] == 1


def test_n_global_extremes():
    rng = np.random.default_rng(6)
    q, k, v = rand_qkv(rng, 3, 33, 32)
    mask = vitcod_like_mask(rng, 3, 33)
    ident = np.tile(np.arange(33), (3, 1))
    for ng in (0, 33, 10):
        r = attention(q, k, v, mask, config="paper", order=ident, n_global=np.full(3, ng))
        assert r.report.total_cycles > 0
        lines = [(x["lines_denser"], x["lines_sparser"]) for x in r.report.kernels[0].heads]
        if ng == 0:
            assert all(ld == 0 for ld, _ in lines)
        if ng == 33:
            assert all(ls == 0 for _, ls in lines)


@pytest.mark.parametrize("name", ["paper", "pynq-z2"])
def test_sparsity_makes_it_faster_and_sanger_slower(name):
    cfg = load_config(name)
    rng = np.random.default_rng(7)
    plan = SparsePlan.from_mask(vitcod_like_mask(rng, 6, 197), config=cfg)
    b = attention_baselines(plan, 64, config=cfg)
    # The host compiler keeps a head's globals on the denser engine only where that is faster
    # (engine_plan), so reordering never costs; with few gather ports (pynq-z2: 4 of 16 lines) it pays.
    assert b["vitcod_no_ae"].total_cycles <= b["pruning_only"].total_cycles < b["dense"].total_cycles
    if cfg.sparse_q_ports < cfg.mac_lines:
        assert b["vitcod_no_ae"].total_cycles < b["pruning_only"].total_cycles
    assert b["vitcod_no_ae"].total_cycles < b["sanger"].total_cycles


def test_ae_cuts_traffic():
    cfg = load_config("pynq-z2")
    rng = np.random.default_rng(8)
    plan = SparsePlan.from_mask(vitcod_like_mask(rng, 6, 197), config=cfg)
    with_ae = attention_cycles(cfg, plan, 64, compressed_heads=3)
    without = attention_cycles(cfg, plan, 64)
    assert with_ae.dram_bytes < without.dram_bytes


def test_default_theta_d_is_the_break_even_point():
    # nnz > theta_d  <=>  nnz / N >= P / L: a full column is global even with a port on every line.
    for name, n, want in (("paper", 197, 196), ("pynq-z2", 197, 49), ("pynq-z2", 64, 15)):
        cfg = load_config(name)
        p = min(cfg.sparse_q_ports, cfg.mac_lines)
        assert default_theta_d(cfg, n) == want
        assert all((nnz > want) == (nnz * cfg.mac_lines >= n * p) for nnz in range(n + 1))


def test_bad_inputs_name_the_problem():
    rng = np.random.default_rng(9)
    q, k, v = rand_qkv(rng, 2, 9, 8)
    mask = np.ones((2, 9, 9), bool)
    with pytest.raises(ValueError, match="q must be int8"):
        attention(q.astype(np.int16), k, v, mask)
    with pytest.raises(ValueError, match="mask must be bool"):
        attention(q, k, v, mask.astype(np.uint8))
    with pytest.raises(ValueError, match="share a shape"):
        attention(q, k[:, :8], v, mask)
    with pytest.raises(TypeError, match="unknown quantisation keyword"):
        attention(q, k, v, mask, scale=3)
    with pytest.raises(TypeError, match="not both"):
        attention(q, k, v, mask, score_scale=1e-3, softmax_mult=5, softmax_shift=3)
    with pytest.raises(ValueError, match="both order and n_global"):
        attention(q, k, v, mask, order=np.tile(np.arange(9), (2, 1)))
    with pytest.raises(ValueError, match="exceeds config 'pynq-z2' limits"):
        attention_cycles(load_config("pynq-z2"), SparsePlan.from_mask(np.ones((12, 9, 9), bool), config=load_config("pynq-z2")), 8)


def test_gemm_bits():
    rng = np.random.default_rng(10)
    x = rng.integers(-128, 128, (13, 70)).astype(np.int8)
    w = rng.integers(-128, 128, (9, 70)).astype(np.int8)
    b = rng.integers(-1000, 1000, 9).astype(np.int32)
    mult = rng.integers(1 << 20, 1 << 30, 9).astype(np.int32)
    shift = np.full(9, 36, np.int32)
    ref = np.clip((x.astype(np.int64) @ w.T.astype(np.int64) + b) * mult.astype(np.int64) + (1 << 35) >> 36, -128, 127)
    assert (gemm(x, w, b, mult, shift) == ref).all()


def test_sanger_counts_passes():
    cfg = load_config("paper")
    mask = np.zeros((1, 16, 16), bool)
    mask[0, :, 0] = True  # every query keeps key 0: one key block, 16 rows -> one pass
    rep = sanger_cycles(cfg, mask, 64)
    assert rep.heads[0]["passes"] == 1


def test_pytorch_reference_within_stated_tolerance():
    """The same tolerance as the NumPy float reference above, against torch's own masked softmax attention
    (scaled_dot_product_attention with a boolean mask), on dequantised inputs."""
    torch = pytest.importorskip("torch", reason="models extra not installed")
    torch.set_num_threads(1)
    rng = np.random.default_rng(11)
    h, n, d = 6, 197, 64
    q, k, v = rand_qkv(rng, h, n, d)
    mask = vitcod_like_mask(rng, h, n)
    res = attention(q, k, v, mask, config="paper")
    tq, tk = (torch.from_numpy(x.astype(np.float64) / 32) for x in (q, k))
    tv = torch.from_numpy(v.astype(np.float64))
    ref = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.from_numpy(mask)).numpy()
    err = np.abs(res.output.astype(np.float64) - ref)
    assert err.mean() <= 0.5 and err.max() <= 4.0
