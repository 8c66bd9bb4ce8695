"""Host runtime: loads a deployment bundle and runs it on a PYNQ board or on the simulator.

Imports numpy, tqdm and the standard library only; ``pynq`` is imported lazily, on a board.

* :class:`Accelerator` (``host/accelerator.py``): open a bundle on a backend, ``run`` images, get a report;
* ``host/vitcod/program.py``: ViTCoD's compiler from a bundle to a DRAM window and descriptor lists (each
  accelerator's compiler is named by its registry entry, :mod:`vitaccel.accelerators`);
* ``host/driver.py``: the register protocol every top speaks (``ap_ctrl_hs``, window, ``hw_id``) over any
  device;
* ``host/emulated.py`` and ``host/pynq_backend.py``: the devices (emulated, board);
* ``host/bundle/``: the bundle format (``container``), its schema and validator, and each method's checks.
"""
from vitaccel.host.backend import detect_backend  # noqa: F401

__all__ = ["Accelerator", "detect_backend", "load_bundle"]


def __getattr__(name):  # the runtime pulls in the simulator: import it on first use only
    if name == "Accelerator":
        from vitaccel.host.accelerator import Accelerator

        return Accelerator
    if name == "load_bundle":
        from vitaccel.host.bundle import load_bundle

        return load_bundle
    raise AttributeError(name)
