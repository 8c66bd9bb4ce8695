"""The accelerator registry (vitaccel/accelerators.py) is the one list of accelerators, kernels and backends:
every name a spec gives resolves, and no other product file lists them again."""
import re
from pathlib import Path

import pytest

from vitaccel import accelerators
from vitaccel.hls import HLS_DIR

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("spec", list(accelerators.ACCELERATORS.values()), ids=lambda s: s.name)
def test_every_name_a_spec_gives_resolves(spec):
    for attr in ("compiler", "top_model", "csim_library", "check"):
        assert callable(spec.load(attr)), attr
    isa = spec.load("isa").ISA
    assert isa.accelerator == spec.name
    assert (HLS_DIR / spec.top_source).is_file()
    assert spec.vlnv.split(":")[2] == spec.hls_top
    for src in spec.csim_sources:
        assert (HLS_DIR / src).is_file(), src
    for d in spec.include_dirs:
        assert (HLS_DIR / d).is_dir(), d
    for k in spec.kernels:
        folder = HLS_DIR / k.hls_dir
        assert (folder / f"{k.name}_top.cpp").is_file() and (folder / f"{k.name}_tb.cpp").is_file(), k
        module, _, fn = k.golden.partition(":")
        assert callable(getattr(__import__(module, fromlist=[fn]), fn)), k.golden
    assert set(spec.gemm_array) <= {f.name for f in spec.section}
    # The ISA's status codes are documented in the accelerator's DESCRIPTOR.md (generated table).
    doc = (HLS_DIR / Path(spec.top_source).parent / "DESCRIPTOR.md").read_text()
    for s in isa.status:
        assert f"| 0x{s.code:03x} |" in doc


def test_backends_come_from_the_registry():
    from vitaccel.cli import build_parser
    from vitaccel.host import backend
    from vitaccel.host.accelerator import BACKEND_CHOICES
    from vitaccel.host.emulated import ENGINES

    assert backend.BACKENDS is accelerators.BACKENDS
    assert BACKEND_CHOICES == tuple(accelerators.BACKENDS)
    assert ENGINES == accelerators.EMULATED_BACKENDS and set(ENGINES) < set(accelerators.BACKENDS)
    run = next(a for a in build_parser()._subparsers._group_actions[0].choices["run"]._actions
               if a.dest == "backend")
    assert tuple(run.choices) == tuple(accelerators.BACKENDS)


def test_pynq_binds_every_registered_ip(monkeypatch):
    import fake_pynq

    fake_pynq.install(monkeypatch)
    from vitaccel.host.pynq_backend import pynq_classes

    assert pynq_classes()[0].bindto == [s.vlnv for s in accelerators.ACCELERATORS.values()]


# Literal lists that must exist only in the registry: the kernels, and the backends.
_KERNEL_LIST = re.compile(r"""["']?gemm["']?[\s,]+["']?autoencoder["']?[\s,]+["']?attention""")
_BACKEND_LIST = re.compile(r"""["'](auto|pynq)["']\s*,\s*["'](pynq|sim)["']""")


def test_no_other_product_file_lists_kernels_or_backends():
    files = [p for top in ("vitaccel", "sim", "host", "models") for p in (ROOT / top).rglob("*.py")]
    files += [ROOT / "build.tcl", *sorted((ROOT / "overlay").glob("*.tcl"))]
    offenders = []
    for p in files:
        if p.name == "accelerators.py" or p.name == "accelerators.tcl":
            continue
        text = p.read_text()
        if _KERNEL_LIST.search(text) or _BACKEND_LIST.search(text):
            offenders.append(str(p.relative_to(ROOT)))
    assert not offenders, f"these list kernels or backends again; read vitaccel.accelerators instead: {offenders}"
