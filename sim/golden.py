"""Test vectors: the seeded random inputs the C-simulation tests use, and golden case folders for the HLS
testbenches (``hls/<common|vitcod>/<kernel>/<kernel>_tb.cpp``), written from the simulator's functional models.

``vitaccel golden --out DIR`` writes every kernel's cases; ``build.tcl``'s csim step runs each testbench on
them in Vitis HLS, and ``tests/test_csim_kernels.py`` with g++. A case folder holds ``params.txt`` (``name
value`` lines) and one raw little-endian ``<array>.bin`` per input plus ``expected.bin``.
"""
from __future__ import annotations

import importlib
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional

import numpy as np

from vitaccel.hwconfig import load_config
from vitaccel.sim import numerics as nx
from vitaccel.sim.vitcod.descriptors import (ATT_WORDS, DESC_WORDS, Dram, ae_descriptor, attention_descriptor,
                                             gemm_descriptor, pack_mask_bits)
from vitaccel.sim.vitcod.attention import AEParams, SparsePlan, attention_int, gather_ports, line_split
from vitaccel.sim.vitcod.autoencoder import ae_encode, mix_heads
from vitaccel.sim.common.gemm import gemm
from vitaccel.sim.vitcod.sparse_format import order_from_globals

__all__ = ["write_cases", "make_block", "top_cases", "top_programs", "linear", "garbage", "edge_bias", "random_split",
           "set_word", "get_word", "write_golden", "rand_i8", "quant_for", "vitcod_mask", "plan_with", "random_ae",
           "attention_params", "special_rows"]


def rand_i8(rng, shape) -> np.ndarray:
    return rng.integers(-128, 128, shape, dtype=np.int8)


def quant_for(acc_std: float, rng, n: Optional[int] = None):
    """Multipliers and shifts that put an accumulator of std acc_std around +-40 (informative int8)."""
    ratio = 40.0 / max(acc_std, 1.0)
    if n is None:
        return nx.quantize_multiplier(ratio)
    pairs = [nx.quantize_multiplier(ratio * 2.0 ** rng.uniform(-1, 1)) for _ in range(n)]
    return np.array([m for m, _ in pairs], np.int32), np.array([s for _, s in pairs], np.int32)


def vitcod_mask(rng, h: int, n: int, density: float = 0.1, n_glob: int = 3) -> np.ndarray:
    """A ViTCoD-like mask: CLS row and column, a diagonal band, a few global columns, random entries."""
    m = rng.random((h, n, n)) < density
    idx = np.arange(n)
    m[:, idx, idx] = True
    m[:, idx[1:], idx[:-1]] = True
    m[:, 0, :] = True
    m[:, :, 0] = True
    for hh in range(h):
        cols = rng.choice(n, size=min(n_glob, n), replace=False)
        m[hh][:, cols] |= rng.random((n, cols.size)) < 0.9
    return m


def plan_with(mask: np.ndarray, mode: str, rng, config="paper") -> SparsePlan:
    """A plan whose denser part is: 'none' (n_global = 0), 'all' (n_global = N), 'auto' (the config's
    threshold), or 'shuffled' (random global columns listed in a random order, as sparse_format allows)."""
    h, n, _ = mask.shape
    if mode == "none":
        return SparsePlan.from_mask(mask, np.tile(np.arange(n, dtype=np.int32), (h, 1)), np.zeros(h, np.int32))
    if mode == "all":
        return SparsePlan.from_mask(mask, np.tile(np.arange(n, dtype=np.int32), (h, 1)), np.full(h, n, np.int32))
    if mode == "auto":
        return SparsePlan.from_mask(mask, config=load_config(config))
    assert mode == "shuffled"
    is_global = rng.random((h, n)) < 0.3
    is_global[0, :] = False  # one head with nothing global
    order, n_global = order_from_globals(is_global)
    for hh in range(h):
        g = int(n_global[hh])
        order[hh, :g] = rng.permutation(order[hh, :g])
    return SparsePlan.from_mask(mask, order, n_global)


def random_ae(rng, h: int, hc: int) -> AEParams:
    em, es = nx.quantize_multiplier(1.0 / (12 * h))
    dm, ds = nx.quantize_multiplier(1.0 / (12 * hc))
    return AEParams(rng.integers(-32, 33, (hc, h), dtype=np.int8), rng.integers(-500, 500, hc).astype(np.int32),
                    em, es, rng.integers(-32, 33, (h, hc), dtype=np.int8), rng.integers(-500, 500, h).astype(np.int32),
                    dm, ds)


def attention_params(d: int):
    # q . k of random int8 vectors has std ~ 74^2 sqrt(d); spread the real scores over a few units.
    m_exp, s_exp = nx.softmax_params(2.0 / (74.0 ** 2 * math.sqrt(d)))
    m_out, s_out = nx.quantize_multiplier(2.0 ** -8 * 3.0)
    return m_exp, s_exp, m_out, s_out


def special_rows(mask: np.ndarray) -> np.ndarray:
    """An all-kept row, a row with only CLS kept and a row with nothing kept in every head; in head 0 also a
    key nobody attends to (an empty CSC column)."""
    m = mask.copy()
    n = m.shape[1]
    m[:, n // 2, :] = True
    if n > 4:
        m[0, :, n - 2] = False
    if n > 2:
        m[:, n - 1, :] = False
        m[:, n - 1, 0] = True
    if n > 3:
        m[:, 1, :] = False
    return m


def _write_case(folder: Path, params: Dict[str, int], arrays: Dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    (folder / "params.txt").write_text("".join(f"{k} {int(v)}\n" for k, v in params.items()))
    for name, a in arrays.items():
        np.ascontiguousarray(a).tofile(folder / f"{name}.bin")
    return folder


def gemm_cases(root: Path, config="paper") -> List[Path]:
    cases = []
    for i, (m, k, o) in enumerate([(5, 17, 3), (20, 773, 70), (33, 64, 130)]):
        rng = np.random.default_rng(500 + i)
        x, w = rand_i8(rng, (m, k)), rand_i8(rng, (o, k))
        bias = rng.integers(-(1 << 16), 1 << 16, o).astype(np.int32)
        mult, shift = quant_for(74.0 ** 2 * math.sqrt(k), rng, o)
        cases.append(_write_case(root / f"gemm{i}", dict(M=m, K=k, O=o), dict(
            x=x, w=w, bias=bias, mult=mult, shift=shift, expected=gemm(x, w, bias, mult, shift))))
    return cases


def ae_cases(root: Path, config="paper") -> List[Path]:
    cases = []
    for i, (h, c, n, d) in enumerate([(12, 6, 65, 64), (3, 2, 5, 32)]):
        rng = np.random.default_rng(600 + i)
        x, w = rand_i8(rng, (h, n, d)), rand_i8(rng, (c, h))
        b = rng.integers(-999, 999, c).astype(np.int32)
        m, s = quant_for(74.0 ** 2 * math.sqrt(h), rng)
        cases.append(_write_case(root / f"ae{i}", dict(Hin=h, C=c, N=n, d=d, mult=m, shift=s),
                                 dict(x=x, w=w, b=b, expected=mix_heads(x, w, b, m, s))))
    return cases


def attention_cases(root: Path, config="paper") -> List[Path]:
    cases = []
    for i, (h, n, d, mode, hc) in enumerate([(3, 17, 32, "shuffled", 2), (6, 65, 64, "auto", 0),
                                             (3, 5, 64, "none", 0)]):
        rng = np.random.default_rng(700 + i)
        q, k, v = (rand_i8(rng, (h, n, d)) for _ in range(3))
        mask = special_rows(vitcod_mask(rng, h, n))
        plan = plan_with(mask, mode, rng, config)
        ae = (random_ae(rng, h, hc), random_ae(rng, h, hc)) if hc else None
        m_exp, s_exp, m_out, s_out = attention_params(d)
        params = dict(H=h, N=n, d=d, Hc=hc, nnz=plan.rowidx.size, m_exp=m_exp, s_exp=s_exp, m_out=m_out,
                      s_out=s_out)
        arrays = dict(q=q, k=k, v=v, maskbits=pack_mask_bits(plan), order=plan.order, n_global=plan.n_global,
                      colptr=plan.colptr, headptr=plan.headptr, rowidx=plan.rowidx,
                      expected=attention_int(q, k, v, mask, m_exp, s_exp, m_out, s_out, ae=ae))
        if ae:
            arrays["q"] = ae_encode(q, ae[0].enc_weight, ae[0].enc_bias, ae[0].enc_mult, ae[0].enc_shift)
            arrays["k"] = ae_encode(k, ae[1].enc_weight, ae[1].enc_bias, ae[1].enc_mult, ae[1].enc_shift)
            arrays.update(dq_w=ae[0].dec_weight, dq_b=ae[0].dec_bias, dk_w=ae[1].dec_weight, dk_b=ae[1].dec_bias)
            params.update(dq_m=ae[0].dec_mult, dq_s=ae[0].dec_shift, dk_m=ae[1].dec_mult, dk_s=ae[1].dec_shift)
        cases.append(_write_case(root / f"attention{i}", params, arrays))
    return cases


def write_cases(kernel: str, root, config="paper") -> List[Path]:
    """Write ``kernel``'s golden cases (a kernel of ``config``'s accelerator, :mod:`vitaccel.accelerators`)
    as folders under ``root`` (which must not hold them yet)."""
    spec = load_config(config).spec
    k = spec.kernel(kernel)
    module, _, name = k.golden.partition(":")
    return getattr(importlib.import_module(module), name)(Path(root), config)


def write_golden(root, config="paper") -> Dict[str, List[Path]]:
    """Every kernel's cases of ``config``'s accelerator under ``root/<kernel>/``: what ``build.tcl``'s csim
    step feeds the testbenches."""
    root = Path(root)
    return {k.name: write_cases(k.name, root / k.name, config) for k in load_config(config).spec.kernels}


# -- programs for vitcod_top: a transformer block laid out as the host lays it out ---------------------------

def set_word(window: np.ndarray, desc_off: int, i: int, word: int, value: int) -> None:
    off = desc_off + 4 * (DESC_WORDS * i + word)
    window[off:off + 4] = np.array([value & 0xFFFFFFFF], np.uint32).view(np.uint8)


def get_word(window: np.ndarray, desc_off: int, i: int, word: int) -> int:
    off = desc_off + 4 * (DESC_WORDS * i + word)
    return int(window[off:off + 4].view(np.int32)[0])



def edge_bias(rng, c: int) -> np.ndarray:
    """Biases within a few thousand of the int32 limits: acc + bias wraps in the engines' 32-bit acc_t."""
    near = rng.integers(0, 3000, c)
    return np.where(rng.random(c) < 0.5, (1 << 31) - 1 - near, -(1 << 31) + near).astype(np.int32)


def linear(dram: Dram, rng, k: int, o: int, wrap: bool = False) -> Dict:
    w = rand_i8(rng, (o, k))
    bias = edge_bias(rng, o) if wrap else rng.integers(-3000, 3000, o).astype(np.int32)
    mult, shift = quant_for(74.0 ** 2 * np.sqrt(k), rng, o)
    return dict(params=dict(weight=w, bias=bias, mult=mult, shift=shift),
                offs=dict(w=dram.put(w), bias=dram.put(bias), mult=dram.put(mult), shift=dram.put(shift)))


def garbage(dram: Dram, rng, nbytes: int) -> int:
    """An output region pre-filled with random bytes."""
    return dram.put(rng.integers(0, 256, max(nbytes, 1), dtype=np.uint8))


def random_split(rng, cfg, g: int, n: int) -> int:
    """A random line split the engines accept for a head with g of n columns global."""
    if g >= n:
        return 0
    hi = min(gather_ports(cfg), cfg.mac_lines - 1 if g > 0 else cfg.mac_lines)
    return int(rng.integers(1, hi + 1))


def make_block(rng, n=40, h=3, d=16, mlp=96, hc=2, config="paper", mode="auto", split="host", density=0.12,
               special=False):
    """One block: program "attn" = qkv GEMM, (AE_MIX on Q and K), ATTENTION reading Q, K, V in place from the
    (N, 3D) qkv output and writing (N, D) concat-heads, proj GEMM; programs "fc1" and "fc2" one GEMM each, on
    host-written inputs."""
    cfg = load_config(config)
    dm = h * d
    dram = Dram(1 << 16)
    lin = {name: linear(dram, rng, k, o) for name, k, o in
           (("qkv", dm, 3 * dm), ("proj", dm, dm), ("fc1", dm, mlp), ("fc2", mlp, dm))}
    mask = vitcod_mask(rng, h, n, density=density)
    if special:
        mask = special_rows(mask)
    plan = plan_with(mask, mode, rng, config)
    if split == "host":
        ls = line_split(cfg, plan, d)[1]
    elif split == "random":
        ls = np.array([random_split(rng, cfg, int(g), n) for g in plan.n_global], np.int32)
    else:
        ls = None
    idx = dict(mask=dram.put(pack_mask_bits(plan)), order=dram.put(plan.order), colptr=dram.put(plan.colptr),
               headptr=dram.put(plan.headptr),
               rowidx=dram.put(plan.rowidx if plan.rowidx.size else np.zeros(1, np.int32)))
    ae = (random_ae(rng, h, hc), random_ae(rng, h, hc)) if hc else None
    r = SimpleNamespace(h8=dram.put(rand_i8(rng, (n, dm))), qkv=garbage(dram, rng, n * 3 * dm),
                        attn=garbage(dram, rng, n * dm), proj=garbage(dram, rng, n * dm),
                        f=dram.put(rand_i8(rng, (n, dm))), fc1=garbage(dram, rng, n * mlp),
                        g=dram.put(rand_i8(rng, (n, mlp))), fc2=garbage(dram, rng, n * dm))
    m_exp, s_exp, m_out, s_out = attention_params(d)
    prog = [gemm_descriptor(M=n, K=dm, O=3 * dm, x=r.h8, y=r.qkv, **lin["qkv"]["offs"])]
    names = ["layers.0.qkv"]
    att = dict(H=h, N=n, d=d, n_global=plan.n_global, v=r.qkv + 2 * dm, v_hs=d, v_ns=3 * dm, o=r.attn, o_hs=d,
               o_ns=dm, m_exp=m_exp, s_exp=s_exp, m_out=m_out, s_out=s_out, sparse_lines=ls, config=config, **idx)
    enc = {}
    if hc:
        for j, (nm, p) in enumerate(zip("qk", ae)):
            enc[nm] = garbage(dram, rng, hc * n * d)
            prog.append(ae_descriptor(Hin=h, C=hc, N=n, d=d, x=r.qkv + j * dm, x_hs=d, x_ns=3 * dm,
                                      w=dram.put(p.enc_weight), b=dram.put(p.enc_bias), mult=p.enc_mult,
                                      shift=p.enc_shift, y=enc[nm], y_hs=n * d, y_ns=d))
            names.append(f"layers.0.ae_{nm}[0]")
            att.update({f"d{nm}_w": dram.put(p.dec_weight), f"d{nm}_b": dram.put(p.dec_bias),
                        f"d{nm}_m": p.dec_mult, f"d{nm}_s": p.dec_shift})
        att.update(Hc=hc, q=enc["q"], q_hs=n * d, q_ns=d, k=enc["k"], k_hs=n * d, k_ns=d)
    else:
        att.update(q=r.qkv, q_hs=d, q_ns=3 * dm, k=r.qkv + dm, k_hs=d, k_ns=3 * dm)
    prog.append(attention_descriptor(**att))
    names.append("layers.0.attn[0]")
    prog.append(gemm_descriptor(M=n, K=dm, O=dm, x=r.attn, y=r.proj, **lin["proj"]["offs"]))
    names.append("layers.0.proj")
    starts = {"attn": (dram.put(np.concatenate(prog)), len(prog), names)}
    for name, x, y, k, o in (("fc1", r.f, r.fc1, dm, mlp), ("fc2", r.g, r.fc2, mlp, dm)):
        starts[name] = (dram.put(gemm_descriptor(M=n, K=k, O=o, x=x, y=y, **lin[name]["offs"])), 1, None)
    split_used = ls if ls is not None else np.array(
        [get_word(dram.buffer, starts["attn"][0], len(prog) - 2, ATT_WORDS["n_global"] + i) >> 16 for i in range(h)])
    return SimpleNamespace(window=dram.buffer.copy(), cfg=cfg, n=n, h=h, d=d, dm=dm, mlp=mlp, hc=hc, plan=plan, ae=ae,
                           lin=lin, r=r, enc=enc, idx=idx, starts=starts, att_index=len(prog) - 2,
                           softmax=(m_exp, s_exp), out=(m_out, s_out), split=np.asarray(split_used))


# -- vitcod_top's golden cases: whole programs, and hostile descriptors ------------------------------------

#: Values a hostile descriptor word takes: limits, signs, sizes, offsets near the window's end.
def _hostile_value(rng, window_bytes: int) -> int:
    pick = rng.integers(0, 8)
    if pick == 0:
        return int(rng.choice([0, 1, -1, 2, 3, 63, 64, 65535, 65536]))
    if pick == 1:
        return int(rng.choice([(1 << 31) - 1, -(1 << 31), (1 << 32) - 1, 1 << 30]))
    if pick == 2:
        return int(window_bytes - rng.integers(0, 512))
    if pick == 3:
        return int(rng.integers(-(1 << 31), 1 << 31))
    return int(rng.integers(0, window_bytes))


def top_programs(rng, config="paper"):
    """A few block programs (AE on and off, every n_global regime) and one compiled model, as (window,
    desc_off, count)."""
    out = []
    for hc, mode in ((2, "auto"), (0, "none"), (0, "all"), (2, "shuffled")):
        b = make_block(rng, n=int(rng.integers(17, 41)), hc=hc, mode=mode, config=config, split="random",
                       special=True)
        for name in ("attn", "fc1"):
            off, count, _ = b.starts[name]
            out.append((b.window, off, count))
    # A whole model as the host compiles it (one start: every opcode, the qkv projection as OP_QKV_AE).
    from vitaccel.host.vitcod.program import compile_device_program
    from vitaccel.testing import random_bundle

    p = compile_device_program(random_bundle(config, seed=int(rng.integers(0, 1 << 16)), num_heads=3, embed_dim=24,
                                             ae_heads=2, density=0.4), config, batch=2)
    s = p.start(2)
    out.append((p.image, s.desc_off, s.count))
    return out


def top_cases(root: Path, config="paper", hostile: int = 24, seed: int = 900) -> List[Path]:
    """Golden cases for vitcod_top's testbench (hls/vitcod/vitcod_tb.cpp): compiled block programs and
    ``hostile`` copies of them with one to three descriptor words set to hostile values, each with the
    window, status and ID the NumPy top (:func:`vitaccel.sim.vitcod.top.run_top`) leaves. Programs the
    model cannot run (:class:`~vitaccel.sim.vitcod.top.TopModelError`) are skipped."""
    from vitaccel.sim.vitcod.top import TopModelError, run_top

    rng = np.random.default_rng(seed)
    progs = top_programs(rng, config)
    cases: List[Path] = []
    trials = [(w, off, cnt, 0) for w, off, cnt in progs]
    trials += [(*progs[i % len(progs)], 1 + int(rng.integers(0, 3))) for i in range(hostile)]
    for i, (window, off, count, flips) in enumerate(trials):
        w = window.copy()
        for _ in range(flips):
            j = int(rng.integers(0, count))
            word = int(rng.integers(0, DESC_WORDS))
            set_word(w, off, j, word, _hostile_value(rng, w.size))
        mem = w.size if rng.random() < 0.8 else int(rng.integers(off, w.size + 1))
        after = w.copy()
        try:
            res = run_top(after, off, count, config, mem_bytes=mem, cycles=False)
        except TopModelError:
            continue
        cases.append(_write_case(root / f"top{i}", dict(desc_off=off, num_instr=count, mem_bytes=mem,
                                                        window_bytes=w.size, status=res.status, hw_id=res.hw_id),
                                 dict(window=w, expected=after)))
    return cases


# -- the common vector kernels: LayerNorm and the residual add ------------------------------------------------

def layernorm_vectors(rng, rows: int, d: int, spread: float = 300.0, extreme: bool = False):
    """(x int16, g, b int32, shift, eps): a residual stream row set and parameters from float gamma/beta.
    ``extreme`` mixes in saturated rows, constant rows (zero variance) and one-hot rows."""
    from vitaccel.sim.common.layernorm import layernorm_params

    x = np.clip(np.rint(rng.normal(size=(rows, d)) * spread * rng.uniform(0.05, 2.0, (rows, 1))), -32768, 32767)
    if extreme and rows >= 4:
        x[0] = 32767
        x[1] = rng.choice([-32768, 32767], d)
        x[2] = 0
        x[3] = 0
        x[3, rng.integers(0, d)] = -32768
    p = layernorm_params(rng.normal(1.0, 0.3, d), rng.normal(0.0, 0.2, d), out_scale=float(rng.uniform(0.01, 0.1)),
                         in_scale=float(rng.uniform(0.001, 0.05)), eps=1e-6)
    return x.astype(np.int16), p["g"], p["b"], p["shift"], p["eps"]


def layernorm_cases(root: Path, config="paper") -> List[Path]:
    from vitaccel.sim.common.layernorm import layernorm_int

    cases = []
    for i, (rows, d, extreme) in enumerate([(5, 96, True), (17, 768, False), (3, 1, False)]):
        rng = np.random.default_rng(800 + i)
        x, g, b, s, eps = layernorm_vectors(rng, rows, d, extreme=extreme)
        cases.append(_write_case(root / f"layernorm{i}", dict(rows=rows, D=d, shift=s, eps=eps), dict(
            x=x, g=g, b=b, expected=layernorm_int(x, g, b, s, eps))))
    return cases


def eltwise_cases(root: Path, config="paper") -> List[Path]:
    from vitaccel.sim.common.eltwise import add_params, add_requant

    cases = []
    for i, n in enumerate([1, 197 * 96 + 5, 4096]):
        rng = np.random.default_rng(850 + i)
        a = rng.integers(-32768, 32768, n).astype(np.int16)
        b = rand_i8(rng, (n,))
        ma, mb, s = add_params(float(rng.uniform(0.5, 2.0)), float(rng.uniform(0.5, 50.0)), 1.0)
        cases.append(_write_case(root / f"eltwise{i}", dict(n=n, ma=ma, mb=mb, shift=s), dict(
            a=a, b=b, expected=add_requant(a, ma, b, mb, s, 16))))
    return cases
