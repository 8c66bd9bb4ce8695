"""The whole-model path of the simulator: glue, program, forward, cycles, baselines."""
import math

import numpy as np
import pytest

from vitaccel.sim import glue
from vitaccel.sim.vitcod.model import (Kernels, SimKernels, compile_program, forward, model_baselines, program_cycles,
                                run_model)
from vitaccel.testing import random_bundle


def images(b, seed=0, size=16, chans=3):
    return np.random.default_rng(seed).normal(size=(b, chans, size, size)).astype(np.float32)


def test_erf_and_gelu_match_math():
    xs = np.linspace(-6, 6, 2001)
    assert np.max(np.abs(glue.erf(xs) - np.array([math.erf(v) for v in xs]))) < 2e-7
    g = glue.gelu(xs.astype(np.float32))
    ref = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in xs])
    assert np.max(np.abs(g - ref)) < 1e-6


def test_layer_norm_and_patch_embed():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 8)).astype(np.float32)
    y = glue.layer_norm(x, np.ones(8, np.float32), np.zeros(8, np.float32))
    assert np.allclose(y.mean(-1), 0, atol=1e-5) and np.allclose(y.std(-1), 1, atol=1e-3)
    img = rng.normal(size=(1, 3, 8, 8)).astype(np.float32)
    w = rng.normal(size=(4, 3, 4, 4)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    out = glue.patch_embed(img, w, b)
    # patch (row 1, col 0) is pixels [4:8, 0:4]; conv with stride 4 by hand
    ref = np.einsum("chw,dchw->d", img[0, :, 4:8, 0:4], w) + b
    assert out.shape == (1, 4, 4) and np.allclose(out[0, 2], ref, atol=1e-5)
    with pytest.raises(ValueError, match="do not fit"):
        glue.patch_embed(rng.normal(size=(1, 3, 9, 9)), w, b)


@pytest.mark.parametrize("method", ["vitcod", "dense"])
def test_run_model_is_batch_independent_and_deterministic(method):
    b = random_bundle(method=method, depth=2, seed=3)
    imgs = images(7)
    full = run_model(b, imgs, batch_size=16)
    split = run_model(b, imgs, batch_size=3)
    assert np.array_equal(full.logits, split.logits)
    assert np.array_equal(run_model(b, imgs[2:3]).logits[0], full.logits[2])
    assert full.logits.shape == (7, 10)
    assert full.report.total_cycles == split.report.total_cycles


def test_cycles_cover_every_layer_and_kernel():
    b = random_bundle(depth=3)
    rep = program_cycles(compile_program(b))
    # The accelerator's order for one image: patch embedding and tokens, then per layer LayerNorm, qkv, the
    # AE encoder (on by default in random bundles), attention, proj, add, LayerNorm, fc1, GELU, fc2, add;
    # the final LayerNorm and the head.
    assert [k.name for k in rep.kernels[:15]] == [
        "patch_embed", "tokens", "layers.0.norm1", "layers.0.qkv", "layers.0.ae_q", "layers.0.ae_k", "layers.0.attn",
        "layers.0.proj", "layers.0.add1", "layers.0.norm2", "layers.0.fc1", "layers.0.gelu", "layers.0.fc2",
        "layers.0.add2", "layers.1.norm1"]
    assert [k.name for k in rep.kernels[-2:]] == ["norm", "head"]
    assert len(rep.kernels) == 2 + 3 * 12 + 2
    assert set(rep.by_layer()) == {None, 0, 1, 2}
    assert {k.kernel for k in rep.kernels} == {"gemm", "add", "layernorm", "lut", "ae_encoder", "attention"}
    cfg = rep.config
    assert rep.total_cycles >= max(rep.macs / cfg.peak_macs_per_cycle, rep.dram_bytes / cfg.bytes_per_cycle)


def test_model_baselines_side_by_side():
    prog = compile_program(random_bundle(depth=2))
    base = model_baselines(prog)
    assert set(base) == {"vitcod", "vitcod_no_ae", "dense", "sanger", "pruning_only", "reordering_only"}
    assert base["vitcod"].total_cycles == program_cycles(prog).total_cycles
    with_ae = {"vitcod"}
    assert all(len(r.kernels) == 4 + (24 if k in with_ae else 20) for k, r in base.items())


def test_trace_and_custom_kernels():
    """A backend plugs in through Kernels; a recording one sees every kernel call."""
    calls = []

    class Recording(SimKernels):
        def gemm(self, *a):
            calls.append("gemm")
            return super().gemm(*a)

        def attention(self, *a):
            calls.append("attention")
            return super().attention(*a)

        def layernorm(self, *a):
            calls.append("ln")
            return super().layernorm(*a)

        def add(self, *a):
            calls.append("add")
            return super().add(*a)

        def lut(self, *a):
            calls.append("lut")
            return super().lut(*a)

    b = random_bundle(method="dense", depth=2)
    prog = compile_program(b)
    trace = {}
    out = forward(prog, images(2), Recording(), trace=trace)
    block = ["ln", "gemm", "attention", "gemm", "add", "ln", "gemm", "lut", "gemm", "add"]
    assert calls == ["gemm", "add"] + block * 2 + ["ln", "gemm"]
    assert np.array_equal(out, forward(prog, images(2)))
    assert trace["layers.1.attn"].dtype == np.int8 and trace["layers.1.res2"].dtype == np.int16
    with pytest.raises(NotImplementedError):
        Kernels().gemm(None, None, None, None, None)


def test_bad_images_and_revit():
    b = random_bundle(depth=1)
    with pytest.raises(ValueError, match=r"images must be \(B, 3, 16, 16\)"):
        run_model(b, images(2, size=8))
    with pytest.raises(ValueError, match="ReViT bundle runs on the ReViT model"):
        run_model(random_bundle(method="revit", depth=1), images(1))


# -- where the AE encoder runs ------------------------------------------------------------------------------

def test_encoder_placement_fused_unfused_and_the_compilers_choice():
    from vitaccel.sim.vitcod.model import model_baselines

    prog = compile_program(random_bundle(seed=5, num_heads=3, embed_dim=48, ae_heads=2, density=0.3))
    reps = {e: program_cycles(prog, encoder=e) for e in ("auto", "fused", "unfused")}
    assert reps["auto"].total_cycles <= min(reps["fused"].total_cycles, reps["unfused"].total_cycles)
    # Unfused, the full Q and K go to DRAM and come back (more bytes than without an AE); fused they never
    # do (though each staged section re-reads its x: on a model this small that costs more than it saves).
    no_ae = model_baselines(prog)["vitcod_no_ae"].dram_bytes
    assert reps["fused"].dram_bytes < reps["unfused"].dram_bytes and no_ae < reps["unfused"].dram_bytes
    names = [k.name for k in reps["unfused"].kernels]
    assert "layers.0.ae_q" in names and not any(".ae_" in k.name for k in reps["fused"].kernels)
    with pytest.raises(ValueError, match="encoder must be"):
        program_cycles(prog, encoder="sometimes")


def test_fusion_is_dropped_when_the_stage_chunks_reload_the_weights():
    from vitaccel.hwconfig import load_config
    from vitaccel.sim.common.gemm import gemm_cycles
    from vitaccel.sim.vitcod.autoencoder import ae_mix_cycles, fuse_encoder, qkv_ae_cycles, qkv_stage_rows

    roomy, cramped = load_config("paper"), load_config("paper").replace(output_buffer_kb=40)
    assert qkv_stage_rows(cramped, 384) == 21        # 10 chunks for one image of 197 tokens
    for cfg, fused in ((roomy, True), (cramped, False)):
        mode = fuse_encoder(cfg, 1, 197, 384, 6, 64, 3)
        assert (mode is not None) == fused
        unfused = gemm_cycles(cfg, 197, 384, 1152).total_cycles + 2 * ae_mix_cycles(cfg, 6, 3, 197, 64).total_cycles
        best_fused = min(qkv_ae_cycles(cfg, 197, 384, 6, 64, 3, together=t).total_cycles for t in (False, True))
        assert (best_fused <= unfused) == fused


def test_model_with_attention_swaps_only_the_attention():
    """The whole model with another engine's attention: every other kernel unchanged."""
    from vitaccel.sim.vitcod.model import model_baselines, model_with_attention

    prog = compile_program(random_bundle(seed=3, ae=False))
    base = model_baselines(prog)
    att = {lp.index: next(k for k in base["dense"].kernels if k.kernel == "attention" and k.layer == lp.index)
           for lp in prog.layers}
    got = model_with_attention(prog, att)
    assert [k.name for k in got.kernels] == [k.name for k in base["dense"].kernels]
    assert got.total_cycles == base["dense"].total_cycles
