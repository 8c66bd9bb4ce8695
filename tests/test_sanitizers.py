"""The C-simulation testbenches built with AddressSanitizer and UndefinedBehaviorSanitizer (issue #15):
each kernel's golden cases, and vitcod_top on block programs plus hostile descriptors (random words set
to limits, signs, huge sizes and offsets near the window's end), with the NumPy top's windows as the
expected results. A sanitizer report or a mismatch fails. Third-party headers (hls4ml's ap_types) are the
only thing suppressed, by file (hls/include/csim/ubsan.supp)."""
from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from vitaccel import accelerators
from vitaccel.hls import INCLUDE_DIR
from vitaccel.sim import csim, golden
from vitaccel.sim.vitcod import csim_kernels as ck

pytestmark = [pytest.mark.csim, pytest.mark.sanitize]

CONFIG = "paper"
KERNELS = {k.name: k.hls_dir for k in accelerators.get("vitcod").kernels}
SUPPRESSIONS = INCLUDE_DIR / "csim" / "ubsan.supp"
#: Hostile top programs in the campaign (each a copy of a block program with 1-3 words changed).
HOSTILE = 160


@pytest.fixture(scope="module")
def sanitized():
    def build(k):
        d = KERNELS[k]
        return k, csim.build_executable(f"{k}_tb_asan", [f"{d}/{k}_tb.cpp", f"{d}/{k}_top.cpp"], CONFIG,
                                        include_dirs=ck.KERNELS_INCLUDE_DIR, extra_flags=csim.SANITIZE_FLAGS)

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(build, KERNELS))


def _run(exe, cases):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=23",
               UBSAN_OPTIONS=f"suppressions={SUPPRESSIONS}:print_stacktrace=1:halt_on_error=1:exitcode=24")
    return subprocess.run([str(exe), *map(str, cases)], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_testbench_is_clean_under_sanitizers(sanitized, tmp_path, kernel, capsys):
    if kernel == accelerators.get("vitcod").name:
        cases = golden.top_cases(tmp_path, CONFIG, hostile=HOSTILE, seed=2024)
    else:
        cases = golden.write_cases(kernel, tmp_path, CONFIG)
    proc = _run(sanitized[kernel], cases)
    out = proc.stdout + proc.stderr
    assert "AddressSanitizer" not in out and "runtime error" not in out and "LeakSanitizer" not in out, out[-4000:]
    assert proc.returncode == 0, out[-4000:]
    assert f"PASS: {len(cases)} case(s)" in proc.stdout
    with capsys.disabled():
        statuses = sorted({line.rsplit("status ", 1)[-1] for line in proc.stdout.splitlines() if "status 0x" in line})
        print(f"\nsanitizers: {kernel}: {len(cases)} case(s) clean" + (f"; statuses {', '.join(statuses)}"
                                                                    if statuses else ""))


def test_the_sanitizers_are_really_on(tmp_path):
    """A testbench with an out-of-bounds write must be caught: the build flags and options work."""
    src = tmp_path / "oob_tb.cpp"
    src.write_text("#include <vector>\nint main(int argc, char**) { std::vector<int> v(4); v.data()[argc + 4] = 1;"
                   " return v[0]; }\n")
    exe = csim.build_executable("oob_tb", [src], None, extra_flags=csim.SANITIZE_FLAGS)
    proc = _run(exe, [])
    assert proc.returncode != 0 and "AddressSanitizer" in proc.stderr
