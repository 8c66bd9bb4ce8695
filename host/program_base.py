"""What every accelerator's compiled program offers the host runtime (``vitaccel.host.Accelerator``), whatever
its compiler: the window's size, the config hash it was compiled for, the model's dimensions, the starts,
and the host's two float steps (image quantisation before, logit dequantisation after). A compiler's program
class (``host/vitcod/program.py``, ``host/revit/program.py``) mixes this in and adds ``prepare_input``,
``dense_baseline`` and ``data_dependent``."""
from __future__ import annotations

import numpy as np

from vitaccel.sim.common import intmodel as im

__all__ = ["CompiledProgram"]


class CompiledProgram:
    """Mixin over a dataclass with ``program`` (the unpacked bundle: ``dims``, ``input_scale``, ``head``),
    ``config``, ``batch``, ``image`` (the window's initial bytes) and ``starts`` (batch size -> start)."""

    @property
    def mem_bytes(self) -> int:
        return int(self.image.size)

    @property
    def hash32(self) -> int:
        return self.config.hash32

    @property
    def dims(self):
        return self.program.dims

    @property
    def input_scale(self) -> float:
        return self.program.input_scale

    def start(self, b: int):
        if b not in self.starts:
            raise ValueError(f"batch of {b} images: this program was compiled for 1..{self.batch}")
        return self.starts[b]

    def dequantize(self, y8: np.ndarray) -> np.ndarray:
        """int8 logits -> float32 (the head's output scale)."""
        return im.dequantize_logits(y8, self.program.head.out_scale)
