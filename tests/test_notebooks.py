"""The notebooks: committed exactly as notebooks/_build.py writes them (no outputs), and every one executes
top to bottom in a Jupyter kernel on the simulator backend (nbclient; the kernel is this interpreter's)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vitaccel.hwconfig import REPO_ROOT

NB_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))

nbformat = pytest.importorskip("nbformat", reason="nbformat is in the dev extra")


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"board_quickstart.ipynb", "vitcod_walkthrough.ipynb"}


def test_notebooks_are_generated_and_clean():
    r = subprocess.run([sys.executable, str(NB_DIR / "_build.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for p in NOTEBOOKS:
        nb = nbformat.read(p, as_version=4)
        for c in nb.cells:
            if c.cell_type == "code":
                assert not c.outputs and c.execution_count is None, f"{p.name} carries outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    nbclient = pytest.importorskip("nbclient", reason="nbclient is in the dev extra")
    pytest.importorskip("ipykernel", reason="ipykernel is in the dev extra")
    if "walkthrough" in path.name:
        pytest.importorskip("torch", reason="the walk-through trains nothing but needs torch (models extra)")
    nb = nbformat.read(path, as_version=4)
    # ipykernel's "python3" spec says argv[0] = "python", which jupyter_client replaces with this
    # interpreter: the kernel runs in the venv that has vitaccel installed.
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"{path.name} failed:\n{e}")
    # Every code cell ran in this interpreter and none left an error output.
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.execution_count is not None
            assert not any(o.get("output_type") == "error" for o in c.outputs)
