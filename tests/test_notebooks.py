"""The notebooks in notebooks/: committed exactly as notebooks/_build.py writes them, without outputs, and
each one executes top to bottom in a Jupyter kernel (nbclient) on the simulator backend.

The kernel is this interpreter: a kernelspec naming ``sys.executable`` is written to a temporary
JUPYTER_PATH, which Jupyter searches before the user's and the system's kernelspecs. A stray "python3"
kernelspec elsewhere on the machine therefore cannot run the notebooks in a Python without vitaccel.
"""
from __future__ import annotations

import importlib.util
import json
import re
import sys
import time
from pathlib import Path

import pytest

from vitaccel.hwconfig import REPO_ROOT

NB_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
KERNEL = "python3"

#: Wall-clock budget for one notebook, from its first cell to its last (kernel start not included).
#: Each runs in well under a minute on one core; the budget only turns a hang into a failure.
BUDGET_S = {"vitcod_walkthrough.ipynb": 240.0, "board_quickstart.ipynb": 240.0, "revit_walkthrough.ipynb": 240.0}
DEFAULT_BUDGET_S = 240.0
#: Notebooks that take more than about 90 s: run with `make test-all` only. None does today.
SLOW: set = set()

nbformat = pytest.importorskip("nbformat", reason="nbformat is in the dev extra")

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _load_builder():
    spec = importlib.util.spec_from_file_location("notebooks_build", NB_DIR / "_build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"board_quickstart.ipynb", "vitcod_walkthrough.ipynb",
                                           "revit_walkthrough.ipynb"}


def test_notebooks_are_generated_and_clean():
    build = _load_builder()
    assert {p.name for p in NOTEBOOKS} == set(build.NOTEBOOKS), (
        "every notebooks/*.ipynb must come from a cell list in notebooks/_build.py, and every list must be written")
    stale = [name for name, cells in build.NOTEBOOKS.items() if (NB_DIR / name).read_text() != build.render(cells)]
    assert not stale, f"stale notebooks {stale}: run `python notebooks/_build.py` and commit the result"
    for p in NOTEBOOKS:
        nb = nbformat.read(p, as_version=4)
        nbformat.validate(nb)
        for i, c in enumerate(nb.cells):
            if c.cell_type == "code":
                assert not c.outputs and c.execution_count is None, f"{p.name} cell {i} carries outputs"


@pytest.fixture(scope="session")
def kernelspec_root(tmp_path_factory) -> Path:
    """A Jupyter data folder whose "python3" kernelspec runs ipykernel in this interpreter."""
    pytest.importorskip("ipykernel", reason="ipykernel is in the dev extra")
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "data" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python {sys.version_info.major}.{sys.version_info.minor} (vitaccel tests)",
        "language": "python",
    }))
    return root


@pytest.fixture
def this_python_kernel(kernelspec_root: Path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(kernelspec_root / "data"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(kernelspec_root / "runtime"))  # connection files, not in $HOME
    monkeypatch.setenv("IPYTHONDIR", str(kernelspec_root / "ipython"))  # a fresh profile: no user startup files
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the notebooks run on one thread


def _failure(name: str, err: Exception) -> str:
    # nbclient's message holds the cell's source and the traceback; drop the terminal colour codes.
    return f"{name} failed:\n{_ANSI.sub('', str(err))}"


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.name in SLOW else [])
                                  for p in NOTEBOOKS])
def test_notebook_executes(path: Path, tmp_path, this_python_kernel):
    nbclient = pytest.importorskip("nbclient", reason="nbclient is in the dev extra")
    if "walkthrough" in path.name:
        pytest.importorskip("torch", reason="the walk-through needs torch (the models extra)")
    nb = nbformat.read(path, as_version=4)
    budget = BUDGET_S.get(path.name, DEFAULT_BUDGET_S)
    deadline = []  # set when the first cell starts

    def cell_timeout(cell) -> int:
        # nbclient asks before every cell: give it what is left of the notebook's budget.
        if not deadline:
            deadline.append(time.monotonic() + budget)
        return max(1, int(deadline[0] - time.monotonic()))

    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout_func=cell_timeout, startup_timeout=120,
                                     resources={"metadata": {"path": str(tmp_path)}})  # cwd: a scratch folder
    client.km = client.create_kernel_manager()
    assert client.km.kernel_spec.argv[0] == sys.executable, client.km.kernel_spec.argv
    t0 = time.monotonic()
    try:
        client.execute()
    except (nbclient.exceptions.CellExecutionError, nbclient.exceptions.CellTimeoutError) as e:
        pytest.fail(_failure(path.name, e), pytrace=False)
    elapsed = time.monotonic() - t0
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":
            assert c.execution_count is not None, f"{path.name} cell {i} did not run"
            assert not any(o.get("output_type") == "error" for o in c.outputs), f"{path.name} cell {i} failed"
    print(f"{path.name}: {elapsed:.1f} s")
