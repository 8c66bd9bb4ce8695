"""build.tcl without Vivado: run under plain tclsh with recording stand-ins for the Vivado and HLS commands.

The stand-ins (HARNESS below) log every call, answer queries the way Vivado does (IP definitions with a
version, run status, slack, utilisation) and create the files the real tools would (golden cases, the
csynth report, the exported IP folder, a bitstream and a .hwh in either place Vivado versions use), so the
script's argument parsing, step order, generated HLS scripts, block-design calls and manifest are all
checked. The real build is the `vivado` test at the end, skipped where Vivado is not installed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vitaccel import accelerators
from vitaccel.boards import BOARDS
from vitaccel.hwconfig import REPO_ROOT, load_config

BUILD_TCL = REPO_ROOT / "build.tcl"
pytestmark = pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh is not installed")

HARNESS = r'''
set LOG [open $env(FAKE_LOG) w]
proc rec {args} { global LOG; puts $LOG [string map {"\n" " "} $args]; flush $LOG }
proc stub {name {result ""}} { proc $name {args} "rec $name {*}\$args; return [list $result]" }

proc auto_execok {name} {
    global env
    if {$name eq "vitis-run" && [info exists env(FAKE_VITIS_RUN)]} { return [list /opt/fake/vitis-run] }
    if {$name eq "vitis_hls" && ![info exists env(FAKE_NO_HLS)]} { return [list /opt/fake/vitis_hls] }
    if {$name eq "vitaccel" && ![info exists env(FAKE_NO_VITACCEL)]} { return [list /opt/fake/vitaccel] }
    return ""
}
rename exec _real_exec
proc exec {args} {
    global env
    rec exec {*}$args
    set tool [file tail [lindex $args 0]]
    if {$tool eq "vitaccel"} {
        set out [lindex $args [expr {[lsearch $args --out] + 1}]]
        foreach k {@KERNELS@} { file mkdir [file join $out $k ${k}0] [file join $out $k ${k}1] }
        return ""
    }
    if {$tool in {vitis_hls vitis-run}} {
        # The script is the last argument before the log redirection.
        set script [lindex $args [expr {[lsearch -exact $args >&] - 1}]]
        set f [open $script r]; set text [read $f]; close $f
        rec hls_script $script
        if {[info exists env(FAKE_HLS_FAIL)] && [string match *csim* $script]} { error "csim FAIL: mismatch" }
        if {[regexp {open_project -reset (\S+)} $text -> proj] && [string match *hls_vitcod_top* $proj]} {
            # What csynth_design and export_design leave: the reports (csynth.xml and per-module ones) and
            # the IP folder.
            set reports [file join $proj sol syn report]
            file mkdir $reports [file join $proj sol impl ip]
            foreach f [glob -nocomplain -directory $env(FAKE_REPORTS) *.xml] { file copy -force $f $reports }
        }
        return ""
    }
    error "unexpected exec: $args"
}
proc get_ipdefs {args} {
    rec get_ipdefs {*}$args
    set pat [lindex $args end]
    return [list [string map {* 1.0} $pat] [string map {* 3.4} $pat]]
}
proc get_board_parts {args} { rec get_board_parts {*}$args; return "" }
proc create_bd_cell {args} { rec create_bd_cell {*}$args; return [lindex $args end] }
proc get_bd_pins {args} { rec get_bd_pins {*}$args; return [lindex $args end] }
proc get_bd_intf_pins {args} { rec get_bd_intf_pins {*}$args; return [lindex $args end] }
proc make_wrapper {args} { rec make_wrapper {*}$args; return /fake/design_1_wrapper.v }
proc get_projects {args} { rec get_projects {*}$args; return "" }
proc get_runs {args} { rec get_runs {*}$args; return impl_1 }
proc get_timing_paths {args} {
    rec get_timing_paths {*}$args
    return [expr {"-hold" in $args ? "hold_path" : "setup_path"}]
}
proc get_property {prop args} {
    global env
    rec get_property $prop {*}$args
    switch -- $prop {
        STATUS { return "write_bitstream Complete!" }
        SLACK { return [expr {[lindex $args 0] eq "hold_path" ? $env(FAKE_WHS) : $env(FAKE_WNS)}] }
        DIRECTORY { return $env(FAKE_RUN_DIR) }
    }
    return ""
}
# Implementation: a bitstream in the run folder and a .hwh in each of FAKE_HWH_BASES (<proj>.gen and/or
# <proj>.srcs), each holding its own base's name, the later ones newer.
proc launch_runs {args} {
    global env
    rec launch_runs {*}$args
    file mkdir $env(FAKE_RUN_DIR)
    close [open [file join $env(FAKE_RUN_DIR) design_1_wrapper.bit] w]
    set t [expr {[clock seconds] - 100}]
    foreach base $env(FAKE_HWH_BASES) {
        set hwh [file join $base sources_1 bd design_1 hw_handoff]
        file mkdir $hwh
        set f [open [file join $hwh design_1.hwh] w]; puts -nonewline $f [file extension $base]; close $f
        file mtime [file join $hwh design_1.hwh] [incr t 10]
    }
}
proc report_utilization {args} {
    rec report_utilization {*}$args
    return "| Site Type | Used |\n| CLB LUTs* | 123456 |\n| CLB Registers | 98765 |\n| Block RAM Tile | 210.5 |\n| URAM | 48 |\n| DSPs | 560 |"
}
proc version {args} { return 2024.1 }
foreach c {create_project set_property current_project update_ip_catalog create_bd_design apply_bd_automation
           connect_bd_net assign_bd_address validate_bd_design save_bd_design
           get_files add_files current_fileset open_project reset_run wait_on_run open_run} {
    stub $c
}
set argv $env(FAKE_ARGV)
source $env(BUILD_TCL)
'''

# A top report the way Vitis HLS 2020-2022 write it: nested loops, Latency ranges, a Slack element ahead of
# TripCount in some releases, and PipelineII only on pipelined loops.
CSYNTH_OK = """<profile>
<ReportVersion><Version>2022.2</Version></ReportVersion>
<UserAssignments><unit>ns</unit><TopModelName>vitcod_top</TopModelName><TargetClockPeriod>5.00</TargetClockPeriod>
</UserAssignments>
<PerformanceEstimates>
<SummaryOfTimingAnalysis><unit>ns</unit><EstimatedClockPeriod>4.100</EstimatedClockPeriod></SummaryOfTimingAnalysis>
<SummaryOfLoopLatency>
<TOP_LAYERS>
<TripCount>12</TripCount>
<Latency><range><min>10</min><max>900</max></range></Latency>
<PipelineII>no</PipelineII>
<TOP_FETCH>
<Slack>0.90</Slack>
<TripCount>64</TripCount><Latency>66</Latency><PipelineII>1</PipelineII><PipelineDepth>3</PipelineDepth>
<InstanceList/>
</TOP_FETCH>
</TOP_LAYERS>
</SummaryOfLoopLatency>
</PerformanceEstimates>
<AreaEstimates><Resources><DSP>560</DSP></Resources></AreaEstimates>
</profile>
"""


def module_report(module: str, loop: str, ii: int, est: str = "3.900") -> str:
    """A sub-module's report (<module>_csynth.xml): Vitis 2021+ moves each pipelined loop into one."""
    return f"""<profile>
<UserAssignments><TopModelName>{module}</TopModelName><TargetClockPeriod>5.00</TargetClockPeriod></UserAssignments>
<PerformanceEstimates>
<SummaryOfTimingAnalysis><EstimatedClockPeriod>{est}</EstimatedClockPeriod></SummaryOfTimingAnalysis>
<SummaryOfLoopLatency>
<{loop}>
<Slack>1.10</Slack>
<TripCount>8192</TripCount>
<Latency>8200</Latency>
<AbsoluteTimeLatency>41000</AbsoluteTimeLatency>
<PipelineII>{ii}</PipelineII>
<PipelineDepth>9</PipelineDepth>
<InstanceList>
</InstanceList>
</{loop}>
</SummaryOfLoopLatency>
</PerformanceEstimates>
</profile>
"""


SDDMM = "attention_engine_Pipeline_ATT_SDDMM"
REPORTS_OK = {"csynth.xml": CSYNTH_OK, f"{SDDMM}_csynth.xml": module_report(SDDMM, "ATT_SDDMM", 1)}


def run_build(tmp_path: Path, argv, *, reports=None, wns: str = "0.12", whs: str = "0.03", hwh_in=("gen",),
              env=None, overlay_root: Path = None, drop=()):
    """Run build.tcl under tclsh with the stand-ins; return (returncode, output, call log lines, repo root).

    The repository is a scratch copy of what build.tcl reads (overlay/ without board outputs, hls/ linked), so
    the test never writes into the real overlay/ folder; ``drop`` deletes files from that copy."""
    root = overlay_root or tmp_path / "repo"
    if not root.exists():
        shutil.copytree(REPO_ROOT / "overlay", root / "overlay", ignore=shutil.ignore_patterns("zcu104", "kv260",
                                                                                                 "pynq-z2"))
        (root / "build.tcl").write_text(BUILD_TCL.read_text())
        os.symlink(REPO_ROOT / "hls", root / "hls")
    for rel in drop:
        (root / rel).unlink()
    rdir = tmp_path / "reports"
    rdir.mkdir(parents=True, exist_ok=True)
    for name, text in (REPORTS_OK if reports is None else reports).items():
        (rdir / name).write_text(text)
    harness = tmp_path / "harness.tcl"
    # The stand-in `vitaccel golden` writes two cases per kernel of the registry (what the real one writes).
    harness.write_text(HARNESS.replace("@KERNELS@", " ".join(k.name for k in accelerators.get("vitcod").kernels)))

    def arg(opt, default):
        i = argv.index(opt) + 1 if opt in argv else len(argv)
        return argv[i] if i < len(argv) else default

    board = arg("--board", "x")
    variant = "vitcod-" + arg("--config", board)
    proj = "vitaccel_" + variant.replace("-", "_")
    bdir = tmp_path / "build"
    e = dict(os.environ, FAKE_LOG=str(tmp_path / "calls.log"), FAKE_ARGV=" ".join(argv + ["--build", str(bdir)]),
             BUILD_TCL=str(root / "build.tcl"), FAKE_REPORTS=str(rdir), FAKE_WNS=wns, FAKE_WHS=whs,
             FAKE_RUN_DIR=str(tmp_path / "runs" / "impl_1"),
             FAKE_HWH_BASES=" ".join(str(bdir / board / variant / "vivado" / f"{proj}.{w}") for w in hwh_in))
    e.update(env or {})
    r = subprocess.run(["tclsh", str(harness)], capture_output=True, text=True, timeout=60, env=e)
    log = (tmp_path / "calls.log").read_text().splitlines() if (tmp_path / "calls.log").exists() else []
    return r.returncode, r.stdout + r.stderr, log, root


def steps_run(out: str):
    return [line[3:] for line in out.splitlines() if line.startswith("== ")]


# -- arguments ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,needle", [
    ([], "--board is required"),
    (["--board", "zedboard"], "unknown board 'zedboard' (known: pynq-z2, zcu104, kv260)"),
    (["--board", "zcu104", "--config", "kv260"], "config 'kv260' targets board 'kv260', not 'zcu104'"),
    (["--board", "zcu104", "--config", "nope"], "no hardware config 'nope'"),
    (["--board", "zcu104", "--steps", "csim,synth"], "unknown step 'synth' (steps: csim,hls,bd,bit)"),
    (["--board", "zcu104", "--steps", ","], "--steps names no step"),
    (["--board", "zcu104", "--frobnicate", "1"], "unknown option '--frobnicate'"),
    (["--board"], "option '--board' needs a value"),
    (["--board", "zcu104", "--steps"], "option '--steps' needs a value"),
    (["--board", "--steps", "bd"], "option '--board' needs a value"),
    (["--board", "zcu104", "--jobs", "zero"], "--jobs must be a positive integer"),
    (["--board", "zcu104", "--accelerator", "tpu"], "unknown accelerator 'tpu' (known: vitcod, revit)"),
])
def test_bad_arguments_fail_clearly(tmp_path, argv, needle):
    rc, out, log, _ = run_build(tmp_path, argv)
    assert rc != 0 and needle in out, out
    assert "usage:" in out or "unknown" in out or "config" in out or "--jobs" in out or "--steps" in out
    assert not any(line.startswith(("create_project", "exec")) for line in log), "nothing may run after a bad argument"


def test_help(tmp_path):
    rc, out, log, _ = run_build(tmp_path, ["--help"])
    assert rc == 0 and "usage: vivado -mode batch -source build.tcl -tclargs --board BOARD" in out
    assert log == []


def test_missing_generated_files_name_the_command(tmp_path):
    rc, out, _, _ = run_build(tmp_path, ["--board", "zcu104"], drop=["overlay/boards.tcl"])
    assert rc != 0 and "boards.tcl is missing: run `vitaccel config gen`" in out
    rc, out, _, _ = run_build(tmp_path / "b", ["--board", "zcu104"], drop=["overlay/configs/zcu104.tcl"])
    assert rc != 0 and "no hardware config 'zcu104'" in out and "run `vitaccel config gen`" in out


def test_without_vivado_it_says_so(tmp_path):
    r = subprocess.run(["tclsh", str(BUILD_TCL)], capture_output=True, text=True, timeout=30,
                       input="", env=dict(os.environ))
    assert r.returncode != 0 and "--board is required" in r.stderr
    h = tmp_path / "plain.tcl"
    h.write_text(f"set argv {{--board zcu104 --build {tmp_path / 'b'}}}\nsource {BUILD_TCL}\n")
    r = subprocess.run(["tclsh", str(h)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "steps bd and bit run inside Vivado" in r.stderr
    assert not (tmp_path / "b" / "zcu104" / "vitcod-zcu104" / "golden_zcu104").exists(), \
        "no step may start before that check"
    # The HLS steps alone run under plain tclsh; here with neither vitaccel nor Vitis on PATH.
    h.write_text(f"set argv {{--board zcu104 --steps csim --build {tmp_path / 'b'}}}\nsource {BUILD_TCL}\n")
    r = subprocess.run([shutil.which("tclsh"), str(h)], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, PATH=str(tmp_path / "empty")))
    assert r.returncode != 0 and "vitaccel golden --config zcu104 --out" in r.stderr, r.stderr


# -- the whole build, per board ----------------------------------------------------------------------------

QUOTED_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def _resolve_includes(src: Path, include_dirs, seen: set):
    """Every quoted #include reachable from src resolves next to its includer or under an -I folder."""
    if src in seen:
        return
    seen.add(src)
    for inc in QUOTED_INCLUDE.findall(src.read_text()):
        hits = [d / inc for d in [src.parent, *include_dirs] if (d / inc).is_file()]
        assert hits, f"{src}: #include \"{inc}\" is not found next to it or under {include_dirs}"
        _resolve_includes(hits[0].resolve(), include_dirs, seen)


@pytest.mark.parametrize("board", list(BOARDS))
def test_full_build_order_files_and_manifest(tmp_path, board):
    rc, out, log, root = run_build(tmp_path, ["--board", board])
    assert rc == 0, out
    b = BOARDS[board]
    cfg = load_config(board)
    # Steps in canonical order, each kernel's csim before synthesis, synthesis before the project.
    assert steps_run(out) == ["csim", "hls", "bd", "bit"]
    kinds = [line.split()[0] for line in log]
    first = {k: kinds.index(k) for k in ("exec", "hls_script", "create_project", "create_bd_design", "launch_runs")}
    assert first["exec"] < first["hls_script"] < first["create_project"] < first["create_bd_design"] < first["launch_runs"]
    assert log[first["exec"]].split()[1:4] == ["/opt/fake/vitaccel", "golden", "--config"], "golden files first"
    scripts = [line.split()[1] for line in log if line.startswith("hls_script")]
    # One csim per kernel of the registry, in its order, then the top's synthesis.
    assert [Path(s).stem for s in scripts] == [f"csim_{k.name}" for k in accelerators.get("vitcod").kernels] + \
        ["hls_vitcod_top"]
    assert [Path(s).stem for s in scripts][:3] == ["csim_gemm", "csim_autoencoder", "csim_attention"]

    # Every file and include folder the HLS scripts name exists, and they are enough for every quoted
    # #include; the right target macro, part and clock.
    seen: set = set()
    for s in scripts:
        text = Path(s).read_text()
        incs = [Path(i) for i in re.findall(r"-I(\S+?)\}?(?:\s|$)", text)]
        assert incs and all(i.is_dir() for i in incs), incs
        files = [Path(f) for f in re.findall(r"add_files (?:-tb )?(\S+)", text)]
        assert files
        for f in files:
            assert f.is_file(), f
            _resolve_includes(f.resolve(), incs, seen)
        assert f"-DVITACCEL_TARGET_{cfg.ident}" in text and f"set_part {cfg.part}" in text
        assert f"create_clock -period {1000.0 / cfg.clock_mhz:.4f}" in text
    assert any(p.name == f"{cfg.name}.h" for p in seen), "the config's own header is reached"
    csim = Path(scripts[0]).read_text()
    assert "csim_design -argv" in csim and "gemm0" in csim and "gemm1" in csim and f"golden_{board}" in csim
    assert "export_design -format ip_catalog" in Path(scripts[-1]).read_text()

    # Block design: the board's PS by wildcard VLNV (newest version picked), its preset, the HLS IP, three
    # HP ports, the control port on the PS master, the interrupt, the fabric clock.
    assert f"get_ipdefs -all {b.ps_vlnv}" in log and "get_ipdefs -all xilinx.com:hls:vitcod_top:*" in log
    assert any(line.startswith("create_bd_cell -type ip -vlnv " + b.ps_vlnv.replace("*", "3.4")) for line in log)
    assert any("create_bd_cell -type ip -vlnv xilinx.com:hls:vitcod_top:3.4 vitcod_top_0" in line for line in log)
    auto = [line for line in log if line.startswith(f"apply_bd_automation -rule {b.ps_rule}")]
    assert len(auto) == 1 and "apply_board_preset 1" in auto[0]
    assert ("make_external {FIXED_IO, DDR}" in auto[0]) == (b.family == "zynq")
    for bundle, hp in zip(("gmem_act", "gmem_idx", "gmem_wgt"), b.hp_ports):
        assert any(f"Master /vitcod_top_0/m_axi_{bundle} Slave /ps/{hp}" in line for line in log), (bundle, hp)
    assert any(f"Master /ps/{b.master_port} Slave /vitcod_top_0/s_axi_control" in line for line in log)
    assert any(line.startswith("connect_bd_net") and b.irq_pin in line and "vitcod_top_0/interrupt" in line
               for line in log)
    ps_props = [line for line in log if line.startswith("set_property -dict")]
    assert any(f"CONFIG.{b.clock_property} {cfg.clock_mhz}" in line for line in ps_props)
    assert all(f"CONFIG.{k} {v}" in ps_props[0] for k, v in b.ps_config)
    order = [k for k in kinds if k in ("create_bd_design", "assign_bd_address", "validate_bd_design",
                                        "make_wrapper", "launch_runs")]
    assert order == ["create_bd_design", "assign_bd_address", "validate_bd_design", "make_wrapper", "launch_runs"]

    # The overlay files and the manifest.
    name = f"vitcod-{board}"
    od = root / "overlay" / board / name
    assert (od / f"{name}.bit").exists() and (od / f"{name}.hwh").read_text() == ".gen"
    m = json.loads((od / "manifest.json").read_text())
    assert m["config"] == board and m["config_hash"] == cfg.hash and m["config_hash32"] == f"0x{cfg.hash32:08x}"
    assert m["accelerator"] == "vitcod"
    assert m["board"] == board and m["part"] == cfg.part and m["tool"] == "2024.1" and m["name"] == name
    assert m["clock_mhz"] == cfg.clock_mhz and m["clock_period_ns"] == pytest.approx(1000.0 / cfg.clock_mhz)
    assert m["wns_ns"] == 0.12 and m["whs_ns"] == 0.03 and m["hls_estimated_period_ns"] == 4.1
    assert m["utilization"] == {"LUT": 123456, "FF": 98765, "BRAM": 210.5, "URAM": 48, "DSP": 560}
    assert m["files"] == [f"{name}.bit", f"{name}.hwh"]


@pytest.mark.parametrize("where,expect", [(("srcs",), ".srcs"), (("srcs", "gen"), ".gen"), (("gen", "srcs"), ".srcs")])
def test_hwh_from_either_location_newest_wins(tmp_path, where, expect):
    # Vivado 2020.2+ writes <proj>.gen/.../hw_handoff, older releases <proj>.srcs/...; the newer file wins.
    rc, out, _, root = run_build(tmp_path, ["--board", "pynq-z2", "--steps", "hls,bd,bit"], hwh_in=where)
    assert rc == 0, out
    assert (root / "overlay" / "pynq-z2" / "vitcod-pynq-z2" / "vitcod-pynq-z2.hwh").read_text() == expect


def test_step_subsets_keep_the_canonical_order(tmp_path):
    rc, out, log, _ = run_build(tmp_path, ["--board", "kv260", "--steps", "hls,csim"])
    assert rc == 0, out
    assert steps_run(out) == ["csim", "hls"]
    assert not any(line.startswith("create_project") for line in log)
    # bd,bit on top of that build folder: no HLS run, and the Vivado calls in order.
    rc, out, log, _ = run_build(tmp_path, ["--board", "kv260", "--steps", "bit,bd"], overlay_root=tmp_path / "repo")
    assert rc == 0, out
    assert steps_run(out) == ["bd", "bit"]
    assert not any(line.startswith(("exec", "hls_script")) for line in log)
    rc, out, _, _ = run_build(tmp_path / "b", ["--board", "kv260", "--steps", "bd"])
    assert rc != 0 and "run the hls step first" in out
    rc, out, _, _ = run_build(tmp_path / "c", ["--board", "kv260", "--steps", "bit"])
    assert rc != 0 and "run the bd step first" in out


# -- failures that must stop the build ----------------------------------------------------------------------

@pytest.mark.parametrize("reports,needle", [
    ({"csynth.xml": CSYNTH_OK.replace("4.100", "5.600")},
     "HLS estimates a 5.600 ns clock period (vitcod_top), the config needs 5.0000 ns"),
    ({**REPORTS_OK, f"{SDDMM}_csynth.xml": module_report(SDDMM, "ATT_SDDMM", 1, est="5.2")},
     f"HLS estimates a 5.2 ns clock period ({SDDMM})"),
    ({**REPORTS_OK, f"{SDDMM}_csynth.xml": module_report(SDDMM, "ATT_SDDMM", 2)},
     f"pipelined loops miss II = 1: ATT_SDDMM in {SDDMM} (II=2)"),
    ({"csynth.xml": CSYNTH_OK.replace("<PipelineII>1</PipelineII><PipelineDepth>3",
                                      "<PipelineII>4</PipelineII><PipelineDepth>3")},
     "pipelined loops miss II = 1: TOP_FETCH in vitcod_top (II=4)"),
    ({"csynth.xml": "<profile/>"}, "has no EstimatedClockPeriod"),
    ({}, "csynth report: "),
])
def test_csynth_report_failures(tmp_path, reports, needle):
    rc, out, log, _ = run_build(tmp_path, ["--board", "zcu104"], reports=reports)
    assert rc != 0 and needle in out, out
    assert not any(line.startswith("create_project") for line in log)
    assert "== bd" not in out


@pytest.mark.parametrize("wns,whs,needle", [
    ("-0.31", "0.02", "timing not met: worst negative slack -0.31 ns at 200.0 MHz"),
    ("0.10", "-0.01", "timing not met: worst hold slack -0.01 ns"),
    ("", "0.02", "no timed setup path"),
])
def test_timing_failure_writes_no_overlay(tmp_path, wns, whs, needle):
    rc, out, _, root = run_build(tmp_path, ["--board", "zcu104"], wns=wns, whs=whs)
    assert rc != 0 and needle in out, out
    assert not (root / "overlay" / "zcu104" / "vitcod-zcu104").exists()


def test_missing_tools_and_failing_csim(tmp_path):
    rc, out, _, _ = run_build(tmp_path, ["--board", "zcu104", "--steps", "csim"], env={"FAKE_NO_HLS": "1"})
    assert rc != 0 and "neither vitis-run nor vitis_hls is on PATH" in out
    rc, out, _, _ = run_build(tmp_path / "b", ["--board", "zcu104", "--steps", "csim"], env={"FAKE_NO_VITACCEL": "1"})
    assert rc != 0 and "vitaccel golden --config zcu104 --out" in out
    rc, out, log, _ = run_build(tmp_path / "c", ["--board", "zcu104", "--steps", "csim,hls"],
                                env={"FAKE_HLS_FAIL": "1"})
    assert rc != 0 and "Vitis HLS failed running" in out and "csim_gemm.tcl" in out
    assert steps_run(out) == ["csim"] and not any("hls_vitcod_top" in line for line in log)


def test_vitis_run_is_preferred_when_present(tmp_path):
    # Vitis 2023.2+ has vitis-run (and, for a while, the deprecated vitis_hls too): vitis-run wins.
    rc, out, log, _ = run_build(tmp_path, ["--board", "zcu104", "--steps", "csim,hls"], env={"FAKE_VITIS_RUN": "1"})
    assert rc == 0, out
    calls = [c.split() for c in log if c.startswith("exec /opt/fake/vitis")]
    assert len(calls) == len(accelerators.get("vitcod").kernels) + 1      # one csim per kernel, one csynth
    for c in calls:
        assert c[1:5] == ["/opt/fake/vitis-run", "--mode", "hls", "--tcl"] and c[5].endswith(".tcl") and c[6] == ">&"
    plain = [c.split() for c in run_build(tmp_path / "b", ["--board", "zcu104", "--steps", "csim"])[2]
             if c.startswith("exec /opt/fake/vitis")]
    assert plain and all(c[1:3] == ["/opt/fake/vitis_hls", "-f"] for c in plain)


def test_every_pipeline_pragma_targets_ii_1():
    # build.tcl fails any pipelined loop above II = 1: that is only right while every pipeline asks for 1.
    pragmas = []
    for f in (REPO_ROOT / "hls").rglob("*"):
        if f.suffix in (".h", ".cpp", ".hpp"):
            pragmas += re.findall(r"#pragma\s+HLS\s+pipeline\b[^\n]*", f.read_text(), re.I)
    assert pragmas
    for p in pragmas:
        ii = re.search(r"\bII\s*=\s*(\d+)", p, re.I)
        assert ii is None or ii.group(1) == "1", p


def test_board_table_matches_the_configs():
    # One table: every FPGA config names a known board whose part it uses; the generated tcl carries it.
    text = (REPO_ROOT / "overlay" / "boards.tcl").read_text()
    for b in BOARDS.values():
        assert f"dict set VITACCEL_BOARDS {b.name} " in text and b.part in text
    for name in ("zcu104", "kv260", "pynq-z2"):
        c = load_config(name)
        assert c.board in BOARDS and BOARDS[c.board].part == c.part


# -- the real thing --------------------------------------------------------------------------------------------

@pytest.mark.vivado
@pytest.mark.skipif(shutil.which("vivado") is None, reason="Vivado is not installed (tests run build.tcl under tclsh)")
def test_real_build_pynq_z2(tmp_path):
    r = subprocess.run(["vivado", "-mode", "batch", "-nojournal", "-nolog", "-source", str(BUILD_TCL), "-tclargs",
                        "--board", "pynq-z2", "--build", str(tmp_path)], capture_output=True, text=True,
                       timeout=6 * 3600, cwd=REPO_ROOT)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    m = json.loads((REPO_ROOT / "overlay" / "pynq-z2" / "vitcod-pynq-z2" / "manifest.json").read_text())
    assert m["wns_ns"] >= 0 and m["whs_ns"] >= 0 and m["config_hash"] == load_config("pynq-z2").hash
