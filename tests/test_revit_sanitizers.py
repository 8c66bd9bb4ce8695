"""The ReViT engines' testbenches built with AddressSanitizer and UndefinedBehaviorSanitizer, on their golden
cases (sim/revit/golden.py: extremes included). A sanitizer report or a mismatch fails; only hls4ml's
ap_types headers are suppressed (hls/include/csim/ubsan.supp)."""
from __future__ import annotations

import os
import subprocess

import pytest

from vitaccel import accelerators
from vitaccel.hls import INCLUDE_DIR
from vitaccel.sim import csim
from vitaccel.sim.golden import write_cases
from vitaccel.sim.revit import csim_engines as ce

pytestmark = [pytest.mark.csim, pytest.mark.sanitize]

CONFIG = "revit-paper"
SUPPRESSIONS = INCLUDE_DIR / "csim" / "ubsan.supp"


@pytest.mark.parametrize("kernel", [k.name for k in accelerators.get("revit").kernels])
def test_engine_testbench_is_clean_under_sanitizers(tmp_path, kernel):
    k = accelerators.get("revit").kernel(kernel)
    exe = csim.build_executable(f"revit_{kernel}_tb_asan", [f"{k.hls_dir}/{kernel}_tb.cpp", f"{k.hls_dir}/{kernel}_top.cpp"],
                                CONFIG, include_dirs=ce.INCLUDE_DIRS, extra_flags=csim.SANITIZE_FLAGS)
    cases = write_cases(kernel, tmp_path, CONFIG)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=23",
               UBSAN_OPTIONS=f"suppressions={SUPPRESSIONS}:print_stacktrace=1:halt_on_error=1:exitcode=24")
    proc = subprocess.run([str(exe), *map(str, cases)], capture_output=True, text=True, timeout=300, env=env)
    out = proc.stdout + proc.stderr
    assert "AddressSanitizer" not in out and "runtime error" not in out and "LeakSanitizer" not in out, out[-4000:]
    assert proc.returncode == 0 and f"PASS: {len(cases)} case(s)" in proc.stdout, out[-4000:]
