"""host/ and sim/ must import on a PYNQ image: numpy and tqdm only, no torch, no pynq (and no dask: the
`vitaccel[scale]` extra is imported only by `vitaccel eval --workers/--scheduler`)."""
import subprocess
import sys

BLOCK = "import sys\nfor m in ('torch', 'pynq', 'matplotlib', 'sklearn', 'hls4ml', 'dask', 'distributed'):\n    sys.modules[m] = None\n"


def run(code):
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True)


def test_host_and_sim_import_without_torch():
    r = run("import vitaccel.host, vitaccel.sim, vitaccel.sim.numerics, vitaccel.sim.quant, vitaccel.sim.selfcheck, "
            "vitaccel.hwconfig, vitaccel.cli\n"
            "import importlib, pkgutil, vitaccel.host as h, vitaccel.sim as s\n"
            "for pkg in (h, s):\n"
            "    for m in pkgutil.iter_modules(pkg.__path__):\n"
            "        importlib.import_module(pkg.__name__ + '.' + m.name)\n"
            "assert 'torch' not in [k for k, v in sys.modules.items() if v is not None]\n"
            "print('ok')")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_blocking_really_blocks():
    r = run("import torch")
    assert r.returncode != 0 and "ImportError" in r.stderr or "ModuleNotFoundError" in r.stderr


def test_backend_falls_back_to_sim_without_pynq():
    r = run("from vitaccel.host.backend import detect_backend\nprint(detect_backend()[0])")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "sim"
