"""Host runtime: loads a deployment bundle and runs it on a PYNQ board or on the simulator.

Imports numpy, tqdm and the standard library only; ``pynq`` is imported lazily, on a board.
"""
from vitaccel.host.backend import detect_backend  # noqa: F401
