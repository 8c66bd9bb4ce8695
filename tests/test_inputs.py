"""Hostile inputs to the CLI and the host API (issue 15, part A): timeouts, image files, pixels, labels,
normalisation options, batching of `vitaccel sim --images`, and the messages of bounded options.

Every refusal is exit code 2 with a one-line message naming the file, the option or the field (and the
allowed range), never a traceback; sizes are checked before anything is allocated.
"""
from __future__ import annotations

import json
import math
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest

from vitaccel.cli import main
from vitaccel.host.bundle import write_bundle
from vitaccel.testing import random_bundle


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Tuple[str, object]:
    b = random_bundle(seed=2, depth=1)          # 16x16 RGB, 10 classes
    path = tmp_path_factory.mktemp("b") / "m.vcb"
    write_bundle(path, b)
    return str(path), b


def cli(argv: List[str], capsys) -> Tuple[int, str, str]:
    """main(argv) -> (exit code, stdout, stderr); argparse's own exit counts as a return."""
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse refuses an option value
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str, *needles: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("usage:")
             and not ln.startswith(" ")]
    errors = [ln for ln in lines if "warning" not in ln]
    assert len(errors) == 1, err
    for n in needles:
        assert n in errors[0], (n, err)
    return errors[0]


def imgs(b, n: int, seed: int = 0) -> np.ndarray:
    m = b.model
    return np.random.default_rng(seed).normal(size=(n, m.in_chans, m.img_size, m.img_size)).astype(np.float32)


# -- 1. timeouts ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1"])
def test_cli_timeout_must_be_finite_positive(small, tmp_path, capsys, value):
    path, b = small
    np.save(tmp_path / "x.npy", imgs(b, 1))
    rc, _, err = cli(["run", "--bundle", path, "--images", str(tmp_path / "x.npy"), f"--timeout={value}",
                      "--no-progress"], capsys)
    assert rc == 2
    one_line_error(err, "--timeout", value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 0.0, -1.0])
def test_api_timeout_must_be_finite_positive(small, value):
    _path, b = small
    from vitaccel.host.accelerator import Accelerator

    with pytest.raises(ValueError, match="timeout_s"):
        Accelerator(b, backend="sim", timeout_s=value)


# -- 4. image files -------------------------------------------------------------------------------------

def _huge_npy(path: Path) -> None:
    """A ~200-byte .npy whose header claims (2^36, 3, 16, 16) float32: 211 TB."""
    header = {"descr": "<f4", "fortran_order": False, "shape": (1 << 36, 3, 16, 16)}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 64)


def png_bytes(width: int, height: int, idat: bytes = b"") -> bytes:
    """A grayscale PNG whose IHDR claims width x height (the pixel data may be short: nothing decodes it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(idat or b"\0" * 64))
            + chunk(b"IEND", b""))


def _bad_files(tmp: Path) -> dict:
    (tmp / "empty.npy").write_bytes(b"")
    (tmp / "empty.npz").write_bytes(b"")
    (tmp / "garbage.npz").write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    np.save(tmp / "zerod.npy", np.float32(1.0))
    _huge_npy(tmp / "huge.npy")
    (tmp / "bomb.png").write_bytes(png_bytes(20000, 20000))        # 400 Mpx: over PIL's own bomb limit too
    (tmp / "big.png").write_bytes(png_bytes(9000, 9000))           # 81 Mpx: under PIL's, over ours
    (tmp / "notpng.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    np.save(tmp / "objects.npy", np.zeros((1, 3, 16, 16), np.float32))
    raw = (tmp / "objects.npy").read_bytes().replace(b"'<f4'", b"'|O8'")  # an object dtype header
    (tmp / "objects.npy").write_bytes(raw)
    np.save(tmp / "short.npy", np.zeros((4, 3, 16, 16), np.float32))
    (tmp / "short.npy").write_bytes((tmp / "short.npy").read_bytes()[:-100])   # truncated data
    np.savez(tmp / "noimages.npz", x=np.zeros(3))
    np.savez(tmp / "zero.npz", images=np.zeros((0, 3, 16, 16), np.float32))
    os.mkfifo(tmp / "fifo.npy")
    return {
        "empty.npy": "empty.npy", "empty.npz": "empty.npz", "garbage.npz": "garbage.npz",
        "zerod.npy": "shape ()", "huge.npy": "limit", "bomb.png": "pixels", "big.png": "pixels",
        "notpng.png": "notpng.png", "objects.npy": "objects.npy", "short.npy": "truncated",
        "noimages.npz": "no 'images'", "zero.npz": "no images", "fifo.npy": "not a regular file",
    }


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", ["run", "sim"])
def test_bad_image_files_exit_2_naming_the_file(small, tmp_path, capsys, command):
    path, _b = small
    cases = _bad_files(tmp_path)
    for name, needle in cases.items():
        f = str(tmp_path / name)
        argv = (["run", "--bundle", path, "--images", f, "--no-progress"] if command == "run"
                else ["sim", path, "--images", f])
        rc, _, err = cli(argv, capsys)
        assert rc == 2, (name, err)
        line = one_line_error(err, name)
        assert needle in line, (name, line)
    # the pixel limit is stated before anything is decoded
    from vitaccel.host.run import MAX_IMAGE_PIXELS, MAX_ARRAY_BYTES

    rc, _, err = cli(["sim", path, "--images", str(tmp_path / "bomb.png")], capsys)
    assert f"{MAX_IMAGE_PIXELS:,}" in err
    rc, _, err = cli(["sim", path, "--images", str(tmp_path / "huge.npy")], capsys)
    assert f"{MAX_ARRAY_BYTES:,}" in err


def test_huge_npy_is_refused_before_allocating(tmp_path):
    """Under a 1 GiB address-space limit the header check must refuse, not try the allocation."""
    _huge_npy(tmp_path / "huge.npy")
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
            "from vitaccel.host.run import load_images\n"
            "try:\n    load_images(sys.argv[1], size=16, chans=3)\nexcept ValueError as e:\n"
            "    print('refused:', e); sys.exit(0)\nsys.exit(1)\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "huge.npy")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "huge.npy" in r.stdout and "limit" in r.stdout


def test_zip_bomb_npz_member_is_refused_by_its_header(tmp_path):
    """An .npz whose images.npy member claims a huge array is refused from the member's header."""
    import zipfile

    from vitaccel.host.run import load_images

    with zipfile.ZipFile(tmp_path / "z.npz", "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("images.npy", "w", force_zip64=True) as m:
            np.lib.format.write_array_header_1_0(m, {"descr": "<f4", "fortran_order": False,
                                                     "shape": (1 << 30, 3, 16, 16)})
            m.write(b"\0" * 4096)
    with pytest.raises(ValueError, match="z.npz.*limit"):
        load_images(str(tmp_path / "z.npz"), size=16, chans=3)


# -- 5. pixels, labels, normalisation -------------------------------------------------------------------

@pytest.mark.parametrize("bad,needle", [("nan", "NaN"), ("inf", "inf"), ("complex", "complex")])
def test_non_finite_or_complex_pixels_are_refused(small, tmp_path, capsys, bad, needle):
    path, b = small
    x = imgs(b, 4)
    if bad == "complex":
        x = x.astype(np.complex64)
        x[2, 0, 0, 0] += 1j
    else:
        x[2, 1, 3, 4] = np.nan if bad == "nan" else np.inf
    np.save(tmp_path / "x.npy", x)
    for argv in (["run", "--bundle", path, "--images", str(tmp_path / "x.npy"), "--no-progress"],
                 ["sim", path, "--images", str(tmp_path / "x.npy")]):
        rc, _, err = cli(argv, capsys)
        assert rc == 2, err
        line = one_line_error(err, "x.npy", needle)
        if bad != "complex":
            assert "image 2" in line


def test_api_refuses_nan_images_naming_the_index(small):
    _path, b = small
    from vitaccel.host.accelerator import Accelerator

    x = imgs(b, 3)
    x[1] = np.nan
    with Accelerator(b, backend="sim") as acc:
        with pytest.raises(ValueError, match="image 1"):
            acc.run(x, progress=False)
        with pytest.raises(ValueError, match="complex"):
            acc.run(x.astype(np.complex64), progress=False)


def test_far_out_of_range_pixels_warn_with_the_factor(small, tmp_path, capsys):
    path, b = small
    x = imgs(b, 3)
    x[1, 0, 0, 0] = 1e3                                     # raw pixels, say: runs, with a warning
    np.save(tmp_path / "x.npy", x)
    rc, out, err = cli(["sim", path, "--images", str(tmp_path / "x.npy"), "--json"], capsys)
    assert rc == 0, err
    warn = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warn) == 1 and "x.npy" in warn[0] and "1e+03" in warn[0] and "100 times" in warn[0], err
    x[2, 0, 0, 0] = 1e30                                    # would overflow the float32 glue: refused
    np.save(tmp_path / "x.npy", x)
    for argv in (["sim", path, "--images", str(tmp_path / "x.npy"), "--json"],
                 ["run", "--bundle", path, "--images", str(tmp_path / "x.npy"), "--json"]):
        rc, out, err = cli(argv, capsys)
        assert rc == 2, err
        one_line_error(err, "x.npy", "image 2", "1e+30", "1e+29 times", "overflow")
    x[1:, 0, 0, 0] = 2.5                                    # ordinary normalised values: no warning
    np.save(tmp_path / "x.npy", x)
    rc, out, err = cli(["sim", path, "--images", str(tmp_path / "x.npy"), "--json"], capsys)
    assert rc == 0 and "warning" not in err, err


@pytest.mark.parametrize("labels,needle", [
    (np.array([[0], [1], [2], [3]]), "(4, 1)"),
    (np.array(["0", "1", "2", "3"]), "integer"),
    (np.array([0.0, 1.0, 2.0, 3.0]), "integer"),
    (np.array([True, False, True, False]), "integer"),
    (np.array([0, 1, 2]), "3 labels for 4 images"),
    (np.array([0, 1, 2, 10]), "[0, 10)"),
    (np.array([0, 1, -1, 3]), "[0, 10)"),
])
def test_labels_must_be_1d_integers_of_the_right_length(small, tmp_path, capsys, labels, needle):
    path, b = small
    np.savez(tmp_path / "i.npz", images=imgs(b, 4), labels=labels)
    for argv in (["run", "--bundle", path, "--images", str(tmp_path / "i.npz"), "--no-progress"],
                 ["sim", path, "--images", str(tmp_path / "i.npz")]):
        rc, _, err = cli(argv, capsys)
        assert rc == 2, err
        one_line_error(err, "i.npz", "labels", needle)


def test_api_refuses_column_labels(small):
    _path, b = small
    from vitaccel.host.accelerator import Accelerator

    with Accelerator(b, backend="sim") as acc:
        with pytest.raises(ValueError, match=r"\(3, 1\)"):
            acc.run(imgs(b, 3), np.zeros((3, 1), np.int64), progress=False)
        res = acc.run(imgs(b, 3), np.array([0, 1, 2]), progress=False)
        assert res.report.top1 is not None


@pytest.mark.parametrize("opt,value", [("--std", "0"), ("--std", "-1"), ("--std", "inf"), ("--std", "nan"),
                                       ("--mean", "nan"), ("--mean", "inf")])
def test_mean_std_values_are_checked(small, tmp_path, capsys, opt, value):
    pil = pytest.importorskip("PIL.Image")
    path, _b = small
    pil.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "a.png")
    other = "--mean" if opt == "--std" else "--std"
    rc, _, err = cli(["run", "--bundle", path, "--images", str(tmp_path / "a.png"), f"{opt}={value}", other,
                      "0.5", "--no-progress"], capsys)
    assert rc == 2
    one_line_error(err, opt, value)


def test_mean_std_with_arrays_is_refused(small, tmp_path, capsys):
    path, b = small
    np.save(tmp_path / "x.npy", imgs(b, 1))
    rc, _, err = cli(["run", "--bundle", path, "--images", str(tmp_path / "x.npy"), "--mean", "0.5",
                      "--std", "0.25", "--no-progress"], capsys)
    assert rc == 2
    one_line_error(err, "--mean/--std", "x.npy", "image files")


# -- 6. `vitaccel sim --images` runs in bounded batches -------------------------------------------------

def test_sim_images_run_in_batches(small, tmp_path, capsys, monkeypatch):
    from vitaccel.host.run import EMULATED_BATCH
    from vitaccel.sim.vitcod import model as M

    path, b = small
    x = imgs(b, 2 * EMULATED_BATCH + 5, seed=4)
    np.save(tmp_path / "x.npy", x)
    want = M.forward(M.compile_program(b), x).argmax(1).tolist()
    sizes: List[int] = []
    real = M.forward_int

    def spy(prog, rows8, *a, **k):
        sizes.append(len(rows8))
        return real(prog, rows8, *a, **k)

    monkeypatch.setattr(M, "forward_int", spy)
    rc, out, err = cli(["sim", path, "--images", str(tmp_path / "x.npy"), "--json"], capsys)
    assert rc == 0, err
    assert sizes and max(sizes) <= EMULATED_BATCH and sum(sizes) == len(x), sizes
    assert json.loads(out)["images"]["predictions"] == want


# -- 14. messages of bounded options --------------------------------------------------------------------

def _limited(argv: List[str]) -> subprocess.CompletedProcess:
    """The CLI in a child under a 3 GiB address-space limit (a regression must fail, not eat the machine)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    return subprocess.run([sys.executable, "-m", "vitaccel", *argv], capture_output=True, text=True, timeout=120,
                          preexec_fn=limit)


def test_selfcheck_cases_are_bounded():
    from vitaccel.sim.selfcheck import MAX_CASES

    r = _limited(["selfcheck", "--no-csim", "--cases", "100000000"])
    assert r.returncode == 2, r.stderr
    one_line_error(r.stderr, "--cases", f"{MAX_CASES}")
    with pytest.raises(ValueError, match="cases"):
        from vitaccel.sim import selfcheck

        selfcheck.run(cases=10 ** 8, seed=0, csim=False, config="paper")


@pytest.mark.parametrize("argv,opt", [
    (["selfcheck", "--no-csim", "--seed", "-1"], "--seed"),
    (["selfcheck", "--no-csim", "--cases", "0"], "--cases"),
    (["run", "--batch-size", "0"], "--batch-size"),
    (["run", "--limit", "-3"], "--limit"),
])
def test_integer_options_name_themselves(capsys, argv, opt):
    rc, _, err = cli(argv, capsys)
    assert rc == 2
    one_line_error(err, opt)


def test_non_utf8_config_file_is_named(tmp_path, capsys):
    bad = tmp_path / "latin.json"
    bad.write_bytes(b'{"name": "caf\xe9"}')
    rc, _, err = cli(["info", "--config", str(bad)], capsys)
    assert rc == 2
    one_line_error(err, str(bad), "UTF-8")
