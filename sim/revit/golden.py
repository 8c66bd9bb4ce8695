"""Golden case folders for the ReViT engines' HLS testbenches (``hls/revit/<engine>/<engine>_tb.cpp``),
written from the simulator's models (bits and cycles), like :mod:`vitaccel.sim.golden` for ViTCoD:
``params.txt`` (``name value`` lines) and one raw little-endian ``<array>.bin`` per array plus
``expected.bin``. The registry names these writers (:mod:`vitaccel.accelerators`), so ``vitaccel golden``
and ``build.tcl``'s csim step run them for a ReViT config.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np

from vitaccel.hwconfig import load_config

__all__ = ["rmmu_cases", "groupgen_cases", "dsoftmax_cases", "similar_tokens", "hash_inputs", "softmax_inputs", "pruner_cases", "prune_inputs", "sched_cases", "group_mix", "attn_program",
           "common_program", "compact_program", "hostile_value", "random_layer", "top_cases"]


def _write_case(folder: Path, params: Dict[str, int], arrays: Dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    (folder / "params.txt").write_text("".join(f"{k} {int(v)}\n" for k, v in params.items()))
    for name, a in arrays.items():
        np.ascontiguousarray(a).tofile(folder / f"{name}.bin")
    return folder


def similar_tokens(rng, groups: int, per: int, d: int, spread: int = 6) -> np.ndarray:
    """int8 tokens in ``groups`` clusters of ``per`` (a centre each, members within +-``spread``): what
    semantic groups look like to the delta generator."""
    centres = rng.integers(-100, 101, (groups, 1, d))
    x = centres + rng.integers(-spread, spread + 1, (groups, per, d))
    return np.clip(x, -128, 127).reshape(groups * per, d).astype(np.int8)


def rmmu_cases(root: Path, config="revit-paper") -> List[Path]:
    from vitaccel.sim.revit.rmmu import rbsp_pass

    cfg = load_config(config)
    cases = []
    # (C, K, O, cols, sync, serial kind): raw int8, 9-bit deltas, the 10-bit extremes, all zero.
    for i, (c, k, o, cols, sync, kind) in enumerate([(5, 17, 3, 4, 1, "raw"), (70, 100, 6, cfg.rmmu_cols, cfg.sync_cols, "delta"),
                                                     (33, 130, 4, 7, 3, "extreme"), (3, 9, 2, 1, 1, "zero"),
                                                     (40, 64, 2, cfg.rmmu_cols, cfg.rmmu_cols, "delta")]):
        rng = np.random.default_rng(1200 + i)
        if kind == "raw":
            s = rng.integers(-128, 128, (c, k))
        elif kind == "delta":
            s = rng.integers(-9, 10, (c, k))
        elif kind == "extreme":
            s = rng.choice([-512, 511, -256, 255, -1, 0, 1, 170, -171], (c, k))
        else:
            s = np.zeros((c, k), np.int64)
        b = rng.integers(-(1 << 17), 1 << 17, (o, k))
        cols = min(cols, cfg.rmmu_cols)
        y, cyc = rbsp_pass(s, b, cols, cfg.rmmu_lanes, sync)
        cases.append(_write_case(root / f"rmmu{i}", dict(C=c, K=k, O=o, cols=cols, sync=sync, cycles=cyc.cycles),
                                 dict(S=s.astype(np.int16), B=b.astype(np.int32), expected=y)))
    return cases


def hash_inputs(rng, n: int, d: int, g: int, kind: str = "random"):
    """(x8, A, B, m, s) for group generation: random tokens, clustered tokens, or ties (identical codes)."""
    from vitaccel.sim import numerics as nx

    x = similar_tokens(rng, max(1, g), -(-n // max(1, g)), d)[:n] if kind == "clustered" else \
        rng.integers(-128, 128, (n, d)).astype(np.int8)
    a = rng.integers(-127, 128, (g, d)).astype(np.int8)
    b = rng.integers(-20000, 20000, g).astype(np.int32)
    if kind == "ties":                       # every row of A alike: every code equal, every token in group 0
        a[:] = a[0]
        b[:] = b[0]
    m, s = nx.quantize_multiplier(1.0 / (74.0 * 74.0 * np.sqrt(d)))
    return x, a, b, int(m), int(s)


def groupgen_cases(root: Path, config="revit-paper") -> List[Path]:
    from vitaccel.sim.revit.groupgen import generate_groups

    cases = []
    for i, (n, d, g, kind) in enumerate([(196, 96, 4, "clustered"), (1, 8, 1, "random"), (37, 48, 7, "ties"),
                                         (64, 24, 64, "random")]):
        rng = np.random.default_rng(1300 + i)
        x, a, b, m, s = hash_inputs(rng, n, d, g, kind)
        r = generate_groups(x, a, b, m, s, config)
        cases.append(_write_case(root / f"groupgen{i}", dict(n=n, D=d, G=g, m=m, s=s, c_hash=r.cycles["hash"],
                                                             c_codes=r.cycles["codes"], c_argmax=r.cycles["argmax"],
                                                             c_lists=r.cycles["lists"]),
                                 dict(x=x, A=a, B=b, expected=np.concatenate([r.groups, r.counts, r.members]))))
    return cases


def softmax_inputs(rng, rows: int, n: int, kind: str = "random"):
    """(scores int32, keep bool, m_exp, s_exp): random attention-like rows; 'ascending' rows (the running max
    grows at every block); 'extreme' rows (int32 limits, nothing kept, one kept, all equal)."""
    from vitaccel.sim import numerics as nx

    s = rng.integers(-30000, 30000, (rows, n))
    if kind == "ascending":
        s = np.sort(s, axis=1)
    keep = rng.random((rows, n)) < 0.85
    if kind == "extreme":
        s[0] = rng.choice([-(1 << 31), (1 << 31) - 1], n)
        keep[1 % rows] = False
        if rows > 2:
            keep[2] = False
            keep[2, n // 2] = True
        if rows > 3:
            s[3] = 7
    m, e = nx.softmax_params(1.0 / 3000.0)
    return s.astype(np.int32), keep, int(m), int(e)


def dsoftmax_cases(root: Path, config="revit-paper") -> List[Path]:
    from vitaccel.sim.revit.dsoftmax import dsoftmax

    cfg = load_config(config)
    cases = []
    for i, (rows, n, block, lanes, kind, weighted) in enumerate([(5, 50, 16, 1, "random", False),
                                                                  (3, 197, 16, cfg.simd_lanes, "ascending", False),
                                                                  (4, 40, 7, 3, "extreme", True), (1, 1, 16, 1, "random", False)]):
        rng = np.random.default_rng(1400 + i)
        s, k, m, e = softmax_inputs(rng, rows, n, kind)
        w = rng.integers(0, 40, n).astype(np.int32) if weighted else np.ones(n, np.int32)
        p, cyc = dsoftmax(s, k, m, e, block, lanes, weights=w)
        cases.append(_write_case(root / f"dsoftmax{i}", dict(rows=rows, n=n, m_exp=m, s_exp=e, block=block, lanes=lanes,
                                                             **{f"c_{k2}": v for k2, v in cyc.items()}),
                                 dict(scores=s, keep=k.astype(np.uint8), weights=w, expected=p)))
    return cases


def prune_inputs(rng, H: int, G: int, n: int, kind: str = "random"):
    """(group_p, cls_p, groups): random probabilities; 'ties' (all equal scores); 'one' (every token in one
    group, the others empty)."""
    gp = rng.integers(0, 256, (H, G)).astype(np.uint8)
    cp = rng.integers(0, 256, (H, n)).astype(np.uint8)
    groups = rng.integers(0, G, n).astype(np.int32)
    if kind == "ties":
        gp[:] = 7
        cp[:] = 3
    if kind == "one":
        groups[:] = G - 1
    if kind == "single" and G > 2:
        groups[groups == 1] = 0
        groups[0] = 1                      # a group of one, and group G - 1 may be empty
        groups[groups == G - 1] = 0
    return gp, cp, groups


def pruner_cases(root: Path, config="revit-paper") -> List[Path]:
    from vitaccel.sim.revit.pruner import prune_layer

    cases = []
    for i, (H, G, n, qg, qp, kind) in enumerate([(3, 4, 196, 49152, 45875, "random"), (1, 1, 1, 0, 0, "random"),
                                                 (6, 8, 100, 1 << 16, 1 << 16, "ties"), (2, 5, 40, 30000, 20000, "single")]):
        rng = np.random.default_rng(1500 + i)
        gp, cp, groups = prune_inputs(rng, H, G, n, kind)
        r = prune_layer(gp, cp, groups, G, qg, qp, config)
        cases.append(_write_case(root / f"pruner{i}", dict(H=H, G=G, n=n, q_groups=qg, q_patches=qp,
                                                           **{f"c_{k}": v for k, v in r.cycles.items()}),
                                 dict(group_p=gp, cls_p=cp, groups=groups,
                                      expected=np.concatenate([r.keep, r.keep_groups, r.scores]).astype(np.int32))))
    return cases


def group_mix(rng, G: int, n: int, kind: str = "random") -> np.ndarray:
    """Group sizes of n tokens in G groups: random, 'one' (all in one group), 'equal', 'single' (a group of one
    and an empty group)."""
    if kind == "one":
        l = np.zeros(G, np.int64)
        l[G - 1] = n
    elif kind == "equal":
        l = np.full(G, n // G, np.int64)
    elif kind == "single" and G >= 3 and n >= 2:
        l = np.bincount(rng.integers(0, G, n - 1), minlength=G)
        l[0] += l[1] + l[2]
        l[1], l[2] = 1, 0
    else:
        l = np.bincount(rng.integers(0, G, n), minlength=G)
    return l.astype(np.int32)


def sched_cases(root: Path, config="revit-paper") -> List[Path]:
    from vitaccel.sim.revit.sched import FIXED, ONE_ARRAY, WORKLOAD, timeline

    cases = []
    for i, (G, n, mode, kind) in enumerate([(4, 196, WORKLOAD, "random"), (4, 196, ONE_ARRAY, "single"),
                                            (8, 100, FIXED, "random"), (4, 64, WORKLOAD, "one"), (1, 1, FIXED, "one")]):
        rng = np.random.default_rng(1600 + i)
        l = group_mix(rng, G, n, kind)
        t = (l.astype(np.int64) ** 2 * 3 + rng.integers(0, 50, G)) * (l > 0)
        W = l.astype(np.int64) * 40
        tl = timeline(l, t, W, mode, 16, config)
        cases.append(_write_case(root / f"sched{i}", dict(G=G, mode=mode, F=16),
                                 dict(sizes=l, t=t, W=W, expected=np.concatenate(
                                     [tl.finish, [tl.in_order, tl.out_of_order, tl.busy]]).astype(np.int64))))
    return cases


# -- revit_top: programs laid out as a host would, and hostile copies of them ---------------------------------

def random_layer(rng, dm=24, heads=2, G=4, combine="joint", hash_rows=None):
    """A random integer attention layer (LayerParams) of model width ``dm``."""
    from vitaccel.sim import numerics as nx
    from vitaccel.sim.revit.attention import LayerParams

    m_exp, s_exp = nx.softmax_params(0.002)
    A = rng.integers(-128, 128, (G, dm)).astype(np.int8) if hash_rows is None else hash_rows
    qm, qs = nx.quantize_multiplier(0.004)
    return LayerParams(heads=heads, num_groups=G, qkv_weight=rng.integers(-128, 128, (3 * dm, dm)).astype(np.int8),
                       qkv_bias=rng.integers(-5000, 5000, 3 * dm).astype(np.int32),
                       qkv_mult=np.full(3 * dm, qm, np.int32), qkv_shift=np.full(3 * dm, qs, np.int32),
                       hash_weight=A, hash_bias=np.zeros(G, np.int32), hash_mult=1 << 30, hash_shift=40,
                       softmax=(m_exp, s_exp), out=nx.quantize_multiplier(1 / 256), block=3, combine=combine)


def attn_program(lp, h8, keep=(49152, 45875), mode=2, delta=1, sync=1, ooo=1, F=16):
    """One layer as a program: ATTN, then PRUNE on its outputs. Returns (window, desc_off, count, offsets)."""
    from vitaccel.sim.revit.isa import COMBINE_CODES
    from vitaccel.sim.revit.top import attn_descriptor, prune_descriptor
    from vitaccel.sim.window import Dram

    n, D = h8.shape
    H, G = lp.heads, lp.num_groups
    dram = Dram(1 << 16)
    per = lambda v: np.ascontiguousarray(np.broadcast_to(np.asarray(v), (3 * D,)), np.int32)  # noqa: E731
    o = dict(x=dram.put(h8), w=dram.put(lp.qkv_weight), b=dram.put(per(lp.qkv_bias)), m=dram.put(per(lp.qkv_mult)),
             s=dram.put(per(lp.qkv_shift)), hw=dram.put(lp.hash_weight), hb=dram.put(lp.hash_bias.astype(np.int32)),
             y=dram.alloc(n * D), groups=dram.alloc(4 * (n - 1)), cls_p=dram.alloc(H * n), group_p=dram.alloc(H * G),
             keep=dram.alloc(n - 1), keep_g=dram.alloc(G), scores=dram.alloc(4 * (n - 1)))
    a = attn_descriptor(N=n, D=D, H=H, G=G, block=lp.block, combine=COMBINE_CODES[lp.combine], mode=mode, F=F,
                        delta=delta, sync=sync, ooo=ooo, hm=lp.hash_mult, hs=lp.hash_shift, m_exp=lp.softmax[0],
                        s_exp=lp.softmax[1], out_m=lp.out[0], out_s=lp.out[1],
                        **{k: o[k] for k in ("x", "w", "b", "m", "s", "hw", "hb", "y", "groups", "cls_p", "group_p")})
    p = prune_descriptor(H=H, G=G, n=n - 1, q_groups=keep[0], q_patches=keep[1], group_p=o["group_p"],
                         cls_p=o["cls_p"], groups=o["groups"], keep=o["keep"], keep_g=o["keep_g"], scores=o["scores"])
    off = dram.put(np.concatenate([a, p]))
    return dram.buffer.copy(), off, 2, o


def common_program(rng):
    """GEMM, LAYERNORM, ADD (int16 + int8 -> int16 and -> int8) and LUT on the common kernels."""
    from vitaccel.sim.golden import layernorm_vectors, linear
    from vitaccel.sim.revit.top import op_descriptor
    from vitaccel.sim.window import Dram

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


def compact_program(rng, N: int = 23, D: int = 40, heads: int = 3):
    """COMPACT on an int16 stream, then a LAYERNORM and an ADD whose token counts it patches (rows = n_out,
    n = n_out D): ``(window, desc_off, count, info)``."""
    from vitaccel.sim.golden import layernorm_vectors
    from vitaccel.sim.revit.compact import package_params
    from vitaccel.sim.revit.top import op_descriptor
    from vitaccel.sim.window import Dram

    dram = Dram(1 << 16)
    x16 = rng.integers(-32768, 32768, (N, D)).astype(np.int16)
    keep = (rng.random(N - 1) < 0.5).astype(np.uint8)
    scores = rng.integers(0, 256 * heads, N - 1).astype(np.int32)
    _, g, b, sh, eps = layernorm_vectors(rng, 1, D, extreme=False)
    pm, ps = package_params(heads)
    o = dict(x=dram.put(x16), keep=dram.put(keep), scores=dram.put(scores), y=dram.alloc(2 * (N + 1) * D, 4),
             count=dram.alloc(4, 4))
    lg, lb, ly = dram.put(g.astype(np.int32)), dram.put(b.astype(np.int32)), dram.alloc((N + 1) * D)
    ry = dram.alloc(2 * (N + 1) * D, 4)
    descs = [None,
             op_descriptor("LAYERNORM", rows=N + 1, D=D, x=o["y"], g=lg, b=lb, shift=sh, eps=eps, y=ly),
             op_descriptor("ADD", n=(N + 1) * D, a=o["y"], a_bits=16, ma=1 << 19, b=ly, b_bits=8, mb=1 << 19, shift=20,
                           y=ry, y_bits=16)]
    off = dram.alloc(4 * 64 * len(descs))
    from vitaccel.sim.revit.isa import ISA

    # Patch list: the LAYERNORM's rows (n_out) and the ADD's n (n_out D).
    tri = np.array([[off + 256 + 4 * ISA.words("LAYERNORM")["rows"], 1, 0], [off + 512 + 4 * ISA.words("ADD")["n"], D, 0]],
                   np.int32)
    patch = dram.put(tri)
    descs[0] = op_descriptor("COMPACT", N=N, D=D, pm=pm, ps=ps, patch=patch, npatch=len(tri), **o)
    dram.write(off, np.concatenate(descs))
    return dram.buffer.copy(), off, len(descs), dict(x16=x16, keep_v=keep, scores_v=scores, pm=pm, ps=ps, D=D, ly=ly, ry=ry,
                                                    offs=o)


def hostile_value(rng, size: int) -> int:
    pick = rng.integers(0, 6)
    if pick == 0:
        return int(rng.choice([0, 1, -1, 2, 3, 63, 64, 65, 65536, 65537]))
    if pick == 1:
        return int(rng.choice([(1 << 31) - 1, -(1 << 31), 1 << 30]))
    if pick == 2:
        return int(size - rng.integers(0, 512))
    return int(rng.integers(0, size))


def top_cases(root: Path, config="revit-paper", hostile: int = 24, seed: int = 1700) -> List[Path]:
    """Golden cases for revit_top's testbench (hls/revit/revit_tb.cpp): an attention + pruning program (joint),
    a common-kernel program, a compaction program, an attention + pruning program with ``combine = sum``, and
    ``hostile`` copies with one to three words set to hostile values, each with
    the window, status and ID the NumPy top (vitaccel.sim.revit.top.run_top) leaves."""
    from vitaccel.sim.revit.top import run_top

    rng = np.random.default_rng(seed)
    lp = random_layer(rng, 24, 2, 4, "joint")
    progs = [attn_program(lp, rng.integers(-128, 128, (20, 24)).astype(np.int8))[:3], common_program(rng)[:3],
             compact_program(rng)[:3],
             attn_program(random_layer(rng, 24, 2, 4, "sum"), rng.integers(-128, 128, (20, 24)).astype(np.int8))[:3]]
    trials = [(w, off, cnt, 0) for w, off, cnt in progs]
    trials += [(*progs[i % len(progs)], 1 + int(rng.integers(0, 3))) for i in range(hostile)]
    cases = []
    for i, (window, off, count, flips) in enumerate(trials):
        w = window.copy()
        if w.size % 4:
            w = np.concatenate([w, np.zeros(4 - w.size % 4, np.uint8)])
        for _ in range(flips):
            j = int(rng.integers(0, count))
            word = int(rng.integers(2, 30))
            w[off + 4 * (64 * j + word):off + 4 * (64 * j + word) + 4] = np.array(
                [hostile_value(rng, w.size) & 0xFFFFFFFF], np.uint32).view(np.uint8)
        mem = w.size if rng.random() < 0.8 else int(rng.integers(off, w.size + 1))
        after = w.copy()
        res = run_top(after, off, count, config, mem_bytes=mem, cycles=False)
        cases.append(_write_case(root / f"top{i}", dict(desc_off=off, num_instr=count, mem_bytes=mem,
                                                        window_bytes=w.size, status=res.status, hw_id=res.hw_id),
                                 dict(window=w, expected=after)))
    return cases
