"""The simulator's model of ``vitcod_top`` (sim/top.py) against the C-simulation of the C++ top.

Same program, two copies of the same window: after the run the windows must be byte-identical and the
status and ID register equal. Programs: whole compiled models (AE on and off, dense and sparse attention,
batches), a chain of every opcode with strided AE reads, and one deliberately broken descriptor per status
code (the descriptors before it ran, what the failing one may have written is compared too).
"""
from __future__ import annotations

import numpy as np
import pytest

from vitaccel.host.bundle import random_bundle
from vitaccel.host.program import compile_device_program
from vitaccel.hwconfig import load_config
from vitaccel.sim import csim_kernels as ck
from vitaccel.sim.descriptors import (AE_WORDS, ATT_WORDS, DESC_WORDS, GEMM_WORDS, Dram, ae_descriptor, gemm_descriptor)
from vitaccel.sim.top import TopModelError, gemm_max_k, run_top

pytestmark = pytest.mark.csim


def both(window: np.ndarray, desc_off: int, count: int, config="paper", mem_bytes=None):
    """Run on two copies; return (model window, csim window, model result, csim status, csim hw_id)."""
    a, b = window.copy(), window.copy()
    mem = a.size if mem_bytes is None else mem_bytes
    res = run_top(a, desc_off, count, config, mem_bytes=mem, cycles=False)
    hw = np.zeros(1, np.uint32)
    st = int(ck.kernels_library(config).run(b, mem, desc_off, count, hw))
    return a, b, res, st & 0xFFFFFFFF, int(hw[0])


def fill_activations(p, rng):
    img = p.image.copy()
    img[p.static_bytes:] = rng.integers(0, 256, img.size - p.static_bytes, dtype=np.uint8)
    # Restore the descriptor lists, which live after the activations.
    desc_start = min(s.desc_off for layer in p.layer_starts(1) for s in layer)
    img[desc_start:] = p.image[desc_start:]
    return img


@pytest.mark.parametrize("kw,batch", [
    (dict(seed=1), 1),                                                   # AE on, sparse
    (dict(seed=2, num_heads=3, embed_dim=24, ae_heads=1, density=0.4), 2),
    (dict(seed=3, ae=False), 3),                                         # sparse, no AE
    (dict(seed=4, ae=False, sparse_attention=False), 2),                 # dense attention
])
def test_compiled_programs_match_the_csim(kw, batch):
    b = random_bundle(**kw)
    p = compile_device_program(b, batch=batch)
    rng = np.random.default_rng(7)
    for bb in range(1, batch + 1):
        window = fill_activations(p, rng)
        ma, ca = window.copy(), window.copy()
        for layer in p.layer_starts(bb):
            for s in layer:
                r = run_top(ma, s.desc_off, s.count, "paper", cycles=False)
                hw = np.zeros(1, np.uint32)
                st = int(ck.kernels_library("paper").run(ca, ca.size, s.desc_off, s.count, hw))
                assert (r.status, r.hw_id) == (st, int(hw[0])) == (0, load_config("paper").hash32), s.name
                assert r.executed == s.count
        assert np.array_equal(ma, ca)


def test_id_register_and_empty_programs():
    for cfg in ("paper", "pynq-z2"):
        w = np.zeros(1024, np.uint8)
        a, b, res, st, hw = both(w, 0, 0, cfg)
        assert (res.status, res.hw_id) == (st, hw) == (0, load_config(cfg).hash32)


# -- one broken field per status code --------------------------------------------------------------------

def _program(rng):
    """A GEMM, an AE mix reading Q out of a (N, 3D) layout, and an attention layer, chained in one window."""
    b = random_bundle(seed=11, num_heads=3, embed_dim=24, ae_heads=2)
    p = compile_device_program(b, batch=1)
    window = fill_activations(p, rng)
    start = p.layer_starts(1)[0][0]        # qkv, ae_q, ae_k, attention, proj
    return window, start


def _word(window, start, i, word, value):
    off = start.desc_off + 4 * (DESC_WORDS * i + word)
    window[off:off + 4] = np.array([value & 0xFFFFFFFF], np.uint32).view(np.uint8)


def _get(window, start, i, word):
    off = start.desc_off + 4 * (DESC_WORDS * i + word)
    return int(window[off:off + 4].view(np.int32)[0])


G, E, A = GEMM_WORDS, AE_WORDS, ATT_WORDS
# (descriptor index in the qkv..proj start, word, new value or callable(old) -> new, expected code)
BREAKS = [
    (0, 0, 9, 0x001), (2, 1, 1, 0x001),
    (0, G["bias"], lambda v: v + 2, 0x002), (3, ATT_WORDS["colptr"], lambda v: v + 1, 0x002),
    (0, G["y"], 1 << 30, 0x003), (1, E["x"], (1 << 31) - 64, 0x003), (3, A["rowidx"], 1 << 31, 0x003),
    (1, E["x_ns"], -3, 0x004), (3, A["o_hs"], -1, 0x004),
    (0, G["M"], 0, 0x101), (4, G["K"], 1 << 20, 0x003),  # range before K length
    (1, E["C"], 0, 0x201), (1, E["shift"], 64, 0x202), (1, E["mult"], -5, 0x202),
    (3, A["H"], 0, 0x301), (3, A["Hc"], 4, 0x301), (3, A["m_exp"], -1, 0x302), (3, A["dk_s"], 99, 0x302),
    (3, A["n_global"] + 1, lambda v: (v & ~0xFFFF) | 999, 0x303),
    (3, A["n_global"] + 2, lambda v: (v & 0xFFFF) | (77 << 16), 0x307),
]


@pytest.mark.parametrize("i,word,value,code", BREAKS)
def test_status_codes_match_the_csim(i, word, value, code):
    window, start = _program(np.random.default_rng(code))
    old = _get(window, start, i, word)
    _word(window, start, i, word, value(old) if callable(value) else value)
    a, b, res, st, hw = both(window, start.desc_off, start.count)
    assert st == (i << 16) | code, ck.status_message(st)
    assert res.status == st and res.hw_id == hw and res.executed == i
    assert np.array_equal(a, b)


def _att_tables(window, start):
    base = lambda f: _get(window, start, 3, A[f]) & 0xFFFFFFFF  # noqa: E731
    return base


@pytest.mark.parametrize("what,code", [("order", 0x304), ("colptr0", 0x305), ("headptr", 0x305),
                                       ("rowidx_range", 0x306), ("rowidx_order", 0x306)])
def test_index_errors_on_a_later_head(what, code):
    """Broken indexes of head 1: head 0's output is written on both sides, then the same status."""
    window, start = _program(np.random.default_rng(5))
    at = _att_tables(window, start)
    n = _get(window, start, 3, A["N"])
    i32 = lambda off, cnt: window[off:off + 4 * cnt].view(np.int32)  # noqa: E731
    hp = i32(at("headptr"), 4)
    cp = i32(at("colptr"), 3 * (n + 1)).reshape(3, n + 1)
    ri = i32(at("rowidx"), int(hp[-1]))
    if what == "order":
        i32(at("order"), 3 * n)[n + 2] = n
    elif what == "colptr0":
        cp[1, 0] = 1
    elif what == "headptr":
        hp[2] += 1
    else:
        cols = np.flatnonzero(np.diff(cp[1]) >= 2)
        assert cols.size, "the test mask needs a column with two entries in head 1"
        j = int(hp[1] + cp[1, cols[-1]])
        if what == "rowidx_range":
            ri[j] = n + 5
        else:
            ri[j + 1] = ri[j]
    a, b, res, st, hw = both(window, start.desc_off, start.count)
    assert st == (3 << 16) | code, ck.status_message(st)
    assert res.status == st
    assert np.array_equal(a, b)


def test_gemm_constants_fail_on_a_later_tile():
    """A bad shift in the second weight tile: the first tile's output channels are written, like the C++."""
    cfg = load_config("paper")
    rng = np.random.default_rng(3)
    m, k, o = 9, 40, 3 * cfg.mac_lines + 5
    dram = Dram()
    shift = np.full(o, 7, np.int32)
    mult = np.full(o, 1 << 20, np.int32)
    shift[cfg.mac_lines + 3] = 70
    mult[cfg.mac_lines + 1] = -1
    offs = dict(x=dram.put(rng.integers(-128, 128, (m, k), dtype=np.int8)),
                w=dram.put(rng.integers(-128, 128, (o, k), dtype=np.int8)),
                bias=dram.put(rng.integers(-999, 999, o).astype(np.int32)), mult=dram.put(mult), shift=dram.put(shift),
                y=dram.alloc(m * o))
    off = dram.put(gemm_descriptor(M=m, K=k, O=o, **offs))
    a, b, res, st, hw = both(dram.buffer.copy(), off, 1)
    assert st == 0x104 and res.status == st
    assert np.array_equal(a, b)


def test_strided_ae_chain_and_k_limit():
    cfg = load_config("paper")
    rng = np.random.default_rng(4)
    n, d, h, c = 13, 8, 4, 3
    dram = Dram()
    x = dram.put(rng.integers(-128, 128, (n, 3 * h * d), dtype=np.int8))    # a (N, 3D) qkv layout
    w = dram.put(rng.integers(-40, 40, (c, h), dtype=np.int8))
    bias = dram.put(rng.integers(-500, 500, c).astype(np.int32))
    y = dram.alloc(c * n * d)
    d1 = ae_descriptor(Hin=h, C=c, N=n, d=d, x=x + h * d, x_hs=d, x_ns=3 * h * d, w=w, b=bias, mult=1 << 28, shift=33,
                       y=y, y_hs=d, y_ns=c * d)
    # The AE output read back as GEMM input (N rows of C*d), K at the engine's limit + 1 fails.
    wg = dram.put(rng.integers(-128, 128, (5, c * d), dtype=np.int8))
    cst = [dram.put(np.full(5, v, np.int32)) for v in (3, 1 << 29, 35)]
    yg = dram.alloc(n * 5)
    d2 = gemm_descriptor(M=n, K=c * d, O=5, x=y, w=wg, bias=cst[0], mult=cst[1], shift=cst[2], y=yg)
    off = dram.put(np.concatenate([d1, d2]))
    a, b, res, st, _ = both(dram.buffer.copy(), off, 2)
    assert st == 0 and res.status == 0 and np.array_equal(a, b)
    big = gemm_descriptor(M=1, K=gemm_max_k(cfg) + 1, O=1, x=0, w=0, bias=cst[0], mult=cst[1], shift=cst[2], y=0)
    dram2 = Dram(capacity=gemm_max_k(cfg) + 4096)
    dram2.alloc(gemm_max_k(cfg) + 64)
    off2 = dram2.put(big)
    _, _, res2, st2, _ = both(dram2.buffer.copy(), off2, 1)
    assert st2 == res2.status == 0x102


def test_dispatcher_errors():
    w = np.zeros(4096, np.uint8)
    for off, cnt, code in ((2, 1, 0x002), (4000, 1, 0x003), (0, 70000, 0x005)):
        _, _, res, st, _ = both(w, off, cnt)
        assert res.status == st == code


def test_csc_that_disagrees_with_the_mask_is_refused():
    window, start = _program(np.random.default_rng(6))
    at = _att_tables(window, start)
    mask = at("mask")
    window[mask] ^= 0x40          # flip one mask bit of head 0, row 0; its CSC no longer agrees
    with pytest.raises(TopModelError, match="do not match its mask bits"):
        run_top(window.copy(), start.desc_off, start.count)
