"""Atomic saves (issue 15, part A, item 11): one helper (vitaccel.fileio.atomic_write) for bundles and
checkpoints; unique temporary names, so concurrent writers (threads, processes) never collide; a killed
writer's temporary file is removed by the next save of the same target, and nothing else is.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vitaccel.fileio import STALE_TMP_S, TMP_SUFFIX, atomic_write, stale_temporaries
from vitaccel.host.bundle import load_bundle, write_bundle
from vitaccel.testing import random_bundle


def _leftovers(d: Path, name: str):
    return sorted(p.name for p in d.iterdir() if p.name.startswith(f".{name}."))


def test_concurrent_bundle_saves_from_threads(tmp_path):
    target = tmp_path / "m.vcb"
    bundles = [random_bundle(seed=s, depth=1) for s in range(4)]
    errors = []

    def save(b):
        try:
            for _ in range(5):
                write_bundle(target, b)
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=save, args=(b,)) for b in bundles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    got = load_bundle(target)
    assert any(got.identical(b) for b in bundles)
    assert _leftovers(tmp_path, "m.vcb") == []


def _save_many(path: str, seed: int) -> None:
    b = random_bundle(seed=seed, depth=1)
    for _ in range(5):
        write_bundle(path, b)


def test_concurrent_bundle_saves_from_processes(tmp_path):
    target = str(tmp_path / "m.vcb")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_save_many, args=(target, s)) for s in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    load_bundle(target)
    assert _leftovers(tmp_path, "m.vcb") == []


def test_concurrent_checkpoint_saves(tmp_path):
    torch = pytest.importorskip("torch")
    from vitaccel.models.vitcod import _atomic_save

    target = tmp_path / "ck.pth"
    errors = []

    def save(i):
        try:
            for _ in range(10):
                _atomic_save({"w": torch.full((256,), float(i))}, target)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    w = torch.load(target, weights_only=True)["w"]
    assert bool((w == w[0]).all()) and 0 <= float(w[0]) < 6
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pth"]


def test_checkpoint_saves_from_processes(tmp_path):
    pytest.importorskip("torch")
    code = ("import sys, torch\nfrom vitaccel.models.vitcod import _atomic_save\n"
            "for _ in range(5):\n    _atomic_save({'w': torch.full((64,), float(sys.argv[2]))}, sys.argv[1])\n")
    target = str(tmp_path / "ck.pth")
    procs = [subprocess.Popen([sys.executable, "-c", code, target, str(i)]) for i in range(3)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pth"]


def test_killed_writer_leftover_is_cleaned_by_the_next_save(tmp_path):
    target = tmp_path / "m.vcb"
    code = ("import sys, time\nfrom vitaccel.fileio import atomic_write\n"
            "def slow(f):\n    f.write(b'x' * 100000); f.flush(); print('writing', flush=True); time.sleep(60)\n"
            "atomic_write(sys.argv[1], slow)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    left = _leftovers(tmp_path, "m.vcb")
    assert len(left) == 1 and left[0].endswith(TMP_SUFFIX), left
    leftover = tmp_path / left[0]
    # files that are not ours, or not stale, or for another target, stay
    keep = [tmp_path / ".m.vcb.notours.tmp", tmp_path / "m.vcb.tmp", tmp_path / f".other.vcb.abcdefgh{TMP_SUFFIX}"]
    for k in keep:
        k.write_bytes(b"keep")
    old = time.time() - STALE_TMP_S - 60
    for f in [leftover, *keep]:
        os.utime(f, (old, old))
    legacy = tmp_path / ".m.vcb.a1b2c3d4.tmp"      # the bundle writer's pattern before vitaccel.fileio
    legacy.write_bytes(b"old")
    os.utime(legacy, (old, old))
    fresh = tmp_path / f".m.vcb.live1234{TMP_SUFFIX}"  # a live writer's file: young, so kept
    fresh.write_bytes(b"live")
    assert sorted(stale_temporaries(target)) == sorted([leftover, legacy])
    write_bundle(target, random_bundle(depth=1))
    assert not leftover.exists() and not legacy.exists()
    assert all(k.exists() for k in keep) and fresh.exists()
    load_bundle(target)


def test_atomic_write_failure_leaves_the_old_file(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def boom(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, boom)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]
