"""What every accelerator's compiled program offers the host runtime (``vitaccel.host.Accelerator``), whatever
its compiler: the window's size, the config hash it was compiled for, the model's dimensions, the starts,
and the host's two float steps (image quantisation before, logit dequantisation after). A compiler's program
class (``host/vitcod/program.py``, ``host/revit/program.py``) mixes this in and adds ``prepare_input``,
``dense_baseline`` and ``data_dependent``."""
from __future__ import annotations

import numpy as np

from typing import Dict

from vitaccel.sim.common import intmodel as im

__all__ = ["CompiledProgram", "put_linear", "put_norm"]


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


def put_linear(dram, lin) -> Dict[str, int]:
    """A GEMM's operands into the static region: offsets of weight, bias, multiplier and shift, and its O, K."""
    return {"w": dram.put(lin.weight), "bias": dram.put(lin.bias), "mult": dram.put(lin.mult),
            "shift": dram.put(lin.shift), "O": lin.weight.shape[0], "K": lin.weight.shape[1]}


def put_norm(dram, nm) -> Dict[str, int]:
    """An integer LayerNorm's gamma and beta into the static region, with its shift and eps."""
    return {"g": dram.put(np.asarray(nm.g, np.int32)), "b": dram.put(np.asarray(nm.b, np.int32)),
            "shift": nm.shift, "eps": nm.eps}
