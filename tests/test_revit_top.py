"""revit_top (hls/revit/revit_top.cpp) against its NumPy model (vitaccel.sim.revit.top.run_top): programs of
ATTN and PRUNE descriptors leave the same window and status, the bits are the functional layer's and
pruning decisions, and hostile descriptors are refused with the same status codes before anything runs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitaccel.hwconfig import load_config
from vitaccel.sim.revit import csim_engines as ce
from vitaccel.sim.revit.attention import prune_decisions, revit_attention_layer
from vitaccel.sim.revit.isa import ISA
from vitaccel.sim.revit.top import attn_descriptor, gemm_max_k, op_descriptor, prune_descriptor, run_top
from vitaccel.sim.window import Dram

from test_revit_layer import _layer  # noqa: E402

pytestmark = pytest.mark.csim

CONFIG = "revit-paper"


def layer_program(lp, h8, keep=(49152, 45875), mode=2, delta=1, sync=1, ooo=1, F=16):
    """One layer as a program: ATTN, then PRUNE on its outputs. Returns (window, desc_off, count, offsets)."""
    n, D = h8.shape
    H, G = lp.heads, lp.num_groups
    dram = Dram(1 << 16)
    per = lambda v: np.ascontiguousarray(np.broadcast_to(np.asarray(v), (3 * D,)), np.int32)  # noqa: E731
    o = dict(x=dram.put(h8), w=dram.put(lp.qkv_weight), b=dram.put(per(lp.qkv_bias)), m=dram.put(per(lp.qkv_mult)),
             s=dram.put(per(lp.qkv_shift)), hw=dram.put(lp.hash_weight), hb=dram.put(lp.hash_bias.astype(np.int32)),
             y=dram.alloc(n * D), groups=dram.alloc(4 * (n - 1)), cls_p=dram.alloc(H * n), group_p=dram.alloc(H * G),
             keep=dram.alloc(n - 1), keep_g=dram.alloc(G), scores=dram.alloc(4 * (n - 1)))
    a = attn_descriptor(N=n, D=D, H=H, G=G, block=lp.block, joint=int(lp.combine == "joint"), mode=mode, F=F,
                        delta=delta, sync=sync, ooo=ooo, hm=lp.hash_mult, hs=lp.hash_shift, m_exp=lp.softmax[0],
                        s_exp=lp.softmax[1], out_m=lp.out[0], out_s=lp.out[1],
                        **{k: o[k] for k in ("x", "w", "b", "m", "s", "hw", "hb", "y", "groups", "cls_p", "group_p")})
    p = prune_descriptor(H=H, G=G, n=n - 1, q_groups=keep[0], q_patches=keep[1], group_p=o["group_p"],
                         cls_p=o["cls_p"], groups=o["groups"], keep=o["keep"], keep_g=o["keep_g"], scores=o["scores"])
    off = dram.put(np.concatenate([a, p]))
    return dram.buffer.copy(), off, 2, o


def _both(window, off, count, mem=None):
    lib = ce.engines_library(CONFIG)
    a, b = window.copy(), window.copy()
    res = run_top(a, off, count, CONFIG, mem_bytes=mem)
    hw, runs = np.zeros(1, np.uint32), np.zeros(1, np.uint32)
    st = int(lib.run(b, a.size if mem is None else mem, off, count, hw, runs))
    assert st == res.status, (hex(st), hex(res.status), ISA.status_message(res.status))
    assert int(hw[0]) == res.hw_id == load_config(CONFIG).hash32
    assert np.array_equal(a, b), "windows differ"
    return res, a


def test_layer_program_bits_and_decisions():
    rng = np.random.default_rng(3)
    lp = _layer(rng, 24, 2, 4, "joint")
    h8 = rng.integers(-128, 128, (30, 24)).astype(np.int8)
    window, off, count, o = layer_program(lp, h8)
    res, w = _both(window, off, count)
    assert res.status == 0 and [r["kind"] for r in res.reports] == ["attn", "prune"]
    ref = revit_attention_layer(h8, lp)
    assert np.array_equal(w[o["y"]:o["y"] + h8.size].view(np.int8).reshape(h8.shape), ref.a8)
    keep, _ = prune_decisions(ref, 49152, 45875)
    assert np.array_equal(w[o["keep"]:o["keep"] + 29].astype(bool), keep)


def test_demo_layer_program():
    from vitaccel.host.bundle import load_bundle
    from vitaccel.sim.revit.model import compile_revit, run_revit

    demo = Path(__file__).resolve().parents[1] / "models" / "demo"
    bundle = load_bundle(demo / "revit.vcb")
    lay = compile_revit(bundle).layers[1]
    rec = run_revit(bundle, np.load(demo / "test_images.npz")["images"][:1], trace=True).traces[0][1]
    window, off, count, o = layer_program(lay.attn, rec["h8"], keep=lay.keep)
    res, w = _both(window, off, count)
    assert res.status == 0
    n = rec["h8"].shape[0]
    assert np.array_equal(w[o["keep"]:o["keep"] + n - 1].astype(bool), rec["keep"])


def test_top_level_checks():
    window, off, count, _ = layer_program(_layer(np.random.default_rng(0)), np.ones((5, 24), np.int8))
    for args, want in (((off, 1 << 16), ISA.code("ERR_COUNT")), ((off + 2, 1), ISA.code("ERR_ALIGN")),
                       ((window.size - 4, 1), ISA.code("ERR_RANGE")), ((off, 0), 0)):
        res, _ = _both(window, *args)
        assert res.status == want
    w = window.copy()
    w[off + 4:off + 8] = 1                                      # flags word not 0
    assert _both(w, off, count)[0].status == ISA.code("ERR_OP")
    w = window.copy()
    w[off:off + 4] = np.array([77], np.int32).view(np.uint8)    # unknown opcode
    assert _both(w, off, count)[0].status == ISA.code("ERR_OP")


def _hostile(rng, size: int) -> int:
    pick = rng.integers(0, 6)
    if pick == 0:
        return int(rng.choice([0, 1, -1, 2, 3, 63, 64, 65, 65536, 65537]))
    if pick == 1:
        return int(rng.choice([(1 << 31) - 1, -(1 << 31), 1 << 30]))
    if pick == 2:
        return int(size - rng.integers(0, 512))
    return int(rng.integers(0, size))


def test_hostile_descriptors_get_the_same_status_and_window():
    rng = np.random.default_rng(11)
    lp = _layer(rng, 24, 2, 4, "joint")
    window, off, count, _ = layer_program(lp, rng.integers(-128, 128, (20, 24)).astype(np.int8))
    seen = set()
    for trial in range(60):
        w = window.copy()
        for _ in range(1 + trial % 3):
            i = int(rng.integers(0, count))
            word = int(rng.integers(2, 30 if i == 0 else 13))
            w[off + 4 * (64 * i + word):off + 4 * (64 * i + word) + 4] = np.array(
                [_hostile(rng, w.size) & 0xFFFFFFFF], np.uint32).view(np.uint8)
        res, _ = _both(w, off, count, mem=w.size if trial % 5 else int(rng.integers(off, w.size + 1)))
        seen.add(res.status & 0xFFFF)
    # A spread of refusals (ranges, alignment, overlap, engine dims and quant) and some programs that ran.
    assert len(seen) >= 5 and 0 in seen, sorted(hex(s) for s in seen)


def common_program(rng):
    """GEMM, LAYERNORM, ADD (int16 + int8 -> int16 and -> int8) and LUT on the common kernels."""
    from vitaccel.sim.golden import layernorm_vectors, linear

    dram = Dram(1 << 16)
    M, K, O = 9, 40, 33
    lin = linear(dram, rng, K, O)
    x = dram.put(rng.integers(-128, 128, (M, K)).astype(np.int8))
    y = dram.alloc(M * O)
    xs, g, b, sh, eps = layernorm_vectors(rng, 5, 48, extreme=True)
    lx, lg, lb, ly = dram.put(xs), dram.put(g.astype(np.int32)), dram.put(b.astype(np.int32)), dram.alloc(5 * 48)
    n = 100
    ra = dram.put(rng.integers(-32768, 32768, n).astype(np.int16))
    rb = dram.put(rng.integers(-128, 128, n).astype(np.int8))
    ry16, ry8 = dram.alloc(2 * n, 2), dram.alloc(n)
    tx, tt, ty = dram.put(rng.integers(-128, 128, n).astype(np.int8)), dram.put(rng.integers(-128, 128, 256).astype(np.int8)), dram.alloc(n)
    descs = [op_descriptor("GEMM", M=M, K=K, O=O, x=x, y=y, **lin["offs"]),
             op_descriptor("LAYERNORM", rows=5, D=48, x=lx, g=lg, b=lb, shift=sh, eps=eps, y=ly),
             op_descriptor("ADD", n=n, a=ra, a_bits=16, ma=1 << 20, b=rb, b_bits=8, mb=3 << 18, shift=20, y=ry16, y_bits=16),
             op_descriptor("ADD", n=n, a=ra, a_bits=16, ma=1 << 12, b=rb, b_bits=8, mb=1 << 14, shift=20, y=ry8, y_bits=8),
             op_descriptor("LUT", n=n, x=tx, table=tt, y=ty)]
    off = dram.put(np.concatenate(descs))
    return dram.buffer.copy(), off, len(descs), dict(gemm=(x, y, lin, M, K, O), ln=(xs, g, b, sh, eps, ly))


def test_common_kernels_through_the_top():
    from vitaccel.sim.common.gemm import gemm
    from vitaccel.sim.common.layernorm import layernorm_int

    window, off, count, o = common_program(np.random.default_rng(5))
    res, w = _both(window, off, count)
    assert res.status == 0 and [r["kind"] for r in res.reports] == ["gemm", "layernorm", "add", "add", "lut"]
    x, y, lin, M, K, O = o["gemm"]
    p = lin["params"]
    want = gemm(w[x:x + M * K].view(np.int8).reshape(M, K), p["weight"], p["bias"], p["mult"], p["shift"])
    assert np.array_equal(w[y:y + M * O].view(np.int8).reshape(M, O), want)
    xs, g, b, sh, eps, ly = o["ln"]
    assert np.array_equal(w[ly:ly + xs.size].view(np.int8).reshape(xs.shape), layernorm_int(xs, g, b, sh, eps))
    assert gemm_max_k(load_config(CONFIG)) == load_config(CONFIG).qkvs_buffer_kb * 1024 // 2


def test_hostile_common_descriptors():
    rng = np.random.default_rng(12)
    window, off, count, _ = common_program(rng)
    seen = set()
    for trial in range(60):
        w = window.copy()
        for _ in range(1 + trial % 3):
            i = int(rng.integers(0, count))
            word = int(rng.integers(2, 12))
            w[off + 4 * (64 * i + word):off + 4 * (64 * i + word) + 4] = np.array(
                [_hostile(rng, w.size) & 0xFFFFFFFF], np.uint32).view(np.uint8)
        res, _ = _both(w, off, count)
        seen.add(res.status & 0xFFFF)
    assert len(seen) >= 5 and 0 in seen, sorted(hex(s) for s in seen)
