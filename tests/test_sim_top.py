"""The simulator's model of ``vitcod_top`` (sim/vitcod/top.py) against the C-simulation of the C++ top.

(Long because it walks every status code and every partial-output rule of DESCRIPTOR.md in turn, each
case against the same compiled C++; the cases share one fixture and one comparison helper.)

Every test runs the same program on two copies of one window, ``run_top`` on one and the C++ ``vitcod_top``
(``kernels_library(config).run``, what ``run_descriptors`` calls, without its check) on the other, and
requires byte-identical windows afterwards, the same status and the same ID register. Outputs are
pre-filled with random bytes, so a byte written where the C++ does not write (or not written where it
does) shows up. Programs: one transformer block laid out as the host lays it out (AE on and off), random
chains of GEMM / AE_MIX / ATTENTION / NOP descriptors, every n_global regime and line split, index tables
that are legal but unusual, outputs overlapping their inputs, the vector kernels (LayerNorm, add, LUT) with
each of their checks, and every status code provoked on purpose
(descriptors before the failing one ran; what the failing one wrote is compared too).
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Dict, Optional

import numpy as np
import pytest

from vitaccel.host.vitcod.program import compile_device_program
from vitaccel.hwconfig import load_config
from vitaccel.sim.vitcod import csim_kernels as ck
from vitaccel.sim import numerics as nx
from vitaccel.sim.vitcod.descriptors import (ADD_WORDS, LN_WORDS, LUT_WORDS, AE_WORDS, ATT_WORDS, DESC_WORDS, GEMM_WORDS, W_FLAGS, W_OP, Dram, ae_descriptor,
                                     attention_descriptor, gemm_descriptor, pack_mask_bits)
from vitaccel.sim.golden import (attention_params, edge_bias, garbage, get_word, linear, make_block, plan_with, quant_for,
                                 rand_i8, random_ae, random_split, set_word, special_rows, vitcod_mask)
from vitaccel.sim.vitcod.attention import attention_cycles, attention_int, gather_ports, line_split
from vitaccel.sim.vitcod.autoencoder import ae_mix_cycles, ae_tile_tokens, mix_heads
from vitaccel.sim.common.gemm import gemm, gemm_cycles, gemm_plan
from vitaccel.sim.vitcod.top import TopModelError, gemm_max_k, run_top, softmax_kept
from vitaccel.testing import random_bundle

pytestmark = pytest.mark.csim

CFG = "paper"
G, E, A = GEMM_WORDS, AE_WORDS, ATT_WORDS


# -- running both -----------------------------------------------------------------------------------------

def both(window: np.ndarray, desc_off: int, count: int, config=CFG, mem_bytes=None, **kw):
    """(model window, C-sim window, model result, C-sim status, C-sim hw_id) of one run on two copies."""
    a, b = window.copy(), window.copy()
    mem = a.size if mem_bytes is None else mem_bytes
    res = run_top(a, desc_off, count, config, mem_bytes=mem, **kw)
    hw, runs = np.zeros(1, np.uint32), np.zeros(1, np.uint32)
    st = int(ck.kernels_library(config).run(b, mem, desc_off, count, hw, runs)) & 0xFFFFFFFF
    return a, b, res, st, int(hw[0])


def same(window: np.ndarray, desc_off: int, count: int, expect: Optional[int] = None, config=CFG, **kw):
    """Run both; require equal status, ID, windows; return (window after, result)."""
    a, b, res, st, hw = both(window, desc_off, count, config, **kw)
    assert res.status == st, f"model {ck.status_message(res.status)} vs C++ {ck.status_message(st)}"
    if expect is not None:
        assert st == expect, f"C++ {ck.status_message(st)}, expected {ck.status_message(expect)}"
    assert res.hw_id == hw == load_config(config).hash32
    assert res.executed == ((st >> 16) if st else count)
    diff = np.flatnonzero(a != b)
    assert diff.size == 0, f"{diff.size} bytes differ, first at offset {diff[0]}: model {a[diff[0]]}, C++ {b[diff[0]]}"
    return a, res


def i32_at(window: np.ndarray, off: int, count: int) -> np.ndarray:
    return window[off:off + 4 * count].view(np.int32)


@pytest.mark.parametrize("hc", [2, 0], ids=["ae", "no-ae"])
def test_block_matches_the_csim_the_models_and_the_cycle_models(hc):
    b = make_block(np.random.default_rng(10 + hc), hc=hc, split="random", special=True)
    cfg, n, h, d, dm = b.cfg, b.n, b.h, b.d, b.dm
    off, count, names = b.starts["attn"]
    w, res = same(b.window, off, count, names=names, cycles=True)
    # The bits are the functional models': gemm, mix_heads (AE round trip), attention_int.
    qkv = w[b.r.qkv:b.r.qkv + n * 3 * dm].view(np.int8).reshape(n, 3 * dm)
    p = b.lin["qkv"]["params"]
    assert np.array_equal(qkv, gemm(w[b.r.h8:b.r.h8 + n * dm].view(np.int8).reshape(n, dm), p["weight"], p["bias"],
                                    p["mult"], p["shift"]))
    q, k, v = (np.ascontiguousarray(t) for t in qkv.reshape(n, 3, h, d).transpose(1, 2, 0, 3))
    if hc:
        for nm, t, aep in (("q", q, b.ae[0]), ("k", k, b.ae[1])):
            enc = mix_heads(t, aep.enc_weight, aep.enc_bias, aep.enc_mult, aep.enc_shift)
            assert np.array_equal(w[b.enc[nm]:b.enc[nm] + hc * n * d].view(np.int8).reshape(hc, n, d), enc)
    want = attention_int(q, k, v, b.plan.mask, *b.softmax, *b.out, ae=b.ae)
    got = w[b.r.attn:b.r.attn + n * dm].view(np.int8).reshape(n, h, d).transpose(1, 0, 2)
    assert np.array_equal(got, want)
    assert np.count_nonzero(want) > want.size // 2
    # One report per descriptor, named, with the cycle models' figures (attention with the descriptor's split).
    assert [r.name for r in res.reports] == names and all(r.layer == 0 for r in res.reports)
    direct = [gemm_cycles(cfg, n, dm, 3 * dm, name=names[0], layer=0)]
    if hc:
        direct += [ae_mix_cycles(cfg, h, hc, n, d, name=nm, layer=0) for nm in names[1:3]]
    direct += [attention_cycles(cfg, b.plan, d, compressed_heads=hc or None, name=names[-2], layer=0,
                                sparse_lines=list(b.split)),
               gemm_cycles(cfg, n, dm, dm, name=names[-1], layer=0)]
    assert [r.to_dict() for r in res.reports] == [r.to_dict() for r in direct]
    # The host-written MLP inputs, then fc1 and fc2 (default names, no layer).
    for name in ("fc1", "fc2"):
        off, count, _ = b.starts[name]
        w, res = same(w, off, count, cycles=True)
        assert [(r.name, r.layer) for r in res.reports] == [("desc[0].gemm", None)]
        k_, o_ = (dm, b.mlp) if name == "fc1" else (b.mlp, dm)
        assert res.reports[0].to_dict() == gemm_cycles(cfg, n, k_, o_, name="desc[0].gemm").to_dict()


@pytest.mark.parametrize("mode", ["none", "all", "auto", "shuffled"])
@pytest.mark.parametrize("hc", [0, 1])
def test_n_global_regimes(mode, hc):
    rng = np.random.default_rng(["none", "all", "auto", "shuffled"].index(mode) * 10 + hc)
    b = make_block(rng, n=int(rng.integers(9, 50)), h=3, d=8, hc=hc, mode=mode, split="default", special=True)
    off, count, names = b.starts["attn"]
    _, res = same(b.window, off, count, names=names, cycles=True)
    att = res.reports[b.att_index]
    assert att.to_dict() == attention_cycles(b.cfg, b.plan, b.d, compressed_heads=hc or None, name=names[b.att_index],
                                             layer=0, sparse_lines=list(b.split)).to_dict()


def test_cycles_follow_the_descriptors_split():
    """A split other than the host's changes the attention report (not the bits) exactly as the model says."""
    b = make_block(np.random.default_rng(3), n=60, h=3, d=16, hc=0, mode="auto", split="host")
    off, count, _ = b.starts["attn"]
    ls = np.where(b.plan.n_global < b.n, 1, 0)           # one sparser line per head
    w = b.window.copy()
    for i in range(b.h):
        set_word(w, off, b.att_index, A["n_global"] + i, int(b.plan.n_global[i]) | (int(ls[i]) << 16))
    a1, r1 = same(b.window, off, count, cycles=True)
    a2, r2 = same(w, off, count, cycles=True)
    assert np.array_equal(a1[b.r.attn:b.r.proj], a2[b.r.attn:b.r.proj])
    want = attention_cycles(b.cfg, b.plan, b.d, name=f"desc[{b.att_index}].attention", sparse_lines=list(ls))
    assert r2.reports[b.att_index].to_dict() == want.to_dict()
    assert r1.reports[b.att_index].total_cycles != r2.reports[b.att_index].total_cycles


# -- random chained programs ---------------------------------------------------------------------------------

def random_program(rng, config=CFG):
    """GEMM -> (AE x2) -> ATTENTION -> GEMM -> strided AE -> GEMM, with independent GEMMs and NOPs mixed in;
    random shapes, plan modes, splits, and sometimes biases far outside the contract (int32 wrap)."""
    cfg = load_config(config)
    dram = Dram(1 << 16)
    n = int(rng.integers(2, 70))
    h = int(rng.integers(1, 5))
    d = int(rng.choice([1, 3, 8, 16, 24]))
    dm = h * d

    def lin(k, o):
        return linear(dram, rng, k, o, wrap=rng.random() < 0.25)["offs"]

    def consts(c):
        return dram.put(edge_bias(rng, c) if rng.random() < 0.25 else rng.integers(-500, 500, c).astype(np.int32))

    x0 = dram.put(rand_i8(rng, (n, dm)))
    qkv = garbage(dram, rng, n * 3 * dm)
    chain = [gemm_descriptor(M=n, K=dm, O=3 * dm, x=x0, y=qkv, **lin(dm, 3 * dm))]
    hc = int(rng.integers(0, h + 1))
    mask = vitcod_mask(rng, h, n, density=float(rng.uniform(0.02, 0.5)), n_glob=int(rng.integers(0, 4)))
    plan = plan_with(mask, str(rng.choice(["none", "all", "auto", "shuffled"])), rng, config)
    m_exp, s_exp, m_out, s_out = attention_params(d)
    o = garbage(dram, rng, n * dm)
    att = dict(H=h, N=n, d=d, n_global=plan.n_global, v=qkv + 2 * dm, v_hs=d, v_ns=3 * dm, o=o, o_hs=d, o_ns=dm,
               m_exp=m_exp, s_exp=s_exp, m_out=m_out, s_out=s_out,
               sparse_lines=[random_split(rng, cfg, int(g), n) for g in plan.n_global],
               mask=dram.put(pack_mask_bits(plan)), order=dram.put(plan.order), colptr=dram.put(plan.colptr),
               headptr=dram.put(plan.headptr),
               rowidx=dram.put(plan.rowidx if plan.rowidx.size else np.zeros(1, np.int32)))
    if hc:
        comp = {}
        for j, nm in enumerate("qk"):
            ae = random_ae(rng, h, hc)
            pad = int(rng.integers(0, 3))               # compressed tensors with padded token rows
            comp[nm] = garbage(dram, rng, hc * n * (d + pad))
            chain.append(ae_descriptor(Hin=h, C=hc, N=n, d=d, x=qkv + j * dm, x_hs=d, x_ns=3 * dm,
                                       w=dram.put(ae.enc_weight), b=consts(hc), mult=ae.enc_mult, shift=ae.enc_shift,
                                       y=comp[nm], y_hs=n * (d + pad), y_ns=d + pad))
            att.update({f"d{nm}_w": dram.put(ae.dec_weight), f"d{nm}_b": consts(h), f"d{nm}_m": ae.dec_mult,
                        f"d{nm}_s": ae.dec_shift, nm: comp[nm], f"{nm}_hs": n * (d + pad), f"{nm}_ns": d + pad})
        att["Hc"] = hc
    else:
        att.update(q=qkv, q_hs=d, q_ns=3 * dm, k=qkv + dm, k_hs=d, k_ns=3 * dm)
    chain.append(attention_descriptor(**att))
    proj = garbage(dram, rng, n * dm)
    chain.append(gemm_descriptor(M=n, K=dm, O=dm, x=o, y=proj, **lin(dm, dm)))
    c = int(rng.integers(1, 5))
    mixed = garbage(dram, rng, c * n * d)
    em, es = quant_for(74.0 * 20 * np.sqrt(h), rng)
    chain.append(ae_descriptor(Hin=h, C=c, N=n, d=d, x=proj, x_hs=d, x_ns=dm, w=dram.put(rand_i8(rng, (c, h)) // 8),
                               b=consts(c), mult=em, shift=es, y=mixed, y_hs=n * d, y_ns=d))
    oo = int(rng.integers(1, 40))
    chain.append(gemm_descriptor(M=c * n, K=d, O=oo, x=mixed, y=garbage(dram, rng, c * n * oo), **lin(d, oo)))
    # Independent work and NOPs at random places.
    prog = list(chain)
    for _ in range(int(rng.integers(0, 4))):
        if rng.random() < 0.5:
            prog.insert(int(rng.integers(0, len(prog) + 1)), np.zeros(DESC_WORDS, np.int32))
        else:
            m2, o2 = int(rng.integers(1, 30)), int(rng.integers(1, 200))
            dsc = gemm_descriptor(M=m2, K=dm, O=o2, x=x0, y=garbage(dram, rng, m2 * o2), **lin(dm, o2))
            prog.insert(int(rng.integers(0, len(prog) + 1)), dsc)
    off = dram.put(np.concatenate(prog))
    return dram.buffer.copy(), off, len(prog)


@pytest.mark.parametrize("seed", range(12))
def test_random_programs(seed):
    window, off, count = random_program(np.random.default_rng(100 + seed))
    _, res = same(window, off, count, expect=0, cycles=True)
    assert res.executed == count


def test_accumulator_plus_bias_wraps_like_acc_t():
    """Biases next to the int32 limits (outside the contract, which the functional models refuse): GEMM, AE
    mix and the AE decoders wrap acc + bias to 32 bits as the engines do."""
    rng = np.random.default_rng(8)
    b = make_block(rng, n=20, h=2, d=8, hc=1)
    w = b.window.copy()
    off, count, _ = b.starts["attn"]
    for i, word in ((0, G["bias"]), (1, E["b"]), (b.att_index, A["dq_b"]), (b.att_index, A["dk_b"])):
        arr = get_word(w, off, i, word)
        size = {0: 3 * b.dm, 1: b.hc}.get(i, b.h)
        i32_at(w, arr, size)[:] = edge_bias(rng, size)
    same(w, off, count, expect=0)
    with pytest.raises(ValueError):
        p = b.lin["qkv"]["params"]
        gemm(rand_i8(rng, (4, b.dm)), p["weight"], edge_bias(rng, 3 * b.dm) | 0x7FFF0000, p["mult"], p["shift"])


# -- index tables the engines accept although the host compiler never writes them --------------------------

def exotic_tables(rng, h, n, keep, n_global, order, extra=0.1, junk_globals=True):
    """CSC in reordered space: every kept sparser entry plus random extra ones (p = 0 for those); the global
    columns get junk entries (the engines never read them)."""
    colptr = np.zeros((h, n + 1), np.int32)
    segs = []
    for hh in range(h):
        g = int(n_global[hh])
        cols = []
        for c in range(n):
            if c < g:
                rows = rng.integers(-5, 3 * n, int(rng.integers(0, 3))) if junk_globals else np.zeros(0, int)
            else:
                rows = np.flatnonzero(keep[hh, :, c] | (rng.random(n) < extra))
            cols.append(rows.astype(np.int32))
        colptr[hh, 1:] = np.cumsum([c.size for c in cols])
        segs.append(np.concatenate(cols) if cols else np.zeros(0, np.int32))
    headptr = np.zeros(h + 1, np.int32)
    headptr[1:] = np.cumsum([s.size for s in segs])
    rowidx = np.concatenate(segs)
    return dict(mask=np.packbits(keep, axis=2, bitorder="little"), order=order.astype(np.int32), colptr=colptr,
                headptr=headptr, rowidx=rowidx if rowidx.size else np.zeros(1, np.int32))


def attention_only(rng, h, n, d, tables, n_global, hc=0, o_layout=None, v_layout=None, config=CFG):
    """One ATTENTION descriptor on random q, k, v (or compressed q, k) with the given index tables."""
    cfg = load_config(config)
    dram = Dram(1 << 16)
    hq = hc if hc else h
    q, k = dram.put(rand_i8(rng, (hq, n, d))), dram.put(rand_i8(rng, (hq, n, d)))
    v = dram.put(rand_i8(rng, (h, n, d)))
    o = garbage(dram, rng, h * n * d)
    offs = {f: dram.put(a) for f, a in tables.items()}
    m_exp, s_exp, m_out, s_out = attention_params(d)
    kw = dict(H=h, N=n, d=d, n_global=n_global, q=q, q_hs=n * d, q_ns=d, k=k, k_hs=n * d, k_ns=d, v=v, v_hs=n * d,
              v_ns=d, o=o, o_hs=n * d, o_ns=d, m_exp=m_exp, s_exp=s_exp, m_out=m_out, s_out=s_out, config=cfg,
              sparse_lines=[random_split(rng, cfg, int(g), n) for g in n_global], **offs)
    if hc:
        for nm in ("dq", "dk"):
            ae = random_ae(rng, h, hc)
            kw.update({f"{nm}_w": dram.put(ae.dec_weight), f"{nm}_b": dram.put(ae.dec_bias), f"{nm}_m": ae.dec_mult,
                       f"{nm}_s": ae.dec_shift})
        kw["Hc"] = hc
    if o_layout:
        kw.update(o_layout(kw))
    if v_layout:
        kw.update(v_layout(kw))
    off = dram.put(attention_descriptor(**kw))
    return dram.buffer.copy(), off, kw


@pytest.mark.parametrize("hc", [0, 2])
def test_unusual_but_legal_index_tables(hc):
    """order with repeated keys (not a permutation), a CSC with entries the mask does not keep, junk in the
    global columns' CSC, rows with nothing kept: bits as the engines compute them."""
    rng = np.random.default_rng(21 + hc)
    h, n, d = 3, 37, 8
    keep = rng.random((h, n, n)) < 0.2
    keep[:, 5, :] = False
    order = rng.integers(0, n, (h, n))
    order[1] = np.arange(n)[::-1]
    n_global = np.array([0, 4, n])
    tables = exotic_tables(rng, h, n, keep, n_global, order)
    window, off, _ = attention_only(rng, h, n, d, tables, n_global, hc=hc)
    same(window, off, 1, expect=0, cycles=True)


def test_a_kept_entry_missing_from_the_csc_is_refused():
    """The engines would normalise over a score they never computed: the model refuses instead of guessing."""
    rng = np.random.default_rng(5)
    h, n, d = 2, 20, 8
    keep = rng.random((h, n, n)) < 0.3
    keep[1, 3, 10] = True
    n_global = np.array([2, 2])
    tables = exotic_tables(rng, h, n, keep, n_global, np.tile(np.arange(n), (h, 1)), extra=0)
    bits = np.packbits(keep, axis=2, bitorder="little")
    tables["mask"] = bits.copy()
    keep2 = keep.copy()
    keep2[1, 3, 10] = False                             # the CSC without the entry
    t2 = exotic_tables(np.random.default_rng(5), h, n, keep2, n_global, np.tile(np.arange(n), (h, 1)), extra=0,
                       junk_globals=False)
    tables.update(colptr=t2["colptr"], headptr=t2["headptr"], rowidx=t2["rowidx"])
    window, off, _ = attention_only(rng, h, n, d, tables, n_global)
    with pytest.raises(TopModelError, match="head 1 keeps a mask entry"):
        run_top(window.copy(), off, 1, CFG)
    # A head that fails its checks first still returns its status.
    hp_off = get_word(window, off, 0, A["headptr"])
    i32_at(window, hp_off, 3)[2] += 1
    same(window, off, 1, expect=0x305)


# -- outputs overlapping inputs (0x006 from both tops) and outputs aliasing themselves (allowed) -----------

@pytest.mark.parametrize("m,k,o,target,delta", [
    (200, 512, 150, "x", 1000),      # several activation tiles, re-read for each weight tile after stores
    (40, 600, 100, "w", 64 * 600),   # K sliced; the first tile's output lands on the second tile's weights
    (3, 512, 150, "shift", 280),     # the first tile's output lands on the later tiles' shifts
    (9, 16, 16, "x", 0),             # in place, one tile
])
def test_gemm_output_overlapping_its_inputs(m, k, o, target, delta):
    rng = np.random.default_rng(m + k + o)
    dram = Dram(1 << 18)
    offs = linear(dram, rng, k, o)["offs"]
    offs["x"] = dram.put(rand_i8(rng, (m, k)))
    garbage(dram, rng, 4096)
    offs["y"] = offs[target] + delta
    off = dram.put(gemm_descriptor(M=m, K=k, O=o, **offs))
    after, _ = same(dram.buffer.copy(), off, 1, expect=0x006)
    assert np.array_equal(after, dram.buffer), "a refused GEMM writes nothing"


@pytest.mark.parametrize("case", ["shifted", "aliased-tokens", "single-tile"])
def test_ae_output_overlapping_its_input(case):
    rng = np.random.default_rng(len(case))
    tn = ae_tile_tokens(load_config(CFG))
    hin, c, d = 3, 2, 8
    n = tn // 2 if case == "single-tile" else 2 * tn + 5
    dram = Dram(1 << 16)
    x = dram.put(rand_i8(rng, (hin, n, d)))
    garbage(dram, rng, 64)
    w, b = dram.put(rand_i8(rng, (c, hin)) // 4), dram.put(rng.integers(-99, 99, c).astype(np.int32))
    em, es = quant_for(74.0 * 32 * 2, rng)
    y, y_hs, y_ns = x + 3 * d, n * d, d                  # each tile would overwrite later tokens of its input
    expect = 0x006
    if case == "aliased-tokens":                          # every token of every head writes the same d bytes,
        y, y_hs, y_ns = garbage(dram, rng, 64), d, 0      # away from the input: allowed, the last write wins
        expect = 0
    off = dram.put(ae_descriptor(Hin=hin, C=c, N=n, d=d, x=x, x_hs=n * d, x_ns=d, w=w, b=b, mult=em, shift=es, y=y,
                                 y_hs=y_hs, y_ns=y_ns))
    same(dram.buffer.copy(), off, 1, expect=expect)


@pytest.mark.parametrize("case", ["o-over-next-v", "o-aliased", "o-over-rowidx", "o-past-rowidx"])
def test_attention_output_overlapping_its_inputs(case):
    rng = np.random.default_rng(len(case) + 7)
    h, n, d = 3, 24, 8
    mask = vitcod_mask(rng, h, n, density=0.2)
    plan = plan_with(mask, "auto", rng)
    tables = dict(mask=pack_mask_bits(plan), order=plan.order, colptr=plan.colptr, headptr=plan.headptr,
                  rowidx=plan.rowidx)
    expect = 0x006
    if case == "o-over-next-v":
        lay = lambda kw: dict(o=kw["v"] + n * d, o_hs=kw["v_hs"], o_ns=kw["v_ns"])  # noqa: E731
    elif case == "o-aliased":                      # the output's rows alias each other, no input: allowed
        lay, expect = (lambda kw: dict(o_hs=0, o_ns=3)), 0  # noqa: E731
    elif case == "o-over-rowidx":                  # over the entries of heads 1.. (room after them: in range)
        assert plan.headptr[-1] > plan.headptr[1] + 2
        tables["rowidx"] = np.concatenate([plan.rowidx, np.zeros(h * n * d // 4 + 1, np.int32)])
        lay = lambda kw: dict(o=kw["rowidx"] + 4 * int(plan.headptr[1]) + 8)  # noqa: E731
    else:                                          # rowidx is read up to headptr[H]: the words after it are free
        tables["rowidx"] = np.concatenate([plan.rowidx, np.zeros(h * n * d // 4 + 1, np.int32)])
        lay, expect = (lambda kw: dict(o=kw["rowidx"] + 4 * int(plan.headptr[-1]))), 0  # noqa: E731
    window, off, _ = attention_only(rng, h, n, d, tables, plan.n_global, o_layout=lay)
    same(window, off, 1, expect=expect)


def test_an_output_rewriting_the_next_descriptor():
    """Descriptors are fetched when their turn comes: a GEMM with multiplier 0 zeroes the next one (a NOP)."""
    rng = np.random.default_rng(1)
    dram = Dram()
    lin = linear(dram, rng, 8, 64)["offs"]
    i32_at(dram.buffer, lin["mult"], 64)[:] = 0
    x = dram.put(rand_i8(rng, (4, 8)))
    off = dram.alloc(2 * 4 * DESC_WORDS)
    prog = np.concatenate([gemm_descriptor(M=4, K=8, O=64, x=x, y=off + 4 * DESC_WORDS, **lin),
                           np.full(DESC_WORDS, 9, np.int32)])
    dram.write(off, prog)
    _, res = same(dram.buffer.copy(), off, 2, expect=0)
    assert res.executed == 2


# -- status codes ----------------------------------------------------------------------------------------------

def _att(b, w, f):
    return get_word(w, b.starts["attn"][0], b.att_index, A[f]) & 0xFFFFFFFF


def _set(i, word, value):
    """Break: set word ``word`` of descriptor ``i`` (-1: the attention one) to value or value(old, block)."""
    def brk(b, w):
        off = b.starts["attn"][0]
        j = b.att_index if i == -1 else i
        old = get_word(w, off, j, word)
        set_word(w, off, j, word, value(old, b) if callable(value) else value)
    return brk


def _head1(field):
    """Break one index table of head 1 (head 0's output is written, then the status)."""
    def brk(b, w):
        n = b.n
        hp = i32_at(w, _att(b, w, "headptr"), b.h + 1)
        cp = i32_at(w, _att(b, w, "colptr"), b.h * (n + 1)).reshape(b.h, n + 1)
        ri = i32_at(w, _att(b, w, "rowidx"), int(hp[-1]))
        order = i32_at(w, _att(b, w, "order"), b.h * n).reshape(b.h, n)
        g = int(b.plan.n_global[1])
        cols = [c for c in range(g, n) if cp[1, c + 1] - cp[1, c] >= 2]
        j = int(hp[1] + cp[1, cols[-1]]) if cols else None
        if field == "order":
            order[1, 3] = n
        elif field == "order-negative":
            order[1, 0] = -1
        elif field == "order+colptr":
            order[1, 3] = -7
            cp[1, 0] = 2
        elif field == "colptr0":
            cp[1, 0] = 1
        elif field == "colptr-decreasing":
            cp[1, n // 2] = cp[1, n // 2 + 1] + 1
        elif field == "headptr":
            hp[2] += 1
        elif field == "headptr-negative":
            hp[1] = -4
        elif field == "rowidx-range":
            ri[j] = n + 5
        elif field == "rowidx-negative":
            ri[j] = -1
        elif field == "rowidx-order":
            ri[j + 1] = ri[j]
        elif field == "global-junk":                    # entries in a global column: never read, status 0
            assert g > 0
            cp[1, 1:] += 1
            hp[2:] += 1
            ri_all = np.insert(ri.copy(), int(hp[1]), 9999)
            i32_at(w, _att(b, w, "rowidx"), ri_all.size)[:] = ri_all
    return brk


def _rowidx_at_window_end(b, w):
    """rowidx = mem_bytes passes the range check (empty); head 0's segment is then outside: 0x305."""
    set_word(w, b.starts["attn"][0], b.att_index, A["rowidx"], w.size & ~3)
    return dict(mem_bytes=w.size & ~3)


BREAKS = [
    # (id, hc, break, expected status)
    ("flags", 2, _set(1, W_FLAGS, 1), (1 << 16) | 0x001),
    ("opcode", 2, _set(4, W_OP, 99), (4 << 16) | 0x001),
    ("opcode-negative", 0, _set(0, W_OP, -1), 0x001),
    ("gemm-bias-align", 2, _set(4, G["bias"], lambda v, b: v + 2), (4 << 16) | 0x002),
    ("gemm-shift-align", 0, _set(2, G["shift"], lambda v, b: v + 1), (2 << 16) | 0x002),
    ("ae-bias-align", 2, _set(2, E["b"], lambda v, b: v + 3), (2 << 16) | 0x002),
    ("att-order-align", 2, _set(-1, A["order"], lambda v, b: v + 2), (3 << 16) | 0x002),
    ("att-colptr-align", 0, _set(-1, A["colptr"], lambda v, b: v + 1), (1 << 16) | 0x002),
    ("att-headptr-align", 2, _set(-1, A["headptr"], lambda v, b: v + 3), (3 << 16) | 0x002),
    ("att-rowidx-align", 0, _set(-1, A["rowidx"], lambda v, b: v + 2), (1 << 16) | 0x002),
    ("att-dqb-align", 2, _set(-1, A["dq_b"], lambda v, b: v + 2), (3 << 16) | 0x002),
    ("att-dqb-align-no-ae", 0, _set(-1, A["dq_b"], 3), 0),                      # no AE: never read
    ("gemm-y-range", 2, _set(4, G["y"], lambda v, b: b.window.size - 5), (4 << 16) | 0x003),
    ("gemm-x-range", 0, _set(2, G["x"], -1), (2 << 16) | 0x003),
    ("ae-x-stride-range", 2, _set(1, E["x_ns"], 1 << 24), (1 << 16) | 0x003),
    ("ae-w-range", 2, _set(2, E["w"], lambda v, b: b.window.size - 1), (2 << 16) | 0x003),
    ("att-o-range", 0, _set(-1, A["o_hs"], 1 << 28), (1 << 16) | 0x003),
    ("att-mask-range", 2, _set(-1, A["mask"], lambda v, b: b.window.size - 8), (3 << 16) | 0x003),
    ("att-rowidx-range", 0, _set(-1, A["rowidx"], lambda v, b: (b.window.size + 4) & ~3), (1 << 16) | 0x003),
    ("att-dkw-range", 2, _set(-1, A["dk_w"], lambda v, b: b.window.size - 2), (3 << 16) | 0x003),
    ("ae-stride", 2, _set(1, E["x_ns"], -3), (1 << 16) | 0x004),
    ("ae-y-stride", 2, _set(2, E["y_hs"], -1), (2 << 16) | 0x004),
    ("att-stride", 0, _set(-1, A["q_hs"], -1), (1 << 16) | 0x004),
    ("att-o-stride", 2, _set(-1, A["o_ns"], -64), (3 << 16) | 0x004),
    ("gemm-M", 2, _set(4, G["M"], 0), (4 << 16) | 0x101),
    ("gemm-K", 0, _set(2, G["K"], -1), (2 << 16) | 0x101),
    ("gemm-O", 0, _set(0, G["O"], 0), 0x101),
    ("gemm-K-range-first", 2, _set(4, G["K"], 1 << 20), (4 << 16) | 0x003),  # range before the K limit
    ("ae-C", 2, _set(1, E["C"], 0), (1 << 16) | 0x201),
    ("ae-Hin", 2, _set(2, E["Hin"], 13), (2 << 16) | 0x201),
    ("ae-d", 2, _set(1, E["d"], 65), (1 << 16) | 0x201),
    ("ae-dims-before-stride", 2, _set(1, E["N"], 0), (1 << 16) | 0x201),
    ("ae-shift", 2, _set(1, E["shift"], 64), (1 << 16) | 0x202),
    ("ae-mult", 2, _set(2, E["mult"], -5), (2 << 16) | 0x202),
    ("att-H", 2, _set(-1, A["H"], 0), (3 << 16) | 0x301),
    ("att-Hc", 2, _set(-1, A["Hc"], 4), (3 << 16) | 0x301),
    ("att-Hc-negative", 0, _set(-1, A["Hc"], -1), (1 << 16) | 0x301),
    ("att-N", 0, _set(-1, A["N"], 257), (1 << 16) | 0x301),
    ("att-d", 2, _set(-1, A["d"], 0), (3 << 16) | 0x301),
    ("att-m-exp", 2, _set(-1, A["m_exp"], -1), (3 << 16) | 0x302),
    ("att-s-out", 0, _set(-1, A["s_out"], 64), (1 << 16) | 0x302),
    ("att-dk-s", 2, _set(-1, A["dk_s"], 99), (3 << 16) | 0x302),
    ("att-dq-m-no-ae", 0, _set(-1, A["dq_m"], -1), 0),                         # no AE: never read
    ("att-n-global", 2, _set(-1, A["n_global"] + 1, lambda v, b: (v & ~0xFFFF) | (b.n + 1)), (3 << 16) | 0x303),
    ("att-split-before-n-global", 0, lambda b, w: (_set(-1, A["n_global"], lambda v, b: v & 0xFFFF)(b, w),
                                                   _set(-1, A["n_global"] + 1, 0xFFFF)(b, w)), (1 << 16) | 0x307),
    ("att-split-zero", 2, _set(-1, A["n_global"] + 2, lambda v, b: v & 0xFFFF), (3 << 16) | 0x307),
    ("att-split-ports", 0, _set(-1, A["n_global"] + 1, lambda v, b: (v & 0xFFFF) | ((gather_ports(b.cfg) + 1) << 16)),
     (1 << 16) | 0x307),
    ("att-split-all-global", 2, _set(-1, A["n_global"], lambda v, b: b.n | (1 << 16)), (3 << 16) | 0x307),
    ("att-order", 2, _head1("order"), (3 << 16) | 0x304),
    ("att-order-negative", 0, _head1("order-negative"), (1 << 16) | 0x304),
    ("att-ptr-beats-order", 2, _head1("order+colptr"), (3 << 16) | 0x305),
    ("att-colptr0", 0, _head1("colptr0"), (1 << 16) | 0x305),
    ("att-colptr-decreasing", 2, _head1("colptr-decreasing"), (3 << 16) | 0x305),
    ("att-headptr", 0, _head1("headptr"), (1 << 16) | 0x305),
    ("att-headptr-negative", 2, _head1("headptr-negative"), (3 << 16) | 0x305),
    ("att-rowidx-at-window-end", 0, _rowidx_at_window_end, (1 << 16) | 0x305),
    ("att-rowidx-range", 2, _head1("rowidx-range"), (3 << 16) | 0x306),
    ("att-rowidx-negative", 0, _head1("rowidx-negative"), (1 << 16) | 0x306),
    ("att-rowidx-order", 2, _head1("rowidx-order"), (3 << 16) | 0x306),
    ("att-global-column-junk", 0, _head1("global-junk"), 0),
]


@pytest.mark.parametrize("hc,brk,expect", [b[1:] for b in BREAKS], ids=[b[0] for b in BREAKS])
def test_status_codes(hc, brk, expect):
    rng = np.random.default_rng(expect + hc)
    b = make_block(rng, n=30, h=3, d=8, hc=hc, mode="shuffled", density=0.3)
    w = b.window.copy()
    extra = brk(b, w) or {}
    if not isinstance(extra, dict):
        extra = {}
    off, count, names = b.starts["attn"]
    after, res = same(w, off, count, expect=expect, names=names, cycles=True, **extra)
    i = expect >> 16
    assert len(res.reports) == (i if expect else count)
    if i > 0:   # the qkv GEMM ran
        assert not np.array_equal(after[b.r.qkv:b.r.attn], w[b.r.qkv:b.r.attn])


@pytest.mark.parametrize("bad", ["shift-tile3", "mult-tile3", "mult-tile0", "mixed-shift-last", "mixed-mult-last"])
@pytest.mark.parametrize("overlap", [False, True])
def test_gemm_constants_fail_on_a_later_tile(bad, overlap):
    """Weight tiles before the first bad one are written; within that tile the last bad channel decides."""
    cfg = load_config(CFG)
    m, k, o = 9, 512, 3 * cfg.mac_lines + 5
    to = gemm_plan(cfg, m, k, o)["To"]
    assert to < o
    rng = np.random.default_rng(3)
    dram = Dram()
    p = linear(dram, rng, k, o)
    mult = i32_at(dram.buffer, p["offs"]["mult"], o)
    shift = i32_at(dram.buffer, p["offs"]["shift"], o)
    if bad == "mixed-shift-last":
        mult[to + 2], shift[to + 5], mult[2 * to] = -1, 64, -1
    elif bad == "mixed-mult-last":
        shift[to + 2], mult[to + 5], shift[2 * to + 1] = -1, -(1 << 31), 99
    else:
        what, tile = bad.split("-tile")
        (mult if what == "mult" else shift)[int(tile) * to + 3] = -1
    x = dram.put(rand_i8(rng, (m, k)))
    y = x + 7 if overlap else garbage(dram, rng, m * o)
    garbage(dram, rng, m * o)
    off = dram.put(gemm_descriptor(M=m, K=k, O=o, x=x, y=y, **p["offs"]))
    # An output over the input is refused before the constants are read.
    same(dram.buffer.copy(), off, 1, expect=0x006 if overlap else 0x104 if "shift" in bad else 0x103)


def test_dispatcher_checks_and_the_k_limit():
    cfg = load_config(CFG)
    assert gemm_max_k(cfg) == ck.kernels_library(CFG).limits["gemm_max_k"]
    w = np.zeros(4096, np.uint8)
    for off, cnt, mem, code in ((2, 1, None, 0x002), (2, 0, None, 0x002), (4000, 1, None, 0x003),
                                (0, 16, None, 0), (0, 16, 4092, 0x003), (0, 65536, None, 0x005),
                                (0, (1 << 32) - 1, None, 0x005)):
        same(w, off, cnt, expect=code, mem_bytes=mem)
    # K one past the limit: the ranges pass (a large enough window), then 0x102.
    kk = gemm_max_k(cfg) + 1
    dram = Dram(kk + 8192)
    x = dram.put(rand_i8(np.random.default_rng(0), (1, kk)))
    c = dram.put(np.array([0, 1 << 20, 5], np.int32))
    for K, code in ((kk, 0x102), (kk - 1, 0)):
        off = dram.put(gemm_descriptor(M=1, K=K, O=1, x=x, w=x, bias=c, mult=c + 4, shift=c + 8, y=c + 12))
        same(dram.buffer.copy(), off, 1, expect=code)


@pytest.mark.parametrize("config", ["paper", "pynq-z2"])
def test_id_register_and_another_config(config):
    cfg = load_config(config)
    res = run_top(np.zeros(64, np.uint8), 0, 0, config)
    assert (res.status, res.hw_id, res.executed, res.reports) == (0, cfg.hash32, 0, [])
    same(np.zeros(64, np.uint8), 0, 0, expect=0, config=config)
    # A block runs on this config's limits and splits.
    b = make_block(np.random.default_rng(4), n=50, h=3, d=16, hc=1, config=config, split="host")
    off, count, names = b.starts["attn"]
    _, res = same(b.window, off, count, expect=0, config=config, names=names, cycles=True)
    assert res.reports[b.att_index].to_dict() == attention_cycles(
        cfg, b.plan, b.d, compressed_heads=1, name=names[b.att_index], layer=0, sparse_lines=list(b.split)).to_dict()


def test_compiled_bundle_programs_match_the_csim():
    """The host compiler's own layout (batch of two images, AE on), with a shared plan cache."""
    p = compile_device_program(random_bundle(seed=2, num_heads=3, embed_dim=24, ae_heads=1, density=0.4), batch=2)
    rng = np.random.default_rng(7)
    window = p.image.copy()
    desc_start = min(p.start(b).desc_off for b in (1, 2))
    window[p.static_bytes:desc_start] = rng.integers(0, 256, desc_start - p.static_bytes, dtype=np.uint8)
    cache: dict = {}
    for bb in (2, 1):   # the whole model, one start: every opcode, LayerNorm, add and LUT included
        s = p.start(bb)
        window, res = same(window, s.desc_off, s.count, expect=0, names=list(s.names), cycles=True, plan_cache=cache)
        assert [r.name for r in res.reports] == list(s.names)
    fused = not any(".ae_" in nm for nm in p.start(1).names)     # fuse_encoder's choice for this model
    assert {r.kernel for r in res.reports} == {"gemm", "attention", "layernorm", "add", "lut"} | (
        set() if fused else {"ae_encoder"})
    assert len(cache) == len(p.program.layers)   # one plan per layer, reused by both images and batch sizes


# -- the vector kernels: LAYERNORM, ADD, LUT -------------------------------------------------------------------

def _vector_program(rng):
    """A window with one valid LAYERNORM, ADD (int16 + int8 -> int16) and LUT descriptor, inputs random,
    outputs pre-filled with garbage; returns (window bytes, descriptor offset, their word offsets)."""
    from vitaccel.sim.common.layernorm import layernorm_params
    from vitaccel.sim.vitcod.descriptors import add_descriptor, layernorm_descriptor, lut_descriptor

    rows, dm, n = 5, 24, 5 * 24
    dram = Dram()
    x16 = dram.put(rng.integers(-30000, 30000, (rows, dm), dtype=np.int16))
    p = layernorm_params(rng.uniform(0.5, 1.5, dm), rng.uniform(-1, 1, dm), 0.05, 0.01)
    g, b = dram.put(p["g"]), dram.put(p["b"])
    y8 = dram.put(rng.integers(-128, 128, n, dtype=np.int8))
    a8 = dram.put(rng.integers(-128, 128, n, dtype=np.int8))
    out16 = dram.put(rng.integers(-128, 128, 2 * n, dtype=np.int8))
    table = dram.put(rng.integers(-128, 128, 256, dtype=np.int8))
    lut_out = dram.put(rng.integers(-128, 128, n, dtype=np.int8))
    descs = [layernorm_descriptor(rows=rows, D=dm, x=x16, g=g, b=b, shift=p["shift"], eps=p["eps"], y=y8),
             add_descriptor(n=n, a=x16, a_bits=16, ma=12345, b=a8, b_bits=8, mb=(1 << 31) - 1, shift=40, y=out16,
                            y_bits=16),
             lut_descriptor(n=n, x=a8, table=table, y=lut_out)]
    off = dram.put(np.concatenate(descs))
    return dram.buffer.copy(), off, dict(x16=x16, g=g, y8=y8, out16=out16, a8=a8, table=table)


VECTOR_BREAKS = [  # (name, descriptor index, word, value or callable(offsets), expected code)
    ("ln-rows", 0, LN_WORDS["rows"], 0, 0x401),
    ("ln-D", 0, LN_WORDS["D"], 8193, 0x401),
    ("ln-x-odd", 0, LN_WORDS["x"], lambda o: o["x16"] + 1, 0x002),
    ("ln-g-align", 0, LN_WORDS["g"], lambda o: o["g"] + 2, 0x002),
    ("ln-y-range", 0, LN_WORDS["y"], 0x7FFFFFF0, 0x003),
    ("ln-y-over-x", 0, LN_WORDS["y"], lambda o: o["x16"] + 10, 0x006),
    ("ln-shift", 0, LN_WORDS["shift"], 15, 0x402),
    ("ln-eps", 0, LN_WORDS["eps"], -1, 0x402),
    ("add-n", 1, ADD_WORDS["n"], 0, 0x501),
    ("add-width", 1, ADD_WORDS["a_bits"], 32, 0x502),
    ("add-mult", 1, ADD_WORDS["mb"], -5, 0x502),
    ("add-shift", 1, ADD_WORDS["shift"], 63, 0x502),
    ("add-y-odd", 1, ADD_WORDS["y"], lambda o: o["out16"] + 1, 0x002),
    ("add-range", 1, ADD_WORDS["b"], 0x7FFFFFF0, 0x003),
    ("add-in-place", 1, ADD_WORDS["y"], lambda o: o["x16"], 0x006),
    ("lut-n", 2, LUT_WORDS["n"], 0, 0x601),
    ("lut-table-range", 2, LUT_WORDS["table"], 0x7FFFFFF0, 0x003),
    ("lut-y-over-table", 2, LUT_WORDS["y"], lambda o: o["table"] + 100, 0x006),
]


def test_vector_kernels_match_the_csim():
    w, off, _ = _vector_program(np.random.default_rng(3))
    out, res = same(w, off, 3, expect=0, cycles=True)
    assert [r.kernel for r in res.reports] == ["layernorm", "add", "lut"]


@pytest.mark.parametrize("name,index,word,value,expect", VECTOR_BREAKS, ids=[b[0] for b in VECTOR_BREAKS])
def test_vector_kernel_status_codes(name, index, word, value, expect):
    w, off, offsets = _vector_program(np.random.default_rng(4))
    v = value(offsets) if callable(value) else value
    at = off + 4 * (DESC_WORDS * index + word)
    w[at:at + 4] = np.array([v & 0xFFFFFFFF], np.uint32).view(np.uint8)
    same(w, off, 3, expect=(index << 16) | expect)


# -- the softmax on kept entries -------------------------------------------------------------------------------

def test_softmax_kept_is_the_numerics_softmax():
    rng = np.random.default_rng(0)
    rows, cols = 60, 45
    s = rng.integers(-(1 << 31), 1 << 31, (rows, cols), dtype=np.int64)
    s[:20] = rng.integers(-3000, 3000, (20, cols))
    keep = rng.random((rows, cols)) < 0.3
    keep[3] = False
    keep[4] = True
    keep[5] = False
    keep[5, 7] = True
    for m_exp, s_exp in ((0, 0), (123456789, 20), ((1 << 31) - 1, 63), *[nx.softmax_params(x) for x in (1e-3, 0.1, 5)]):
        want = nx.softmax(s, keep, m_exp, s_exp)
        kidx = np.flatnonzero(keep)
        rows_of = kidx // cols
        new = np.r_[True, rows_of[1:] != rows_of[:-1]]
        got = np.zeros(rows * cols, np.uint8)
        got[kidx] = softmax_kept(s.reshape(-1)[kidx], np.flatnonzero(new), np.cumsum(new) - 1, m_exp, s_exp)
        assert np.array_equal(got.reshape(rows, cols), want)


def test_arguments():
    w = np.zeros(1024, np.uint8)
    with pytest.raises(TypeError):
        run_top(w.view(np.int8), 0, 0)
    with pytest.raises(ValueError, match="mem_bytes"):
        run_top(w, 0, 0, mem_bytes=2048)
    with pytest.raises(ValueError, match="names"):
        run_top(w, 0, 1, names=["a", "b"])


# -- the qkv GEMM with the AE encoders on its output stage (OP_QKV_AE) ------------------------------------------

def _qkv_program(rng, *, b=2, n=37, k=40, h=3, d=8, hc=2, tog=0, config=CFG):
    """A window with one OP_QKV_AE descriptor (outputs pre-filled with garbage) and, after it, the unfused
    program computing the same thing (OP_GEMM, then OP_AE_MIX per image on Q and on K) into a second set of
    outputs. Returns (window, offset of the fused descriptor, offset of the unfused program, its length,
    the offsets of everything)."""
    from vitaccel.sim.vitcod.descriptors import qkv_ae_descriptor

    m, dm = b * n, h * d
    dram = Dram()
    o = dict(x=dram.put(rand_i8(rng, (m, k))), w=dram.put(rand_i8(rng, (3 * dm, k))),
             bias=dram.put(rng.integers(-3000, 3000, 3 * dm).astype(np.int32)),
             mult=dram.put(rng.integers(1 << 29, 1 << 30, 3 * dm).astype(np.int32)),
             shift=dram.put(rng.integers(36, 42, 3 * dm).astype(np.int32)),
             eq_w=dram.put(rand_i8(rng, (hc, h))), eq_b=dram.put(rng.integers(-99, 99, hc).astype(np.int32)),
             ek_w=dram.put(rand_i8(rng, (hc, h))), ek_b=dram.put(rng.integers(-99, 99, hc).astype(np.int32)))
    for name, size in (("y", m * 3 * dm), ("qc", m * hc * d), ("kc", m * hc * d), ("y2", m * 3 * dm),
                       ("qc2", m * hc * d), ("kc2", m * hc * d)):
        o[name] = dram.put(rng.integers(-128, 128, size, dtype=np.int8))
    enc = dict(eq_m=(1 << 30) - 7, eq_s=37, ek_m=(1 << 30) + 11, ek_s=38)
    fused = qkv_ae_descriptor(M=m, K=k, H=h, d=d, Hc=hc, N=n, x=o["x"], w=o["w"], bias=o["bias"], mult=o["mult"],
                              shift=o["shift"], y=o["y"], qc=o["qc"], kc=o["kc"], eq_w=o["eq_w"], eq_b=o["eq_b"],
                              ek_w=o["ek_w"], ek_b=o["ek_b"], stage_qk=tog, **enc)
    unfused = [gemm_descriptor(M=m, K=k, O=3 * dm, x=o["x"], w=o["w"], bias=o["bias"], mult=o["mult"], shift=o["shift"],
                               y=o["y2"])]
    for j in range(b):
        for nm, col, dst in (("q", 0, "qc2"), ("k", dm, "kc2")):
            unfused.append(ae_descriptor(Hin=h, C=hc, N=n, d=d, x=o["y2"] + j * n * 3 * dm + col, x_hs=d, x_ns=3 * dm,
                                         w=o[f"e{nm}_w"], b=o[f"e{nm}_b"], mult=enc[f"e{nm}_m"], shift=enc[f"e{nm}_s"],
                                         y=o[dst] + j * hc * n * d, y_hs=n * d, y_ns=d))
    f_off = dram.put(fused)
    u_off = dram.put(np.concatenate(unfused))
    return dram.buffer.copy(), f_off, u_off, len(unfused), o


QKV_SHAPES = [  # (config, images, N, K, H, d, Hc, stage_qk): one chunk, several chunks, both stagings
    ("paper", 2, 37, 40, 3, 8, 2, 0),
    ("paper", 2, 37, 40, 3, 8, 2, 1),
    ("paper", 1, 197, 96, 3, 32, 2, 1),
    ("paper", 3, 90, 64, 12, 64, 6, 0),     # 270 rows of 768: three chunks of 101
    ("paper", 3, 90, 64, 12, 64, 6, 1),     # six chunks of 50
    ("pynq-z2", 2, 100, 72, 6, 64, 3, 0),
    ("paper", 1, 5, 3, 1, 1, 1, 0),         # one head, one feature
]


@pytest.mark.parametrize("config,b,n,k,h,d,hc,tog", QKV_SHAPES)
def test_qkv_ae_matches_the_csim_and_the_unfused_program(config, b, n, k, h, d, hc, tog):
    from vitaccel.sim.vitcod.autoencoder import qkv_ae_cycles

    rng = np.random.default_rng(b * 1000 + n + k + h + d + hc + tog)
    w, f_off, u_off, u_count, o = _qkv_program(rng, b=b, n=n, k=k, h=h, d=d, hc=hc, tog=tog, config=config)
    w, res = same(w, f_off, 1, expect=0, config=config, cycles=True)
    w, _ = same(w, u_off, u_count, expect=0, config=config)
    m, dm, z = b * n, h * d, b * n * hc * d
    for a, bb in (("qc", "qc2"), ("kc", "kc2")):
        assert np.array_equal(w[o[a]:o[a] + z], w[o[bb]:o[bb] + z]), a
    y = w[o["y"]:o["y"] + m * 3 * dm].reshape(m, 3 * dm)
    y2 = w[o["y2"]:o["y2"] + m * 3 * dm].reshape(m, 3 * dm)
    assert np.array_equal(y[:, 2 * dm:], y2[:, 2 * dm:])
    assert res.reports[0].to_dict() == qkv_ae_cycles(load_config(config), m, k, h, d, hc, together=bool(tog),
                                                     name="desc[0].qkv_ae").to_dict()


def _qkv_word(name):
    from vitaccel.sim.vitcod.descriptors import QKV_AE_WORDS

    return QKV_AE_WORDS[name]


def _bad_channel(section, field, value):
    """Set channel 5 of the Q / K / V section's multiplier or shift."""
    def f(w, o, dm):
        at = o[field] + 4 * (section * dm + 5)
        w[at:at + 4] = np.array([value], np.int32).view(np.uint8)
    return f


QKV_BREAKS = [  # (name, word or callable(window, offsets, D), value or callable(offsets), expected code)
    ("M", "M", 0, 0x203),
    ("N-not-dividing", "N", 36, 0x203),
    ("N-too-many", "N", 1 << 20, 0x203),
    ("Hc-0", "Hc", 0, 0x203),
    ("Hc-over-H", "Hc", 13, 0x203),
    ("d", "d", 65, 0x203),
    ("stage_qk", "stage_qk", 2, 0x203),
    ("bias-align", "bias", lambda o: o["bias"] + 2, 0x002),
    ("ek_b-align", "ek_b", lambda o: o["ek_b"] + 1, 0x002),
    ("x-range", "x", 0x7FFFFFF0, 0x003),
    ("kc-range", "kc", 0x7FFFFFF0, 0x003),
    ("y-over-x", "y", lambda o: o["x"] + 3, 0x006),
    ("qc-over-eq_w", "qc", lambda o: o["eq_w"], 0x006),
    ("kc-over-qc", "kc", lambda o: o["qc"] + 5, 0x006),
    ("K-too-long", "K", 1 << 20, 0x003),
    ("eq_m", "eq_m", -1, 0x202),
    ("ek_s", "ek_s", 64, 0x202),
    ("q-mult", _bad_channel(0, "mult", -3), None, 0x103),
    ("k-shift", _bad_channel(1, "shift", 70), None, 0x104),    # compressed Q of chunk 0 written first
    ("v-mult", _bad_channel(2, "mult", -1), None, 0x103),      # qc, kc and the V tiles before it written
]


@pytest.mark.parametrize("tog", [0, 1])
@pytest.mark.parametrize("name,word,value,expect", QKV_BREAKS, ids=[b[0] for b in QKV_BREAKS])
def test_qkv_ae_status_codes(name, word, value, expect, tog):
    rng = np.random.default_rng(9)
    # 2 x 120 rows of 768 bytes (paper: 101 rows a chunk apart, 50 together): failures mid-way leave the
    # chunks before them written, which both tops must agree on byte for byte.
    w, f_off, _, _, o = _qkv_program(rng, b=2, n=120, k=32, h=12, d=64, hc=5, tog=tog)
    if callable(word):
        word(w, o, 12 * 64)
    else:
        v = value(o) if callable(value) else value
        at = f_off + 4 * _qkv_word(word)
        w[at:at + 4] = np.array([v & 0xFFFFFFFF], np.uint32).view(np.uint8)
    same(w, f_off, 1, expect=expect)


def test_qkv_ae_k_limit():
    """K longer than half the activation buffer allows: 0x102, after every range check passed."""
    cfg = load_config(CFG)
    k = gemm_max_k(cfg) + 8
    w, f_off, _, _, _ = _qkv_program(np.random.default_rng(1), b=1, n=2, k=k, h=1, d=8, hc=1)
    same(w, f_off, 1, expect=0x102)
