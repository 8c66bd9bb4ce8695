"""Concurrency: threads and processes on the C-simulation backend and its compile cache (issue #15).

The C++ engines keep their buffers in function-static arrays (one copy in hardware), so two threads
calling one loaded library at once would share them: ctypes releases the GIL during a call. Calls into a
library are serialised per library (``CsimLibrary.lock``); separate processes have separate copies.
"""
from __future__ import annotations

import multiprocessing as mp
import threading

import numpy as np
import pytest

from vitaccel.host.accelerator import Accelerator
from vitaccel.testing import random_bundle

pytestmark = pytest.mark.csim


def _images(bundle, count, seed):
    m = bundle.model
    return np.random.default_rng(seed).normal(size=(count, m.in_chans, m.img_size, m.img_size)).astype(np.float32)


@pytest.fixture(scope="module")
def bundle():
    return random_bundle(seed=7, embed_dim=24, num_heads=3, ae_heads=2, density=0.3)


def test_threads_on_csim_give_the_serial_bits(bundle):
    imgs = [_images(bundle, 6, s) for s in range(4)]
    with Accelerator(bundle, backend="csim", batch_size=2) as acc:
        want = [acc.run(x, progress=False).logits for x in imgs]
    got, errors = [None] * len(imgs), []

    def work(i):
        try:
            with Accelerator(bundle, backend="csim", batch_size=2) as acc:
                for _ in range(3):
                    got[i] = acc.run(imgs[i], progress=False).logits
                    assert np.array_equal(got[i], want[i]), f"thread {i}: logits differ from the serial run"
        except BaseException as e:  # noqa: BLE001 - reported below with the thread's index
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(imgs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a C-sim thread hung"
    assert not errors, errors


def _run_in_process(args):
    seed, cache = args
    import os

    os.environ["VITACCEL_CACHE"] = cache
    from vitaccel.host.accelerator import Accelerator as Acc
    from vitaccel.testing import random_bundle as rb

    b = rb(seed=7, embed_dim=24, num_heads=3, ae_heads=2, density=0.3)
    with Acc(b, backend="csim", batch_size=2) as acc:
        return acc.run(_images(b, 4, seed), progress=False).logits.tobytes()


def test_processes_compiling_into_one_empty_cache(tmp_path, bundle):
    """Two processes compile the same library into an empty cache at once: both load a whole library
    (compiled into a temporary file, renamed into place) and compute the same bits as this process."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        outs = pool.map(_run_in_process, [(1, str(tmp_path)), (1, str(tmp_path))])
    with Accelerator(bundle, backend="csim", batch_size=2) as acc:
        want = acc.run(_images(bundle, 4, 1), progress=False).logits.tobytes()
    assert outs == [want, want]
    libs = sorted(p.name for p in tmp_path.glob("*.so"))
    assert len(libs) == 1 and not list(tmp_path.glob("*.tmp")), sorted(p.name for p in tmp_path.iterdir())


_TRUNCATED = r"""
import os, sys
os.environ["VITACCEL_CACHE"] = sys.argv[1]
from vitaccel.sim import csim
print(int(csim.csim_requantize([1000, -1000], [1 << 30], [31])[0]))
"""


def test_a_truncated_cache_entry_is_rebuilt_not_loaded(tmp_path):
    """A cache entry cut short (a killed copy, a full disk) is detected by its digest and rebuilt; dlopen of
    it could kill the process with SIGBUS."""
    import subprocess
    import sys

    def run():
        return subprocess.run([sys.executable, "-c", _TRUNCATED, str(tmp_path)], capture_output=True, text=True,
                              timeout=300)

    first = run()
    assert first.returncode == 0, first.stderr[-2000:]
    (lib,) = tmp_path.glob("libnumerics_*.so")
    data = lib.read_bytes()
    lib.write_bytes(data[: len(data) // 3])
    again = run()
    assert again.returncode == 0, f"rc {again.returncode}: {again.stderr[-2000:]}"
    assert again.stdout == first.stdout
    assert lib.read_bytes() == data or len(lib.read_bytes()) > len(data) // 3
