"""Bit-exact, cycle-accurate NumPy simulator of the vitaccel kernels. Imports numpy, tqdm and the
standard library only, so it runs on a PYNQ board image."""
from vitaccel.sim import numerics  # noqa: F401
