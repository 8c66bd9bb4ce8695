"""The HLS engines (hls/common/, hls/vitcod/) in C-simulation against the simulator's functional models, bit for bit.

Compiled with g++ against hls4ml's ap_types headers (vitaccel.sim.csim / vitaccel.sim.vitcod.csim_kernels); never
skipped: CI has g++ and hls4ml. The library is compiled once per session (and cached on disk), the three
FINN-style testbenches (X_tb.cpp + X_top.cpp) once each, in parallel.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import math
import os
import subprocess
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from vitaccel.hls import HLS_DIR, INCLUDE_DIR
from vitaccel import accelerators
from vitaccel.hwconfig import load_config
from vitaccel.sim import csim, golden
from vitaccel.sim.vitcod import csim_kernels as ck
from vitaccel.sim import numerics as nx
from vitaccel.sim.vitcod.attention import SparsePlan, attention_int
from vitaccel.sim.vitcod.autoencoder import mix_heads
from vitaccel.sim.common.gemm import gemm
from vitaccel.sim.vitcod.model import SimKernels
from vitaccel.sim.quant import absmax_scale, dequantize, quantize, requant_params
from vitaccel.sim.golden import attention_params, quant_for, rand_i8, random_ae, special_rows, vitcod_mask

pytestmark = pytest.mark.csim

CONFIG = "paper"
I32_MAX = (1 << 31) - 1


@pytest.fixture(scope="module")
def klib():
    return ck.kernels_library(CONFIG)


# -- inputs -----------------------------------------------------------------------------------------

def assert_same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    bad = np.argwhere(got != want)
    assert bad.size == 0, (f"{what}: {len(bad)} mismatches, first at {tuple(bad[0])}: "
                           f"C-sim {got[tuple(bad[0])]} vs simulator {want[tuple(bad[0])]}")


# -- GEMM -------------------------------------------------------------------------------------------

GEMM_SHAPES = [
    (1, 1, 1),
    (5, 17, 3),        # K, M, O below one chunk / one line group
    (17, 100, 65),     # K % 8 != 0, O = one line group + 1
    (65, 192, 130),    # several weight tiles (To = 128)
    (9, 5, 4100),      # tiny K: 64 rows per line, two weight tiles (To = 4096)
    (20, 773, 70),     # K sliced (97 chunks > 64 per line), partial sums
    (30, 3000, 65),    # K sliced in 6, activations not resident (Tm = 21): two activation tiles
]


@pytest.mark.parametrize("m,k,o", GEMM_SHAPES)
def test_gemm_matches_simulator(klib, m, k, o):
    rng = np.random.default_rng(m * 1_000_003 + k * 1009 + o)
    x, w = rand_i8(rng, (m, k)), rand_i8(rng, (o, k))
    acc_std = 74.0 ** 2 * math.sqrt(k)
    bias = rng.integers(-int(acc_std), int(acc_std) + 1, o).astype(np.int32)
    mult, shift = quant_for(acc_std, rng, o)
    want = gemm(x, w, bias, mult, shift)
    assert_same(ck.csim_gemm(x, w, bias, mult, shift), want, f"gemm {m}x{k}x{o}")
    if want.size >= 16:  # informative outputs
        assert np.count_nonzero((want > -128) & (want < 127)) > 0.5 * want.size


def test_gemm_extreme_requant_and_bias(klib):
    rng = np.random.default_rng(3)
    m, k, o = 7, 64, 96
    x = np.full((m, k), -128, np.int8)
    x[1::2] = 127
    w = np.full((o, k), -128, np.int8)
    w[::3] = 127
    bias = rng.integers(-(1 << 30) + 1, 1 << 30, o).astype(np.int32)
    bias[:4] = [(1 << 30) - 1, -(1 << 30) + 1, 0, 1]
    mult = rng.integers(0, 1 << 31, o).astype(np.int32)
    shift = rng.integers(0, 64, o).astype(np.int32)
    mult[:8] = [0, 1, I32_MAX, 1 << 30, 0, I32_MAX, 1, 3]
    shift[:8] = [0, 0, 63, 31, 63, 0, 1, 2]
    assert_same(ck.csim_gemm(x, w, bias, mult, shift), gemm(x, w, bias, mult, shift), "gemm extremes")
    # Scalar (per-tensor) requantisation broadcasts.
    assert_same(ck.csim_gemm(x, w, bias, 1 << 30, 40), gemm(x, w, bias, 1 << 30, 40), "gemm scalar requant")


def test_gemm_refuses_bad_requant(klib):
    x, w = np.ones((2, 3), np.int8), np.ones((4, 3), np.int8)
    b = np.zeros(4, np.int32)
    with pytest.raises(ck.CsimKernelError, match="multiplier") as ei:
        ck.csim_gemm(x, w, b, np.array([1, 1, -1, 1]), 3)
    assert ei.value.status == 0x103
    with pytest.raises(ck.CsimKernelError, match="shift") as ei:
        ck.csim_gemm(x, w, b, 1, np.array([1, 64, 1, 1]))
    assert ei.value.status == 0x104
    y = np.zeros((2, 4), np.int8)
    assert klib.gemm(x, w, b, b, b, y, 0, 3, 4) == 0x101
    with pytest.raises(ValueError, match="K=65537"):
        ck.csim_gemm(np.ones((1, 65537), np.int8), np.ones((1, 65537), np.int8), np.zeros(1, np.int32), 1, 0)


# -- auto-encoder -----------------------------------------------------------------------------------

@pytest.mark.parametrize("h,c,n,d", [(12, 6, 197, 64), (3, 2, 5, 32), (6, 3, 17, 64), (12, 12, 65, 32),
                                     (3, 1, 17, 20), (2, 3, 5, 8)])
def test_ae_mix_matches_simulator(klib, h, c, n, d):
    rng = np.random.default_rng(h * 7919 + c * 131 + n * 17 + d)
    x, w = rand_i8(rng, (h, n, d)), rand_i8(rng, (c, h))
    b = rng.integers(-(1 << 12), 1 << 12, c).astype(np.int32)
    m, s = quant_for(74.0 ** 2 * math.sqrt(h), rng)
    want = mix_heads(x, w, b, m, s)
    assert_same(ck.csim_mix_heads(x, w, b, m, s), want, f"ae mix {h}->{c}")
    assert_same(ck.CsimTopKernels(CONFIG).mix_heads(x, w, b, m, s), want, f"ae mix {h}->{c} via vitcod_top")


# -- attention --------------------------------------------------------------------------------------

# (H, N, d, plan mode, AE compressed heads or 0)
ATTENTION_CASES = [
    (3, 5, 32, "auto", 0),
    (3, 5, 64, "all", 2),
    (6, 17, 64, "none", 0),
    (6, 17, 32, "shuffled", 3),
    (12, 65, 32, "auto", 6),
    (3, 65, 64, "shuffled", 0),
    (12, 197, 64, "auto", 0),
    (3, 197, 32, "none", 2),
    (6, 197, 64, "all", 0),
]


@pytest.mark.parametrize("h,n,d,mode,hc", ATTENTION_CASES)
def test_attention_matches_simulator(klib, h, n, d, mode, hc):
    rng = np.random.default_rng(h * 100_003 + n * 313 + d * 7 + hc)
    q, k, v = (rand_i8(rng, (h, n, d)) for _ in range(3))
    mask = special_rows(vitcod_mask(rng, h, n))
    plan = golden.plan_with(mask, mode, rng)
    ae = (random_ae(rng, h, hc), random_ae(rng, h, hc)) if hc else None
    params = attention_params(d)
    want = attention_int(q, k, v, mask, *params, ae=ae)
    got = ck.csim_attention(q, k, v, mask, *params, ae=ae, plan=plan)
    assert_same(got, want, f"attention H={h} N={n} d={d} {mode} Hc={hc}")
    # The cases exercise what they claim to.
    ng = plan.n_global
    assert {"none": (ng == 0).all(), "all": (ng == n).all(), "auto": True,
            "shuffled": (ng == 0).any() and (ng > 0).any()}[mode]
    if mode in ("none", "shuffled"):
        sparse_cols = np.arange(n)[None, :] >= ng[:, None]
        assert (plan.column_nnz()[sparse_cols] == 0).any(), "no empty sparse column"
    if n > 3:
        assert not want[:, 1].any(), "a row with nothing kept must output zeros"
    assert np.count_nonzero(want) > 0.5 * want.size


def test_attention_all_kept_dense_and_top_path(klib):
    rng = np.random.default_rng(11)
    h, n, d = 3, 17, 32
    q, k, v = (rand_i8(rng, (h, n, d)) for _ in range(3))
    mask = np.ones((h, n, n), bool)
    params = attention_params(d)
    want = attention_int(q, k, v, mask, *params)
    for mode in ("none", "all", "shuffled"):
        plan = golden.plan_with(mask, mode, rng)
        assert_same(ck.csim_attention(q, k, v, mask, *params, plan=plan), want, f"all kept, {mode}")
        assert_same(ck.CsimTopKernels(CONFIG).attention(q, k, v, plan, *params), want, f"all kept via top, {mode}")


def test_attention_refuses_inconsistent_indexes(klib):
    rng = np.random.default_rng(12)
    h, n, d = 3, 17, 32
    q, k, v = (rand_i8(rng, (h, n, d)) for _ in range(3))
    plan = golden.plan_with(vitcod_mask(rng, h, n), "none", rng)
    params = attention_params(d)

    def bad(status, **change):
        p = SparsePlan(**{**{f: getattr(plan, f) for f in ("mask", "order", "n_global", "colptr", "headptr",
                                                             "rowidx")}, **change})
        with pytest.raises(ck.CsimKernelError) as ei:
            ck.csim_attention(q, k, v, None, *params, plan=p)
        assert ei.value.status == status, ck.status_message(ei.value.status)

    rowidx = plan.rowidx.copy()
    rowidx[3] = n
    bad(0x306, rowidx=rowidx)
    # Two queries of one column swapped: not increasing any more.
    col = next(c for c in range(n) if plan.colptr[0, c + 1] - plan.colptr[0, c] >= 2)
    e = int(plan.headptr[0] + plan.colptr[0, col])
    rowidx = plan.rowidx.copy()
    rowidx[e], rowidx[e + 1] = plan.rowidx[e + 1], plan.rowidx[e]
    bad(0x306, rowidx=rowidx)
    colptr = plan.colptr.copy()
    colptr[1, 4] = colptr[1, 3] - 1
    bad(0x305, colptr=colptr)
    headptr = plan.headptr.copy()
    headptr[-1] += 1
    bad(0x305, headptr=headptr)
    bad(0x303, n_global=np.array([0, n + 1, 0], np.int32))
    with pytest.raises(ck.CsimKernelError) as ei:  # checked by the C API before packing the mask
        ck.csim_attention(q, k, v, None, *params, plan=SparsePlan(plan.mask, plan.order - 1, plan.n_global,
                                                                    plan.colptr, plan.headptr, plan.rowidx))
    assert ei.value.status == 0x304


def test_a_small_config_too():
    """pynq-z2: 16 lines (12 denser), 2 AE lines, 128-word weight banks, 32 KiB activation tile. The engines'
    shapes follow the generated constants; the bits must not."""
    cfg = "pynq-z2"
    lim = ck.kernels_library(cfg).limits
    assert (lim["mac_lines"], lim["dense_lines"], lim["ae_lines"], lim["gemm_wline"]) == (16, 12, 2, 128)
    rng = np.random.default_rng(77)
    for m, k, o in [(17, 1536, 40), (70, 600, 33), (3, 7, 2100)]:  # K sliced, x not resident, many rows per line
        x, w = rand_i8(rng, (m, k)), rand_i8(rng, (o, k))
        bias = rng.integers(-999, 999, o).astype(np.int32)
        mult, shift = quant_for(74.0 ** 2 * math.sqrt(k), rng, o)
        assert_same(ck.csim_gemm(x, w, bias, mult, shift, config=cfg), gemm(x, w, bias, mult, shift), "gemm z2")
    x, w = rand_i8(rng, (6, 33, 64)), rand_i8(rng, (3, 6))
    b = rng.integers(-99, 99, 3).astype(np.int32)
    assert_same(ck.csim_mix_heads(x, w, b, 1 << 30, 40, config=cfg), mix_heads(x, w, b, 1 << 30, 40), "ae z2")
    h, n, d = 6, 65, 64
    q, k, v = (rand_i8(rng, (h, n, d)) for _ in range(3))
    mask = special_rows(vitcod_mask(rng, h, n))
    ae = (random_ae(rng, h, 3), random_ae(rng, h, 3))
    params = attention_params(d)
    for mode in ("shuffled", "all"):
        plan = golden.plan_with(mask, mode, rng)
        assert_same(ck.csim_attention(q, k, v, None, *params, ae=ae, plan=plan, config=cfg),
                    attention_int(q, k, v, mask, *params, ae=ae), f"attention z2 {mode}")
    with pytest.raises(ValueError, match="H=12"):
        ck.csim_attention(*(rand_i8(rng, (12, 5, 8)) for _ in range(3)), np.ones((12, 5, 5), bool), *params,
                          config=cfg)


# -- the top-level function ------------------------------------------------------------------------

def test_top_id_register_and_layout(klib):
    status, hw_id = ck.run_descriptors(ck.Dram(), [], CONFIG)
    assert status == 0 and hw_id == load_config(CONFIG).hash32 == klib.config_hash32()
    assert klib.desc_layout() == [v for _, v in ck.DESC_LAYOUT]


def test_top_runs_a_program_and_reports_the_failing_descriptor(klib):
    rng = np.random.default_rng(21)
    dram = ck.Dram()
    m, k, o = 9, 40, 24
    x, w = rand_i8(rng, (m, k)), rand_i8(rng, (o, k))
    bias = rng.integers(-999, 999, o).astype(np.int32)
    mult, shift = quant_for(74.0 ** 2 * math.sqrt(k), rng, o)
    off = dict(x=dram.put(x), w=dram.put(w), bias=dram.put(bias), mult=dram.put(mult), shift=dram.put(shift),
               y=dram.alloc(m * o))
    g = ck.gemm_descriptor(M=m, K=k, O=o, **off)
    nop = np.zeros(ck.DESC_WORDS, np.int32)
    ck.run_descriptors(dram, [nop, g], CONFIG)
    assert_same(dram.get(off["y"], (m, o), np.int8), gemm(x, w, bias, mult, shift), "gemm via vitcod_top")

    def status_of(desc) -> int:
        dram.write(off["y"], np.zeros(m * o, np.int8))
        st, _ = ck.run_descriptors(dram, [g, desc], CONFIG, check=False)
        # The descriptor before the failing one ran to completion.
        assert_same(dram.get(off["y"], (m, o), np.int8), gemm(x, w, bias, mult, shift), "first descriptor")
        assert st >> 16 == 1, hex(st)
        return st & 0xFFFF

    def changed(**kw):
        d = g.copy()
        for name, value in kw.items():
            d[ck.GEMM_WORDS[name]] = value
        return d

    unknown = g.copy()
    unknown[0] = 99
    assert status_of(unknown) == 0x001
    flags = g.copy()
    flags[1] = 1
    assert status_of(flags) == 0x001
    assert status_of(changed(bias=off["bias"] + 2)) == 0x002
    assert status_of(changed(y=1 << 30)) == 0x003
    assert status_of(changed(x=-64)) == 0x003  # 0xffffffc0: far outside
    assert status_of(changed(M=0)) == 0x101
    neg = ck.ae_descriptor(Hin=2, C=1, N=3, d=8, x=0, x_hs=-24, x_ns=8, w=0, b=0, mult=1, shift=0, y=0, y_hs=24,
                           y_ns=8)
    assert status_of(neg) == 0x004
    with pytest.raises(ck.CsimKernelError, match="descriptor 1: a range outside"):
        ck.run_descriptors(dram, [g, changed(w=1 << 30)], CONFIG)
    # Descriptor list misaligned / outside the window: checked before anything runs.
    buf = dram.buffer
    hw, runs = np.zeros(1, np.uint32), np.zeros(1, np.uint32)
    assert klib.run(buf, buf.size, 2, 1, hw, runs) == 0x002
    first = int(runs[0])
    assert klib.run(buf, buf.size, buf.size - 128, 1, hw, runs) == 0x003
    assert klib.run(buf, buf.size, 0, 70000, hw, runs) == 0x005
    # The run counter counts every start, refused ones included.
    assert int(runs[0]) == first + 2


# -- a whole transformer block ---------------------------------------------------------------------

def _ln(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return ((x - mu) / np.sqrt(var + 1e-6) * g + b).astype(np.float32)


def _gelu(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return (0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))).astype(np.float32)


def _linear(rng, k: int, o: int, in_scale: float, x_float: np.ndarray) -> Dict:
    """int8 weights, int32 bias and requantisation for a float layer, calibrated on x_float."""
    wf = rng.normal(0, 1 / math.sqrt(k), (o, k)).astype(np.float32)
    bf = rng.normal(0, 0.1, o).astype(np.float32)
    w_scale = absmax_scale(wf, axis=0)
    wq = quantize(wf, w_scale, axis=0)
    yf = x_float @ wf.T + bf
    out_scale = float(absmax_scale(yf))
    mult, shift = requant_params(in_scale, w_scale, out_scale)
    bias = np.round(bf / (in_scale * w_scale)).astype(np.int32)
    return dict(weight=wq, bias=bias, mult=mult, shift=shift, in_scale=in_scale, out_scale=out_scale)


def make_block(rng, n: int, h: int, d: int, mlp: int, hc: int):
    dm = h * d
    x = rng.normal(0, 1, (n, dm)).astype(np.float32)
    ln1 = (rng.normal(1, 0.1, dm).astype(np.float32), rng.normal(0, 0.1, dm).astype(np.float32))
    ln2 = (rng.normal(1, 0.1, dm).astype(np.float32), rng.normal(0, 0.1, dm).astype(np.float32))
    h1 = _ln(x, *ln1)
    qkv = _linear(rng, dm, 3 * dm, float(absmax_scale(h1)), h1)
    s_qkv = qkv["out_scale"]
    proj = _linear(rng, dm, dm, s_qkv, rng.normal(0, 40 * s_qkv, (n, dm)).astype(np.float32))
    h2 = _ln(x + rng.normal(0, 0.5, x.shape).astype(np.float32), *ln2)
    fc1 = _linear(rng, dm, mlp, float(absmax_scale(h2)), h2)
    g = _gelu(rng.normal(0, 1, (n, mlp)).astype(np.float32))
    fc2 = _linear(rng, mlp, dm, float(absmax_scale(g)), g)
    mask = vitcod_mask(rng, h, n, density=0.08)
    plan = SparsePlan.from_mask(mask, config=load_config(CONFIG))
    softmax = nx.softmax_params(s_qkv ** 2 / math.sqrt(d))
    attn_out = nx.quantize_multiplier(2.0 ** -8 * s_qkv / proj["in_scale"])
    ae = (random_ae(rng, h, hc), random_ae(rng, h, hc)) if hc else None
    return dict(x=x, ln1=ln1, ln2=ln2, qkv=qkv, proj=proj, fc1=fc1, fc2=fc2, plan=plan, softmax=softmax,
                attn_out=attn_out, ae=ae, h=h, d=d)


def run_block(kern, b) -> Dict[str, np.ndarray]:
    """The int8 model graph of KERNELS.md for one image, glue in float32 here, kernels from ``kern``."""
    x, h, d = b["x"], b["h"], b["d"]
    n, dm = x.shape
    lin = lambda a, p: kern.gemm(a, p["weight"], p["bias"], p["mult"], p["shift"])  # noqa: E731
    t: Dict[str, np.ndarray] = {}
    t["h8"] = quantize(_ln(x, *b["ln1"]), b["qkv"]["in_scale"])
    t["qkv"] = lin(t["h8"], b["qkv"])
    q, k, v = (np.ascontiguousarray(a) for a in t["qkv"].reshape(n, 3, h, d).transpose(1, 2, 0, 3))
    if b["ae"] is not None:
        rt = lambda a, p: kern.mix_heads(kern.mix_heads(a, p.enc_weight, p.enc_bias, p.enc_mult, p.enc_shift),  # noqa
                                         p.dec_weight, p.dec_bias, p.dec_mult, p.dec_shift)
        q, k = rt(q, b["ae"][0]), rt(k, b["ae"][1])
    a8 = kern.attention(q, k, v, b["plan"], *b["softmax"], *b["attn_out"])
    t["attn"] = np.ascontiguousarray(a8.transpose(1, 0, 2).reshape(n, dm))
    t["proj"] = lin(t["attn"], b["proj"])
    x1 = x + dequantize(t["proj"], b["proj"]["out_scale"])
    t["f_in"] = quantize(_ln(x1, *b["ln2"]), b["fc1"]["in_scale"])
    t["fc1"] = lin(t["f_in"], b["fc1"])
    t["g8"] = quantize(_gelu(dequantize(t["fc1"], b["fc1"]["out_scale"])), b["fc2"]["in_scale"])
    t["fc2"] = lin(t["g8"], b["fc2"])
    t["x_out"] = x1 + dequantize(t["fc2"], b["fc2"]["out_scale"])
    return t


def run_block_on_top(b) -> Dict[str, np.ndarray]:
    """The same block as the host would drive the accelerator: one DRAM window, three descriptor programs
    (qkv GEMM + AE encoders + attention + proj GEMM; fc1; fc2), host glue in between. The encoders and the
    attention read Q, K, V straight out of the (N, 3D) qkv output and attention writes (N, D) concat-heads."""
    x, h, d = b["x"], b["h"], b["d"]
    n, dm = x.shape
    hc = b["ae"][0].compressed_heads if b["ae"] else 0
    plan = b["plan"]
    dram = ck.Dram()
    t: Dict[str, np.ndarray] = {}

    def put_linear(p):
        return dict(w=dram.put(p["weight"]), bias=dram.put(p["bias"]), mult=dram.put(p["mult"]),
                    shift=dram.put(p["shift"]))

    w_qkv, w_proj, w_fc1, w_fc2 = (put_linear(b[k]) for k in ("qkv", "proj", "fc1", "fc2"))
    h8_o, qkv_o, a_o, p_o = dram.alloc(n * dm), dram.alloc(n * 3 * dm), dram.alloc(n * dm), dram.alloc(n * dm)
    f_o, fc1_o, g_o, fc2_o = (dram.alloc(n * dm), dram.alloc(n * b["fc1"]["weight"].shape[0]),
                              dram.alloc(n * b["fc1"]["weight"].shape[0]), dram.alloc(n * dm))
    idx = dict(mask=dram.put(ck.pack_mask_bits(plan)), order=dram.put(plan.order), colptr=dram.put(plan.colptr),
               headptr=dram.put(plan.headptr), rowidx=dram.put(plan.rowidx))
    mlp = b["fc1"]["weight"].shape[0]

    t["h8"] = quantize(_ln(x, *b["ln1"]), b["qkv"]["in_scale"])
    dram.write(h8_o, t["h8"])
    prog = [ck.gemm_descriptor(M=n, K=dm, O=3 * dm, x=h8_o, y=qkv_o, **w_qkv)]
    att = dict(H=h, N=n, d=d, n_global=plan.n_global, v=qkv_o + 2 * dm, v_hs=d, v_ns=3 * dm, o=a_o, o_hs=d,
               o_ns=dm, m_exp=b["softmax"][0], s_exp=b["softmax"][1], m_out=b["attn_out"][0],
               s_out=b["attn_out"][1], **idx)
    if hc:
        enc = {}
        for j, (name, p) in enumerate(zip("qk", b["ae"])):
            enc[name] = dram.alloc(hc * n * d)
            prog.append(ck.ae_descriptor(Hin=h, C=hc, N=n, d=d, x=qkv_o + j * dm, x_hs=d, x_ns=3 * dm,
                                         w=dram.put(p.enc_weight), b=dram.put(p.enc_bias), mult=p.enc_mult,
                                         shift=p.enc_shift, y=enc[name], y_hs=n * d, y_ns=d))
            att.update({f"d{name}_w": dram.put(p.dec_weight), f"d{name}_b": dram.put(p.dec_bias),
                        f"d{name}_m": p.dec_mult, f"d{name}_s": p.dec_shift})
        att.update(Hc=hc, q=enc["q"], q_hs=n * d, q_ns=d, k=enc["k"], k_hs=n * d, k_ns=d)
    else:
        att.update(q=qkv_o, q_hs=d, q_ns=3 * dm, k=qkv_o + dm, k_hs=d, k_ns=3 * dm)
    prog.append(ck.attention_descriptor(**att))
    prog.append(ck.gemm_descriptor(M=n, K=dm, O=dm, x=a_o, y=p_o, **w_proj))
    ck.run_descriptors(dram, prog, CONFIG)
    t["qkv"] = dram.get(qkv_o, (n, 3 * dm), np.int8)
    t["attn"] = dram.get(a_o, (n, dm), np.int8)
    t["proj"] = dram.get(p_o, (n, dm), np.int8)

    x1 = x + dequantize(t["proj"], b["proj"]["out_scale"])
    t["f_in"] = quantize(_ln(x1, *b["ln2"]), b["fc1"]["in_scale"])
    dram.write(f_o, t["f_in"])
    ck.run_descriptors(dram, [ck.gemm_descriptor(M=n, K=dm, O=mlp, x=f_o, y=fc1_o, **w_fc1)], CONFIG)
    t["fc1"] = dram.get(fc1_o, (n, mlp), np.int8)
    t["g8"] = quantize(_gelu(dequantize(t["fc1"], b["fc1"]["out_scale"])), b["fc2"]["in_scale"])
    dram.write(g_o, t["g8"])
    ck.run_descriptors(dram, [ck.gemm_descriptor(M=n, K=mlp, O=dm, x=g_o, y=fc2_o, **w_fc2)], CONFIG)
    t["fc2"] = dram.get(fc2_o, (n, dm), np.int8)
    t["x_out"] = x1 + dequantize(t["fc2"], b["fc2"]["out_scale"])
    return t


@pytest.mark.parametrize("hc", [2, 0], ids=["ae", "no-ae"])
def test_transformer_block_csim_vs_simulator(klib, hc):
    rng = np.random.default_rng(2024 + hc)
    b = make_block(rng, n=65, h=3, d=64, mlp=768, hc=hc)
    want = run_block(SimKernels(), b)
    for name, got in (("CsimKernels", run_block(ck.CsimKernels(CONFIG), b)), ("vitcod_top", run_block_on_top(b))):
        for key in ("h8", "qkv", "attn", "proj", "f_in", "fc1", "g8", "fc2"):
            assert_same(got[key], want[key], f"{name}: block tensor {key}")
        assert np.array_equal(got["x_out"], want["x_out"]), f"{name}: block output"
    # The block is informative: int8 tensors are not saturated or all zero.
    for key in ("qkv", "attn", "proj", "fc1", "fc2"):
        a = want[key]
        assert np.count_nonzero(a) > 0.5 * a.size and np.count_nonzero(np.abs(a.astype(int)) == 128) < 0.1 * a.size, key


# -- the FINN-style testbenches --------------------------------------------------------------------

#: Kernel -> its folder under hls/, from the registry (the same table build.tcl's csim step reads).
TESTBENCHES = {k.name: k.hls_dir for k in accelerators.get("vitcod").kernels}
#: Kernels whose golden output is not int8 (the testbenches print values of this type).
OUT_DTYPE = {"eltwise": np.int16}


def build_testbenches(kernels, extra_flags=(), suffix="") -> Dict[str, Path]:
    """Each kernel's testbench (hls/<dir>/<kernel>_tb.cpp + <kernel>_top.cpp) as a cached executable, with
    sim/csim.py's flags and include paths; missing ones are compiled two at a time."""
    def build(k):
        folder = TESTBENCHES[k]
        return k, csim.build_executable(f"{k}_tb{suffix}", [f"{folder}/{k}_tb.cpp", f"{folder}/{k}_top.cpp"], CONFIG,
                                        include_dirs=ck.KERNELS_INCLUDE_DIR, extra_flags=extra_flags)

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(build, kernels))


@pytest.fixture(scope="module")
def testbenches() -> Dict[str, Path]:
    return build_testbenches(TESTBENCHES)


def _run_tb(exe: Path, cases: List[Path]) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *map(str, cases)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("kernel", TESTBENCHES)
def test_testbench_passes_on_golden_files_and_fails_on_a_corrupted_one(testbenches, tmp_path, kernel):
    cases = golden.write_cases(kernel, tmp_path, CONFIG)
    proc = _run_tb(testbenches[kernel], cases)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"PASS: {len(cases)} case(s)" in proc.stdout

    # One flipped output value: exit 1 at the first mismatch, saying where, what was expected, what came out.
    expected = cases[-1] / "expected.bin"
    data = np.fromfile(expected, OUT_DTYPE.get(kernel, np.int8))
    j = data.size // 2
    want = int(data[j])
    data[j] = data.dtype.type(want ^ 0x55)
    data.tofile(expected)
    proc = _run_tb(testbenches[kernel], cases)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"expected {int(data[j])} got {want}" in proc.stdout, proc.stdout
    assert "FAIL" in proc.stdout and cases[-1].name in proc.stdout

    # A truncated golden file is refused, not read past its end.
    data[:-1].tofile(expected)
    proc = _run_tb(testbenches[kernel], cases)
    assert proc.returncode == 2 and "expected.bin has" in proc.stdout, proc.stdout


# -- the C-simulation fast paths against the ap_int code synthesis sees ------------------------------------

@pytest.mark.parametrize("config", ["paper", "pynq-z2"])
def test_fast_csim_equals_the_ap_int_build(config):
    """vitaccel_numerics.h computes MAC trees, accumulations and requantisation with native ints in
    C-simulation; the VITACCEL_CSIM_AP_ONLY build runs the ap_int code instead. Both tops must leave the
    same window, status and cycle counters on block programs, a compiled model (every opcode, OP_QKV_AE
    included) and hostile copies of them."""
    from vitaccel.sim.vitcod.top import TopModelError, run_top

    fast, slow = ck.kernels_library(config), ck.kernels_library(config, ap_only=True)
    rng = np.random.default_rng(31)
    progs = golden.top_programs(rng, config)
    trials = [(w, off, cnt, 0) for w, off, cnt in progs] + [(*progs[i % len(progs)], 2) for i in range(12)]
    statuses = set()
    for window, off, count, flips in trials:
        w = window.copy()
        for _ in range(flips):
            golden.set_word(w, off, int(rng.integers(0, count)), int(rng.integers(0, 64)),
                            golden._hostile_value(rng, w.size))
        try:   # the one program whose result depends on what an earlier run left on chip (top.py)
            run_top(w.copy(), off, count, config, cycles=False)
        except TopModelError:
            continue
        outs = []
        for lib in (fast, slow):
            a = w.copy()
            hw, runs = np.zeros(1, np.uint32), np.zeros(1, np.uint32)
            lib.perf_reset()
            st = int(lib.run(a, a.size, off, count, hw, runs))
            outs.append((a, st, lib.perf_totals()))
        (a, st, pa), (b, st2, pb) = outs
        assert st == st2 and pa == pb
        assert np.array_equal(a, b), f"{int(np.count_nonzero(a != b))} bytes differ"
        statuses.add(st)
    assert 0 in statuses and len(statuses) > 1       # programs that ran and programs that failed
