"""The one hardware spec: a config file per target drives HLS, build.tcl, the simulator and the host.

A target is a JSON file in ``configs/`` (shipped as ``vitaccel.configs``). ``load_config`` reads it into a
frozen :class:`HardwareConfig` after checking every key against :data:`COMMON_FIELDS` and the section table
of the accelerator it names (:mod:`vitaccel.accelerators`); a bad value raises
:class:`ConfigError` naming the key and the allowed range. From the same object we render

* ``hls/include/configs/<ident>.h`` - C++ constants for the HLS kernels (selected by
  ``-DVITACCEL_TARGET_<IDENT>``, see ``hls/include/vitaccel_config.h``),
* ``overlay/configs/<name>.tcl`` - tcl constants that ``build.tcl`` sources,

and ``vitaccel config gen`` writes them; ``vitaccel config check`` (and a test) fails when a committed
file differs from what the config renders today. The config hash goes into the header so the HLS top can
expose it in a read-only ID register, and into every bundle, so the host can refuse a mismatch.

Only the standard library is used here: this module is imported on the board.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

__all__ = [
    "ConfigError",
    "HardwareConfig",
    "COMMON_FIELDS",
    "ACCELERATOR_KEY",
    "list_configs",
    "load_config",
    "config_from_dict",
    "generated_files",
    "write_generated",
    "stale_generated",
]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
try:  # an installed wheel keeps configs next to the package, an editable install at the repo root
    import vitaccel.configs as _configs_pkg  # noqa: E402

    CONFIG_DIR = Path(_configs_pkg.__file__).resolve().parent
except Exception:  # pragma: no cover - only when configs is not importable
    pass

#: Bumped when the meaning of a field changes; part of the hash.
SPEC_VERSION = 2  # 2: common fields + an accelerator section


class ConfigError(ValueError):
    """A hardware config is missing, malformed, or has a value out of range. The message names the key."""


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    kind: type  # int, float, str
    lo: Optional[float] = None
    hi: Optional[float] = None
    doc: str = ""
    nullable: bool = False
    choices: Optional[Tuple[str, ...]] = None
    hashed: bool = True  # documentation fields do not change the hardware
    power_of_two: bool = False


#: Every key a config file must have, whatever its accelerator, with its type, range and meaning.
COMMON_FIELDS: Tuple[Field, ...] = (
    Field("name", str, doc="target name; also the file name without .json", hashed=True),
    Field("description", str, doc="one sentence for humans", hashed=False),
    Field("kind", str, choices=("asic", "fpga"), doc="asic: a paper design, no board; fpga: a PYNQ board"),
    Field("board", str, nullable=True, choices=("zcu104", "kv260", "pynq-z2"), doc="PYNQ board, null for asic"),
    Field("part", str, nullable=True, doc="FPGA part number for Vivado, null for asic"),
    Field("clock_mhz", float, 1, 2000, doc="kernel clock in MHz"),
    Field("dram_gbps", float, 0.01, 10000, doc="usable off-chip bandwidth in GB/s (1e9 bytes/s)"),
    Field("axi_bits", int, 32, 1024, power_of_two=True, doc="data width of each m_axi port in bits"),
    Field("burst_setup_cycles", int, 0, 10000, doc="cycles before a DRAM burst streams (latency per transfer)"),
    Field("qkvs_buffer_kb", int, 1, 65536, doc="activation (Q/K/S/V) buffer, KiB"),
    Field("index_buffer_kb", int, 1, 65536, doc="index buffer, KiB"),
    Field("output_buffer_kb", int, 1, 65536, doc="output buffer, KiB"),
    Field("weight_buffer_kb", int, 1, 65536, doc="weight buffer, KiB"),
    Field("max_tokens", int, 2, 4096, doc="largest sequence length N (tokens incl. CLS) the kernels accept"),
    Field("max_heads", int, 1, 64, doc="largest number of attention heads"),
    Field("max_head_dim", int, 8, 512, doc="largest per-head dimension d"),
    Field("max_embed_dim", int, 8, 8192, doc="largest model width"),
    Field("max_mlp_dim", int, 8, 32768, doc="largest MLP hidden width"),
)
_FIELD_BY_NAME = {f.name: f for f in COMMON_FIELDS}
#: Keys allowed besides the common fields: free documentation, and which accelerator the config is for
#: (its section is the key named after the accelerator).
_DOC_KEYS = ("assumptions",)
ACCELERATOR_KEY = "accelerator"


def _spec(name: str):
    from vitaccel import accelerators

    return accelerators.get(name)


@dataclasses.dataclass(frozen=True)
class HardwareConfig:
    """One hardware target: the common fields, the accelerator it is for, and that accelerator's section.

    Build with :func:`load_config`; fields are validated, then frozen. The section's fields read as
    attributes too (``cfg.mac_lines`` is ``cfg.section_dict["mac_lines"]``): each engine reads its own
    accelerator's fields, and no section field may repeat a common one (the registry refuses that).
    """

    name: str
    description: str
    kind: str
    board: Optional[str]
    part: Optional[str]
    clock_mhz: float
    dram_gbps: float
    axi_bits: int
    burst_setup_cycles: int
    qkvs_buffer_kb: int
    index_buffer_kb: int
    output_buffer_kb: int
    weight_buffer_kb: int
    max_tokens: int
    max_heads: int
    max_head_dim: int
    max_embed_dim: int
    max_mlp_dim: int
    accelerator: str = "vitcod"
    #: The accelerator's section, ``((field, value), ...)`` in its table's order (a tuple, so hashable).
    section: Tuple[Tuple[str, Any], ...] = ()
    assumptions: Tuple[str, ...] = ()

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: a section field, or a real AttributeError.
        if not name.startswith("__") and name != "section":
            for k, v in object.__getattribute__(self, "section"):
                if k == name:
                    return v
        raise AttributeError(f"{type(self).__name__!s} {self.name!r} ({self.accelerator}) has no field {name!r}")

    @property
    def section_dict(self) -> Dict[str, Any]:
        return dict(self.section)

    @property
    def gemm_array(self) -> Tuple[int, int]:
        """(lines, MACs per line) of the MAC array the common GEMM runs on (the accelerator's ``gemm_array``)."""
        lines, lanes = self.spec.gemm_array
        return getattr(self, lines), getattr(self, lanes)

    @property
    def spec(self):
        """The accelerator's registry entry (:mod:`vitaccel.accelerators`)."""
        return _spec(self.accelerator)

    def replace(self, **changes: Any) -> "HardwareConfig":
        """A validated copy with some common or section fields changed (``cfg.replace(sparse_q_ports=64)``)."""
        raw = self.to_dict()
        for k, v in changes.items():
            if k in _FIELD_BY_NAME or k in (ACCELERATOR_KEY, "assumptions"):
                raw[k] = v
            elif k in raw[self.accelerator]:
                raw[self.accelerator][k] = v
            else:
                raise ConfigError(f"config {self.name!r}: no field {k!r} (common or {self.accelerator})")
        return config_from_dict(raw, where=f"config {self.name!r} (replaced {', '.join(changes)})")

    # -- identity ---------------------------------------------------------------------------------
    def hashed_dict(self) -> Dict[str, Any]:
        """What defines the hardware: the common fields, the accelerator and its section, the spec version,
        the shared numerics version and the accelerator's own numerics version. Nothing of any other
        accelerator, so adding a field to one accelerator's table leaves every other's hashes alone."""
        from vitaccel.sim.numerics import NUMERICS_VERSION

        d: Dict[str, Any] = {f.name: getattr(self, f.name) for f in COMMON_FIELDS if f.hashed}
        spec = self.spec
        d[ACCELERATOR_KEY] = self.accelerator
        d[self.accelerator] = {f.name: getattr(self, f.name) for f in spec.section if f.hashed}
        d["_spec_version"] = SPEC_VERSION
        d["_numerics_version"] = NUMERICS_VERSION
        d["_accelerator_numerics_version"] = spec.numerics_version
        return d

    @property
    def hash(self) -> str:
        """sha256 (hex) of the canonical JSON of :meth:`hashed_dict`."""
        canon = json.dumps(self.hashed_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode("utf-8")).hexdigest()

    @property
    def hash32(self) -> int:
        """The first 32 bits of :attr:`hash`: the value of the bitstream's read-only ID register."""
        return int(self.hash[:8], 16)

    @property
    def ident(self) -> str:
        """The name as a C/tcl identifier fragment: ``pynq-z2`` -> ``PYNQ_Z2``."""
        return "".join(c if c.isalnum() else "_" for c in self.name).upper()

    # -- derived figures ---------------------------------------------------------------------------
    @property
    def peak_macs_per_cycle(self) -> int:
        """MACs per cycle of the array the common GEMM runs on (the registry's ``gemm_array``); for a
        bit-serial array (ReViT) a lane's one effectual term per cycle counts as one MAC."""
        lines, lanes = self.spec.gemm_array
        return getattr(self, lines) * getattr(self, lanes)

    @property
    def clock_hz(self) -> float:
        return self.clock_mhz * 1e6

    @property
    def bytes_per_cycle(self) -> float:
        """DRAM bytes per kernel clock cycle."""
        return self.dram_gbps * 1e9 / self.clock_hz

    @property
    def ridge_macs_per_byte(self) -> float:
        """Roofline ridge point: arithmetic intensity (MACs per DRAM byte) above which compute bounds."""
        return self.peak_macs_per_cycle / self.bytes_per_cycle

    @property
    def peak_gops(self) -> float:
        """Peak int8 throughput, counting a MAC as two operations."""
        return 2 * self.peak_macs_per_cycle * self.clock_hz / 1e9

    @property
    def axi_bytes(self) -> int:
        return self.axi_bits // 8

    def buffer_bytes(self) -> Dict[str, int]:
        return {
            "qkvs": self.qkvs_buffer_kb * 1024,
            "index": self.index_buffer_kb * 1024,
            "output": self.output_buffer_kb * 1024,
            "weight": self.weight_buffer_kb * 1024,
        }

    def derived(self) -> Dict[str, Any]:
        return {
            "peak_macs_per_cycle": self.peak_macs_per_cycle,
            "peak_gops": round(self.peak_gops, 3),
            "bytes_per_cycle": round(self.bytes_per_cycle, 4),
            "ridge_macs_per_byte": round(self.ridge_macs_per_byte, 4),
            "onchip_sram_kb": sum(self.buffer_bytes().values()) // 1024,
            "hash": self.hash,
            "hash32": f"0x{self.hash32:08x}",
        }

    def to_dict(self) -> Dict[str, Any]:
        """The config as its JSON file holds it."""
        d: Dict[str, Any] = {f.name: getattr(self, f.name) for f in COMMON_FIELDS}
        d["assumptions"] = list(self.assumptions)
        d[ACCELERATOR_KEY] = self.accelerator
        d[self.accelerator] = self.section_dict
        return d


# -- loading ---------------------------------------------------------------------------------------

def list_configs(accelerator: Optional[str] = None) -> List[str]:
    """Names of the shipped configs; with ``accelerator``, only the configs for that accelerator."""
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
    if accelerator is None:
        return names
    out = []
    for n in names:
        try:
            raw = json.loads((CONFIG_DIR / f"{n}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(raw, dict) and raw.get(ACCELERATOR_KEY) == accelerator:
            out.append(n)
    return out


def _check_field(f: Field, value: Any, where: str) -> Any:
    if value is None:
        if f.nullable:
            return None
        raise ConfigError(f"{where}: key '{f.name}' must not be null ({f.doc})")
    if f.kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: key '{f.name}' must be an integer, got {value!r}")
    elif f.kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: key '{f.name}' must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where}: key '{f.name}' must be finite, got {value!r}")
    elif f.kind is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: key '{f.name}' must be a non-empty string, got {value!r}")
    if f.choices is not None and value not in f.choices:
        raise ConfigError(f"{where}: key '{f.name}' is {value!r}; allowed: {', '.join(f.choices)}")
    if f.lo is not None and not (f.lo <= value <= f.hi):
        raise ConfigError(f"{where}: key '{f.name}' is {value!r}; allowed range [{f.lo:g}, {f.hi:g}] ({f.doc})")
    if f.power_of_two and (value & (value - 1)) != 0:
        raise ConfigError(f"{where}: key '{f.name}' is {value!r}; must be a power of two ({f.doc})")
    return value


def config_from_dict(raw: Mapping[str, Any], where: str = "config") -> HardwareConfig:
    """Validate a parsed config mapping and freeze it. ``where`` names the source in error messages.

    The common fields are checked against :data:`COMMON_FIELDS`; ``"accelerator"`` names a registered
    accelerator (:mod:`vitaccel.accelerators`), and the object under that accelerator's name is checked
    against its section table and its cross-field rules."""
    from vitaccel import accelerators

    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a JSON object at top level, got {type(raw).__name__}")
    accel = raw.get(ACCELERATOR_KEY)
    if accel is None:
        raise ConfigError(f"{where}: missing key '{ACCELERATOR_KEY}' (which accelerator the config is for: "
                          f"{', '.join(accelerators.names())})")
    if not isinstance(accel, str) or accel not in accelerators.ACCELERATORS:
        raise ConfigError(f"{where}: key '{ACCELERATOR_KEY}' is {accel!r}; allowed: {', '.join(accelerators.names())}")
    spec = accelerators.get(accel)
    unknown = sorted(set(raw) - set(_FIELD_BY_NAME) - set(_DOC_KEYS) - {ACCELERATOR_KEY, accel})
    if unknown:
        moved = [k for k in unknown if any(f.name == k for f in spec.section)]
        if moved:
            raise ConfigError(f"{where}: key(s) {', '.join(repr(k) for k in moved)} belong in the accelerator's "
                              f"section now: move them into \"{accel}\": {{...}}")
        raise ConfigError(f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)}; "
                          f"allowed: {', '.join(f.name for f in COMMON_FIELDS)}, {ACCELERATOR_KEY}, {accel}, "
                          f"{', '.join(_DOC_KEYS)}")
    values: Dict[str, Any] = {}
    for f in COMMON_FIELDS:
        if f.name not in raw:
            raise ConfigError(f"{where}: missing key '{f.name}' ({f.doc})")
        values[f.name] = _check_field(f, raw[f.name], where)
    assumptions = raw.get("assumptions", [])
    if not isinstance(assumptions, list) or not all(isinstance(a, str) for a in assumptions):
        raise ConfigError(f"{where}: key 'assumptions' must be a list of strings")
    values["assumptions"] = tuple(assumptions)

    sec_raw = raw.get(accel)
    if not isinstance(sec_raw, Mapping):
        raise ConfigError(f"{where}: key '{accel}' must be an object with the {accel} section "
                          f"({', '.join(f.name for f in spec.section)}), got {type(sec_raw).__name__}")
    extra = sorted(set(sec_raw) - {f.name for f in spec.section})
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(repr(f'{accel}.{k}') for k in extra)}; allowed in "
                          f"'{accel}': {', '.join(f.name for f in spec.section)}")
    section: Dict[str, Any] = {}
    for f in spec.section:
        if f.name not in sec_raw:
            raise ConfigError(f"{where}: missing key '{accel}.{f.name}' ({f.doc})")
        section[f.name] = _check_field(dataclasses.replace(f, name=f"{accel}.{f.name}"), sec_raw[f.name], where)

    # Cross-field rules: each names the key that is wrong.
    if values["kind"] == "fpga":
        for key in ("board", "part"):
            if values[key] is None:
                raise ConfigError(f"{where}: key '{key}' is required when kind is 'fpga'")
    else:
        for key in ("board", "part"):
            if values[key] is not None:
                raise ConfigError(f"{where}: key '{key}' must be null when kind is 'asic'")
    if spec.check:
        spec.load("check")(values, section, where)
    if values["max_heads"] * values["max_head_dim"] < values["max_embed_dim"]:
        raise ConfigError(f"{where}: key 'max_embed_dim' ({values['max_embed_dim']}) exceeds "
                          f"max_heads x max_head_dim ({values['max_heads'] * values['max_head_dim']})")
    # One query row of int32 scores must fit in the Q/K/S/V buffer or the softmax unit cannot see it whole.
    if values["max_tokens"] * 4 > values["qkvs_buffer_kb"] * 1024:
        raise ConfigError(f"{where}: key 'qkvs_buffer_kb' ({values['qkvs_buffer_kb']}) is too small for one "
                          f"row of {values['max_tokens']} int32 scores")
    return HardwareConfig(**values, accelerator=accel, section=tuple(section.items()))


ConfigLike = Union[str, os.PathLike, HardwareConfig]


def load_config(config: ConfigLike = "paper") -> HardwareConfig:
    """Load a config by shipped name (``"zcu104"``), by path to a JSON file, or pass a config through."""
    if isinstance(config, HardwareConfig):
        return config
    text = os.fspath(config)
    path = Path(text)
    if path.suffix != ".json" and os.sep not in text and "/" not in text:
        path = CONFIG_DIR / f"{text}.json"
        if not path.exists():
            raise ConfigError(f"unknown hardware config '{text}'; shipped configs: {', '.join(list_configs())} "
                              f"(or pass a path to a .json file)")
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (invalid byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                          f"a config file is UTF-8 JSON") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror or e})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    cfg = config_from_dict(raw, where=str(path))
    if path.parent == CONFIG_DIR and cfg.name != path.stem:
        raise ConfigError(f"{path}: key 'name' is {cfg.name!r} but the file is {path.name}; they must agree")
    return cfg


# -- generated files -------------------------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parent.parent
_BANNER = "Generated by `vitaccel config gen` from configs/{src}. Do not edit: edit the config and regenerate."


def _c_value(f: Field, v: Any) -> str:
    if f.kind is int:
        return f"static const int {f.name.upper()} = {v};"
    if f.kind is float:
        return f"static const double {f.name.upper()} = {v!r};"
    return f'static const char* const {f.name.upper()} = "{v}";'


def _c_header(cfg: HardwareConfig) -> str:
    """Common constants in ``vitaccel::cfg``, the accelerator's section in ``vitaccel::cfg::<accelerator>``
    (so two accelerators' C++ compiles into one C-simulation library without clashes)."""
    guard = f"VITACCEL_CONFIG_{cfg.ident}_H"
    b = cfg.buffer_bytes()
    spec = cfg.spec
    lines = [
        f"// {_BANNER.format(src=cfg.name + '.json')}",
        f"// {cfg.description}",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        f'#define VITACCEL_CONFIG_NAME "{cfg.name}"',
        f'#define VITACCEL_CONFIG_HASH "{cfg.hash}"',
        f"#define VITACCEL_CONFIG_HASH32 0x{cfg.hash32:08x}u",
        f'#define VITACCEL_ACCELERATOR "{cfg.accelerator}"',
        f"#define VITACCEL_ACCELERATOR_{cfg.accelerator.upper()} 1",
        "",
        "namespace vitaccel {",
        "namespace cfg {",
        f"static const unsigned CONFIG_HASH32 = 0x{cfg.hash32:08x}u;  // read-only ID register",
        f"static const unsigned CLOCK_KHZ = {int(round(cfg.clock_mhz * 1000))};",
        f"static const int AXI_BITS = {cfg.axi_bits};",
        f"static const int AXI_BYTES = {cfg.axi_bytes};",
        f"static const int BURST_SETUP_CYCLES = {cfg.burst_setup_cycles};",
        f"static const int QKVS_BUFFER_BYTES = {b['qkvs']};",
        f"static const int INDEX_BUFFER_BYTES = {b['index']};",
        f"static const int OUTPUT_BUFFER_BYTES = {b['output']};",
        f"static const int WEIGHT_BUFFER_BYTES = {b['weight']};",
        f"static const int MAX_TOKENS = {cfg.max_tokens};",
        f"static const int MAX_HEADS = {cfg.max_heads};",
        f"static const int MAX_HEAD_DIM = {cfg.max_head_dim};",
        f"static const int MAX_EMBED_DIM = {cfg.max_embed_dim};",
        f"static const int MAX_MLP_DIM = {cfg.max_mlp_dim};",
        "",
        "// The MAC array the common GEMM (hls/common/gemm/gemm.h) is instantiated on.",
        "struct GemmArray {",
        f"    static const int LINES = {getattr(cfg, spec.gemm_array[0])};",
        f"    static const int LANES = {getattr(cfg, spec.gemm_array[1])};",
        "    static const int WEIGHT_BYTES = WEIGHT_BUFFER_BYTES;",
        "    static const int ACT_BYTES = QKVS_BUFFER_BYTES;",
        "};",
        "",
        f"// {spec.name}: {spec.title}",
        f"namespace {cfg.accelerator} {{",
        *[_c_value(f, getattr(cfg, f.name)) for f in spec.section],
        f"}}  // namespace {cfg.accelerator}",
        "}  // namespace cfg",
        "}  // namespace vitaccel",
        "",
        f"#endif  // {guard}",
        "",
    ]
    return "\n".join(lines)


def _tcl(cfg: HardwareConfig) -> str:
    def q(v: Any) -> str:
        return "{}" if v is None else (f"{{{v}}}" if isinstance(v, str) else repr(v))

    lines = [f"# {_BANNER.format(src=cfg.name + '.json')}", f"# {cfg.description}"]
    for f in COMMON_FIELDS:
        if f.name == "description":
            continue
        lines.append(f"set VITACCEL_{f.name.upper()} {q(getattr(cfg, f.name))}")
    lines.append(f"set VITACCEL_ACCELERATOR {cfg.accelerator}")
    for f in cfg.spec.section:
        lines.append(f"set VITACCEL_{cfg.accelerator.upper()}_{f.name.upper()} {q(getattr(cfg, f.name))}")
    lines += [
        f"set VITACCEL_IDENT {cfg.ident}",
        f"set VITACCEL_CONFIG_HASH {cfg.hash}",
        f"set VITACCEL_CONFIG_HASH32 0x{cfg.hash32:08x}",
        f"set VITACCEL_CLOCK_PERIOD_NS {1000.0 / cfg.clock_mhz:.4f}",
        "",
    ]
    return "\n".join(lines)


def _accelerators_tcl() -> str:
    """The registry as tcl, for build.tcl: per accelerator its top, source, VLNV, AXI bundles, include
    folders and kernels (name and folder under hls/)."""
    from vitaccel import accelerators

    lines = ["# Generated by `vitaccel config gen` from vitaccel/accelerators.py. Do not edit.",
             "# ACCELERATORS: name -> dict(top, top_source, vlnv, axi_bundles, include_dirs, kernels {name dir ...})",
             "set ACCELERATORS [dict create]"]
    for spec in accelerators.ACCELERATORS.values():
        kernels = " ".join(f"{k.name} {k.hls_dir}" for k in spec.kernels)
        lines.append(f"dict set ACCELERATORS {spec.name} [dict create top {spec.hls_top} top_source {spec.top_source} "
                     f"vlnv {spec.vlnv} axi_bundles {{{' '.join(spec.axi_bundles)}}} "
                     f"include_dirs {{{' '.join(spec.include_dirs)}}} kernels {{{kernels}}}]")
    return "\n".join(lines) + "\n"


def _dispatch_header(cfgs: List[HardwareConfig]) -> str:
    lines = [
        "// Generated by `vitaccel config gen` from configs/*.json. Do not edit.",
        "// Picks one target's constants: compile with -DVITACCEL_TARGET_<IDENT> (build.tcl and the",
        "// C-simulation harness pass it).",
        "#ifndef VITACCEL_CONFIG_H",
        "#define VITACCEL_CONFIG_H",
        "",
    ]
    for i, c in enumerate(cfgs):
        kw = "#if" if i == 0 else "#elif"
        lines += [f"{kw} defined(VITACCEL_TARGET_{c.ident})", f'#include "configs/{c.name}.h"']
    lines += [
        "#else",
        "#error \"No hardware target: compile with -DVITACCEL_TARGET_<IDENT>, one of: "
        + ", ".join(c.ident for c in cfgs) + "\"",
        "#endif",
        "",
        "#endif  // VITACCEL_CONFIG_H",
        "",
    ]
    return "\n".join(lines)


def _exp_lut_header() -> str:
    from vitaccel.sim import numerics as nx

    vals = [int(v) for v in nx.EXP2_LUT]
    rows = [", ".join(f"{v:5d}" for v in vals[i:i + 12]) for i in range(0, len(vals), 12)]
    body = ",\n    ".join(rows)
    return (
        "// Generated by `vitaccel config gen` from vitaccel.sim.numerics.EXP2_LUT. Do not edit.\n"
        f"// EXP2_LUT[r] = round(2^{nx.EXP_LUT_BITS} * 2^(-r/2^{nx.EXP_FRAC_BITS})), see NUMERICS.md.\n"
        "#ifndef VITACCEL_EXP_LUT_H\n#define VITACCEL_EXP_LUT_H\n\n"
        "namespace vitaccel {\n"
        f"static const int NUMERICS_VERSION = {nx.NUMERICS_VERSION};\n"
        f"static const int EXP_FRAC_BITS = {nx.EXP_FRAC_BITS};\n"
        f"static const int EXP_LUT_BITS = {nx.EXP_LUT_BITS};\n"
        f"static const int RECIP_BITS = {nx.RECIP_BITS};\n"
        f"static const unsigned short EXP2_LUT[{len(vals)}] = {{\n    {body}}};\n"
        "}  // namespace vitaccel\n\n#endif  // VITACCEL_EXP_LUT_H\n"
    )


def generated_files(root: Path = REPO_ROOT) -> Dict[Path, str]:
    """Every file rendered from the shipped configs, the numerics and the accelerator registry (its ISA
    tables), by path: what ``config gen`` writes."""
    cfgs = [load_config(n) for n in list_configs()]
    out: Dict[Path, str] = {
        root / "hls" / "include" / "vitaccel_config.h": _dispatch_header(cfgs),
        root / "hls" / "include" / "vitaccel_exp_lut.h": _exp_lut_header(),
    }
    for c in cfgs:
        out[root / "hls" / "include" / "configs" / f"{c.name}.h"] = _c_header(c)
        out[root / "overlay" / "configs" / f"{c.name}.tcl"] = _tcl(c)
    from vitaccel.boards import BOARDS, boards_markdown, boards_tcl

    for c in cfgs:
        if c.board is not None and BOARDS[c.board].part != c.part:
            raise ConfigError(f"config {c.name!r}: part {c.part!r} is not board {c.board!r}'s "
                              f"({BOARDS[c.board].part}, vitaccel/boards.py)")
    out[root / "overlay" / "boards.tcl"] = boards_tcl(cfgs)
    out[root / "overlay" / "BOARDS.md"] = boards_markdown(cfgs)
    out[root / "overlay" / "accelerators.tcl"] = _accelerators_tcl()
    out.update(_isa_files(root))
    return out


def _isa_files(root: Path) -> Dict[Path, str]:
    """Each accelerator's ISA header, and the status table inside its DESCRIPTOR.md, from its ISA table."""
    import importlib

    from vitaccel import accelerators
    from vitaccel.sim.isa import common_c_header, with_status_table

    out: Dict[Path, str] = {root / "hls" / "include" / "isa" / "common_isa.h": common_c_header("vitaccel/sim/isa.py")}
    for spec in accelerators.ACCELERATORS.values():
        isa = importlib.import_module(spec.isa).ISA
        out[root / "hls" / "include" / "isa" / f"{spec.name}_isa.h"] = isa.c_header(spec.isa.replace(".", "/") + ".py")
        rel = Path("hls") / Path(spec.top_source).parent / "DESCRIPTOR.md"
        # The prose is hand-written; only the table between the markers is rendered.
        src = root / rel if (root / rel).exists() else REPO_ROOT / rel
        out[root / rel] = with_status_table(src.read_text(encoding="utf-8"), isa, str(src))
    return out


def write_generated(root: Path = REPO_ROOT) -> List[Path]:
    written = []
    for path, text in generated_files(root).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def stale_generated(root: Path = REPO_ROOT) -> List[Path]:
    """Generated files that are missing or differ from what the configs render now."""
    return [p for p, text in generated_files(root).items()
            if not p.exists() or p.read_text(encoding="utf-8") != text]
