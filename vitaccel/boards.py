"""The PYNQ boards an overlay can be built for: part, processing-system IP and its port names, in one table.

``vitaccel config gen`` renders it, together with the hardware configs that target each board, into
``overlay/boards.tcl`` (sourced by ``build.tcl``) and ``overlay/BOARDS.md``; a test fails when either is
stale. The PS settings are what the block design needs beyond the board preset: three high-performance
slave ports for the accelerator's three ``m_axi`` bundles, one general-purpose master for its AXI-Lite
registers, the fabric clock at the config's ``clock_mhz`` and one fabric interrupt.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Dict, List, Tuple

__all__ = ["Board", "BOARDS", "boards_tcl", "boards_markdown"]


@dataclasses.dataclass(frozen=True)
class Board:
    name: str
    title: str
    part: str
    board_part: str          # Vivado board-file pattern (used when the board files are installed)
    family: str              # "zynq" (Zynq-7000, PS7) or "zynqmp" (Zynq UltraScale+)
    ps_vlnv: str             # wildcard version: whatever the installed Vivado ships
    ps_rule: str             # block automation rule that applies the board preset
    ps_automation: Tuple[Tuple[str, str], ...]   # that rule's -config: the preset, and for PS7 the DDR/MIO ports
    hp_ports: Tuple[str, str, str]   # PS slave ports for m_axi_gmem_act, _idx, _wgt
    master_port: str         # PS master for the AXI-Lite control port
    clock_pin: str
    reset_pin: str
    irq_pin: str
    ps_config: Tuple[Tuple[str, str], ...]   # CONFIG.* properties enabling the ports above
    clock_property: str      # CONFIG.* property holding the fabric clock frequency in MHz


_ZYNQ_PS = dict(family="zynq", ps_vlnv="xilinx.com:ip:processing_system7:*",
                ps_rule="xilinx.com:bd_rule:processing_system7",
                # The PS7's DDR and FIXED_IO (MIO) pins must be top-level ports of the design.
                ps_automation=(("make_external", "FIXED_IO, DDR"), ("apply_board_preset", "1"),
                               ("Master", "Disable"), ("Slave", "Disable")),
                hp_ports=("S_AXI_HP0", "S_AXI_HP1", "S_AXI_HP2"), master_port="M_AXI_GP0", clock_pin="FCLK_CLK0",
                reset_pin="FCLK_RESET0_N", irq_pin="IRQ_F2P",
                ps_config=(("PCW_USE_S_AXI_HP0", "1"), ("PCW_USE_S_AXI_HP1", "1"), ("PCW_USE_S_AXI_HP2", "1"),
                           ("PCW_USE_M_AXI_GP0", "1"), ("PCW_USE_FABRIC_INTERRUPT", "1"), ("PCW_IRQ_F2P_INTR", "1")),
                clock_property="PCW_FPGA0_PERIPHERAL_FREQMHZ")
_ZYNQMP_PS = dict(family="zynqmp", ps_vlnv="xilinx.com:ip:zynq_ultra_ps_e:*",
                  ps_rule="xilinx.com:bd_rule:zynq_ultra_ps_e",
                  ps_automation=(("apply_board_preset", "1"),),
                  hp_ports=("S_AXI_HP0_FPD", "S_AXI_HP1_FPD", "S_AXI_HP2_FPD"), master_port="M_AXI_HPM0_FPD",
                  clock_pin="pl_clk0", reset_pin="pl_resetn0", irq_pin="pl_ps_irq0",
                  # HP0..HP2 FPD are the PS's S_AXI_GP2..GP4 in its CONFIG names.
                  ps_config=(("PSU__USE__S_AXI_GP2", "1"), ("PSU__USE__S_AXI_GP3", "1"), ("PSU__USE__S_AXI_GP4", "1"),
                             ("PSU__USE__M_AXI_GP0", "1"), ("PSU__USE__M_AXI_GP1", "0"), ("PSU__USE__M_AXI_GP2", "0"),
                             ("PSU__USE__IRQ0", "1")),
                  clock_property="PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ")

BOARDS: Dict[str, Board] = {b.name: b for b in (
    Board("pynq-z2", "TUL PYNQ-Z2 (Zynq-7000 XC7Z020)", "xc7z020clg400-1", "tul.com.tw:pynq-z2:part0:*", **_ZYNQ_PS),
    Board("zcu104", "AMD ZCU104 (Zynq UltraScale+ XCZU7EV)", "xczu7ev-ffvc1156-2-e", "xilinx.com:zcu104:part0:*",
          **_ZYNQMP_PS),
    Board("kv260", "AMD Kria KV260 (Zynq UltraScale+ K26 SOM)", "xck26-sfvc784-2LV-c", "xilinx.com:kv260_som:part0:*",
          **_ZYNQMP_PS),
)}


def _tcl_word(s: str) -> str:
    """One tcl list element: braced when it holds a space, a comma or a tcl special character."""
    if s and not re.search(r'[\s,{}\[\]$"\\;]', s):
        return s
    if re.search(r"[{}\\]", s):
        raise ValueError(f"cannot brace {s!r} as one tcl word")
    return "{" + s + "}"


def _tcl_list(items) -> str:
    return "{" + " ".join(_tcl_word(i) for i in items) + "}"


def _accel_configs(configs: List, board: str) -> str:
    """A tcl dict accelerator -> the board's configs for it, in registry order (build.tcl picks the config
    of ``--accelerator``, or of the first accelerator, when ``--config`` is not given)."""
    from vitaccel import accelerators

    pairs = []
    for acc in accelerators.names():
        names = sorted(c.name for c in configs if getattr(c, "board", None) == board and c.accelerator == acc)
        if names:
            pairs.append(f"{_tcl_word(acc)} {_tcl_list(names)}")
    return "{" + " ".join(pairs) + "}"


def boards_tcl(configs: List) -> str:
    """``overlay/boards.tcl``: ``VITACCEL_BOARDS`` is a dict board -> settings (a tcl dict)."""
    lines = ["# Generated by `vitaccel config gen` from vitaccel/boards.py and configs/*.json. Do not edit.",
             "# build.tcl looks a board up here: dict get $VITACCEL_BOARDS <board> <key>.", "set VITACCEL_BOARDS [dict create]"]
    for b in BOARDS.values():
        cfgs = sorted(c.name for c in configs if getattr(c, "board", None) == b.name)
        words = [("title", b.title), ("part", b.part), ("board_part", b.board_part), ("family", b.family),
                 ("ps_vlnv", b.ps_vlnv), ("ps_rule", b.ps_rule)]
        lists = [("ps_automation", [w for kv in b.ps_automation for w in kv]), ("hp_ports", b.hp_ports)]
        words2 = [("master_port", b.master_port), ("clock_pin", b.clock_pin), ("reset_pin", b.reset_pin),
                  ("irq_pin", b.irq_pin)]
        lists2 = [("ps_config", [w for k, v in b.ps_config for w in (f"CONFIG.{k}", v)])]
        fields = ([(k, _tcl_word(v)) for k, v in words] + [(k, _tcl_list(v)) for k, v in lists]
                  + [(k, _tcl_word(v)) for k, v in words2] + [(k, _tcl_list(v)) for k, v in lists2]
                  + [("clock_property", _tcl_word("CONFIG." + b.clock_property)), ("configs", _tcl_list(cfgs))]
                  + [("accel_configs", _accel_configs(configs, b.name))])
        body = " ".join(f"{k} {v}" for k, v in fields)
        lines.append(f"dict set VITACCEL_BOARDS {b.name} [dict create {body}]")
    return "\n".join(lines) + "\n"


def boards_markdown(configs: List) -> str:
    """``overlay/BOARDS.md``: the same table for people."""
    rows = ["# Boards", "",
            "Generated by `vitaccel config gen` from `vitaccel/boards.py` and `configs/*.json`; `build.tcl` reads the",
            "same table from `overlay/boards.tcl`. Board files are used when Vivado has them (else the part alone,",
            "with the PS settings below); IP versions are whatever the installed Vivado ships.", "",
            "| board | part | board files | PS IP | HP ports (act, idx, wgt) | control | clock, reset, IRQ "
            "| configs (clock) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for b in BOARDS.values():
        cfgs = sorted((c for c in configs if getattr(c, "board", None) == b.name), key=lambda c: c.name)
        cl = ", ".join(f"`{c.name}` ({c.clock_mhz:g} MHz)" for c in cfgs) or "-"
        rows.append(f"| {b.title} | `{b.part}` | `{b.board_part}` | `{b.ps_vlnv}` | {', '.join(b.hp_ports)} | "
                    f"{b.master_port} | {b.clock_pin}, {b.reset_pin}, {b.irq_pin} | {cl} |")
    rows += ["", "PS settings on top of the board preset (`set_property` on the PS cell; the fabric clock property "
             "gets the config's `clock_mhz`):", ""]
    for b in BOARDS.values():
        props = ", ".join(f"`{k}={v}`" for k, v in b.ps_config)
        rows.append(f"- {b.name}: {props}; clock `{b.clock_property}`.")
    return "\n".join(rows) + "\n"
