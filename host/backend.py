"""Which backend runs the kernels: a PYNQ board when one is present, else the simulator."""
from __future__ import annotations

import importlib.util
from typing import Tuple

from vitaccel.accelerators import BACKENDS

__all__ = ["detect_backend", "BACKENDS"]


def detect_backend() -> Tuple[str, str]:
    """Return ``(backend, reason)``: ``("pynq", ...)`` on a PYNQ board with a device, else ``("sim", ...)``.

    ``pynq`` pins numpy<2 and is not installed off-board, so it is imported only here and only if present.
    """
    if importlib.util.find_spec("pynq") is None:
        return "sim", "pynq is not installed (install vitaccel[board] on a PYNQ image)"
    try:
        import pynq  # noqa: F401  (lazy: heavy, and absent off-board)
        from pynq import ps
    except Exception as e:  # a broken pynq install must not stop the simulator
        return "sim", f"pynq failed to import: {e}"
    if not getattr(ps, "ON_TARGET", False):
        return "sim", "pynq is installed but this is not a PYNQ board (pynq.ps.ON_TARGET is false)"
    try:
        devices = pynq.Device.devices
    except Exception as e:
        return "sim", f"pynq found no device: {e}"
    if not devices:
        return "sim", "pynq found no device"
    return "pynq", f"PYNQ board detected ({devices[0].name})"
