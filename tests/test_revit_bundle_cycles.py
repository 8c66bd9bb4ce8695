"""The whole ReViT bundle's per-image cycle report and its baselines (sim/revit/bundle_cycles.py), and
`vitaccel sim` on a ReViT bundle, on the shipped demo."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vitaccel.cli import main
from vitaccel.host.bundle import load_bundle
from vitaccel.sim.revit.attention import Q16
from vitaccel.sim.revit.bundle_cycles import (BASELINES, ENGINE_VARIANTS, bundle_reports, flat_attention,
                                              no_pruning_program, summarise)
from vitaccel.sim.revit.layer import engine_layer
from vitaccel.sim.revit.model import compile_revit, forward_image

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"


@pytest.fixture(scope="module")
def demo():
    bundle = load_bundle(DEMO / "revit.vcb")
    imgs = np.load(DEMO / "test_images.npz")["images"][:3]
    return bundle, imgs, bundle_reports(bundle, imgs, "revit-paper")


def test_demo_prunes_and_token_counts_follow_the_keep_masks(demo):
    bundle, imgs, res = demo
    prog = compile_revit(bundle)
    n = prog.dims.num_tokens
    assert any(lp.prunes for lp in prog.layers)
    for i, img in enumerate(imgs):
        tr = []
        forward_image(prog, img, tr)
        want = [n]
        for lp, rec in zip(prog.layers[:-1], tr[:-1]):
            want.append(2 + int(np.count_nonzero(rec["keep"])) if lp.prunes else want[-1])   # kept + CLS + package
        assert res["tokens"][i] == want
        assert min(want) < n                      # the demo drops tokens on every image
        assert res["tokens_no_pruning"][i] == [n] * len(prog.layers)
        # the common kernels after a pruning layer run on the pruned count
        rep = res["revit"][i]
        for lp in prog.layers:
            if lp.prunes:
                fc1 = next(k for k in rep.kernels if k.name == f"layers.{lp.index}.fc1")
                assert fc1.macs == want[lp.index + 1] * prog.dims.embed_dim * prog.dims.mlp_dim


def test_no_pruning_is_never_faster_and_only_changes_the_keep_ratios(demo):
    bundle, _, res = demo
    for r, b in zip(res["revit"], res["no_pruning"]):
        assert b.total_cycles > r.total_cycles
        assert b.dram_bytes > r.dram_bytes
    prog = compile_revit(bundle)
    full = no_pruning_program(prog)
    assert all(lp.keep == (Q16, Q16) and not lp.prunes for lp in full.layers)
    assert any(lp.prunes for lp in prog.layers)             # the original program is not changed
    for a, b in zip(full.layers, prog.layers):
        assert a.attn is b.attn and a.linears is b.linears


def test_dense_has_flat_attention_macs_and_no_groups(demo):
    bundle, imgs, res = demo
    prog = compile_revit(bundle)
    dm, H, n = prog.dims.embed_dim, prog.dims.num_heads, prog.dims.num_tokens
    d = dm // H
    for rep in res["dense"]:
        att = [k for k in rep.kernels if k.kernel == "attention"]
        assert len(att) == len(prog.layers)
        for k in att:
            assert k.macs == n * dm * 3 * dm + H * 2 * n * n * d
            assert set(k.engines) == {"projection", "requant", "scores", "softmax", "output"}
            # The heads overlap on the array and the SIMD unit: below the engines' sum, at least the array's.
            e = k.engines
            assert e["projection"] + e["requant"] + max(e["scores"] + e["output"], e["softmax"]) <= k.compute
            assert k.compute <= sum(e.values())
        assert not any(k.kernel == "prune" for k in rep.kernels)
    for r, b in zip(res["revit"], res["dense"]):
        assert b.total_cycles > r.total_cycles
    # the flat attention's cost grows with the tokens: fewer tokens, fewer cycles
    tr = []
    forward_image(no_pruning_program(prog), imgs[0], tr)
    a = flat_attention(tr[0]["h8"], prog.layers[0].attn, "revit-paper")
    b = flat_attention(tr[0]["h8"][:100], prog.layers[0].attn, "revit-paper")
    assert b.compute < a.compute and b.macs < a.macs


def test_engine_variants_keep_the_bits_and_the_report_uses_engine_layer(demo):
    bundle, imgs, res = demo
    prog = compile_revit(bundle)
    tr = []
    forward_image(prog, imgs[0], tr)
    for lp, rec in zip(prog.layers, tr):
        outs = {v: engine_layer(rec["h8"], lp.attn, "revit-paper", **kw) for v, kw in ENGINE_VARIANTS.items()}
        for v, (a8, _) in outs.items():
            np.testing.assert_array_equal(a8, outs["revit"][0], err_msg=v)
        for v in ENGINE_VARIANTS:
            k = next(k for k in res[v][0].kernels if k.name == f"layers.{lp.index}.attn")
            assert k.compute == outs[v][1].total
    assert all(r.total_cycles > t.total_cycles for r, t in zip(res["no_reconfig"], res["revit"]))
    assert all(r.total_cycles >= t.total_cycles for r, t in zip(res["in_order"], res["revit"]))


def test_summary_stats_are_over_images(demo):
    _, imgs, res = demo
    doc = summarise(res)
    tot = [r.total_cycles for r in res["revit"]]
    assert doc["images"] == len(imgs) and doc["per_image_cycles"] == tot
    assert doc["cycles_per_image"] == {"mean": np.mean(tot), "min": min(tot), "max": max(tot)}
    assert set(doc["baselines"]) == set(BASELINES)
    assert abs(sum(doc["by_kernel_mean_cycles"].values()) - np.mean(tot)) < 1
    assert len(set(tot)) > 1                    # the work depends on the image


def test_vitaccel_sim_revit_json_and_errors(tmp_path, capsys):
    d = np.load(DEMO / "test_images.npz")
    np.savez(tmp_path / "i.npz", images=d["images"][:2], labels=d["labels"][:2])
    b = str(DEMO / "revit.vcb")
    assert main(["sim", b, "--images", str(tmp_path / "i.npz"), "--baselines", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["images"] == 2 and set(doc["baselines"]) == set(BASELINES) and doc["config"] == "revit-paper"
    assert doc["baselines"]["no_pruning"]["bits"].startswith("differ")
    assert doc["image0_report"]["total_cycles"] == doc["per_image_cycles"][0]
    assert main(["sim", b]) == 2
    assert "--images" in capsys.readouterr().err
    assert main(["sim", b, "--images", str(tmp_path / "i.npz"), "--config", "paper"]) == 2
    assert "revit config" in capsys.readouterr().err
    assert main(["sim", b, "--images", str(tmp_path / "i.npz"), "--config", "revit-zcu104"]) == 0
    out = capsys.readouterr().out
    assert "revit-zcu104" in out and "cycles per image mean" in out and "no_pruning" not in out
