"""`vitaccel run`, the main job: defaults, outputs, image inputs and clear errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from vitaccel.cli import main
from vitaccel.host.bundle import write_bundle
from vitaccel.host.run import demo_dir, load_images
from vitaccel.testing import random_bundle


def test_default_is_the_demo_on_the_simulator(capsys):
    """No arguments but --limit: the shipped bundle and images, the simulator (no board here)."""
    assert main(["run", "--limit", "6", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["bundle"].endswith("demo.vcb") and doc["images_from"].endswith("test_images.npz")
    assert doc["backend"] == "sim" and doc["images"] == 6 and doc["latency_kind"] == "predicted"
    assert doc["latency_us_per_image"] == pytest.approx(doc["predicted_latency_us_per_image"])
    assert doc["speedup_vs_dense"] > 1.0        # 90% sparse attention + AE beats dense on the same config
    assert doc["top1"] >= 5 / 6
    assert set(doc["breakdown"]) == {"compute", "preprocess", "data"} and len(doc["by_layer"]) == 5   # 4 layers + embedding/head


def test_whole_demo_accuracy_through_the_accelerator_path(capsys):
    """All 360 held-out images through the compiled program: the int8 accuracy metrics.json records."""
    assert main(["run", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    metrics = json.loads((demo_dir() / "metrics.json").read_text())
    assert doc["images"] == 360
    assert doc["top1"] == pytest.approx(metrics["int8"]["top1_int8"])   # 99.17%: same bits as the export check


def test_table_and_report_dir(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["run", "--limit", "3", "--report", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    for needle in ("top-1", "latency", "speedup", "where the accelerator's time goes", "attention", "layer"):
        assert needle in text
    for f in ("breakdown.png", "roofline.png", "report.json"):
        assert (out / f).stat().st_size > 0
    assert json.loads((out / "report.json").read_text())["images"] == 3


def test_bundle_and_npy_images(tmp_path, capsys):
    b = random_bundle(seed=3, depth=1)
    path = tmp_path / "m.vcb"
    write_bundle(path, b)
    m = b.model
    imgs = np.random.default_rng(0).normal(size=(3, m.in_chans, m.img_size, m.img_size)).astype(np.float32)
    np.save(tmp_path / "x.npy", imgs)
    assert main(["run", "--bundle", str(path), "--images", str(tmp_path / "x.npy"), "--json",
                 "--batch-size", "2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["images"] == 3 and doc["top1"] is None and len(doc["predictions"]) == 3


def test_image_folder_with_label_folders(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(1)
    for label in (3, 7):
        (tmp_path / str(label)).mkdir()
        for j in range(2):
            pil.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8)).save(tmp_path / str(label) / f"{j}.png")
    imgs, labels = load_images(str(tmp_path), size=16, chans=1, mean=[0.5], std=[0.25])
    assert imgs.shape == (4, 1, 16, 16) and imgs.dtype == np.float32
    assert labels.tolist() == [3, 3, 7, 7]
    assert -2.0 - 1e-6 <= imgs.min() and imgs.max() <= 2.0 + 1e-6
    one, none = load_images(str(tmp_path / "3" / "0.png"), size=8, chans=3)
    assert one.shape == (1, 3, 8, 8) and none is None


@pytest.mark.parametrize("argv,needle", [
    (["--bundle", "{b}"], "--images is needed"),
    (["--bundle", "{b}", "--images", "{tmp}/missing.npz"], "no such file"),
    (["--bundle", "{b}", "--images", "{tmp}/wrong.npy"], "images must be (B, 3, 16, 16)"),
    (["--bundle", "{b}", "--images", "{tmp}/empty"], "no image files"),
    (["--bundle", "{tmp}/broken.vcb", "--images", "{tmp}/wrong.npy"], "broken.vcb"),
    (["--backend", "pynq", "--limit", "1"], "needs the pynq package"),
    (["--limit", "0"], "argument --limit: expected an integer >= 1, got '0'"),
])
def test_errors_are_clear(tmp_path, capsys, argv, needle):
    b = tmp_path / "m.vcb"
    write_bundle(b, random_bundle(seed=2, depth=1))
    np.save(tmp_path / "wrong.npy", np.zeros((2, 3, 8, 8), np.float32))
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.vcb").write_bytes(b.read_bytes()[:100])
    args = [a.format(b=b, tmp=tmp_path) for a in argv]
    assert main(["run", *args, "--no-progress"]) == 2
    assert needle in capsys.readouterr().err


def test_runs_without_torch():
    """The main job is host + sim only: it must run where torch cannot be imported (a PYNQ image)."""
    code = ("import sys\nfor m in ('torch', 'pynq', 'hls4ml'):\n    sys.modules[m] = None\n"
            "from vitaccel.cli import main\nrc = main(['run', '--limit', '2', '--json'])\n"
            "assert 'torch' not in [k for k, v in sys.modules.items() if v is not None]\nsys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["images"] == 2


def test_rough_edges_are_said(tmp_path, capsys, monkeypatch):
    """#16: which bundle runs when only --images is given; a size mismatch names the bundle and both shapes;
    another config than the bundle's is noted as `vitaccel sim` does; resized / converted images are said
    once; the report's breakdown plot gets every baseline."""
    np.save(tmp_path / "wrong.npy", np.zeros((2, 3, 8, 8), np.float32))
    assert main(["run", "--images", str(tmp_path / "wrong.npy"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no --bundle given: running the shipped demo bundle" in err and "demo.vcb" in err
    assert "images must be (B, 1, 56, 56)" in err and "found shape (2, 3, 8, 8)" in err and "takes 1x56x56" in err

    pil = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for j in range(3):
        pil.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / f"p{j}.png")
    captured = {}
    import vitaccel.sim.plots as plots

    real = plots.plot_breakdown

    def spy(report, path, baselines=None, **kw):
        captured["baselines"] = sorted(baselines or {})
        return real(report, path, baselines=baselines, **kw)

    monkeypatch.setattr(plots, "plot_breakdown", spy)
    argv = ["run", "--images", str(tmp_path), "--config", "zcu104", "--report", str(tmp_path / "rep"),
            "--no-progress"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "converted from RGB to L (and 2 more image(s))" in err and err.count("converted from") == 1
    assert "resized from 30x20 (bicubic, shorter side to 64, centre crop) (and 2 more image(s))" in err
    assert "compiled for 'paper'" in err and "running on 'zcu104'" in err and "A board would refuse" in err
    assert captured["baselines"] == ["dense", "pruning_only", "reordering_only", "sanger", "vitcod", "vitcod_no_ae"]


def test_image_files_are_preprocessed_as_timm_evaluates_deit(tmp_path):
    """Shorter side to floor(size / 0.875) with bicubic interpolation, centre crop, then mean / std."""
    pil = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(4)
    src = rng.integers(0, 256, (20, 40, 3), dtype=np.uint8)          # h 20, w 40
    pil.fromarray(src).save(tmp_path / "a.png")
    got, _ = load_images(str(tmp_path / "a.png"), size=16, chans=3, mean=[0, 0, 0], std=[1, 1, 1])
    im = pil.fromarray(src).resize((36, 18), pil.BICUBIC).crop((10, 1, 26, 17))   # 18 = floor(16 / 0.875)
    want = np.asarray(im, np.float32).transpose(2, 0, 1) / 255.0
    assert np.array_equal(got[0], want)
