"""The README's Python snippet runs as written (#16): it is taken from README.md, not copied here."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _snippet(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_checkpoint_to_bundle_snippet_runs(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    code = _snippet("## From a checkpoint to a bundle")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "model.vcb").is_file()
    assert "'top1_agreement'" in r.stdout and "'logit_cosine'" in r.stdout, r.stdout
