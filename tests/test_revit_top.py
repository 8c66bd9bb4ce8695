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
