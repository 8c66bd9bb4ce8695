"""The pieces of the ReViT accelerator's registry entry that are not built yet, each saying so.

``revit_top`` (hls/revit/revit_top.cpp) dispatches ``NOP`` only today; the engines run as standalone kernels
(:mod:`vitaccel.sim.revit.csim_engines`, the FINN-style top/testbench pairs under ``hls/revit/``). The
descriptor-driven top with its NumPy model is issue #12 part 3; the host compiler from a ReViT bundle to
its program is issue #13. Until then these raise :class:`NotImplementedError` naming the issue, so a ReViT
config given to :class:`vitaccel.host.Accelerator` fails at once and clearly.
"""
from __future__ import annotations

__all__ = ["compile_device_program", "run_top", "top_library", "NOT_BUILT"]

NOT_BUILT = ("the ReViT accelerator's {what} is not built yet ({issue}); its engines run standalone through "
             "vitaccel.sim.revit.csim_engines and the functional reference is vitaccel.sim.revit.model.run_revit")


def compile_device_program(bundle, config, batch: int = 1):
    raise NotImplementedError(NOT_BUILT.format(what="host compiler", issue="issue #13"))


def run_top(window, desc_off, num_instr, config="revit-paper", **kwargs):
    raise NotImplementedError(NOT_BUILT.format(what="NumPy model of revit_top", issue="issue #12, part 3"))


def top_library(config="revit-paper"):
    raise NotImplementedError(NOT_BUILT.format(what="C-simulation of revit_top", issue="issue #12, part 3"))
