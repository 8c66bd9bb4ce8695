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
from vitaccel.sim.revit.top import gemm_max_k, run_top
from vitaccel.sim.revit import golden as rg

from test_revit_layer import _layer  # noqa: E402

pytestmark = pytest.mark.csim

CONFIG = "revit-paper"


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
    window, off, count, o = rg.attn_program(lp, h8)
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
    window, off, count, o = rg.attn_program(lay.attn, rec["h8"], keep=lay.keep)
    res, w = _both(window, off, count)
    assert res.status == 0
    n = rec["h8"].shape[0]
    assert np.array_equal(w[o["keep"]:o["keep"] + n - 1].astype(bool), rec["keep"])


def test_top_level_checks():
    window, off, count, _ = rg.attn_program(_layer(np.random.default_rng(0)), np.ones((5, 24), np.int8))
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


def test_hostile_descriptors_get_the_same_status_and_window():
    rng = np.random.default_rng(11)
    lp = _layer(rng, 24, 2, 4, "joint")
    window, off, count, _ = rg.attn_program(lp, rng.integers(-128, 128, (20, 24)).astype(np.int8))
    seen = set()
    for trial in range(60):
        w = window.copy()
        for _ in range(1 + trial % 3):
            i = int(rng.integers(0, count))
            word = int(rng.integers(2, 30 if i == 0 else 13))
            w[off + 4 * (64 * i + word):off + 4 * (64 * i + word) + 4] = np.array(
                [rg.hostile_value(rng, w.size) & 0xFFFFFFFF], np.uint32).view(np.uint8)
        res, _ = _both(w, off, count, mem=w.size if trial % 5 else int(rng.integers(off, w.size + 1)))
        seen.add(res.status & 0xFFFF)
    # A spread of refusals (ranges, alignment, overlap, engine dims and quant) and some programs that ran.
    assert len(seen) >= 5 and 0 in seen, sorted(hex(s) for s in seen)


def test_common_kernels_through_the_top():
    from vitaccel.sim.common.gemm import gemm
    from vitaccel.sim.common.layernorm import layernorm_int

    window, off, count, o = rg.common_program(np.random.default_rng(5))
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
    window, off, count, _ = rg.common_program(rng)
    seen = set()
    for trial in range(60):
        w = window.copy()
        for _ in range(1 + trial % 3):
            i = int(rng.integers(0, count))
            word = int(rng.integers(2, 12))
            w[off + 4 * (64 * i + word):off + 4 * (64 * i + word) + 4] = np.array(
                [rg.hostile_value(rng, w.size) & 0xFFFFFFFF], np.uint32).view(np.uint8)
        res, _ = _both(w, off, count)
        seen.add(res.status & 0xFFFF)
    assert len(seen) >= 5 and 0 in seen, sorted(hex(s) for s in seen)


def test_the_vitcod_and_revit_libraries_share_no_state():
    """Both accelerators' C-simulation libraries in one process: their common kernels (same C++ names,
    config-dependent buffer sizes) must not bind to each other's statics (revit's is built with hidden
    visibility). A ViTCoD GEMM, the ReViT common program, then the ViTCoD GEMM again."""
    from vitaccel.sim.common.gemm import gemm
    from vitaccel.sim.vitcod import csim_kernels as ck

    rng = np.random.default_rng(9)
    x, w = rng.integers(-128, 128, (20, 300)).astype(np.int8), rng.integers(-128, 128, (70, 300)).astype(np.int8)
    b = rng.integers(-3000, 3000, 70).astype(np.int32)
    want = gemm(x, w, b, 1 << 28, 40)
    assert np.array_equal(ck.csim_gemm(x, w, b, 1 << 28, 40, config="paper"), want)
    window, off, count, _ = rg.common_program(np.random.default_rng(5))
    assert _both(window, off, count)[0].status == 0
    assert np.array_equal(ck.csim_gemm(x, w, b, 1 << 28, 40, config="paper"), want)
    assert _both(window, off, count)[0].status == 0


def test_common_kernels_counters_equal_their_cycle_models_on_revit_configs():
    """The drift test for the common kernels as revit_top runs them: their C++ counters (hls/common/perf.h)
    equal the cycle models the NumPy top reports (sim/common, on the config's gemm_array)."""
    window, off, count, _ = rg.common_program(np.random.default_rng(5))
    lib = ce.engines_library(CONFIG)
    lib.common_perf_reset()
    res, _ = _both(window, off, count)
    t = lib.common_perf_totals()
    rep = {r["kind"]: 0 for r in res.reports}
    for r in res.reports:
        rep[r["kind"]] += r["total"]
    assert (t["gemm_compute"], t["ln_compute"], t["elt_compute"]) == (rep["gemm"], rep["layernorm"], rep["add"] + rep["lut"])


def _patch_word(w, off, desc, word, value):
    a = off + 4 * (64 * desc + word)
    w[a:a + 4] = np.array([value & 0xFFFFFFFF], np.uint32).view(np.uint8)


@pytest.mark.parametrize("seed,N,D,heads", [(0, 23, 40, 3), (1, 2, 8, 1), (2, 60, 100, 12)])
def test_compact_keeps_the_survivors_appends_the_package_and_patches_the_later_descriptors(seed, N, D, heads):
    """COMPACT's bits are compact_tokens, the token count reaches DRAM and the patched LAYERNORM / ADD run
    at it (C-sim == NumPy), and its C++ counters equal compact_cycles."""
    from vitaccel.sim.common.layernorm import layernorm_int
    from vitaccel.sim.revit.compact import compact_cycles, compact_tokens

    rng = np.random.default_rng(seed)
    window, off, count, o = rg.compact_program(rng, N=N, D=D, heads=heads)
    lib = ce.engines_library(CONFIG)
    lib.perf_reset()
    res, w = _both(window, off, count)
    assert res.status == 0
    n_out = int(o["keep_v"].astype(bool).sum()) + 2
    want = compact_tokens(o["x16"], o["keep_v"], o["scores_v"], o["pm"], o["ps"])
    y = o["offs"]["y"]
    assert want.shape == (n_out, D)
    assert np.array_equal(w[y:y + 2 * n_out * D].view(np.int16).reshape(n_out, D), want)
    assert int(w[o["offs"]["count"]:o["offs"]["count"] + 4].view(np.int32)[0]) == n_out
    descs = w[off:off + 4 * 64 * count].view(np.int32).reshape(count, 64)
    assert descs[1][ISA.words("LAYERNORM")["rows"]] == n_out and descs[2][ISA.words("ADD")["n"]] == n_out * D
    ln = o["ly"]
    d1 = descs[1]
    g = w[d1[ISA.words("LAYERNORM")["g"]]:][:4 * D].view(np.int32)
    b = w[d1[ISA.words("LAYERNORM")["b"]]:][:4 * D].view(np.int32)
    assert np.array_equal(w[ln:ln + n_out * D].view(np.int8).reshape(n_out, D),
                          layernorm_int(want, g, b, int(d1[ISA.words("LAYERNORM")["shift"]]),
                                        int(d1[ISA.words("LAYERNORM")["eps"]])))
    assert res.reports[1]["kind"] == "layernorm" and res.reports[0]["tokens"] == n_out
    t = lib.perf_totals()
    cyc = compact_cycles(load_config(CONFIG), N, D, 2)
    assert (t["cmp_calls"], t["cmp_rows"], t["cmp_package"], t["cmp_patch"]) == (1, cyc["rows"], cyc["package"],
                                                                                cyc["patch"])
    assert res.reports[0]["total"] == sum(cyc.values())


def test_compact_package_token_is_the_weighted_sum_of_the_pruned_rows():
    from vitaccel.sim.revit.compact import compact_tokens, package_params

    rng = np.random.default_rng(4)
    x = rng.integers(-3000, 3000, (9, 5)).astype(np.int16)
    keep = np.array([1, 0, 0, 1, 0, 1, 1, 0], np.uint8)
    sc = rng.integers(0, 768, 8).astype(np.int32)
    m, s = package_params(3)
    assert 1 << 15 <= m < 1 << 16 and abs(m / 2 ** s - 1 / 768) < 1e-4 / 768
    y = compact_tokens(x, keep, sc, m, s)
    want = (np.where(keep == 0, sc, 0)[:, None] * x[1:].astype(np.float64)).sum(0) / 768
    assert np.abs(y[-1] - want).max() <= 1.0
    assert np.array_equal(y[1:-1], x[1:][keep == 1]) and np.array_equal(y[0], x[0])
    assert not compact_tokens(x, np.ones(8, np.uint8), sc, m, s)[-1].any()      # nothing pruned: zeros


@pytest.mark.parametrize("case", ["misaligned", "before", "past_end", "opcode_word", "overflow", "big_npatch",
                                  "pm_too_big", "ps", "N_too_big", "x_odd"])
def test_hostile_compact_descriptors_are_refused_before_anything_is_written(case):
    window, off, count, o = rg.compact_program(np.random.default_rng(7))
    cw = ISA.words("COMPACT")
    w = window.copy()
    tri = o["offs"]
    patch = int(w[off:off + 256].view(np.int32)[cw["patch"]])
    t = w[patch:patch + 24].view(np.int32)
    if case == "misaligned":
        t[0] += 1
    elif case == "before":
        t[0] = off + 4 * 5                       # the COMPACT itself
    elif case == "past_end":
        t[3] = off + 4 * 64 * count + 8
    elif case == "opcode_word":
        t[3] = off + 512
    elif case == "overflow":
        t[1], t[2] = 1 << 30, 1 << 30
    elif case == "big_npatch":
        _patch_word(w, off, 0, cw["npatch"], 4097)
    elif case == "pm_too_big":
        _patch_word(w, off, 0, cw["pm"], 1 << 16)
    elif case == "ps":
        _patch_word(w, off, 0, cw["ps"], 64)
    elif case == "N_too_big":
        _patch_word(w, off, 0, cw["N"], load_config(CONFIG).max_tokens + 1)
    elif case == "x_odd":
        _patch_word(w, off, 0, cw["x"], tri["x"] + 1)
    res, after = _both(w, off, count)
    want = {"misaligned": "CMP_ERR_PATCH", "before": "CMP_ERR_PATCH", "past_end": "CMP_ERR_PATCH",
            "opcode_word": "CMP_ERR_PATCH", "overflow": "CMP_ERR_PATCH", "big_npatch": "CMP_ERR_DIMS",
            "pm_too_big": "CMP_ERR_QUANT", "ps": "CMP_ERR_QUANT", "N_too_big": "CMP_ERR_DIMS", "x_odd": "ERR_ALIGN"}[case]
    assert res.status == ISA.code(want), (hex(res.status), want)
    assert np.array_equal(after, w), "a refused COMPACT wrote to the window"
