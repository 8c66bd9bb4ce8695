"""Packaging: the package list and the package data are derived from the tree, never listed by hand.

Metadata, dependencies, extras and the folder -> import-root map (``[tool.setuptools.package-dir]``) live in
``pyproject.toml``. This file only walks the mapped folders at build time:

* every directory holding an ``__init__.py`` (below a mapped folder, at any depth) is a package; its import
  name is the mapped root plus the relative path (``sim/common`` -> ``vitaccel.sim.common``). Nested packages
  need no ``package-dir`` entry of their own: setuptools resolves ``vitaccel.sim.common`` to ``sim/common``
  through the longest mapped prefix, and so does the editable install's finder (through the parent's
  ``__path__``), so packages added or moved later are picked up by both without touching this file;
* every file that matches ``DATA_RULES`` is package data of the nearest package above it, so folders
  without an ``__init__.py`` (``hls/include/``, ``models/demo/``) ship as data of that package.
"""
from __future__ import annotations

import glob
import os
from fnmatch import fnmatch
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the copy of tomli that setuptools vendors
    from setuptools.compat.py310 import tomllib

HERE = Path(__file__).resolve().parent

#: Data files the runtime needs, by rule: a folder (relative to the repository root, inside a mapped folder)
#: -> the file patterns shipped from it and from every folder below it.
DATA_RULES = {
    "configs": ["*.json"],                              # one JSON file per hardware target
    "hls": ["*.h", "*.hpp", "*.cpp", "*.md", "*.tcl"],  # compiled by the C-simulation harness
    "models/demo": ["*.vcb", "*.npz", "*.json", "*.png"],  # the demo bundle; not the .pth checkpoints
}


def _walk(top: Path):
    """``os.walk`` below ``top`` (sorted, deterministic), without ``__pycache__``, hidden and egg-info folders."""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames
                             if d != "__pycache__" and not d.startswith(".") and not d.endswith(".egg-info"))
        yield Path(dirpath), sorted(filenames)


def package_dirs(root: Path = HERE) -> dict[str, str]:
    """``[tool.setuptools.package-dir]`` of pyproject.toml: import root -> folder (relative to ``root``)."""
    with open(root / "pyproject.toml", "rb") as f:
        return dict(tomllib.load(f)["tool"]["setuptools"]["package-dir"])


def find_packages_in_tree(root: Path = HERE) -> dict[str, Path]:
    """Every package below the mapped folders: import name -> its directory."""
    found: dict[str, Path] = {}
    for top_name, folder in package_dirs(root).items():
        top = root / folder
        if not (top / "__init__.py").is_file():
            raise SystemExit(f"setup.py: {top} is mapped to {top_name!r} but has no __init__.py")
        for d, files in _walk(top):
            if "__init__.py" not in files:
                continue
            parts = d.relative_to(top).parts
            bad = [p for p in parts if not p.isidentifier()]
            if bad:
                raise SystemExit(f"setup.py: {d} holds an __init__.py but {bad[0]!r} is not a valid package name")
            name = ".".join((top_name, *parts))
            if name in found and found[name] != d:
                raise SystemExit(f"setup.py: package {name!r} is both {found[name]} and {d}")
            found[name] = d
    return found


def find_package_data(packages: dict[str, Path], root: Path = HERE) -> dict[str, list[str]]:
    """The files matching ``DATA_RULES``, each as data of the nearest package above it."""
    by_dir = {d: name for name, d in packages.items()}
    data: dict[str, list[str]] = {}
    for folder, patterns in DATA_RULES.items():
        top = root / folder
        if not top.is_dir():
            raise SystemExit(f"setup.py: data folder {top} does not exist (update DATA_RULES)")
        for d, files in _walk(top):
            for fn in files:
                if not any(fnmatch(fn, p) for p in patterns):
                    continue
                path = d / fn
                owner = path.parent
                while owner not in by_dir:
                    if owner == root or owner.parent == owner:
                        raise SystemExit(f"setup.py: {path} matches DATA_RULES but is in no package")
                    owner = owner.parent
                rel = path.relative_to(owner).as_posix()
                data.setdefault(by_dir[owner], []).append(glob.escape(rel))
    return data


class build_py_pruned(build_py):
    """``build_py`` that also removes what an earlier build left in ``build/lib`` and this tree no longer has.

    setuptools never cleans ``build/lib``, so after a module or data file is moved or deleted, a wheel built
    in the same checkout would still ship the old copy.
    """

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        keep = {os.path.normpath(p) for p in self.get_outputs(include_bytecode=True)}
        for top in sorted({name.split(".")[0] for name in self.packages or ()}):
            for d, _subdirs, files in reversed(list(os.walk(os.path.join(self.build_lib, top)))):
                for fn in files:
                    path = os.path.normpath(os.path.join(d, fn))
                    if path not in keep:
                        os.remove(path)
                if not os.listdir(d):
                    os.rmdir(d)


_PACKAGES = find_packages_in_tree()

setup(
    packages=sorted(_PACKAGES),
    package_data=find_package_data(_PACKAGES),
    cmdclass={"build_py": build_py_pruned},
)
