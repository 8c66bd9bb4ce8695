"""`vitaccel eval` (#16): ImageFolder layouts, top-1 / top-5 equal to running the same images at once,
bounded memory (images decoded a chunk at a time), clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vitaccel.cli import main
from vitaccel.host import evaluate as ev
from vitaccel.host.accelerator import Accelerator
from vitaccel.host.bundle import write_bundle
from vitaccel.host.run import load_image_files
from vitaccel.testing import random_bundle

pil = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for name in ("n02", "n01", "n03"):                  # sorted: n01 -> 0, n02 -> 1, n03 -> 2
        (root / name).mkdir()
        for j in range(5):
            pil.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / name / f"{j}.png")
    b = root.parent / "m.vcb"
    write_bundle(b, random_bundle(seed=3, depth=1, num_classes=10))
    return root, b


def test_class_index_rules(folder, tmp_path):
    root, _ = folder
    assert ev.class_index(root) == {"n01": 0, "n02": 1, "n03": 2}
    (tmp_path / "map.txt").write_text("n03 third\nn01 first, one\n\nn02 second\n")
    assert ev.class_index(root, tmp_path / "map.txt") == {"n01": 1, "n02": 2, "n03": 0}
    (tmp_path / "short.txt").write_text("n01\n")
    with pytest.raises(ValueError, match="not in"):
        ev.class_index(root, tmp_path / "short.txt")
    for d in ("3", "10"):
        (tmp_path / "num" / d).mkdir(parents=True)
    assert ev.class_index(tmp_path / "num") == {"10": 10, "3": 3}


def test_eval_equals_one_run_over_all_images(folder, monkeypatch, capsys):
    root, b = folder
    items = ev.list_images(root, ev.class_index(root))
    assert len(items) == 15 and [c for _, c in items] == [0] * 5 + [1] * 5 + [2] * 5
    with Accelerator(b, backend="sim", batch_size=4) as acc:
        dims = acc.program.program.dims
        x = load_image_files([f for f, _ in items], size=dims.img_size, chans=dims.in_chans, say=False)
        logits = acc.run(x, progress=False).logits
    labels = np.array([c for _, c in items])
    want1 = float(np.mean(logits.argmax(1) == labels))
    want5 = float(np.mean((np.argsort(-logits, 1, kind="stable")[:, :5] == labels[:, None]).any(1)))
    monkeypatch.setattr(ev, "CHUNK", 4)                  # 4 chunks: the counts must add up the same
    assert main(["eval", str(b), "--images", str(root), "--json", "--backend", "sim"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["images"] == 15 and doc["classes"] == 3
    assert doc["top1"] == pytest.approx(want1) and doc["top5"] == pytest.approx(want5)
    assert main(["eval", str(b), "--images", str(root), "--limit", "4", "--no-progress"]) == 0
    assert "4 images in 3 classes" in capsys.readouterr().out


def test_eval_decodes_a_chunk_at_a_time(folder, monkeypatch):
    root, b = folder
    seen = []
    real = ev.load_image_files

    def spy(files, **kw):
        seen.append(len(files))
        return real(files, **kw)

    monkeypatch.setattr(ev, "load_image_files", spy)
    monkeypatch.setattr(ev, "CHUNK", 6)
    assert main(["eval", str(b), "--images", str(root), "--json", "--backend", "sim"]) == 0
    assert seen == [6, 6, 3]


@pytest.mark.parametrize("argv,needle", [
    (["{b}", "--images", "{tmp}/nothing"], "must be a folder"),
    (["{b}", "--images", "{tmp}/empty"], "no class folders"),
    (["{b}", "--images", "{tmp}/noimg"], "no image files"),
    (["{tmp}/missing.vcb", "--images", "{root}"], "missing.vcb"),
])
def test_eval_errors(folder, tmp_path, capsys, argv, needle):
    root, b = folder
    (tmp_path / "empty").mkdir()
    (tmp_path / "noimg" / "a").mkdir(parents=True)
    args = [a.format(b=b, tmp=tmp_path, root=root) for a in argv]
    assert main(["eval", *args, "--no-progress"]) == 2
    assert needle in capsys.readouterr().err
