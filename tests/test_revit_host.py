"""ReViT on the host runtime: the compiled program of ``revit_top`` (host/revit/program.py), its bits on every
backend against the integer model (:func:`vitaccel.sim.revit.model.forward_int`), the per-image cycles
against the simulator's whole-bundle timing, and ``vitaccel run --demo revit``.

* logits bit-identical across the ``sim`` backend (batch sizes 1, 2, 5), the ``csim`` backend (the HLS C++
  of revit_top) and the board driver over a stand-in ``pynq``;
* programs whose pruning layers follow one another, with nothing, every other or all layers pruning;
* the per-image predicted report equals :func:`vitaccel.sim.revit.bundle_cycles.bundle_reports` kernel by kernel.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vitaccel.host.accelerator import Accelerator
from vitaccel.host.bundle import Bundle, load_bundle
from vitaccel.host.revit.program import compile_device_program
from vitaccel.sim.revit.attention import Q16
from vitaccel.sim.revit.compact import patched_words
from vitaccel.sim.revit.isa import ISA
from vitaccel.sim.revit.model import compile_revit, forward_int, max_tokens, run_revit
from vitaccel.testing import random_bundle

import fake_pynq

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"
CONFIG = "revit-paper"


def pruned_bundle(keep_layers, seed: int = 3, depth: int = 3, q=(0.6, 0.5), combine: str = "joint") -> Bundle:
    """A random ReViT bundle on revit-paper whose ``keep_layers`` prune at Q16 ratios ``q``."""
    b = random_bundle(CONFIG, method="revit", depth=depth, seed=seed, embed_dim=24, num_heads=3, mlp_dim=40)
    b.meta["groups"] = {**b.meta["groups"], "combine": combine}
    t = dict(b.tensors)
    for i in keep_layers:
        t[f"layers.{i}.prune.keep_groups"] = np.array(int(q[0] * Q16), np.int32)
        t[f"layers.{i}.prune.keep_patches"] = np.array(int(q[1] * Q16), np.int32)
    return Bundle(meta=b.meta, tensors=t).validate()


def images_for(bundle, count: int, seed: int = 0) -> np.ndarray:
    m = bundle.model
    return np.random.default_rng(seed).normal(size=(count, m.in_chans, m.img_size, m.img_size)).astype(np.float32)


def reference(bundle, imgs) -> np.ndarray:
    return run_revit(bundle, imgs, config=CONFIG).logits


@pytest.fixture(scope="module")
def pruned():
    return pruned_bundle((0, 1))


# -- the compiled program -----------------------------------------------------------------------------

def test_program_layout_and_patch_lists(pruned):
    p = compile_device_program(pruned, batch=3)
    prog = p.program
    assert p.max_tokens == max_tokens(prog) == prog.dims.num_tokens + 2
    per_image = 2 + sum(9 + 2 * lp.prunes for lp in prog.layers) + 2
    for b in (1, 2, 3):
        s = p.start(b)
        assert s.count == b * per_image and len(s.names) == s.count and len(s.images) == b
        assert s.images[-1][1] == s.count and s.names[0] == "patch_embed[0]" and s.names[-1] == f"head[{b - 1}]"
    s = p.start(3)
    d = p.image[s.desc_off:s.desc_off + 256 * s.count].view("<i4").reshape(s.count, 64)
    cw = ISA.words("COMPACT")
    compacts = np.flatnonzero(d[:, 0] == ISA.opcode("COMPACT"))
    assert len(compacts) == 3 * 2
    prunes = [lp.prunes for lp in prog.layers]
    for k, ci in enumerate(compacts):
        lo, hi = s.images[k // 2]
        tri = p.image[d[ci, cw["patch"]]:][:12 * d[ci, cw["npatch"]]].view("<i4").reshape(-1, 3)
        assert len(tri) == patched_words(prunes, (0, 1)[k % 2])
        # Every patched word lies in a later descriptor of the same image, never its opcode or flags word.
        desc = (tri[:, 0] - s.desc_off) // 256
        assert (desc > ci).all() and (desc < hi).all() and ((tri[:, 0] - s.desc_off) // 4 % 64 >= 2).all()
    with pytest.raises(ValueError, match="compiled for 1..3"):
        p.start(4)


def test_bad_configs_and_bundles():
    with pytest.raises(ValueError, match="revit config"):
        compile_device_program(pruned_bundle(()), "paper")
    b = random_bundle(CONFIG, method="revit", depth=1)
    t = {k: v for k, v in b.tensors.items() if not k.startswith(("int.", "layers.0.int."))}
    old = Bundle(meta=b.meta, tensors=t)
    with pytest.raises(ValueError, match="no integer whole model.*export_revit_bundle"):
        compile_device_program(old, CONFIG)


# -- bits ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("keep_layers", [(), (0,), (0, 1, 2), (1,)])
@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_sim_backend_is_bit_exact(keep_layers, batch_size):
    b = pruned_bundle(keep_layers)
    imgs = images_for(b, 5)
    with Accelerator(b, backend="sim", batch_size=batch_size) as acc:
        res = acc.run(imgs, progress=False)
    assert np.array_equal(res.logits, reference(b, imgs))
    rep = res.report
    assert len(rep.per_image_us) == 5 and rep.latency_us == pytest.approx(rep.predicted.latency_us)
    assert min(rep.per_image_us) <= rep.latency_us <= max(rep.per_image_us)


@pytest.mark.csim
def test_csim_backend_is_bit_exact_and_its_window_equals_the_sims(pruned):
    imgs = images_for(pruned, 4, seed=2)
    want = reference(pruned, imgs)
    with Accelerator(pruned, backend="csim", batch_size=3) as acc:
        res = acc.run(imgs, progress=False)
        window = acc.device.mem.copy()
    assert np.array_equal(res.logits, want)
    with Accelerator(pruned, backend="sim", batch_size=3) as acc:
        got = acc.run(imgs, progress=False)
        assert np.array_equal(acc.device.mem, window), "the C-simulation and the NumPy top leave different windows"
    # csim predicts per image through the NumPy top; the same cycles as the sim backend's own run.
    assert res.report.per_image_us == got.report.per_image_us


def test_board_backend_over_a_stand_in_pynq(monkeypatch, pruned):
    imgs = images_for(pruned, 3, seed=1)
    fake = fake_pynq.install(monkeypatch, config=CONFIG, ip_name="revit_top_0")
    with Accelerator(pruned, backend="pynq", overlay=__file__) as acc:
        res = acc.run(imgs, progress=False)
    assert np.array_equal(res.logits, reference(pruned, imgs))
    assert res.report.latency_kind == "measured" and res.report.per_image_us is None
    assert res.report.predicted.total_cycles > 0          # from the first batch's simulation
    reg = acc.program.regions
    st = fake.state
    assert {off for off, _ in st.flushed[1:]} == {reg.rows8} and {off for off, _ in st.invalidated} == {reg.logits}


def test_demo_bundle_on_the_accelerator_equals_the_integer_model():
    b = load_bundle(DEMO / "revit.vcb")
    imgs = np.load(DEMO / "test_images.npz")["images"][:6]
    with Accelerator(b, backend="sim", batch_size=4) as acc:
        got = acc.run(imgs, progress=False)
    prog = compile_revit(b)
    rows = acc.program.prepare_input(imgs)
    want = np.stack([forward_int(prog, r) for r in rows])
    assert np.array_equal(got.logits, acc.program.dequantize(want))


@pytest.mark.parametrize("combine", ["intra", "sum"])
def test_every_combine_mode_runs_on_the_accelerator(combine):
    b = pruned_bundle((1,), combine=combine)
    assert compile_revit(b).layers[0].attn.combine == combine
    imgs = images_for(b, 3, seed=5)
    with Accelerator(b, backend="sim", batch_size=3) as acc:
        assert np.array_equal(acc.run(imgs, progress=False).logits, reference(b, imgs))


# -- cycles -------------------------------------------------------------------------------------------

def test_per_image_prediction_equals_the_whole_bundle_timing(pruned):
    from vitaccel.sim.revit.bundle_cycles import bundle_reports

    imgs = images_for(pruned, 3, seed=4)
    with Accelerator(pruned, backend="sim", batch_size=2) as acc:
        with pytest.raises(ValueError, match="depend on the image"):
            acc.predict()
        res = acc.run(imgs, progress=False)
        reps = acc._image_reports
    want = bundle_reports(pruned, imgs, CONFIG, baselines=False)["revit"]
    assert len(reps) == 3
    for a, w in zip(reps, want):
        assert [k.name for k in a.kernels] == [k.name for k in w.kernels]
        assert [(k.compute, k.data, k.dram_bytes) for k in a.kernels] == [(k.compute, k.data, k.dram_bytes)
                                                                          for k in w.kernels]
        # ReViT's own steps report the same engines both ways (one LayerCycles.engines, one phase dict).
        assert [k.engines for k in a.kernels if k.kernel in ("attention", "prune", "compact")] == \
            [k.engines for k in w.kernels if k.kernel in ("attention", "prune", "compact")]
    assert res.report.per_image_us == pytest.approx([w.latency_us for w in want])
    # (On this 17-token model flat attention can be the faster one: the groups, the pruner rows and the patch
    # writes cost more than they save; the demo's 197 tokens are 1.8x faster than dense.)
    assert res.report.dense.total_cycles > 0 and res.report.predicted.total_cycles > 0
    # dense is the mean over the first (up to 8) images: the speedup compares it with ours on those.
    assert res.report.speedup_vs_dense == pytest.approx(
        res.report.dense.total_cycles / np.mean([w.total_cycles for w in want]))


# -- the command --------------------------------------------------------------------------------------

def test_vitaccel_run_demo_revit(capsys, tmp_path):
    from vitaccel.cli import main

    assert main(["run", "--demo", "revit", "--backend", "sim", "--limit", "12", "--json", "--no-progress"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["bundle"].endswith("revit.vcb") and doc["config"] == "revit-paper" and doc["images"] == 12
    assert doc["top1"] >= 0.9 and len(doc["per_image_us"]) == 12
    assert doc["latency_us_min"] < doc["latency_us_max"]             # the work depends on the image
    assert doc["speedup_vs_dense"] > 1.5
    assert set(doc["by_kernel"]) >= {"attention", "prune", "compact", "gemm", "layernorm"}
    assert main(["run", "--demo", "revit", "--backend", "sim", "--limit", "4", "--no-progress",
                 "--report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "per image" in out and "min" in out and "max" in out
    assert (tmp_path / "latency_per_image.png").stat().st_size > 1000
    assert main(["run", "--demo", "revit", "--bundle", str(DEMO / "demo.vcb")]) == 2
    assert "--bundle: not allowed with argument --demo" in capsys.readouterr().err
