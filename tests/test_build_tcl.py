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
        foreach k {gemm autoencoder attention} { file mkdir [file join $out $k ${k}0] [file join $out $k ${k}1] }
        return ""
    }
    if {$tool eq "vitis_hls"} {
        set script [lindex $args 2]
        set f [open $script r]; set text [read $f]; close $f
        rec hls_script $script
        if {[info exists env(FAKE_HLS_FAIL)] && [string match *csim* $script]} { error "csim FAIL: mismatch" }
        if {[regexp {open_project -reset (\S+)} $text -> proj] && [string match *hls_vitcod_top* $proj]} {
            file mkdir [file join $proj sol syn report] [file join $proj sol impl ip]
            set f [open [file join $proj sol syn report csynth.xml] w]
            puts $f $env(FAKE_CSYNTH)
            close $f
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
proc get_property {prop args} {
    global env
    rec get_property $prop {*}$args
    switch -- $prop {
        STATUS { return "write_bitstream Complete!" }
        SLACK { return $env(FAKE_WNS) }
        DIRECTORY { return $env(FAKE_RUN_DIR) }
    }
    return ""
}
proc launch_runs {args} {
    global env
    rec launch_runs {*}$args
    file mkdir $env(FAKE_RUN_DIR)
    close [open [file join $env(FAKE_RUN_DIR) design_1_wrapper.bit] w]
    set hwh [file join $env(FAKE_HWH_BASE) sources_1 bd design_1 hw_handoff]
    file mkdir $hwh
    close [open [file join $hwh design_1.hwh] w]
}
proc report_utilization {args} {
    rec report_utilization {*}$args
    return "| Site Type | Used |\n| CLB LUTs  | 123456 |\n| CLB Registers | 98765 |\n| Block RAM Tile | 210.5 |\n| DSPs | 560 |"
}
proc version {args} { return 2024.1 }
foreach c {create_project set_property current_project update_ip_catalog create_bd_design apply_bd_automation
           connect_bd_net assign_bd_address validate_bd_design save_bd_design
           get_files add_files current_fileset open_project reset_run wait_on_run open_run get_timing_paths} {
    stub $c
}
set argv $env(FAKE_ARGV)
source $env(BUILD_TCL)
'''

CSYNTH_OK = """<profile><PerformanceEstimates><SummaryOfTimingAnalysis><unit>ns</unit>
<EstimatedClockPeriod>4.1</EstimatedClockPeriod></SummaryOfTimingAnalysis>
<SummaryOfLoopLatency><TOP_FETCH><TripCount>64</TripCount><PipelineII>1</PipelineII><PipelineDepth>3</PipelineDepth>
</TOP_FETCH><ATT_SDDMM><TripCount>8192</TripCount><PipelineII>1</PipelineII></ATT_SDDMM></SummaryOfLoopLatency>
</PerformanceEstimates></profile>"""


def run_build(tmp_path: Path, argv, *, csynth: str = CSYNTH_OK, wns: str = "0.12", hwh_in: str = "gen", env=None,
              overlay_root: Path = None):
    """Run build.tcl under tclsh with the stand-ins; return (returncode, output, call log lines)."""
    root = overlay_root or tmp_path / "repo"
    if not root.exists():
        # A copy of what build.tcl reads, so the test never writes into the real overlay/ folder.
        shutil.copytree(REPO_ROOT / "overlay", root / "overlay", ignore=shutil.ignore_patterns("zcu104", "kv260",
                                                                                                 "pynq-z2"))
        (root / "build.tcl").write_text(BUILD_TCL.read_text())
        os.symlink(REPO_ROOT / "hls", root / "hls")
    harness = tmp_path / "harness.tcl"
    harness.write_text(HARNESS)
    def arg(opt, default):
        i = argv.index(opt) + 1 if opt in argv else len(argv)
        return argv[i] if i < len(argv) else default

    board = arg("--board", "x")
    proj = "vitaccel_" + arg("--config", board)
    bdir = tmp_path / "build"
    e = dict(os.environ, FAKE_LOG=str(tmp_path / "calls.log"), FAKE_ARGV=" ".join(argv + ["--build", str(bdir)]),
             BUILD_TCL=str(root / "build.tcl"), FAKE_CSYNTH=csynth, FAKE_WNS=wns,
             FAKE_RUN_DIR=str(tmp_path / "runs" / "impl_1"),
             FAKE_HWH_BASE=str(bdir / board / "vivado" / f"{proj}.{hwh_in}"))
    e.update(env or {})
    r = subprocess.run(["tclsh", str(harness)], capture_output=True, text=True, timeout=60, env=e)
    log = (tmp_path / "calls.log").read_text().splitlines() if (tmp_path / "calls.log").exists() else []
    return r.returncode, r.stdout + r.stderr, log, root


# -- arguments ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,needle", [
    ([], "--board is required"),
    (["--board", "zedboard"], "unknown board 'zedboard' (known: pynq-z2, zcu104, kv260)"),
    (["--board", "zcu104", "--config", "kv260"], "config 'kv260' targets board 'kv260', not 'zcu104'"),
    (["--board", "zcu104", "--config", "nope"], "no hardware config 'nope'"),
    (["--board", "zcu104", "--steps", "csim,synth"], "unknown step 'synth'"),
    (["--board", "zcu104", "--steps", ","], "--steps names no step"),
    (["--board", "zcu104", "--frobnicate", "1"], "unknown option '--frobnicate'"),
    (["--board"], "option '--board' needs a value"),
    (["--board", "zcu104", "--jobs", "zero"], "--jobs must be a positive integer"),
])
def test_bad_arguments_fail_clearly(tmp_path, argv, needle):
    rc, out, log, _ = run_build(tmp_path, argv)
    assert rc != 0 and needle in out, out
    assert not any(line.startswith(("create_project", "exec")) for line in log), "nothing may run after a bad argument"


def test_without_vivado_it_says_so(tmp_path):
    r = subprocess.run(["tclsh", str(BUILD_TCL)], capture_output=True, text=True, timeout=30,
                       input="", env=dict(os.environ))
    assert r.returncode != 0 and "--board is required" in r.stderr
    h = tmp_path / "plain.tcl"
    h.write_text(f"set argv {{--board zcu104}}\nsource {BUILD_TCL}\n")
    r = subprocess.run(["tclsh", str(h)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "run this inside Vivado" in r.stderr


# -- the whole build, per board ----------------------------------------------------------------------------

def _hls_scripts(tmp_path: Path, board: str):
    return sorted((tmp_path / "build" / board).glob("*.tcl"))


@pytest.mark.parametrize("board", list(BOARDS))
def test_full_build_order_files_and_manifest(tmp_path, board):
    rc, out, log, root = run_build(tmp_path, ["--board", board])
    assert rc == 0, out
    b = BOARDS[board]
    cfg = load_config(board)
    # Steps in canonical order, each kernel's csim before synthesis, synthesis before the project.
    assert [line[3:] for line in out.splitlines() if line.startswith("== ")] == ["csim", "hls", "bd", "bit"]
    kinds = [line.split()[0] for line in log]
    first = {k: kinds.index(k) for k in ("hls_script", "create_project", "create_bd_design", "launch_runs")}
    assert first["hls_script"] < first["create_project"] < first["create_bd_design"] < first["launch_runs"]
    scripts = [line.split()[1] for line in log if line.startswith("hls_script")]
    assert [Path(s).stem for s in scripts] == ["csim_gemm", "csim_autoencoder", "csim_attention", "hls_vitcod_top"]

    # Every file and include folder the HLS scripts name exists; the right target macro and clock.
    for s in scripts:
        text = Path(s).read_text()
        for f in re.findall(r"add_files (?:-tb )?(\S+)", text):
            assert Path(f).is_file(), f
        for inc in re.findall(r"-I(\S+)", text):
            assert Path(inc).is_dir(), inc
        assert f"-DVITACCEL_TARGET_{cfg.ident}" in text and f"set_part {cfg.part}" in text
        assert f"create_clock -period {1000.0 / cfg.clock_mhz:.4f}" in text
    csim = Path(scripts[0]).read_text()
    assert "csim_design -argv" in csim and "gemm0" in csim and "gemm1" in csim
    assert "export_design -format ip_catalog" in Path(scripts[-1]).read_text()

    # Block design: the board's PS by wildcard VLNV (newest version picked), the HLS IP, three HP ports.
    assert f"get_ipdefs -all {b.ps_vlnv}" in log
    assert any(line.startswith("create_bd_cell -type ip -vlnv " + b.ps_vlnv.replace("*", "3.4")) for line in log)
    assert any("create_bd_cell -type ip -vlnv xilinx.com:hls:vitcod_top:3.4" in line for line in log)
    for bundle, hp in zip(("gmem_act", "gmem_idx", "gmem_wgt"), b.hp_ports):
        assert any(f"Master /vitcod_top/m_axi_{bundle} Slave /ps/{hp}" in line for line in log), (bundle, hp)
    assert any(f"Master /ps/{b.master_port}" in line for line in log)
    assert any(line.startswith("connect_bd_net") and b.irq_pin in line for line in log)
    assert any(b.clock_property in line and f"{cfg.clock_mhz}" in line for line in log if line.startswith("set_property"))
    for call in ("assign_bd_address", "validate_bd_design", "make_wrapper"):
        assert call in kinds

    # The overlay files and the manifest.
    od = root / "overlay" / board
    name = f"vitaccel_{board}"
    assert (od / f"{name}.bit").exists() and (od / f"{name}.hwh").exists()
    m = json.loads((od / "manifest.json").read_text())
    assert m["config"] == board and m["config_hash"] == cfg.hash and m["config_hash32"] == f"0x{cfg.hash32:08x}"
    assert m["board"] == board and m["part"] == cfg.part and m["tool"] == "2024.1"
    assert m["wns_ns"] == 0.12 and m["utilization"]["DSP"] == 560 and m["utilization"]["BRAM"] == 210.5


def test_hwh_from_the_older_srcs_location(tmp_path):
    rc, out, _, root = run_build(tmp_path, ["--board", "pynq-z2"], hwh_in="srcs")
    assert rc == 0, out
    assert (root / "overlay" / "pynq-z2" / "vitaccel_pynq-z2.hwh").exists()


def test_step_subsets_keep_the_canonical_order(tmp_path):
    rc, out, log, _ = run_build(tmp_path, ["--board", "kv260", "--steps", "hls,csim"])
    assert rc == 0, out
    assert [line[3:] for line in out.splitlines() if line.startswith("== ")] == ["csim", "hls"]
    assert not any(line.startswith("create_project") for line in log)
    rc, out, _, _ = run_build(tmp_path / "b", ["--board", "kv260", "--steps", "bd"])
    assert rc != 0 and "run the hls step first" in out


# -- failures that must stop the build ----------------------------------------------------------------------

@pytest.mark.parametrize("csynth,needle", [
    (CSYNTH_OK.replace("4.1", "5.6"), "HLS estimates a 5.6 ns clock period, the config needs 5.0000 ns"),
    (CSYNTH_OK.replace("<TripCount>8192</TripCount><PipelineII>1", "<TripCount>8192</TripCount><PipelineII>2"),
     "pipelined loops miss II = 1: ATT_SDDMM (II=2)"),
    ("<profile/>", "has no EstimatedClockPeriod"),
])
def test_csynth_report_failures(tmp_path, csynth, needle):
    rc, out, log, _ = run_build(tmp_path, ["--board", "zcu104"], csynth=csynth)
    assert rc != 0 and needle in out, out
    assert not any(line.startswith("create_project") for line in log)


def test_timing_failure_writes_no_overlay(tmp_path):
    rc, out, _, root = run_build(tmp_path, ["--board", "zcu104"], wns="-0.31")
    assert rc != 0 and "timing not met: worst negative slack -0.31 ns" in out
    assert not (root / "overlay" / "zcu104" / "manifest.json").exists()


def test_missing_tools_and_failing_csim(tmp_path):
    rc, out, _, _ = run_build(tmp_path, ["--board", "zcu104", "--steps", "csim"], env={"FAKE_NO_HLS": "1"})
    assert rc != 0 and "neither vitis-run nor vitis_hls is on PATH" in out
    rc, out, _, _ = run_build(tmp_path / "b", ["--board", "zcu104", "--steps", "csim"], env={"FAKE_NO_VITACCEL": "1"})
    assert rc != 0 and "vitaccel golden --config zcu104 --out" in out
    rc, out, _, _ = run_build(tmp_path / "c", ["--board", "zcu104", "--steps", "csim"], env={"FAKE_HLS_FAIL": "1"})
    assert rc != 0 and "Vitis HLS failed running" in out and "csim_gemm.tcl" in out


# -- the real thing --------------------------------------------------------------------------------------------

@pytest.mark.vivado
@pytest.mark.skipif(shutil.which("vivado") is None, reason="Vivado is not installed (tests run build.tcl under tclsh)")
def test_real_build_pynq_z2(tmp_path):
    r = subprocess.run(["vivado", "-mode", "batch", "-nojournal", "-nolog", "-source", str(BUILD_TCL), "-tclargs",
                        "--board", "pynq-z2", "--build", str(tmp_path)], capture_output=True, text=True,
                       timeout=6 * 3600, cwd=REPO_ROOT)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert json.loads((REPO_ROOT / "overlay" / "pynq-z2" / "manifest.json").read_text())["wns_ns"] >= 0
