"""The C++ numerics (hls/include/vitaccel_numerics.h) against the NumPy golden model, bit for bit.

Compiled with g++ against hls4ml's ap_types headers by vitaccel.sim.csim. These tests are never skipped:
CI installs g++ and hls4ml, and a missing tool must fail loudly (CsimUnavailable says what to install).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from vitaccel.hls import HLS_DIR
from vitaccel.hwconfig import list_configs, load_config
from vitaccel.sim import csim
from vitaccel.sim import numerics as nx
from vitaccel.sim.csim import (
    AP_TYPES_ENV,
    CACHE_ENV,
    CsimCompileError,
    CsimUnavailable,
    compile_library,
    csim_requantize,
    csim_softmax,
    numerics_library,
)

pytestmark = pytest.mark.csim

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
M_MAX = (1 << 31) - 1


def ref_requantize(acc: int, m: int, s: int) -> int:
    """NUMERICS.md's formula in Python integers (unbounded, so no overflow question arises)."""
    r = (1 << (s - 1)) if s > 0 else 0
    return max(-128, min(127, (acc * m + r) >> s))


@pytest.fixture(scope="module")
def nxlib():
    return numerics_library("paper")


# -- requantize ------------------------------------------------------------------------------------

def test_requantize_random(nxlib):
    rng = np.random.default_rng(20240601)
    k = 8000
    # Uniform over the whole domain: mostly saturated or zero outputs, but every bit pattern occurs.
    a1 = rng.integers(-I32_MAX, I32_MAX + 1, k)
    m1 = rng.integers(0, 1 << 31, k)
    s1 = rng.integers(0, 64, k)
    # Random bit lengths for acc and m, so small magnitudes are as common as large ones.
    a2 = (rng.integers(0, 1 << 31, k) >> rng.integers(0, 32, k)) * rng.choice([-1, 1], k)
    m2 = rng.integers(0, 1 << 31, k) >> rng.integers(0, 32, k)
    s2 = rng.integers(0, 64, k)
    # Realistic: normalised multipliers and a shift that lands the result near the int8 range, which is
    # where rounding and saturation decide the output.
    bits = rng.integers(1, 31, k)
    a3 = rng.integers(1 << 30, 1 << 31, k) >> (31 - bits)
    a3 = a3 * rng.choice([-1, 1], k)
    m3 = rng.integers(1 << 30, 1 << 31, k)
    s3 = np.clip(bits + 31 - 7 + rng.integers(-3, 4, k), 0, 63)
    acc = np.concatenate([a1, a2, a3])
    mult = np.concatenate([m1, m2, m3])
    shift = np.concatenate([s1, s2, s3])
    assert acc.size >= 20000

    got = csim_requantize(acc, mult, shift)
    want = nx.requantize(acc, mult, shift)
    assert got.dtype == np.int8 and got.shape == want.shape
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"{bad.size} mismatches, first: acc={acc[bad[0]]} m={mult[bad[0]]} s={shift[bad[0]]} " \
                          f"C++={got[bad[0]]} NumPy={want[bad[0]]}"
    inside = np.count_nonzero((want > -128) & (want < 127))
    assert inside > 0.2 * acc.size, "the random cases hardly exercise the unsaturated range"


def test_requantize_extremes(nxlib):
    accs = np.array([I32_MAX, -I32_MAX, 0, 1, -1, 2, -2, 127, -128, 1 << 30, -(1 << 30)], dtype=np.int64)
    mults = np.array([0, 1, 2, 1 << 30, M_MAX], dtype=np.int64)
    shifts = np.arange(64, dtype=np.int64)
    a, m, s = np.meshgrid(accs, mults, shifts, indexing="ij")
    got = csim_requantize(a, m, s)
    assert np.array_equal(got, nx.requantize(a, m, s))
    ref = np.vectorize(ref_requantize)(a, m, s)
    assert np.array_equal(got, ref)


def test_requantize_int32_min_matches_formula(nxlib):
    # acc_t holds -2^31; the NumPy model refuses it (|acc| < 2^31 in NUMERICS.md), so the C++ is checked
    # against the formula directly. Kernels never produce it (|acc|, |bias| <= 2^30).
    cases = [(I32_MIN, m, s) for m in (0, 1, 3, 1 << 30, M_MAX) for s in range(64)]
    a, m, s = (np.array(c, dtype=np.int64) for c in zip(*cases))
    got = csim_requantize(a, m, s)
    assert got.tolist() == [ref_requantize(*c) for c in cases]


def test_requantize_ties_round_half_up(nxlib):
    # acc * m == (2y + 1) * 2^(s-1) is exactly y + 1/2 after the shift: round half up gives y + 1.
    # s = 0 has no fractional part; s = 63 cannot tie (|acc * m| < 2^62); s = 62 only with acc = -2^31.
    acc, mult, shift, want = [], [], [], []
    for s in range(1, 62):
        for y in (-129, -128, -100, -3, -2, -1, 0, 1, 2, 63, 126, 127):
            odd = 2 * y + 1
            e = s - 1
            for split in (0, 1, 2):  # place the power of two in acc, in m, or across both
                b = min(30, e) if split == 0 else (max(0, e - 20) if split == 1 else e // 2)
                a_pow = e - b
                for odd_in_acc in (True, False):
                    av = (odd if odd_in_acc else (1 if odd > 0 else -1)) * (1 << a_pow)
                    mv = (1 if odd_in_acc else abs(odd)) * (1 << b)
                    if abs(av) > I32_MAX or mv > M_MAX:
                        continue
                    acc.append(av)
                    mult.append(mv)
                    shift.append(s)
                    want.append(max(-128, min(127, y + 1)))
    shifts_covered = set(shift)
    assert shifts_covered == set(range(1, 62))
    acc, mult, shift = (np.array(x, dtype=np.int64) for x in (acc, mult, shift))
    got = csim_requantize(acc, mult, shift)
    assert got.tolist() == want
    assert np.array_equal(got, nx.requantize(acc, mult, shift))
    # The one s = 62 tie: -2^31 * 2^30 = -2^61 = -0.5 * 2^62 -> 0.
    assert csim_requantize(np.array([I32_MIN]), np.array([1 << 30]), np.array([62])).tolist() == [0]
    # Spot values from NUMERICS.md: -2.5 -> -2, 2.5 -> 3.
    assert csim_requantize(np.array([-5, 5]), 1, 1).tolist() == [-2, 3]


def test_requantize_broadcasts_per_channel(nxlib):
    rng = np.random.default_rng(7)
    acc = rng.integers(-(1 << 24), 1 << 24, (5, 3, 16))
    m = rng.integers(1 << 30, 1 << 31, 16)
    s = rng.integers(20, 40, 16)
    got = csim_requantize(acc, m, s)
    assert got.shape == acc.shape
    assert np.array_equal(got, nx.requantize(acc, m, s))


# -- softmax ---------------------------------------------------------------------------------------

def _random_row(rng):
    n = int(rng.integers(1, 301))
    kind = rng.random()
    if kind < 0.1:  # anything goes: full int32 scores, arbitrary (m_exp, s_exp)
        scores = rng.integers(-I32_MAX, I32_MAX + 1, n)
        m_exp, s_exp = int(rng.integers(0, 1 << 31)), int(rng.integers(0, 64))
    else:
        score_scale = 10.0 ** rng.uniform(-9, 0)
        m_exp, s_exp = nx.softmax_params(score_scale)
        spread = 10.0 ** rng.uniform(-1, 2.5)  # real-valued spread of the row's scores
        w = int(min(spread / score_scale, I32_MAX // 2))
        centre = int(rng.integers(-(I32_MAX - w), I32_MAX - w + 1)) if rng.random() < 0.3 else 0
        if rng.random() < 0.5:
            scores = centre + rng.integers(-w, w + 1, n)
        else:
            scores = centre + np.clip(np.round(rng.normal(0, w / 3 + 1, n)), -w, w).astype(np.int64)
    keep_p = rng.choice([1.0, 1.0, 0.9, 0.5, 0.1, 0.02])
    keep = rng.random(n) < keep_p
    return scores.astype(np.int64), keep, m_exp, s_exp


def test_softmax_random_rows(nxlib):
    rng = np.random.default_rng(31337)
    rows = 3200
    informative = 0
    for i in range(rows):
        scores, keep, m_exp, s_exp = _random_row(rng)
        want = nx.softmax(scores, keep, m_exp, s_exp)
        got = csim_softmax(scores, keep, m_exp, s_exp)
        if not np.array_equal(got, want):
            j = int(np.flatnonzero(got != want)[0])
            pytest.fail(f"row {i} (n={scores.size}, m_exp={m_exp}, s_exp={s_exp}) differs at {j}: "
                        f"C++ {got[j]} vs NumPy {want[j]}; scores={scores.tolist()} keep={keep.tolist()}")
        informative += np.count_nonzero(want) >= 2
    assert informative > rows // 3, "too few rows with more than one nonzero probability"


def test_softmax_batched_rows(nxlib):
    rng = np.random.default_rng(5)
    scores = rng.integers(-(1 << 16), 1 << 16, (4, 12, 197))
    keep = rng.random(scores.shape) < 0.6
    keep[0, 0] = False  # one all-pruned row inside a batch
    m_exp, s_exp = nx.softmax_params(1e-4)
    got = csim_softmax(scores, keep, m_exp, s_exp)
    assert got.shape == scores.shape and got.dtype == np.uint8
    assert np.array_equal(got, nx.softmax(scores, keep, m_exp, s_exp))
    assert not got[0, 0].any()
    assert np.array_equal(csim_softmax(scores, None, m_exp, s_exp), nx.softmax(scores, None, m_exp, s_exp))


PARAMS = [nx.softmax_params(x) for x in (1e-9, 1e-6, 1e-3, 0.05, 1.0, 1e3)] + [
    (0, 0), (0, 63), (M_MAX, 0), (M_MAX, 63), (1, 0), (1 << 30, 31)]
LENGTHS = [1, 2, 3, 4, 197, 300, 4096]


def _both(scores, keep, m_exp, s_exp):
    got = csim_softmax(scores, keep, m_exp, s_exp)
    want = nx.softmax(scores, keep, m_exp, s_exp)
    assert np.array_equal(got, want), f"n={np.shape(scores)[-1]} m_exp={m_exp} s_exp={s_exp}"
    return got


@pytest.mark.parametrize("m_exp,s_exp", PARAMS)
def test_softmax_extremes(nxlib, m_exp, s_exp):
    rng = np.random.default_rng(m_exp ^ (s_exp << 8))
    for n in LENGTHS:
        for value in (-I32_MAX, I32_MAX, 0):
            p = _both(np.full(n, value), None, m_exp, s_exp)
            # Equal scores: every e is 2^15, p = round(2^15 * floor(2^25 / n) / 2^32 * 2^8 ...), all equal.
            assert len(set(p.tolist())) == 1
            if n in (1, 2, 4):
                assert p[0] == {1: 255, 2: 128, 4: 64}[n]
        nothing = _both(rng.integers(-100, 100, n), np.zeros(n, dtype=bool), m_exp, s_exp)
        assert not nothing.any()
        j = int(rng.integers(0, n))
        single = np.zeros(n, dtype=bool)
        single[j] = True
        p = _both(rng.integers(-I32_MAX, I32_MAX + 1, n), single, m_exp, s_exp)
        assert p[j] == 255 and p.sum() == 255
        hot = np.full(n, -I32_MAX)
        hot[j] = I32_MAX
        p = _both(hot, None, m_exp, s_exp)
        if m_exp > 0 and n > 1 and (M_MAX * m_exp) >> s_exp >= 16 * 256:
            # The others are at least 16 octaves down: e = 0, the hot entry saturates at 255 (not 256).
            assert p[j] == 255 and p.sum() == 255
        _both(rng.integers(-I32_MAX, I32_MAX + 1, n), rng.random(n) < 0.5, m_exp, s_exp)
        _both(rng.integers(-(1 << 12), 1 << 12, n), None, m_exp, s_exp)


def test_softmax_every_lut_entry_and_the_16_octave_cutoff(nxlib):
    # (m_exp, s_exp) = (1, 0) makes u = mx - s exactly, so a row can walk u through every (q, r).
    u = np.arange(4096)
    _both(-u, None, 1, 0)  # q = 0..15, every r: the whole table and every shift
    _both(np.concatenate([[0], -(3840 + u[:4095])]), None, 1, 0)  # q = 15..30
    # q = 15, r = 0 is the last nonzero e (32768 >> 15 = 1): 4095 of them pull the maximum's
    # probability from 255 down to 228 (2^40 / (32768 + 4095) * 32768 / 2^32, rounded).
    row = np.full(4096, -15 * 256)
    row[0] = 0
    assert _both(row, None, 1, 0)[0] == 228
    row[1:] = -16 * 256  # q = 16: e = 0, the maximum takes everything
    assert _both(row, None, 1, 0)[0] == 255


def test_softmax_rejects_rows_too_long_for_the_csim(nxlib):
    with pytest.raises(ValueError, match="4096"):
        csim_softmax(np.zeros(4097, dtype=np.int32), None, 1, 0)
    out = np.zeros((1, 1), dtype=np.uint8)
    zeros = np.zeros((1, 1), dtype=np.int32)
    ones = np.ones((1, 1), dtype=np.uint8)
    assert nxlib.softmax(zeros, ones, 1, 0, 1, 0, out) == -1  # n = 0
    assert nxlib.softmax(zeros, ones, 1, 4097, 1, 0, out) == -1
    assert nxlib.softmax(zeros, ones, 1, 1, -1, 0, out) == -2
    assert nxlib.softmax(zeros, ones, 1, 1, 1, 64, out) == -3
    assert nxlib.softmax_nmax() == csim.SOFTMAX_NMAX


# -- header / Python agreement ---------------------------------------------------------------------

@pytest.mark.parametrize("name", list_configs())
def test_config_hash_compiled_from_header_matches_python(name):
    lib = numerics_library(name)
    assert lib.config_hash32() == load_config(name).hash32
    assert lib.numerics_version() == nx.NUMERICS_VERSION


# -- the harness -----------------------------------------------------------------------------------

def test_bound_function_checks_arguments(nxlib):
    f = nxlib.requantize
    acc = np.arange(8, dtype=np.int32)
    m = np.full(8, 1 << 30, dtype=np.int32)
    s = np.full(8, 31, dtype=np.int32)
    out = np.empty(8, dtype=np.int8)
    assert f(acc, m, s, out, 8) == 0
    assert np.array_equal(out, nx.requantize(acc, m, s))
    with pytest.raises(TypeError, match="'acc'.*float64"):
        f(acc.astype(np.float64), m, s, out, 8)
    with pytest.raises(TypeError, match="'mult'.*int64"):
        f(acc, m.astype(np.int64), s, out, 8)
    with pytest.raises(ValueError, match="'shift'.*contiguous"):
        f(acc, m, np.full(16, 31, dtype=np.int32)[::2], out, 8)
    with pytest.raises(TypeError, match="'acc'.*ndarray"):
        f(list(range(8)), m, s, out, 8)
    ro = np.empty(8, dtype=np.int8)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="'out'.*writeable"):
        f(acc, m, s, ro, 8)
    with pytest.raises(ValueError, match="'n'"):
        f(acc, m, s, out, 1 << 40)
    with pytest.raises(TypeError, match="'n'"):
        f(acc, m, s, out, 8.0)
    with pytest.raises(TypeError, match="5 arguments"):
        f(acc, m, s, out)
    # Range errors the C++ itself reports (ap_uint would silently wrap a negative multiplier).
    assert f(acc, np.full(8, -1, dtype=np.int32), s, out, 8) == -2
    assert f(acc, m, np.full(8, 64, dtype=np.int32), out, 8) == -3
    with pytest.raises(ValueError, match="multiplier"):
        csim_requantize(acc, -1, 0)
    with pytest.raises(TypeError, match="acc"):
        csim_requantize(acc.astype(np.float32), 1, 0)


def _run_python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_cache_reuses_and_recompiles_on_source_change(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    src = tmp_path / "src" / "numerics_copy.cpp"
    src.parent.mkdir()
    shutil.copy(HLS_DIR / "common" / "numerics_capi.cpp", src)

    lib1 = compile_library("cachetest", [src], config="paper")
    assert lib1.compiled and lib1.path.parent == cache and lib1.path.name.startswith("libcachetest_")
    stamp = lib1.path.stat().st_mtime_ns
    lib2 = compile_library("cachetest", [src], config="paper")
    assert not lib2.compiled and lib2.path == lib1.path

    # A fresh process finds the library on disk (no compiler run) and does not import hls4ml to find
    # the ap_types headers.
    proc = _run_python(f"""
        import sys
        from vitaccel.sim.csim import compile_library
        lib = compile_library("cachetest", [{str(src)!r}], config="paper")
        print(lib.compiled, lib.path)
        print("hls4ml" in sys.modules)
    """, {CACHE_ENV: str(cache)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", str(lib1.path), "False"]
    assert lib1.path.stat().st_mtime_ns == stamp

    src.write_text(src.read_text() + "\n// edited: must recompile\n")
    lib3 = compile_library("cachetest", [src], config="paper")
    assert lib3.compiled and lib3.path != lib1.path
    assert lib1.path.exists() and lib3.path.exists()
    # Each library with its recorded digest (checked before every dlopen), and no temporary left behind.
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [lib1.path.name, lib3.path.name, lib1.path.name + ".sha256", lib3.path.name + ".sha256"])
    assert lib3.bind("vitaccel_config_hash32", [], restype=csim.ctypes.c_uint32)() == load_config("paper").hash32


def test_cache_key_covers_headers(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    inc = tmp_path / "inc"
    inc.mkdir()
    (inc / "extra.h").write_text("#define EXTRA 1\n")
    src = tmp_path / "tiny.cpp"
    src.write_text('#include "extra.h"\nextern "C" int tiny(void) { return EXTRA; }\n')
    lib1 = compile_library("tiny", [src], include_dirs=[inc])
    assert lib1.bind("tiny")() == 1
    (inc / "extra.h").write_text("#define EXTRA 2\n")
    lib2 = compile_library("tiny", [src], include_dirs=[inc])
    assert lib2.compiled and lib2.path != lib1.path and lib2.bind("tiny")() == 2
    # Another target is another library too.
    lib3 = compile_library("tiny", [src], include_dirs=[inc], config="zcu104")
    assert lib3.path not in (lib1.path, lib2.path)


def test_compile_error_carries_stderr(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    src = tmp_path / "broken.cpp"
    src.write_text('extern "C" int broken(void) { return undeclared_name; }\n')
    with pytest.raises(CsimCompileError) as ei:
        compile_library("broken", [src])
    assert "undeclared_name" in ei.value.stderr and "error" in ei.value.stderr
    assert list(cache.iterdir()) == []  # no half-written library or temporary left behind


def test_csim_hls_stream(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    src = tmp_path / "streams.cpp"
    src.write_text(textwrap.dedent("""
        #include <hls_stream.h>
        #ifndef VITACCEL_CSIM_HLS_STREAM_H
        #error "picked up another hls_stream.h than hls/include/csim/hls_stream.h"
        #endif
        extern "C" int fifo(void) {
            hls::stream<int> s("s");
            s << 1; s.write(2); s << 3;
            if (s.empty() || s.full() || s.size() != 3) return -1;
            int a, b; s >> a; s.read(b); int c = s.read();
            if (!s.empty() || s.size() != 0) return -2;
            int d = 7; if (s.read_nb(d) || d != 7) return -3;
            return a * 100 + b * 10 + c;
        }
        extern "C" int read_empty(void) { hls::stream<int> s("lonely"); return s.read(); }
    """))
    lib = compile_library("streams", [src])
    assert lib.bind("fifo")() == 123
    proc = _run_python(f"""
        from vitaccel.sim.csim import compile_library
        compile_library("streams", [{str(src)!r}]).bind("read_empty")()
    """, {CACHE_ENV: str(tmp_path / "cache")})
    assert proc.returncode != 0
    assert "lonely" in proc.stderr and "empty" in proc.stderr


def test_unavailable_ap_types_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv(AP_TYPES_ENV, str(tmp_path / "does-not-exist"))
    with pytest.raises(CsimUnavailable, match=r"pip install hls4ml") as ei:
        compile_library("numerics", ["common/numerics_capi.cpp"])
    assert AP_TYPES_ENV in str(ei.value) and "pip install -e '.[dev]'" in str(ei.value)


def test_unavailable_compiler_says_what_to_install():
    with pytest.raises(CsimUnavailable, match=r"apt-get install g\+\+"):
        compile_library("numerics", ["common/numerics_capi.cpp"], cxx="g++-not-installed-here")
