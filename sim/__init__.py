"""Bit-exact, cycle-accurate NumPy simulator of the vitaccel kernels. Imports numpy, tqdm and the
standard library only, so it runs on a PYNQ board image.

Entry points: :func:`attention` (one attention layer: output bits and cycles on a hardware config) and
:func:`attention_baselines` (the same layer on ViTCoD and the baselines, side by side).
"""
from vitaccel.sim import numerics  # noqa: F401
from vitaccel.sim.vitcod.api import AttentionResult, attention, attention_baselines  # noqa: F401
