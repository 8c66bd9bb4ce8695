"""The ReViT engines' FINN-style testbenches (hls/revit/<engine>/<engine>_tb.cpp + _top.cpp, the registry's
kernels, what build.tcl's csim step runs): each passes on the golden cases sim/revit/golden.py writes from
the NumPy models, fails with expected/got on a corrupted golden file, and refuses a truncated one."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from vitaccel import accelerators
from vitaccel.sim import csim
from vitaccel.sim.golden import write_cases
from vitaccel.sim.revit import csim_engines as ce

pytestmark = pytest.mark.csim

CONFIG = "revit-paper"
KERNELS = [k.name for k in accelerators.get("revit").kernels]
#: The dtype of each testbench's expected.bin.
OUT_DTYPE = {"rmmu": np.int32, "groupgen": np.int32, "dsoftmax": np.uint8, "pruner": np.int32, "sched": np.int64, "revit": np.int8}


def _build(name: str):
    k = accelerators.get("revit").kernel(name)
    return csim.build_executable(f"revit_{name}_tb", [f"{k.hls_dir}/{name}_tb.cpp", f"{k.hls_dir}/{name}_top.cpp"],
                                 CONFIG, include_dirs=ce.INCLUDE_DIRS)


@pytest.mark.parametrize("kernel", KERNELS)
def test_testbench_passes_and_fails_on_a_corrupted_golden(tmp_path, kernel):
    exe = _build(kernel)
    cases = write_cases(kernel, tmp_path, CONFIG)
    run = lambda: subprocess.run([str(exe), *map(str, cases)], capture_output=True, text=True, timeout=120)  # noqa: E731
    proc = run()
    assert proc.returncode == 0 and f"PASS: {len(cases)} case(s)" in proc.stdout, proc.stdout + proc.stderr
    expected = cases[0] / "expected.bin"
    data = np.fromfile(expected, OUT_DTYPE[kernel])
    j = data.size // 2
    want = int(data[j])
    data[j] = data.dtype.type(want ^ 0x55)
    data.tofile(expected)
    proc = run()
    assert proc.returncode == 1 and f"expected {int(data[j])} got {want}" in proc.stdout, proc.stdout
    assert "FAIL" in proc.stdout and cases[0].name in proc.stdout
    data[:-1].tofile(expected)
    proc = run()
    assert proc.returncode == 2 and "expected.bin has" in proc.stdout, proc.stdout
