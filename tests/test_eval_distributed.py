"""`vitaccel eval --workers N / --scheduler ADDR` (#16): the evaluation sharded over a Dask cluster gives the
single-process run's logits bit for bit; failed shards are reported and retried, never dropped; without
Dask, --workers says what to install. In-process clusters (processes=False) keep this to a few seconds."""
from __future__ import annotations

import functools
import json
import sys

import numpy as np
import pytest

from vitaccel.cli import main
from vitaccel.host import evaluate as ev
from vitaccel.host.accelerator import Accelerator
from vitaccel.host.bundle import write_bundle
from vitaccel.testing import random_bundle

pil = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("dimgs")
    rng = np.random.default_rng(1)
    for name in ("cat", "dog", "eel"):
        (root / name).mkdir()
        for j in range(9):
            pil.fromarray(rng.integers(0, 256, (18, 22, 3), dtype=np.uint8)).save(root / name / f"{j}.png")
    b = root.parent / "d.vcb"
    write_bundle(b, random_bundle(seed=5, depth=1, num_classes=10))
    return root, b, ev.list_images(root, ev.class_index(root))


@pytest.fixture(scope="module")
def single(folder):
    _, b, items = folder
    with Accelerator(b, backend="sim", batch_size=4) as acc:
        return ev.evaluate(acc, items, progress=False, return_logits=True)


def _dist():
    pytest.importorskip("distributed")
    from vitaccel.host import distributed as hd

    return hd


def test_plan_shards_lie_on_the_single_process_batch_grid():
    from vitaccel.host.distributed import plan_shards

    for n, batch, workers in ((27, 4, 2), (360, 16, 2), (360, 16, 1), (50000, 16, 8), (1000, 24, 3), (5, 300, 2)):
        shards = plan_shards(n, batch, workers)
        assert shards[0][0] == 0 and shards[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(shards, shards[1:]))
        chunk = ev.CHUNK
        for start, stop in shards:            # a shard starts where a single-process batch starts
            assert (start % chunk) % batch == 0 or start % chunk == 0
            assert stop - start <= max(chunk, batch)
    assert len(plan_shards(360, 16, 2)) >= 8  # about four per worker


def test_two_workers_give_the_single_process_logits_bit_for_bit(folder, single):
    hd = _dist()
    _, b, items = folder
    doc = hd.evaluate_distributed(b, items, workers=2, backend="sim", batch_size=4, progress=False,
                                  return_logits=True, processes=False)
    assert doc["logits"].dtype == single["logits"].dtype
    assert np.array_equal(doc["logits"], single["logits"])          # same bits, in image order
    for k in ("images", "top1", "top5", "top5_k", "backend", "latency_kind"):
        assert doc[k] == single[k], k
    assert doc["latency_us_per_image"] == pytest.approx(single["latency_us_per_image"])
    assert sum(doc["workers"].values()) == len(items) and doc["failures"] == []
    assert doc["shards"] >= 2


def test_existing_cluster_by_scheduler_address(folder, single):
    hd = _dist()
    import distributed

    _, b, items = folder
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        doc = hd.evaluate_distributed(b, items, scheduler=cluster.scheduler_address, backend="sim", batch_size=4,
                                      progress=False, return_logits=True)
    assert np.array_equal(doc["logits"], single["logits"])
    assert doc["top1"] == single["top1"]


def test_a_failed_shard_is_reported_and_retried(folder, single, monkeypatch):
    hd = _dist()
    _, b, items = folder

    def hook(shard, attempt):
        if shard == 1 and attempt == 0:
            raise OSError("disk hiccup")

    monkeypatch.setattr(hd, "_fault_hook", hook)
    said = []
    doc = hd.evaluate_distributed(b, items, workers=2, backend="sim", batch_size=4, progress=False,
                                  return_logits=True, processes=False, say=said.append)
    assert np.array_equal(doc["logits"], single["logits"])            # nothing dropped
    assert [(f["shard"], f["attempt"]) for f in doc["failures"]] == [(1, 0)]
    assert "OSError: disk hiccup" in doc["failures"][0]["error"] and doc["failures"][0]["worker"]
    assert len(said) == 1 and "shard 1" in said[0] and "retrying (attempt 2 of 3)" in said[0]


def test_a_shard_failing_every_attempt_fails_the_run(folder, monkeypatch, capsys):
    hd = _dist()
    _, b, items = folder

    def hook(shard, attempt):
        if shard == 2:
            raise ValueError("always broken")

    monkeypatch.setattr(hd, "_fault_hook", hook)
    monkeypatch.setattr(hd, "evaluate_distributed", functools.partial(hd.evaluate_distributed, processes=False))
    root = folder[0]
    assert main(["eval", str(b), "--images", str(root), "--workers", "2", "--retries", "1", "--batch-size", "4",
                 "--backend", "sim", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "1 shard(s) failed 2 time(s)" in err and "ValueError: always broken" in err
    assert "Traceback" not in err


def test_cli_workers_json_equals_single_process(folder, single, monkeypatch, capsys):
    hd = _dist()
    _, b, _ = folder
    monkeypatch.setattr(hd, "evaluate_distributed", functools.partial(hd.evaluate_distributed, processes=False))
    root = folder[0]
    assert main(["eval", str(b), "--images", str(root), "--workers", "2", "--batch-size", "4", "--backend", "sim",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["top1"] == single["top1"] and doc["top5"] == single["top5"] and doc["images"] == 27
    assert sum(doc["workers"].values()) == 27 and doc["images_per_s"] > 0
    assert main(["eval", str(b), "--images", str(root), "--workers", "2", "--batch-size", "4", "--backend", "sim",
                 "--no-progress"]) == 0
    assert "Dask worker(s)" in capsys.readouterr().out


def test_unreachable_scheduler_is_one_line(folder, monkeypatch, capsys):
    hd = _dist()
    monkeypatch.setattr(hd, "CONNECT_TIMEOUT", "1s")
    root, b, _ = folder
    assert main(["eval", str(b), "--images", str(root), "--scheduler", "tcp://127.0.0.1:9", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err and "Traceback" not in err


def test_without_dask_workers_says_what_to_install(folder, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)          # import distributed -> ImportError
    root, b, _ = folder
    assert main(["eval", str(b), "--images", str(root), "--workers", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'vitaccel[scale]'" in err and "Traceback" not in err


def test_workers_and_scheduler_are_exclusive(folder, capsys):
    root, b, _ = folder
    assert main(["eval", str(b), "--images", str(root), "--workers", "2", "--scheduler", "tcp://x:1"]) == 2
    assert "not allowed with" in capsys.readouterr().err


def test_local_cluster_of_worker_processes(folder, single):
    """The CLI's cluster: two spawned worker processes (vitaccel imported there, eval_shard pickled by name)."""
    hd = _dist()
    _, b, items = folder
    doc = hd.evaluate_distributed(b, items, workers=2, backend="sim", batch_size=4, progress=False,
                                  return_logits=True)
    assert np.array_equal(doc["logits"], single["logits"])
    assert all(w.startswith("tcp://") for w in doc["workers"])


def test_readme_eval_workers_block_runs_as_written(tmp_path):
    """The sh block after README's `vitaccel eval --workers N` paragraph: the demo's held-out digits written
    as PNG folders and evaluated on 2 local workers."""
    _dist()
    import os
    import re
    import subprocess
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("`vitaccel eval --workers N` shards"):]
    code = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    r = subprocess.run(["bash", "-e", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "360 images in 10 classes" in r.stdout and "2 Dask worker(s)" in r.stdout, r.stdout
