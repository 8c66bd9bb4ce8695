"""The accelerator registry: the one list of accelerators, their kernels, and the backends that run them.

Each accelerator is one :class:`AcceleratorSpec`: its config section (a field table validated by
:mod:`vitaccel.hwconfig`, hashed with the common fields and its numerics version only), its kernels (each
a FINN-style top/testbench pair under ``hls/`` with a golden-case writer), its HLS top and the VLNV
PYNQ binds a driver to, its descriptor/ISA module, its host program compiler, its NumPy model of the top
and its C-simulation sources. Everything that would otherwise list accelerators, kernels or backends reads
this module: the config loader and ``vitaccel config gen`` (headers, ``overlay/accelerators.tcl`` that
``build.tcl`` sources), ``vitaccel golden``, the CLI's choices, the emulated device, the PYNQ binding and
the overlay lookup.

Standard library only (it is imported on a board); the modules a spec names (``"module:attribute"``) are
imported on first use by :meth:`AcceleratorSpec.load`.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Dict, List, Mapping, Optional, Tuple

from vitaccel.hwconfig import ConfigError, Field

__all__ = ["Kernel", "AcceleratorSpec", "ACCELERATORS", "BACKENDS", "EMULATED_BACKENDS", "get", "names",
           "register", "unregister"]


@dataclasses.dataclass(frozen=True)
class Kernel:
    """One engine with a synthesisable top and a testbench: ``hls/<hls_dir>/<name>_top.cpp`` and
    ``<name>_tb.cpp``; ``golden`` (``"module:function"``, called as ``f(config, out_dir)``) writes its
    golden cases for the testbench and for build.tcl's csim step."""

    name: str
    hls_dir: str
    golden: str


@dataclasses.dataclass(frozen=True)
class AcceleratorSpec:
    name: str
    title: str
    #: The config section's field table (``"<name>": {...}`` in a config file).
    section: Tuple[Field, ...]
    #: Bumped when the meaning of this accelerator's bits changes (its kernels' numerics); hashed.
    numerics_version: int
    kernels: Tuple[Kernel, ...]
    #: The HLS top-level function and its source under ``hls/``.
    hls_top: str
    top_source: str
    #: What Vitis HLS names the exported IP; PYNQ binds the driver to it (``DefaultIP.bindto``).
    vlnv: str
    #: The m_axi bundles of the top, one HP port each in the block design.
    axi_bundles: Tuple[str, ...]
    #: Base-address registers of the m_axi ports: the host points every one at its DRAM window.
    pointer_registers: Tuple[str, ...]
    #: ``"module"`` of the descriptor table (opcodes, word indices, status codes) the header is made from.
    isa: str
    #: ``"module:function"``: ``compile(bundle, config, batch=...) -> DeviceProgram``.
    compiler: str
    #: ``"module:function"``: the NumPy model of the top, ``run_top(window, desc_off, num_instr, config, ...)``.
    top_model: str
    #: ``"module:function"``: the C-simulation library of the top, ``library(config_name)`` with a ``run``.
    csim_library: str
    #: C++ sources of the C-simulation library and the folders its includes resolve in, under ``hls/``.
    csim_sources: Tuple[str, ...]
    include_dirs: Tuple[str, ...]
    #: The section fields that give the MAC array the common GEMM runs on: (lines, MACs per line). The
    #: config header renders it as ``cfg::GemmArray``, the struct ``gemm::Gemm<>`` is instantiated with.
    gemm_array: Tuple[str, str] = ("mac_lines", "macs_per_line")
    #: ``"module:function"``: cross-field rules of the section, ``check(common, section, where)``.
    check: Optional[str] = None

    def load(self, attr: str) -> Any:
        """The object a ``"module:attribute"`` field of this spec names (``spec.load("compiler")``)."""
        ref = getattr(self, attr)
        module, _, name = ref.partition(":")
        obj = importlib.import_module(module)
        return getattr(obj, name) if name else obj

    def kernel(self, name: str) -> Kernel:
        for k in self.kernels:
            if k.name == name:
                return k
        raise KeyError(f"accelerator {self.name!r} has no kernel {name!r} "
                       f"(kernels: {', '.join(k.name for k in self.kernels)})")


#: How a bundle can run: the name a user passes (``--backend``, ``Accelerator(backend=...)``) -> what it is.
BACKENDS: Dict[str, str] = {
    "auto": "the board when PYNQ reports one, else the simulator",
    "pynq": "the overlay on a PYNQ board",
    "sim": "an emulated accelerator whose start runs the NumPy model of its top (numpy only)",
    "csim": "an emulated accelerator whose start runs the HLS C++ compiled by g++ (C-simulation)",
}
#: The backends an emulated device implements (its start runs a model of the top on the host).
EMULATED_BACKENDS: Tuple[str, ...] = ("sim", "csim")


def _vitcod_check(common: Mapping[str, Any], section: Mapping[str, Any], where: str) -> None:
    if section["ae_lines"] >= section["mac_lines"]:
        raise ConfigError(f"{where}: key 'vitcod.ae_lines' ({section['ae_lines']}) must be smaller than "
                          f"vitcod.mac_lines ({section['mac_lines']}): the attention engines need at least one line")
    if section["sparse_q_ports"] > section["mac_lines"]:
        raise ConfigError(f"{where}: key 'vitcod.sparse_q_ports' ({section['sparse_q_ports']}) exceeds "
                          f"vitcod.mac_lines ({section['mac_lines']}): each port feeds one line")
    if common["max_head_dim"] % section["macs_per_line"] != 0:
        raise ConfigError(f"{where}: key 'max_head_dim' ({common['max_head_dim']}) must be a multiple of "
                          f"vitcod.macs_per_line ({section['macs_per_line']}): the feature dim is mapped across a line")


VITCOD = AcceleratorSpec(
    name="vitcod",
    title="ViTCoD (HPCA 2023): denser/sparser two-pronged attention engines and a Q/K auto-encoder",
    section=(
        Field("mac_lines", int, 1, 1024, doc="number of MAC lines (PE lines) shared by the denser/sparser engines"),
        Field("macs_per_line", int, 1, 64, power_of_two=True,
              doc="int8 MACs per line (the feature dim is mapped across them)"),
        Field("softmax_lanes", int, 1, 1024, doc="elements per cycle the softmax unit handles in each of its two passes"),
        Field("sparse_q_ports", int, 1, 1024,
              doc="sparser-engine lines with their own Q, K and V gather ports (copies of those buffers)"),
        Field("ae_lines", int, 0, 1023, doc="MAC lines the encoder/decoder engines take from the pool while an AE runs"),
    ),
    numerics_version=1,
    kernels=(
        Kernel("gemm", "common/gemm", "vitaccel.sim.golden:gemm_cases"),
        Kernel("autoencoder", "vitcod/autoencoder", "vitaccel.sim.golden:ae_cases"),
        Kernel("attention", "vitcod/attention", "vitaccel.sim.golden:attention_cases"),
        # The common vector kernels of the integer whole model (not dispatched by vitcod_top yet).
        Kernel("layernorm", "common/layernorm", "vitaccel.sim.golden:layernorm_cases"),
        Kernel("eltwise", "common/eltwise", "vitaccel.sim.golden:eltwise_cases"),
        # The whole top (vitcod_top.cpp + vitcod_tb.cpp): block programs and hostile descriptors.
        Kernel("vitcod", "vitcod", "vitaccel.sim.golden:top_cases"),
    ),
    hls_top="vitcod_top",
    top_source="vitcod/vitcod_top.cpp",
    vlnv="xilinx.com:hls:vitcod_top:1.0",
    axi_bundles=("gmem_act", "gmem_idx", "gmem_wgt"),
    pointer_registers=("act_in", "act_out", "idx", "mask", "wgt", "wconst"),
    isa="vitaccel.sim.vitcod.isa",
    compiler="vitaccel.host.vitcod.program:compile_device_program",
    top_model="vitaccel.sim.vitcod.top:run_top",
    csim_library="vitaccel.sim.vitcod.csim_kernels:kernels_library",
    csim_sources=("vitcod/vitcod_capi.cpp", "vitcod/vitcod_top.cpp", "common/vector_capi.cpp"),
    include_dirs=("common", "vitcod"),
    check="vitaccel.accelerators:_vitcod_check",
)

def _revit_check(common: Mapping[str, Any], section: Mapping[str, Any], where: str) -> None:
    if section["simd_lanes"] < section["rmmu_cols"]:
        raise ConfigError(f"{where}: key 'revit.simd_lanes' ({section['simd_lanes']}) is below revit.rmmu_cols "
                          f"({section['rmmu_cols']}): every column's sub-RMMU needs a lane of the SIMD unit")
    if section["rmmu_cols"] % section["sync_cols"] != 0:
        raise ConfigError(f"{where}: key 'revit.sync_cols' ({section['sync_cols']}) must divide revit.rmmu_cols "
                          f"({section['rmmu_cols']}): columns synchronise in whole groups")


REVIT = AcceleratorSpec(
    name="revit",
    title="ReViT (IEEE TC 2025): semantic groups, a reconfigurable bit-serial array, differential attention",
    section=(
        Field("rmmu_cols", int, 1, 1024,
              doc="Pn: RBSP columns of the RMMU; a column holds one serial vector, a sub-RMMU is a range of columns"),
        Field("rmmu_lanes", int, 1, 256, power_of_two=True,
              doc="Pc: lanes (shifters into the column's adder tree) per column: elements of the serial vector per step"),
        Field("sync_cols", int, 1, 1024,
              doc="columns that move in lock step (share one step length); 1: each column runs ahead on its own broadcast FIFO"),
        Field("g_pes", int, 1, 1024, doc="G-PEs of the group generation engine: patches whose argmax is taken per cycle"),
        Field("p_pes", int, 1, 1024, doc="P-PEs of a pruner: candidates scored per cycle (group and patch pruner alike)"),
        Field("simd_lanes", int, 1, 4096,
              doc="SIMD vector unit: softmax elements per cycle, split among the sub-RMMUs with their columns"),
        Field("input_buffer_kb", int, 1, 65536, doc="input buffer (tokens and group centroids), KiB"),
    ),
    numerics_version=1,
    # The engines with a top/testbench pair; revit_top dispatches ATTN (all but the pruner) and PRUNE.
    kernels=(
        Kernel("rmmu", "revit/rmmu", "vitaccel.sim.revit.golden:rmmu_cases"),
        Kernel("groupgen", "revit/groupgen", "vitaccel.sim.revit.golden:groupgen_cases"),
        Kernel("dsoftmax", "revit/dsoftmax", "vitaccel.sim.revit.golden:dsoftmax_cases"),
        Kernel("pruner", "revit/pruner", "vitaccel.sim.revit.golden:pruner_cases"),
        Kernel("sched", "revit/sched", "vitaccel.sim.revit.golden:sched_cases"),
        # The whole top (revit_top.cpp + revit_tb.cpp): programs and hostile descriptors.
        Kernel("revit", "revit", "vitaccel.sim.revit.golden:top_cases"),
    ),
    hls_top="revit_top",
    top_source="revit/revit_top.cpp",
    vlnv="xilinx.com:hls:revit_top:1.0",
    axi_bundles=("gmem_act", "gmem_idx", "gmem_wgt"),
    pointer_registers=("act_in", "act_out", "idx", "wgt", "wconst"),
    isa="vitaccel.sim.revit.isa",
    compiler="vitaccel.host.revit.program:compile_device_program",
    top_model="vitaccel.sim.revit.top:run_top",
    csim_library="vitaccel.sim.revit.csim_engines:engines_library",
    csim_sources=("revit/revit_capi.cpp", "revit/revit_top.cpp"),
    include_dirs=("common", "revit"),
    gemm_array=("rmmu_cols", "rmmu_lanes"),
    check="vitaccel.accelerators:_revit_check",
)

#: Every accelerator, by name. Add one with :func:`register` (a new accelerator's spec belongs here).
ACCELERATORS: Dict[str, AcceleratorSpec] = {VITCOD.name: VITCOD, REVIT.name: REVIT}


def names() -> List[str]:
    return list(ACCELERATORS)


def get(name: str) -> AcceleratorSpec:
    """The spec of accelerator ``name``; an unknown name raises :class:`ValueError` listing the known ones."""
    try:
        return ACCELERATORS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown accelerator {name!r}; known: {', '.join(ACCELERATORS)}") from None


def register(spec: AcceleratorSpec) -> None:
    """Add an accelerator (its section's field names may not repeat a common field's)."""
    from vitaccel.hwconfig import COMMON_FIELDS

    if spec.name in ACCELERATORS:
        raise ValueError(f"accelerator {spec.name!r} is registered already")
    common = {f.name for f in COMMON_FIELDS}
    clash = sorted(common & {f.name for f in spec.section})
    if clash:
        raise ValueError(f"accelerator {spec.name!r}: section field(s) {', '.join(clash)} repeat common fields")
    ACCELERATORS[spec.name] = spec


def unregister(name: str) -> None:
    ACCELERATORS.pop(name, None)
