"""The simulator's cycle models against the HLS C++'s own cycle counters (FINN-style), so that they cannot drift.

The C++ engines (hls/common/, hls/vitcod/) count, under ``#ifndef __SYNTHESIS__`` (hls/common/perf.h), every pipelined
loop nest they run as the iterations they executed x II (1) plus the nest's pipeline depth, and combine
concurrent nests the way the schedule runs them (the two attention engines share one loop; the softmax
unit's two stages form a row pipeline; the decoder runs beside the softmax unit; GEMM compute and store
are a DATAFLOW). The cycle models in vitaccel/sim/common/ and vitaccel/sim/vitcod/ compute the same from the masks and shapes in
closed form. This file runs the C-simulation on random and edge-case inputs and requires

* **equality** of the compute cycles of every engine phase (per head for attention: SDDMM, softmax,
  next-head decode, S.V, requantisation; the AE prologue decode; GEMM and encoder totals; the MAC-loop
  iterations alone), of the reports' ``compute`` and ``preprocess``, and of the off-chip bytes
  (``dram_bytes``);
* equality of the pipeline depths both sides use (hls/common/schedule.h).

Tolerance: none. Both sides count loop trip counts, which the C++ knows exactly at run time, and add the
same depth constants; what only synthesis can tell (whether Vitis reaches II = 1 and these depths) is a
shared assumption, not a difference between the two. Transfer *cycles* are the DRAM model's
(sim/common/dram.py) and not compared; the bytes behind them are.

Never skipped: CI has g++ and hls4ml (like tests/test_csim_kernels.py).
"""
from __future__ import annotations


import numpy as np
import pytest

from vitaccel.hwconfig import load_config
from vitaccel.sim.vitcod import csim_kernels as ck
from vitaccel.sim.golden import attention_params, rand_i8, random_ae, vitcod_mask
from vitaccel.sim.vitcod.attention import (PIPE_RQ, SparsePlan, _head_work, attention_cycles, gather_ports, head_pipeline,
                                            line_split, live_blocks, pipe_dot, pipe_mix, pipe_softmax)
from vitaccel.sim.vitcod.autoencoder import ae_mix_cycles, ae_tile_tokens, mix_tiles
from vitaccel.sim.common.gemm import gemm_cycles
from vitaccel.sim.vitcod.sparse_format import order_from_globals

pytestmark = pytest.mark.csim

CONFIG = "paper"


def make_plan(mask: np.ndarray, mode: str, rng, cfg) -> SparsePlan:
    """'none': n_global = 0; 'all': n_global = N; 'auto': the config's threshold; 'shuffled': random global
    columns in random order, head 0 without any; 'mixed': head h gets h * N // H global columns."""
    h, n, _ = mask.shape
    ident = np.tile(np.arange(n, dtype=np.int32), (h, 1))
    if mode == "none":
        return SparsePlan.from_mask(mask, ident, np.zeros(h, np.int32))
    if mode == "all":
        return SparsePlan.from_mask(mask, ident, np.full(h, n, np.int32))
    if mode == "auto":
        return SparsePlan.from_mask(mask, config=cfg)
    if mode == "mixed":
        is_global = np.zeros((h, n), bool)
        for hh in range(h):
            is_global[hh, rng.permutation(n)[:hh * n // max(h - 1, 1)]] = True
        return SparsePlan.from_mask(mask, *order_from_globals(is_global))
    assert mode == "shuffled"
    is_global = rng.random((h, n)) < 0.3
    is_global[0] = False
    order, n_global = order_from_globals(is_global)
    for hh in range(h):
        g = int(n_global[hh])
        order[hh, :g] = rng.permutation(order[hh, :g])
    return SparsePlan.from_mask(mask, order, n_global)


# -- the shared constants -------------------------------------------------------------------------------

@pytest.mark.parametrize("config", ["paper", "pynq-z2"])
def test_schedule_constants_agree(config):
    cfg = load_config(config)
    sm_max, sm_exp, sm_div = pipe_softmax(cfg)
    want = {"pipe_dot": pipe_dot(cfg), "pipe_rq": PIPE_RQ, "pipe_mix": pipe_mix(cfg), "pipe_sm_max": sm_max,
            "pipe_sm_exp": sm_exp, "pipe_div": sm_div, "softmax_lanes": cfg.softmax_lanes,
            "gather_ports": gather_ports(cfg), "ae_tile_tokens": ae_tile_tokens(cfg), "mix_lines": cfg.mac_lines}
    assert ck.schedule_constants(config) == want


# -- attention ------------------------------------------------------------------------------------------

# (H, N, d, plan mode, AE compressed heads or 0, split: 'host' = line_split, 'random' = any valid split)
ATTENTION_CASES = [
    (3, 5, 32, "auto", 0, "host"),
    (3, 17, 64, "all", 2, "host"),         # n_global = N: sparser engine idle, AE
    (4, 17, 20, "none", 0, "host"),        # n_global = 0, d % M != 0
    (6, 33, 32, "shuffled", 3, "random"),  # some heads without globals, random splits, AE
    (5, 65, 64, "mixed", 0, "random"),     # n_global from 0 to N across heads
    (6, 65, 64, "auto", 1, "host"),        # Hc = 1
    (6, 197, 64, "auto", 3, "host"),       # DeiT-Small-like, AE
    (3, 197, 64, "none", 0, "host"),
    (2, 97, 24, "mixed", 2, "random"),
]


def _random_split(rng, cfg, plan: SparsePlan) -> np.ndarray:
    h, n = plan.shape
    out = np.zeros(h, np.int32)
    for hh in range(h):
        g = int(plan.n_global[hh])
        if g < n:
            hi = min(gather_ports(cfg), cfg.mac_lines - 1 if g > 0 else cfg.mac_lines)
            out[hh] = rng.integers(1, hi + 1)
    return out


@pytest.mark.parametrize("h,n,d,mode,hc,split", ATTENTION_CASES)
def test_attention_cycles_match_the_hls_counters(h, n, d, mode, hc, split):
    cfg = load_config(CONFIG)
    rng = np.random.default_rng(h * 7_919 + n * 104_729 + d * 13 + hc)
    q, k, v = (rand_i8(rng, (h, n, d)) for _ in range(3))
    mask = vitcod_mask(rng, h, n)
    mask[0, n // 2, :] = False  # a row with nothing kept
    if n > 4:
        mask[-1, :, n - 2] = False  # a key nobody attends to
    plan = make_plan(mask, mode, rng, cfg)
    ae = (random_ae(rng, h, hc), random_ae(rng, h, hc)) if hc else None
    ld_host, ls_host = line_split(cfg, plan, d)
    ls = ls_host if split == "host" else _random_split(rng, cfg, plan)

    ck.perf_reset(CONFIG)
    ck.csim_attention(q, k, v, None, *attention_params(d), ae=ae, plan=plan, sparse_lines=ls, config=CONFIG)
    tot = ck.perf_totals(CONFIG)
    per = ck.perf_heads(CONFIG)[:h]
    assert tot["att_layers"] == 1

    col_nnz = plan.column_nnz()
    row_kept = plan.mask.sum(axis=2)
    row_sparse = plan.sparse_row_nnz()
    live = live_blocks(cfg, plan.mask, plan.order)
    for hh in range(h):
        g = int(plan.n_global[hh])
        ld = cfg.mac_lines - int(ls[hh]) if g > 0 else 0
        w = _head_work(cfg, n, d, g, col_nnz[hh], row_kept[hh], live[hh], row_sparse[hh], split=(ld, int(ls[hh])))
        got = dict(zip(ck.PERF_HEAD, (int(x) for x in per[hh])))
        want = {"sddmm": w.sddmm, "softmax": w.softmax, "spmm": w.spmm, "requant": w.requant}
        assert {key: got[key] for key in want} == want, f"head {hh} (g={g}, split {ld}/{int(ls[hh])})"
    if split != "host":
        return
    # The whole report (with the host compiler's split, which the model chooses itself).
    rep = attention_cycles(cfg, plan, d, compressed_heads=hc or None)
    assert [x["lines_sparser"] for x in rep.heads] == list(ls_host)
    assert [x["lines_denser"] for x in rep.heads] == list(ld_host)
    for hh, x in enumerate(rep.heads):
        got = dict(zip(ck.PERF_HEAD, (int(v) for v in per[hh])))
        assert (got["sddmm"], got["softmax"], got["decode_next"], got["spmm"], got["requant"]) == \
            (x["sddmm"], x["softmax"], x["decode_next"], x["spmm"], x["requant"]), f"head {hh}"
    # The heads pipelined (HeadPipeline / head_pipeline) from the C++'s own phase lengths; the report's
    # compute is that schedule without the decoder, preprocess the decoder's share and the prologue.
    assert tot["att_pipeline"] + tot["att_decode_prologue"] == rep.compute + rep.preprocess
    assert rep.compute == head_pipeline([(x["sddmm"], x["softmax"], x["spmm"], x["requant"], 0) for x in rep.heads])
    assert tot["att_pipeline"] <= tot["att_sddmm"] + tot["att_softmax"] + tot["att_spmm"] + tot["att_requant"] + \
        tot["att_decode"]
    assert tot["att_softmax_phase"] == sum(max(x["softmax"], x["decode_next"]) for x in rep.heads)
    assert tot["att_sddmm_dense"] + tot["att_spmm_dense"] == rep.engines["denser"]
    assert tot["att_sddmm_sparse"] + tot["att_spmm_sparse"] == rep.engines["sparser"]
    assert tot["att_decode_prologue"] + tot["att_decode"] == rep.engines["decoder"]
    assert tot["att_bytes_in"] + tot["att_bytes_out"] == rep.dram_bytes
    # Per head: order, colptr, two headptr words, the mask rows, V (and Q, K without AE), rowidx once.
    mb = -(-n // 8)
    want_in = [4 * n + 4 * (n + 1) + 8 + n * mb + n * d * (1 if hc else 3) + 4 * int(col_nnz[hh].sum())
               for hh in range(h)]
    assert [int(b) for b in per[:, ck.PERF_HEAD.index("bytes_in")]] == want_in
    if mode == "all":
        assert tot["att_sddmm_sparse"] == tot["att_spmm_sparse"] == 0
    if mode == "none":
        assert tot["att_sddmm_dense"] == tot["att_spmm_dense"] == 0
    if hc:
        assert tot["att_decode_prologue"] > 0 and tot["att_decode"] > 0


def test_attention_through_the_top_uses_the_descriptors_split():
    """vitcod_top unpacks the split from the descriptor (word 48 + h, bits 16..31): same counters."""
    cfg = load_config(CONFIG)
    rng = np.random.default_rng(5)
    h, n, d = 4, 49, 32
    q, k, v = (rand_i8(rng, (h, n, d)) for _ in range(3))
    plan = make_plan(vitcod_mask(rng, h, n), "mixed", rng, cfg)
    params = attention_params(d)
    ck.perf_reset(CONFIG)
    ck.CsimTopKernels(CONFIG).attention(q, k, v, plan, *params)
    via_top = ck.perf_heads(CONFIG)[:h].copy()
    rep = attention_cycles(cfg, plan, d)
    assert [int(x) for x in via_top[:, 0]] == [x["sddmm"] for x in rep.heads]
    assert [int(x) for x in via_top[:, 3]] == [x["spmm"] for x in rep.heads]
    ck.perf_reset(CONFIG)
    ck.csim_attention(q, k, v, None, *params, plan=plan, config=CONFIG)
    assert np.array_equal(ck.perf_heads(CONFIG)[:h], via_top)


def test_invalid_split_is_refused():
    rng = np.random.default_rng(6)
    h, n, d = 2, 9, 16
    q, k, v = (rand_i8(rng, (h, n, d)) for _ in range(3))
    plan = make_plan(vitcod_mask(rng, h, n), "none", rng, load_config(CONFIG))
    for bad in ([0, 1], [1, gather_ports(load_config(CONFIG)) + 1]):
        with pytest.raises(ck.CsimKernelError) as ei:
            ck.csim_attention(q, k, v, None, *attention_params(d), plan=plan, sparse_lines=bad, config=CONFIG)
        assert ei.value.status == 0x307


# -- GEMM -------------------------------------------------------------------------------------------------

GEMM_CASES = [
    ("paper", 1, 1, 1),
    ("paper", 5, 17, 3),
    ("paper", 17, 100, 65),
    ("paper", 65, 192, 130),    # two weight tiles
    ("paper", 9, 5, 4100),      # many rows per line
    ("paper", 20, 773, 70),     # K sliced
    ("paper", 30, 3000, 65),    # K sliced, activations not resident
    ("paper", 197, 64, 197),
    ("pynq-z2", 17, 1536, 40),  # small config: K sliced
    ("pynq-z2", 70, 600, 33),   # activations not resident
    ("pynq-z2", 3, 7, 2100),
]


@pytest.mark.parametrize("config,m,k,o", GEMM_CASES)
def test_gemm_cycles_match_the_hls_counters(config, m, k, o):
    cfg = load_config(config)
    rng = np.random.default_rng(m * 31 + k * 7 + o)
    x, w = rand_i8(rng, (m, k)), rand_i8(rng, (o, k))
    bias = rng.integers(-999, 999, o).astype(np.int32)
    ck.perf_reset(config)
    ck.csim_gemm(x, w, bias, 1 << 20, 30, config=config)
    tot = ck.perf_totals(config)
    rep = gemm_cycles(cfg, m, k, o)
    assert tot["gemm_calls"] == 1
    assert tot["gemm_mac_iters"] == rep.engines["mac_iterations"]
    assert tot["gemm_compute"] == rep.compute
    assert tot["gemm_bytes_in"] + tot["gemm_bytes_out"] == rep.dram_bytes


# -- the AE encoder ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("config,hin,c,n,d", [("paper", 6, 3, 197, 64), ("paper", 12, 6, 65, 32),
                                              ("paper", 3, 1, 17, 20), ("paper", 2, 3, 5, 8),
                                              ("pynq-z2", 6, 3, 130, 64)])
def test_encoder_cycles_match_the_hls_counters(config, hin, c, n, d):
    cfg = load_config(config)
    rng = np.random.default_rng(hin * 1000 + c * 100 + n + d)
    x, w = rand_i8(rng, (hin, n, d)), rand_i8(rng, (c, hin))
    b = rng.integers(-99, 99, c).astype(np.int32)
    ck.perf_reset(config)
    ck.csim_mix_heads(x, w, b, 1 << 30, 40, config=config)
    tot = ck.perf_totals(config)
    tiles = mix_tiles(cfg, hin, c, n, d)
    assert tot["ae_calls"] == 1
    assert tot["ae_compute"] == sum(t[1] for t in tiles)
    assert tot["ae_bytes_in"] == c * hin + 4 * c + sum(t[0] for t in tiles)
    assert tot["ae_bytes_out"] == sum(t[2] for t in tiles)
    # The report of one OP_AE_MIX descriptor (what the whole-model report charges per encoder run).
    rep = ae_mix_cycles(cfg, hin, c, n, d)
    assert rep.engines["encoder"] == rep.preprocess == tot["ae_compute"]


# -- the qkv GEMM with the encoders on its output stage (OP_QKV_AE) --------------------------------------

@pytest.mark.parametrize("config,b,n,k,h,d,hc,tog", [
    ("paper", 1, 17, 40, 3, 8, 2, 0), ("paper", 1, 17, 40, 3, 8, 2, 1),
    ("paper", 2, 197, 64, 6, 16, 3, 0), ("paper", 2, 197, 96, 3, 32, 2, 1),
    ("paper", 3, 90, 40, 12, 64, 6, 0),      # three stage chunks
    ("paper", 1, 120, 800, 12, 64, 6, 1),    # K sliced, three chunks
    ("pynq-z2", 3, 100, 96, 6, 64, 3, 0), ("pynq-z2", 3, 100, 96, 6, 64, 3, 1),
])
def test_qkv_ae_cycles_match_the_hls_counters(config, b, n, k, h, d, hc, tog):
    from vitaccel.sim.vitcod.autoencoder import qkv_ae_cycles
    from vitaccel.sim.vitcod.descriptors import qkv_ae_descriptor
    from vitaccel.sim.window import Dram

    cfg = load_config(config)
    rng = np.random.default_rng(b + n + k + h + d + hc + tog)
    m, dm = b * n, h * d
    dram = Dram()
    o = {nm: dram.put(a) for nm, a in (
        ("x", rand_i8(rng, (m, k))), ("w", rand_i8(rng, (3 * dm, k))),
        ("bias", rng.integers(-999, 999, 3 * dm).astype(np.int32)), ("mult", np.full(3 * dm, 1 << 20, np.int32)),
        ("shift", np.full(3 * dm, 30, np.int32)), ("eq_w", rand_i8(rng, (hc, h))), ("ek_w", rand_i8(rng, (hc, h))),
        ("eq_b", np.zeros(hc, np.int32)), ("ek_b", np.ones(hc, np.int32)))}
    o.update(y=dram.alloc(m * 3 * dm), qc=dram.alloc(m * hc * d), kc=dram.alloc(m * hc * d))
    desc = qkv_ae_descriptor(M=m, K=k, H=h, d=d, Hc=hc, N=n, eq_m=1 << 30, eq_s=36, ek_m=1 << 30, ek_s=36,
                             stage_qk=tog, **o)
    ck.perf_reset(config)
    ck.run_descriptors(dram, [desc], config)
    tot = ck.perf_totals(config)
    rep = qkv_ae_cycles(cfg, m, k, h, d, hc, together=bool(tog))
    from vitaccel.sim.vitcod.autoencoder import qkv_stage_rows

    chunks = -(-m // qkv_stage_rows(cfg, (1 + tog) * dm))
    assert tot["gemm_calls"] == chunks * (1 if tog else 2) + 1 and tot["ae_calls"] == 2
    assert tot["gemm_mac_iters"] == rep.engines["mac_iterations"]
    assert tot["gemm_compute"] == rep.engines["gemm"] == rep.compute
    assert tot["ae_compute"] == rep.engines["encoder"] == rep.preprocess
    # Off chip: x per chunk and section, the weights, V; the compressed Q/K; never the full Q or K.
    assert tot["gemm_bytes_out"] == m * dm
    assert tot["ae_bytes_out"] == 2 * m * hc * d
    assert sum(tot[f"{e}_bytes_{io}"] for e in ("gemm", "ae") for io in ("in", "out")) == rep.dram_bytes
