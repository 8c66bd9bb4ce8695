"""The built wheel installs into a fresh venv without torch and runs from outside the checkout.

Every other test runs on the editable install, which resolves the tree directly, so a package or data file
that packaging forgets to ship goes unnoticed there. This test builds the wheel (from a snapshot of the
checkout), installs it into a new virtual environment (no system site packages, no torch), and checks:

* the wheel (and the installed package) holds every ``.py`` module of every ``__init__.py``-bearing folder
  under the folders mapped in ``[tool.setuptools.package-dir]``, and the runtime's data files (configs,
  HLS sources, the demo bundle, but not the ``.pth`` checkpoints);
* ``import torch`` fails there, and ``vitaccel`` is imported from the venv;
* ``vitaccel info --json`` and ``vitaccel run --limit 8`` work from a directory outside the checkout, and
  ``run`` names no path of the checkout.

It skips only when ``venv`` or pip is unavailable; a failed build or install fails.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the tomli that pip vendors
    from pip._vendor import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]

#: What the runtime needs besides the modules: a folder (relative to the repository root) -> the file
#: patterns shipped from it at any depth. Written here independently of setup.py's rules on purpose.
DATA_RULES = {
    "configs": ("*.json",),
    "hls": ("*.h", "*.hpp", "*.cpp", "*.md", "*.tcl"),
    "models/demo": ("*.vcb", "*.npz", "*.json", "*.png"),
}

#: Not copied into the snapshot the wheel is built from: VCS data, virtual environments and build outputs.
_ROOT_SKIP = {".git", ".venv", ".venv-bench", "build", "dist", "out"}
_ANY_SKIP = {"__pycache__", ".pytest_cache", ".hypothesis", ".ipynb_checkpoints"}


def _tail(text: str | bytes | None, n: int = 3000) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return text[-n:]


def _env(extra_path: Path | None = None) -> dict:
    """The environment without anything that would point an interpreter back at the checkout's venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")}
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    if extra_path is not None:
        env["PATH"] = str(extra_path) + os.pathsep + env.get("PATH", "")
    return env


def _run(cmd, *, cwd: Path, timeout: float, what: str, env: dict | None = None,
         check: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(c) for c in cmd]
    try:
        proc = subprocess.run(cmd, cwd=str(cwd), env=env or _env(), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{what} timed out after {timeout:.0f} s: {' '.join(cmd)}\n"
                    f"--- stderr (tail) ---\n{_tail(e.stderr)}\n--- stdout (tail) ---\n{_tail(e.stdout)}")
    if check and proc.returncode != 0:
        pytest.fail(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                    f"--- stderr (tail) ---\n{_tail(proc.stderr)}\n--- stdout (tail) ---\n{_tail(proc.stdout)}")
    return proc


def _outputs(proc: subprocess.CompletedProcess) -> str:
    return f"--- stderr (tail) ---\n{_tail(proc.stderr)}\n--- stdout (tail) ---\n{_tail(proc.stdout)}"


def _snapshot(dst: Path) -> Path:
    """A copy of the checkout to build from.

    Building in place would write build/ and *.egg-info into the checkout (and race with another run of this
    test), and setuptools reuses build/lib; a copy keeps the checkout untouched and the build fresh. The tree
    may be restructured while we copy, so a file that vanished mid-copy means: copy again.
    """
    def ignore(d, names):
        skip = {n for n in names if n in _ANY_SKIP or n.endswith(".egg-info")}
        if Path(d).resolve() == REPO:
            skip |= {n for n in names if n in _ROOT_SKIP or n.startswith(".venv")}
        return skip

    last = None
    for _ in range(3):
        shutil.rmtree(dst, ignore_errors=True)
        try:
            shutil.copytree(REPO, dst, ignore=ignore, symlinks=True)
            return dst
        except (shutil.Error, FileNotFoundError) as e:
            last = e
    pytest.fail(f"could not copy the checkout {REPO} to build from (it kept changing): {_tail(str(last))}")


def _walk(top: Path):
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames
                             if d != "__pycache__" and not d.startswith(".") and not d.endswith(".egg-info"))
        yield Path(dirpath), filenames


def _package_dir(src: Path) -> dict:
    with open(src / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]["package-dir"]


def _dest(src: Path, mapping: dict, path: Path) -> str:
    """Where a file of the tree lands in the wheel (``sim/common/gemm.py`` -> ``vitaccel/sim/common/gemm.py``)."""
    rel = path.relative_to(src)
    best = None
    for name, folder in mapping.items():
        parts = Path(folder).parts
        if rel.parts[:len(parts)] == parts and (best is None or len(parts) > len(best[1])):
            best = (name, parts)
    assert best is not None, f"{rel} is in no mapped folder"
    name, parts = best
    return str(PurePosixPath(*name.split("."), *rel.parts[len(parts):]))


def _expected_modules(src: Path, mapping: dict) -> set:
    out = set()
    for folder in mapping.values():
        for d, files in _walk(src / folder):
            if "__init__.py" in files:
                out |= {_dest(src, mapping, d / f) for f in files if f.endswith(".py")}
    return out


def _expected_data(src: Path, mapping: dict) -> set:
    out = set()
    for folder, patterns in DATA_RULES.items():
        for d, files in _walk(src / folder):
            out |= {_dest(src, mapping, d / f) for f in files if any(Path(f).match(p) for p in patterns)}
    return out


def _require_venv_and_pip() -> None:
    if importlib.util.find_spec("venv") is None:
        pytest.skip(f"the venv module is not available in {sys.executable}")
    if importlib.util.find_spec("ensurepip") is None:
        pytest.skip(f"ensurepip is not available in {sys.executable}: venv cannot install pip into a new env")
    proc = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True, env=_env(),
                          timeout=120)
    if proc.returncode != 0:
        pytest.skip(f"pip is not available for {sys.executable}: {_tail(proc.stderr, 500)}")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Build the wheel, install it into a fresh venv; the paths and file lists the tests check."""
    _require_venv_and_pip()
    base = tmp_path_factory.mktemp("wheel")
    src = _snapshot(base / "src")
    wheel_dir = base / "wheelhouse"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", wheel_dir, src], cwd=base, timeout=300,
         what="building the wheel")
    wheels = sorted(wheel_dir.glob("vitaccel-*.whl"))
    assert len(wheels) == 1, f"expected one vitaccel wheel in {wheel_dir}, found {[w.name for w in wheels]}"

    venv = base / "venv"
    proc = _run([sys.executable, "-m", "venv", venv], cwd=base, timeout=180, what="creating a venv", check=False)
    if proc.returncode != 0:
        if "ensurepip" in (proc.stderr + proc.stdout):
            pytest.skip(f"venv cannot install pip here: {_tail(proc.stderr, 500)}")
        pytest.fail(f"creating a venv failed (exit {proc.returncode})\n{_outputs(proc)}")
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    exe = ".exe" if os.name == "nt" else ""
    python = bindir / f"python{exe}"
    env = _env(extra_path=bindir)
    _run([python, "-m", "pip", "install", wheels[0]], cwd=base, timeout=300, env=env,
         what="installing the wheel (with numpy and tqdm from the index)")
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=base, timeout=60, env=env, what="asking the venv for site-packages").stdout.strip())
    work = base / "elsewhere"  # outside the checkout and the snapshot
    work.mkdir()
    mapping = _package_dir(src)
    return {
        "src": src, "wheel": wheels[0], "python": python, "vitaccel": bindir / f"vitaccel{exe}", "env": env,
        "purelib": purelib, "work": work,
        "names": set(zipfile.ZipFile(wheels[0]).namelist()),
        "modules": _expected_modules(src, mapping), "data": _expected_data(src, mapping),
    }


def test_wheel_ships_every_module(installed):
    modules = installed["modules"]
    assert "vitaccel/__init__.py" in modules and "vitaccel/sim/__init__.py" in modules, sorted(modules)[:20]
    missing = sorted(modules - installed["names"])
    assert not missing, (f"{len(missing)} module(s) of the tree are not in {installed['wheel'].name}: "
                         f"{', '.join(missing)}")
    not_installed = sorted(m for m in modules if not (installed["purelib"] / m).is_file())
    assert not not_installed, f"not installed into {installed['purelib']}: {', '.join(not_installed)}"


def test_wheel_ships_runtime_data(installed):
    data = installed["data"]
    for must in ("vitaccel/models/demo/demo.vcb", "vitaccel/models/demo/test_images.npz"):
        assert must in data, f"{must} is not in the tree (DATA_RULES found {sorted(data)})"
    assert any(d.startswith("vitaccel/configs/") for d in data), "no configs/*.json in the tree"
    assert any(d.startswith("vitaccel/hls/") for d in data), "no HLS sources in the tree"
    missing = sorted(data - installed["names"])
    assert not missing, (f"{len(missing)} data file(s) the runtime needs are not in {installed['wheel'].name}: "
                         f"{', '.join(missing)}")
    not_installed = sorted(d for d in data if not (installed["purelib"] / d).is_file())
    assert not not_installed, f"not installed into {installed['purelib']}: {', '.join(not_installed)}"
    checkpoints = sorted(n for n in installed["names"] if n.endswith(".pth"))
    assert not checkpoints, f"the wheel ships training checkpoints: {', '.join(checkpoints)}"


def test_installed_without_torch(installed):
    proc = _run([installed["python"], "-c", "import torch"], cwd=installed["work"], timeout=60,
                env=installed["env"], what="import torch", check=False)
    assert proc.returncode != 0, "torch is importable in the fresh venv: the wheel must not pull it in"
    assert "torch" in proc.stderr, _outputs(proc)
    proc = _run([installed["python"], "-c", "import vitaccel, vitaccel.sim; print(vitaccel.__file__)"],
                cwd=installed["work"], timeout=60, env=installed["env"], what="import vitaccel")
    where = Path(proc.stdout.strip()).resolve()
    assert installed["purelib"].resolve() in where.parents, f"vitaccel imported from {where}, not the venv"


def test_info_json_outside_checkout(installed):
    proc = _run([installed["vitaccel"], "info", "--json"], cwd=installed["work"], timeout=120,
                env=installed["env"], what="vitaccel info --json")
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        pytest.fail(f"vitaccel info --json did not print JSON ({e})\n{_outputs(proc)}")
    names = [c.get("name") for c in doc.get("configs", [])]
    shipped = {p.stem for p in (installed["src"] / "configs").rglob("*.json")}
    assert names, f"vitaccel info --json names no configs\n{_outputs(proc)}"
    assert set(names) <= shipped, f"configs {sorted(set(names) - shipped)} are not in configs/\n{_outputs(proc)}"


def test_run_demo_outside_checkout(installed):
    proc = _run([installed["vitaccel"], "run", "--limit", "8"], cwd=installed["work"], timeout=300,
                env=installed["env"], what="vitaccel run --limit 8")
    assert re.search(r"^top-1\s+\d+(\.\d+)?%", proc.stdout, re.M), f"no top-1 line\n{_outputs(proc)}"
    out = proc.stdout + proc.stderr
    for tree in (REPO, installed["src"]):
        assert str(tree) not in out, f"vitaccel run used files of {tree}, not of the installed package\n" \
                                     f"{_outputs(proc)}"


def test_run_revit_demo_outside_checkout(installed):
    """The ReViT demo too: its bundle, its host compiler and the ReViT simulator ship in the wheel."""
    proc = _run([installed["vitaccel"], "run", "--demo", "revit", "--limit", "3"], cwd=installed["work"], timeout=300,
                env=installed["env"], what="vitaccel run --demo revit --limit 3")
    assert re.search(r"^top-1\s+\d+(\.\d+)?%", proc.stdout, re.M), f"no top-1 line\n{_outputs(proc)}"
    assert "revit-paper" in proc.stdout and "per image" in proc.stdout, _outputs(proc)
    out = proc.stdout + proc.stderr
    for tree in (REPO, installed["src"]):
        assert str(tree) not in out, f"vitaccel run used files of {tree}, not of the installed package\n" \
                                     f"{_outputs(proc)}"
