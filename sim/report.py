"""Cycle reports: what every kernel's cycle model returns, and their sum over a layer or a model.

Each kernel run is a :class:`KernelReport` whose cycles split into three parts that add up to the total:

* ``compute``    - cycles the MAC lines / softmax unit are busy and on the critical path,
* ``preprocess`` - index decoding (CSC column pointers) and AE decoding that is not hidden,
* ``data``       - off-chip transfers that compute does not hide (the exposed part only).

``engines`` gives each engine's own busy cycles (they overlap, so they need not add up to the total),
``heads`` a per-head breakdown for attention kernels.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

from vitaccel.hwconfig import HardwareConfig


@dataclasses.dataclass
class KernelReport:
    kernel: str            # "attention", "gemm", ...
    name: str              # "layers.3.attn", "layers.3.fc1", ...
    layer: Optional[int]
    compute: int
    preprocess: int
    data: int
    macs: int              # MACs performed (including computed-then-masked scores)
    useful_macs: int       # MACs on kept entries only
    dram_bytes: int
    engines: Dict[str, int] = dataclasses.field(default_factory=dict)
    heads: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    notes: List[str] = dataclasses.field(default_factory=list)

    @property
    def total_cycles(self) -> int:
        return self.compute + self.preprocess + self.data

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["total_cycles"] = self.total_cycles
        return d


@dataclasses.dataclass
class Report:
    """A sequence of kernel runs on one hardware config (run back to back)."""

    config: HardwareConfig
    kernels: List[KernelReport] = dataclasses.field(default_factory=list)

    @property
    def total_cycles(self) -> int:
        return sum(k.total_cycles for k in self.kernels)

    @property
    def latency_us(self) -> float:
        return self.total_cycles / self.config.clock_mhz

    def _sum(self, attr: str) -> int:
        return sum(getattr(k, attr) for k in self.kernels)

    @property
    def breakdown(self) -> Dict[str, int]:
        return {"compute": self._sum("compute"), "preprocess": self._sum("preprocess"), "data": self._sum("data")}

    @property
    def macs(self) -> int:
        return self._sum("macs")

    @property
    def dram_bytes(self) -> int:
        return self._sum("dram_bytes")

    @property
    def mac_utilisation(self) -> float:
        """Useful MACs over what the MAC array could have done in the total time."""
        t = self.total_cycles
        return self._sum("useful_macs") / (t * self.config.peak_macs_per_cycle) if t else 0.0

    def _grouped(self, key) -> Dict:
        out: Dict = {}
        for k in self.kernels:
            row = out.setdefault(key(k), {"compute": 0, "preprocess": 0, "data": 0, "total": 0})
            row["compute"] += k.compute
            row["preprocess"] += k.preprocess
            row["data"] += k.data
            row["total"] += k.total_cycles
        return out

    def by_layer(self) -> Dict[Optional[int], Dict[str, int]]:
        return self._grouped(lambda k: k.layer)

    def by_kernel(self) -> Dict[str, Dict[str, int]]:
        return self._grouped(lambda k: k.kernel)

    def extend(self, other: "Report") -> "Report":
        if other.config.hash != self.config.hash:
            raise ValueError("cannot merge reports from different hardware configs")
        self.kernels.extend(other.kernels)
        return self

    def to_dict(self, kernels: bool = True) -> Dict[str, Any]:
        d: Dict[str, Any] = {
            "config": self.config.name,
            "config_hash": self.config.hash,
            "clock_mhz": self.config.clock_mhz,
            "total_cycles": self.total_cycles,
            "latency_us": self.latency_us,
            "breakdown": self.breakdown,
            "macs": self.macs,
            "dram_bytes": self.dram_bytes,
            "mac_utilisation": self.mac_utilisation,
        }
        if kernels:
            d["kernels"] = [k.to_dict() for k in self.kernels]
        return d

    def table(self) -> str:
        """A per-kernel table for terminals."""
        head = f"{'kernel':<22} {'cycles':>10} {'compute':>9} {'preproc':>9} {'data':>9} {'MACs':>11} {'DRAM B':>10}"
        lines = [head, "-" * len(head)]
        for k in self.kernels:
            lines.append(f"{k.name:<22} {k.total_cycles:>10} {k.compute:>9} {k.preprocess:>9} {k.data:>9} "
                         f"{k.macs:>11} {k.dram_bytes:>10}")
        b = self.breakdown
        lines.append("-" * len(head))
        lines.append(f"{'total':<22} {self.total_cycles:>10} {b['compute']:>9} {b['preprocess']:>9} {b['data']:>9} "
                     f"{self.macs:>11} {self.dram_bytes:>10}")
        lines.append(f"latency {self.latency_us:.2f} us at {self.config.clock_mhz:g} MHz ({self.config.name}); "
                     f"MAC utilisation {100 * self.mac_utilisation:.1f}%")
        return "\n".join(lines)


def mean_report(reports: List[Report]) -> Report:
    """The kernel-by-kernel mean of reports of the same program over several images (the same kernels in the
    same order, their work depending on the image: ReViT). Cycles, MACs and bytes are rounded to integers;
    engines are averaged over the reports that have them."""
    if not reports:
        raise ValueError("mean_report needs at least one report")
    n = len(reports)
    first = reports[0]
    if any(len(r.kernels) != len(first.kernels) for r in reports):
        raise ValueError("reports of different programs (kernel counts differ)")
    out = Report(first.config)
    for ks in zip(*(r.kernels for r in reports)):
        k0 = ks[0]
        if any(k.name != k0.name for k in ks):
            raise ValueError(f"reports of different programs (kernel {k0.name!r} vs {[k.name for k in ks]})")
        mean = lambda attr: int(round(sum(getattr(k, attr) for k in ks) / n))  # noqa: E731
        eng: Dict[str, int] = {}
        for e in {e for k in ks for e in k.engines}:
            vals = [k.engines[e] for k in ks if e in k.engines]
            eng[e] = int(round(sum(vals) / len(vals)))
        out.kernels.append(KernelReport(k0.kernel, k0.name, k0.layer, mean("compute"), mean("preprocess"), mean("data"),
                                        mean("macs"), mean("useful_macs"), mean("dram_bytes"), eng, [],
                                        [f"mean over {n} images"]))
    return out
