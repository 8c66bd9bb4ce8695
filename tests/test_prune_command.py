"""`vitaccel prune CHECKPOINT` (#16): checkpoints under timm's key names in every common wrapper, the
architecture read from the shapes, the ViTCoD and ReViT pipelines end to end on tiny models, and one-line
errors (exit 2, no traceback) for bad input."""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from vitaccel.cli import main  # noqa: E402
from vitaccel.host.bundle import load_bundle  # noqa: E402
from vitaccel.models import checkpoint as ck  # noqa: E402
from vitaccel.models.deit import VisionTransformer, deit_tiny, save_safetensors  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(img_size=32, patch_size=4, in_chans=3, num_classes=5, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny DeiT (65 tokens, 2 heads) saved as a bare timm state dict, plus calibration / training arrays."""
    d = tmp_path_factory.mktemp("prune")
    torch.manual_seed(0)
    model = VisionTransformer(**TINY)
    sd = model.state_dict()
    torch.save(sd, d / "tiny.pth")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 5, 24).astype(np.int64)
    np.savez(d / "calib.npz", images=x, labels=y)
    return d, model, sd


def _run(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return rc, out.out, out.err


# -- checkpoints --------------------------------------------------------------------------------------

def test_wrappers_prefixes_and_formats(tiny, tmp_path):
    d, _, sd = tiny
    ema = {k: v + 1 for k, v in sd.items()}
    cases = {
        "bare.pth": (sd, False, None),
        "model.pth": ({"model": sd, "epoch": 3}, False, "'model' entry"),
        "state_dict.pt": ({"state_dict": sd}, False, "'state_dict' entry"),
        "ema_only.pth": ({"model_ema": ema}, False, "'model_ema' entry"),
        "both.pth": ({"model": sd, "model_ema": ema}, False, "--ema takes those"),
        "ddp.pth": ({"model": {f"module.{k}": v for k, v in sd.items()}}, False, "'module.' prefix"),
    }
    for name, (obj, _, note) in cases.items():
        torch.save(obj, tmp_path / name)
        got, _, notes = ck.read_checkpoint(tmp_path / name)
        want = ema if name == "ema_only.pth" else sd
        assert set(got) == set(sd) and all(torch.equal(got[k], want[k]) for k in sd), name
        if note:
            assert any(note in n for n in notes), (name, notes)
    got, _, _ = ck.read_checkpoint(tmp_path / "both.pth", ema=True)
    assert torch.equal(got["cls_token"], ema["cls_token"])
    with pytest.raises(ck.CheckpointError, match="no 'model_ema'"):
        ck.read_checkpoint(tmp_path / "model.pth", ema=True)
    save_safetensors({k: v.to(torch.bfloat16) for k, v in sd.items()}, tmp_path / "w.safetensors")
    model, arch, _ = ck.load_any(tmp_path / "w.safetensors", heads=2)
    assert arch.kwargs() == {**TINY, "qkv_bias": True}
    assert torch.equal(model.cls_token, sd["cls_token"].to(torch.bfloat16).float())


@pytest.mark.parametrize("mutate,needle", [
    (lambda sd: {**sd, "dist_token": torch.zeros(1, 1, 32), "head_dist.weight": torch.zeros(5, 32)},
     "distilled DeiT (dist_token, head_dist) is not supported"),
    (lambda sd: {**sd, "blocks.0.attn.ae.q.encoder.weight": torch.zeros(1, 2)}, "already holds ViTCoD auto-encoders"),
    (lambda sd: {k: v for k, v in sd.items() if k != "cls_token"}, "without a class token"),
    (lambda sd: {k: v for k, v in sd.items() if not k.startswith("patch_embed")}, "not a DeiT/ViT state dict"),
    (lambda sd: {"model": sd, "args": argparse.Namespace(lr=1)}, "pickled Python objects"),
    (lambda sd: {"weights": [1, 2]}, "not tensors"),
])
def test_refused_checkpoints(tiny, tmp_path, mutate, needle):
    _, _, sd = tiny
    torch.save(mutate(dict(sd)), tmp_path / "c.pth")
    with pytest.raises(ck.CheckpointError, match=re.escape(needle)) as e:
        ck.load_any(tmp_path / "c.pth", heads=2)
    assert "\n" not in str(e.value)


def test_arch_inferred_from_shapes():
    torch.manual_seed(0)
    m = VisionTransformer(img_size=48, patch_size=8, in_chans=1, num_classes=7, embed_dim=128, depth=3, num_heads=2,
                          mlp_ratio=3.0, qkv_bias=False)
    a = ck.infer_arch(m.state_dict())
    assert (a.img_size, a.patch_size, a.in_chans, a.num_classes, a.embed_dim, a.depth, a.mlp_ratio, a.qkv_bias) == \
        (48, 8, 1, 7, 128, 3, 3.0, False)
    assert a.num_heads == 2 and "head dim 64" in a.heads_from           # 128 / 64
    assert ck.infer_arch(m.state_dict(), heads=4).num_heads == 4
    assert ck.infer_arch(m.state_dict(), config={"embed_dim": 128, "num_heads": 8}).num_heads == 8
    with pytest.raises(ck.CheckpointError, match="pass --heads"):
        ck.infer_arch(VisionTransformer(**TINY).state_dict())            # embed 32: no rule gives the heads


@pytest.fixture(scope="module")
def tiny_deit_sd():
    torch.manual_seed(0)
    return deit_tiny(img_size=32, num_classes=10).state_dict()        # DeiT-Tiny's widths, 5 tokens


def test_named_arch_and_look_alike(tiny_deit_sd, tiny):
    a, notes = ck.resolve_arch("auto", tiny_deit_sd)
    assert (a.embed_dim, a.depth, a.num_heads, a.heads_from) == (192, 12, 3, "deit_tiny's")
    a, notes = ck.resolve_arch("deit_tiny", tiny_deit_sd)
    assert a.name == "deit_tiny" and a.num_classes == 10 and a.img_size == 32
    assert notes == ["deit_tiny with img_size 32, num_classes 10 (from the checkpoint)"]
    with pytest.raises(ck.CheckpointError, match="is not deit_small .*it looks like deit_tiny: pass --arch deit_tiny"):
        ck.resolve_arch("deit_small", tiny_deit_sd)
    with pytest.raises(ck.CheckpointError, match="no DeiT has these: pass --arch auto"):
        ck.resolve_arch("deit_base", tiny[2], heads=None)
    with pytest.raises(ck.CheckpointError, match="contradicts --arch deit_tiny"):
        ck.resolve_arch("deit_tiny", tiny_deit_sd, heads=4)


def test_mismatch_names_keys_and_look_alike(tiny):
    _, _, sd = tiny
    broken = {k: v for k, v in sd.items() if k != "blocks.1.norm1.weight"}
    broken["blocks.0.mlp.fc2.bias"] = torch.zeros(7)
    broken["extra.thing"] = torch.zeros(1)
    a = ck.infer_arch(sd, heads=2)
    with pytest.raises(ck.CheckpointError) as e:
        ck.build_model(a, broken)
    msg = str(e.value)
    assert "1 missing key(s) (blocks.1.norm1.weight)" in msg and "1 unexpected key(s) (extra.thing)" in msg
    assert "blocks.0.mlp.fc2.bias: checkpoint [7], model [32]" in msg and "Its shapes look like ViT: embed 32" in msg


# -- the command --------------------------------------------------------------------------------------

def test_prune_vitcod_end_to_end(tiny, tmp_path, capsys):
    d, _, _ = tiny
    out = tmp_path / "m.vcb"
    rc, stdout, err = _run(["prune", str(d / "tiny.pth"), "--heads", "2", "--calib", str(d / "calib.npz"),
                            "--sparsity", "0.8", "-o", str(out), "--config", "paper", "--plots", str(tmp_path / "p"),
                            "--no-progress"], capsys)
    assert rc == 0, err
    b = load_bundle(out)
    assert b.meta["method"] == "vitcod" and b.meta["model"]["ae_heads"] == 1 and b.config_name == "paper"
    mask = np.stack([b.tensors[f"layers.{i}.attn.mask"] for i in range(2)])
    assert abs((1 - mask.mean()) - 0.8) < 0.005
    assert "global tokens per head" in stdout and "logit cosine" in stdout and "Q/K auto-encoder 2 -> 1 heads" in stdout
    assert re.search(r"bundle .*m\.vcb: \d+\.\d KB", stdout)
    assert "architecture from the checkpoint's shapes" in err and "heads from --heads" in err
    assert (tmp_path / "p" / "masks.png").stat().st_size > 0 and (tmp_path / "p" / "sparsity.png").is_file()


def test_prune_json_with_training_and_test_set(tiny, tmp_path, capsys):
    d, _, _ = tiny
    out = tmp_path / "t.vcb"
    rc, stdout, err = _run(["prune", str(d / "tiny.pth"), "--heads", "2", "--calib", str(d / "calib.npz"),
                            "--sparsity", "0.75", "--ae", "0", "--train", str(d / "calib.npz"), "--epochs", "1",
                            "--batch-size", "8", "--test", str(d / "calib.npz"), "--test-limit", "10", "-o", str(out),
                            "--config", "paper", "--json"], capsys)
    assert rc == 0, err
    doc = json.loads(stdout)
    assert doc["training_images"] == 24 and doc["epochs"] == 1 and doc["ae_heads"] is None
    assert abs(doc["sparsity"] - 0.75) < 0.005 and len(doc["layers"]) == 2
    assert all(len(layer["global_tokens"]) == 2 for layer in doc["layers"])
    g = doc["agreement"]
    assert g["images"] == 10 and 0.9 < g["logit_cosine"] <= 1.0 and {"top1_float", "top1_int8"} <= set(g)
    assert doc["bundle_bytes"] == out.stat().st_size
    assert {"finetune with the masks", "export", "agreement"} <= set(doc["steps_s"])


def test_prune_revit(tiny, tmp_path, capsys):
    d, _, _ = tiny
    out = tmp_path / "r.vcb"
    rc, stdout, err = _run(["prune", str(d / "tiny.pth"), "--heads", "2", "--calib", str(d / "calib.npz"),
                            "--method", "revit", "--groups", "2", "--keep", "0:1:0.5", "-o", str(out),
                            "--config", "revit-paper", "--no-progress"], capsys)
    assert rc == 0, err
    b = load_bundle(out)
    assert b.meta["method"] == "revit" and b.meta["groups"]["n_groups"] == 2 and b.config_name == "revit-paper"
    assert "token pruning layer 0: groups 1, patches 0.5" in stdout and "logit cosine" in stdout
    assert f"vitaccel run --bundle {out}" in stdout
    # The bundle runs on the ReViT accelerator (its integer whole model is in it).
    from vitaccel.host import Accelerator
    from vitaccel.sim.revit.model import run_revit

    imgs = np.load(d / "calib.npz")["images"][:2].astype(np.float32)
    with Accelerator(b, backend="sim") as acc:
        assert np.array_equal(acc.run(imgs, progress=False).logits, run_revit(b, imgs).logits)


def test_calibration_from_class_folders_of_photos(tiny, tmp_path, capsys):
    pil = pytest.importorskip("PIL.Image")
    d, _, _ = tiny
    rng = np.random.default_rng(2)
    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for j in range(3):
            pil.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "imgs" / c / f"{j}.jpg")
    rc, stdout, err = _run(["prune", str(d / "tiny.pth"), "--heads", "2", "--calib", str(tmp_path / "imgs"),
                            "--sparsity", "0.7", "-o", str(tmp_path / "f.vcb"), "--config", "paper",
                            "--no-progress"], capsys)
    assert rc == 0, err
    assert "6 calibration images" in stdout and "resized from 50x40" in err
    assert "top-1: dense float" in stdout                      # class folders give labels


@pytest.mark.parametrize("extra,needle", [
    (["--calib", "{d}/nope.npz"], "--calib {d}/nope.npz: no such file or folder"),
    (["--calib", "{d}/calib.npz", "--sparsity", "0.99"], "--sparsity 0.99: target sparsity 0.9900 is out of reach"),
    (["--calib", "{d}/calib.npz", "--keep", "0:1:0.5"], "--keep applies to --method revit"),
    (["--calib", "{d}/calib.npz", "--method", "revit", "--sparsity", "0.5"], "--sparsity apply to --method vitcod"),
    (["--calib", "{d}/calib.npz", "--method", "revit", "--keep", "7:1:0.5"], "--keep layer 7: the model has 2 layers"),
    (["--calib", "{d}/calib.npz", "--method", "revit", "--keep", "0:x"], "expected LAYER:GROUP_RATIO:PATCH_RATIO"),
    (["--calib", "{d}/calib.npz", "--epochs", "3"], "--epochs needs --train"),
    (["--calib", "{d}/calib.npz", "--train", "{d}/unlabelled.npy"], "training needs labels"),
    (["--calib", "{d}/wrong.npy"], "the checkpoint's model takes 3x32x32 inputs"),
    (["--calib", "{d}/calib.npz", "--config", "nosuch"], "config error"),
    (["--calib", "{d}/calib.npz", "--method", "revit", "--config", "zcu104"],
     "--config zcu104 is a vitcod config; a revit bundle runs on the revit accelerator: pick one of its configs "
     "(board zcu104: revit-zcu104)"),
    (["--calib", "{d}/calib.npz", "--config", "revit-kv260"], "--config revit-kv260 is a revit config"),
    (["--calib", "{d}/calib.npz", "--arch", "deit_base"], "no DeiT has these: pass --arch auto"),
])
def test_prune_errors_are_one_line(tiny, tmp_path, capsys, extra, needle):
    d, _, _ = tiny
    np.save(d / "unlabelled.npy", np.zeros((4, 3, 32, 32), np.float32))
    np.save(d / "wrong.npy", np.zeros((4, 3, 16, 16), np.float32))
    argv = ["prune", str(d / "tiny.pth"), "--heads", "2", "-o", str(tmp_path / "x.vcb"), "--no-progress",
            *[a.format(d=d) for a in extra]]
    rc, _, err = _run(argv, capsys)
    assert rc == 2
    last = err.strip().splitlines()[-1]             # after the steps' timing lines: the error, one line
    assert last.startswith("vitaccel: ") and needle.format(d=d) in last, err
    assert not (tmp_path / "x.vcb").exists()


def test_prune_bad_options_and_files(tiny, tmp_path, capsys):
    d, _, _ = tiny
    for argv, needle in (
        (["prune", str(tmp_path / "missing.pth"), "--calib", str(d / "calib.npz"), "-o", str(tmp_path / "x.vcb")],
         "no such checkpoint file"),
        (["prune", str(d / "tiny.pth"), "--calib", str(d / "calib.npz"), "-o", str(tmp_path / "x.vcb")],
         "pass --heads"),
        (["prune", str(d / "tiny.pth"), "--calib", str(d / "calib.npz"), "--sparsity", "1.5", "-o", "x.vcb"],
         "expected a number in [0, 1)"),
        (["prune", str(d / "tiny.pth"), "--heads", "2", "--calib", str(d / "calib.npz"), "-o",
          str(tmp_path / "no" / "x.vcb")], "does not exist"),
    ):
        (tmp_path / "junk.pth").write_bytes(b"not a zip")
        rc, _, err = _run(argv, capsys)
        assert rc == 2 and needle in err, (argv, err)
    rc, _, err = _run(["prune", str(tmp_path / "junk.pth"), "--calib", str(d / "calib.npz"), "-o", "x.vcb"], capsys)
    assert rc == 2 and "not a readable PyTorch checkpoint" in err


def test_readme_prune_command_runs_as_written(tmp_path):
    """The sh block of README's `vitaccel prune` section, run in a fresh folder."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### `vitaccel prune`"):]
    code = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:"
           + __import__("os").environ.get("PATH", "")}
    r = subprocess.run(["bash", "-e", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "demo_pruned.vcb").is_file()
    assert "logit cosine" in r.stdout and "global tokens per head" in r.stdout, r.stdout


def test_prune_deit_tiny_at_224_from_safetensors(tmp_path, capsys):
    """DeiT-Tiny's real dimensions (197 tokens, 12 layers, 3 heads; random weights under timm's keys) through
    --arch deit_tiny from a .safetensors file, on the zcu104 config: the size the hardware is built for."""
    torch.manual_seed(0)
    save_safetensors(deit_tiny().state_dict(), tmp_path / "deit_tiny.safetensors")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).normal(size=(8, 3, 224, 224)).astype(np.float32))
    rc, stdout, err = _run(["prune", str(tmp_path / "deit_tiny.safetensors"), "--arch", "deit_tiny", "--calib",
                            str(tmp_path / "calib.npy"), "--test-limit", "4", "-o", str(tmp_path / "t.vcb"),
                            "--json"], capsys)
    assert rc == 0, err
    doc = json.loads(stdout)
    assert doc["arch"]["name"] == "deit_tiny" and len(doc["layers"]) == 12 and doc["ae_heads"] == 2
    assert abs(doc["sparsity"] - 0.9) < 0.005 and doc["config"] == "zcu104"
    b = load_bundle(tmp_path / "t.vcb")
    assert b.meta["model"]["num_tokens"] == 197 and b.meta["model"]["embed_dim"] == 192
