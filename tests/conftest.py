import os

# Two threads on these shared 2-core machines run up to 30x slower when the other core is busy; torch
# reads these at import time, so set them before any test imports it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import shutil

import pytest


def pytest_collection_modifyitems(config, items):
    """board/vivado tests need hardware or tools we do not have in CI: skip them with the reason."""
    from vitaccel.host.backend import detect_backend

    on_board = detect_backend()[0] == "pynq"
    has_vivado = shutil.which("vivado") is not None and shutil.which("vitis_hls") is not None
    for item in items:
        if "board" in item.keywords and not on_board:
            item.add_marker(pytest.mark.skip(reason="needs a PYNQ board (pynq.ps.ON_TARGET with a device)"))
        if "vivado" in item.keywords and not has_vivado:
            item.add_marker(pytest.mark.skip(reason="needs Vivado and Vitis HLS on PATH"))
