"""build.tcl without Vivado: run under plain tclsh with recording stand-ins for the Vivado and HLS commands.

The stand-ins (HARNESS below) log every call, answer queries the way Vivado does (IP definitions with a
version, run status, slack, utilisation) and create the files the real tools would (golden cases, the
csynth report, the exported IP folder, a bitstream and a .hwh in either place Vivado versions use), so the
script's argument parsing, step order, generated HLS scripts, block-design calls and manifest are all
checked, for both accelerators of the registry (ViTCoD and ReViT: each one's kernels, top, config and overlay
folder). The real build is the `vivado` test at the end, skipped where Vivado is not installed.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vitaccel import accelerators
from vitaccel.boards import BOARDS
from vitaccel.hwconfig import REPO_ROOT, list_configs, load_config

BUILD_TCL = REPO_ROOT / "build.tcl"
pytestmark = pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh is not installed")

ACCELS = ["vitcod", "revit"]
# What each accelerator's csim step must run, written out here (not read from the registry) so a kernel
# dropped from the registry or from overlay/accelerators.tcl fails a test; the last is the whole top.
KERNELS = {"vitcod": ["gemm", "autoencoder", "attention", "layernorm", "eltwise", "vitcod"],
           "revit": ["rmmu", "groupgen", "dsoftmax", "pruner", "sched", "revit"]}
TOPS = {"vitcod": "vitcod_top", "revit": "revit_top"}



def variant_name(accel: str, config: str) -> str:
    """build.tcl's output folder name: ``<accelerator>-<config>``, a config already named after its accelerator
    (``revit-zcu104``) not prefixed twice."""
    return config if config.startswith(f"{accel}-") else f"{accel}-{config}"

def board_config(board: str, accel: str) -> str:
    """The board's one shipped config for ``accel`` (what build.tcl takes without --config)."""
    names = [n for n in list_configs(accel) if load_config(n).board == board]
    assert len(names) == 1, (board, accel, names)
    return names[0]


def accel_argv(accel: str, board: str):
    """The plainest command line for ``accel`` on ``board``: ViTCoD is the default (no --accelerator),
    ReViT is asked for by name, and neither names a config (the board's own is taken)."""
    return ["--board", board] + ([] if accel == "vitcod" else ["--accelerator", accel])

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
        # Like the real `vitaccel golden --config NAME`: the kernels of that config's accelerator.
        set out [lindex $args [expr {[lsearch $args --out] + 1}]]
        set cfg [lindex $args [expr {[lsearch $args --config] + 1}]]
        foreach k [dict get {@GOLDEN_KERNELS@} $cfg] { file mkdir [file join $out $k ${k}0] [file join $out $k ${k}1] }
        return ""
    }
    if {$tool in {vitis_hls vitis-run}} {
        # The script is the last argument before the log redirection.
        set script [lindex $args [expr {[lsearch -exact $args >&] - 1}]]
        set f [open $script r]; set text [read $f]; close $f
        rec hls_script $script
        if {[info exists env(FAKE_HLS_FAIL)] && [string match *csim* $script]} { error "csim FAIL: mismatch" }
        if {[regexp {open_project -reset (\S+)} $text -> proj] && [regexp {/hls_[a-z0-9]+_top$} $proj]} {
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
def top_report(top: str, outer: str, inner: str) -> str:
    return f"""<profile>
<ReportVersion><Version>2022.2</Version></ReportVersion>
<UserAssignments><unit>ns</unit><TopModelName>{top}</TopModelName><TargetClockPeriod>5.00</TargetClockPeriod>
</UserAssignments>
<PerformanceEstimates>
<SummaryOfTimingAnalysis><unit>ns</unit><EstimatedClockPeriod>4.100</EstimatedClockPeriod></SummaryOfTimingAnalysis>
<SummaryOfLoopLatency>
<{outer}>
<TripCount>12</TripCount>
<Latency><range><min>10</min><max>900</max></range></Latency>
<PipelineII>no</PipelineII>
<{inner}>
<Slack>0.90</Slack>
<TripCount>64</TripCount><Latency>66</Latency><PipelineII>1</PipelineII><PipelineDepth>3</PipelineDepth>
<InstanceList/>
</{inner}>
</{outer}>
</SummaryOfLoopLatency>
</PerformanceEstimates>
<AreaEstimates><Resources><DSP>560</DSP></Resources></AreaEstimates>
</profile>
"""


CSYNTH_OK = top_report("vitcod_top", "TOP_LAYERS", "TOP_FETCH")


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
# Per accelerator: the top's report (its dispatch loop around a pipelined inner loop) and one sub-module's,
# with the loop names Vitis gives each design (ReViT's engine loops are unlabelled: VITIS_LOOP_<line>_<n>).
RMMU = "rmmu_run_Pipeline_VITIS_LOOP_137_4"
CSYNTH = {"vitcod": CSYNTH_OK, "revit": top_report("revit_top", "REVIT_DISPATCH", "VITIS_LOOP_201_1")}
SUBMODULE = {"vitcod": (SDDMM, "ATT_SDDMM"), "revit": (RMMU, "VITIS_LOOP_137_4")}
INNER_LOOP = {"vitcod": "TOP_FETCH", "revit": "VITIS_LOOP_201_1"}


def reports_ok(accel: str):
    mod, loop = SUBMODULE[accel]
    return {"csynth.xml": CSYNTH[accel], f"{mod}_csynth.xml": module_report(mod, loop, 1)}


def make_repo(root: Path) -> Path:
    """A scratch copy of what build.tcl reads: overlay/ without board outputs, build.tcl, hls/ linked."""
    if not root.exists():
        shutil.copytree(REPO_ROOT / "overlay", root / "overlay", ignore=shutil.ignore_patterns("zcu104", "kv260",
                                                                                                 "pynq-z2"))
        (root / "build.tcl").write_text(BUILD_TCL.read_text())
        os.symlink(REPO_ROOT / "hls", root / "hls")
    return root


def expected_variant(argv):
    """(accelerator, config) build.tcl should pick for argv, or (None, None) for a command line it refuses."""
    def arg(opt):
        i = argv.index(opt) + 1 if opt in argv else len(argv)
        return argv[i] if i < len(argv) else None

    board, accel, config = arg("--board"), arg("--accelerator"), arg("--config")
    try:
        if config is None:
            config = board_config(board, accel or ACCELS[0])
        return load_config(config).accelerator, config
    except Exception:
        return None, None


@functools.lru_cache(maxsize=None)
def golden_kernels_tcl() -> str:
    """A tcl dict: every shipped config -> the kernels of its accelerator."""
    return " ".join(f"{n} {{{' '.join(k.name for k in load_config(n).spec.kernels)}}}" for n in list_configs())


def run_build(tmp_path: Path, argv, *, reports=None, wns: str = "0.12", whs: str = "0.03", hwh_in=("gen",),
              env=None, overlay_root: Path = None, drop=()):
    """Run build.tcl under tclsh with the stand-ins; return (returncode, output, call log lines, repo root).

    The repository is a scratch copy of what build.tcl reads (overlay/ without board outputs, hls/ linked), so
    the test never writes into the real overlay/ folder; ``drop`` deletes files from that copy."""
    root = make_repo(overlay_root or tmp_path / "repo")
    for rel in drop:
        (root / rel).unlink()
    rdir = tmp_path / "reports"
    rdir.mkdir(parents=True, exist_ok=True)
    accel, config = expected_variant(argv)
    for name, text in (reports_ok(accel or "vitcod") if reports is None else reports).items():
        (rdir / name).write_text(text)
    harness = tmp_path / "harness.tcl"
    # The stand-in `vitaccel golden --config NAME` writes two cases per kernel of NAME's accelerator in the
    # registry (what the real one writes).
    harness.write_text(HARNESS.replace("@GOLDEN_KERNELS@", golden_kernels_tcl()))

    board = argv[argv.index("--board") + 1] if "--board" in argv[:-1] else "x"
    variant = variant_name(accel, config) if config else f"{accel}-{config}"
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
    (["--board", "zcu104", "--config", "revit-kv260"], "config 'revit-kv260' targets board 'kv260', not 'zcu104'"),
    (["--board", "zcu104", "--config", "nope"], "no hardware config 'nope'"),
    (["--board", "zcu104", "--config", "revit-paper"],
     "config 'revit-paper' targets no board (kind asic): build.tcl builds FPGA configs (board 'zcu104' has "
     "revit-zcu104, zcu104)"),
    (["--board", "zcu104", "--config", "paper"], "config 'paper' targets no board (kind asic)"),
    (["--board", "zcu104", "--steps", "csim,synth"], "unknown step 'synth' (steps: csim,hls,bd,bit)"),
    (["--board", "zcu104", "--steps", ","], "--steps names no step"),
    (["--board", "zcu104", "--frobnicate", "1"], "unknown option '--frobnicate'"),
    (["--board"], "option '--board' needs a value"),
    (["--board", "zcu104", "--steps"], "option '--steps' needs a value"),
    (["--board", "--steps", "bd"], "option '--board' needs a value"),
    (["--board", "zcu104", "--jobs", "zero"], "--jobs must be a positive integer"),
    (["--board", "zcu104", "--accelerator", "tpu"], "unknown accelerator 'tpu' (known: vitcod, revit)"),
    (["--board", "zcu104", "--accelerator", "tpu", "--config", "revit-zcu104"],
     "unknown accelerator 'tpu' (known: vitcod, revit)"),
    # A config of the other accelerator: the mismatch is named, with the board's config for the one asked for.
    (["--board", "zcu104", "--accelerator", "revit", "--config", "zcu104"],
     "config 'zcu104' is for accelerator 'vitcod', not 'revit' (board 'zcu104' has revit-zcu104 for revit)"),
    (["--board", "pynq-z2", "--accelerator", "vitcod", "--config", "revit-pynq-z2"],
     "config 'revit-pynq-z2' is for accelerator 'revit', not 'vitcod' (board 'pynq-z2' has pynq-z2 for vitcod)"),
])
def test_bad_arguments_fail_clearly(tmp_path, argv, needle):
    rc, out, log, _ = run_build(tmp_path, argv)
    assert rc != 0 and needle in out, out
    assert "usage:" in out or "unknown" in out or "config" in out or "--jobs" in out or "--steps" in out
    assert not any(line.startswith(("create_project", "exec")) for line in log), "nothing may run after a bad argument"


def test_help(tmp_path):
    rc, out, log, _ = run_build(tmp_path, ["--help"])
    assert rc == 0 and "usage: vivado -mode batch -source build.tcl -tclargs --board BOARD" in out
    assert "--accelerator NAME" in out
    assert log == []


def test_missing_generated_files_name_the_command(tmp_path):
    rc, out, _, _ = run_build(tmp_path, ["--board", "zcu104"], drop=["overlay/boards.tcl"])
    assert rc != 0 and "boards.tcl is missing: run `vitaccel config gen`" in out
    rc, out, _, _ = run_build(tmp_path / "b", ["--board", "zcu104"], drop=["overlay/configs/zcu104.tcl"])
    assert rc != 0 and "no hardware config 'zcu104'" in out and "run `vitaccel config gen`" in out
    rc, out, _, _ = run_build(tmp_path / "c", accel_argv("revit", "zcu104"), drop=["overlay/configs/revit-zcu104.tcl"])
    assert rc != 0 and "no hardware config 'revit-zcu104'" in out and "run `vitaccel config gen`" in out
    rc, out, _, _ = run_build(tmp_path / "d", accel_argv("revit", "zcu104"), drop=["overlay/accelerators.tcl"])
    assert rc != 0 and "accelerators.tcl is missing: run `vitaccel config gen`" in out


def test_board_without_a_config_for_the_accelerator(tmp_path):
    # A board whose table lists no ReViT config: --accelerator revit without --config says so (and does not
    # fall back to the board's ViTCoD config); ViTCoD still builds there.
    root = make_repo(tmp_path / "repo")
    boards = root / "overlay" / "boards.tcl"
    text = boards.read_text()
    assert " revit {revit-kv260}}" in text
    boards.write_text(text.replace(" revit {revit-kv260}}", "}"))
    rc, out, log, _ = run_build(tmp_path, ["--board", "kv260", "--accelerator", "revit", "--steps", "csim"],
                                overlay_root=root)
    assert rc != 0 and "board 'kv260' has no config for accelerator 'revit' (its configs: kv260, revit-kv260)" in out
    assert log == []
    rc, out, _, _ = run_build(tmp_path / "b", ["--board", "kv260", "--steps", "csim"], overlay_root=root)
    assert rc == 0 and "accelerator vitcod, config kv260" in out, out


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
    for argv, cfg in ((["--board", "zcu104"], "zcu104"), (accel_argv("revit", "zcu104"), "revit-zcu104")):
        h.write_text(f"set argv {{{' '.join(argv)} --steps csim --build {tmp_path / 'b'}}}\nsource {BUILD_TCL}\n")
        r = subprocess.run([shutil.which("tclsh"), str(h)], capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, PATH=str(tmp_path / "empty")))
        assert r.returncode != 0 and f"vitaccel golden --config {cfg} --out" in r.stderr, r.stderr


# -- the whole build, per board and accelerator -------------------------------------------------------------

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


@pytest.mark.parametrize("accel", ACCELS)
@pytest.mark.parametrize("board", list(BOARDS))
def test_full_build_order_files_and_manifest(tmp_path, board, accel):
    rc, out, log, root = run_build(tmp_path, accel_argv(accel, board))
    assert rc == 0, out
    b = BOARDS[board]
    spec = accelerators.get(accel)
    top = TOPS[accel]
    assert spec.hls_top == top
    config = board_config(board, accel)
    cfg = load_config(config)
    assert cfg.accelerator == accel and cfg.board == board
    name = variant_name(accel, config)           # vitcod-zcu104, revit-zcu104
    assert f"accelerator {accel}, config {config} (hash32 0x{cfg.hash32:08x})" in out
    # Steps in canonical order, each kernel's csim before synthesis, synthesis before the project.
    assert steps_run(out) == ["csim", "hls", "bd", "bit"]
    kinds = [line.split()[0] for line in log]
    first = {k: kinds.index(k) for k in ("exec", "hls_script", "create_project", "create_bd_design", "launch_runs")}
    assert first["exec"] < first["hls_script"] < first["create_project"] < first["create_bd_design"] < first["launch_runs"]
    golden = tmp_path / "build" / board / name / f"golden_{config}"
    assert log[first["exec"]].split()[1:] == ["/opt/fake/vitaccel", "golden", "--config", config,
                                              "--out", str(golden)], "golden files first, for this config"
    scripts = [line.split()[1] for line in log if line.startswith("hls_script")]
    # One csim per kernel of the accelerator, in the registry's order, then the top's synthesis.
    assert [k.name for k in spec.kernels] == KERNELS[accel]
    assert [Path(s).stem for s in scripts] == [f"csim_{k}" for k in KERNELS[accel]] + [f"hls_{top}"]
    assert all(Path(s).parent == tmp_path / "build" / board / name for s in scripts)
    for k in KERNELS[accel]:
        assert f"  csim {k}: 2 golden case(s) passed" in out

    # Every file and include folder the HLS scripts name exists, and they are enough for every quoted
    # #include; the right target macro, part and clock.
    seen: set = set()
    for s in scripts:
        text = Path(s).read_text()
        incs = [Path(i) for i in re.findall(r"-I(\S+?)\}?(?:\s|$)", text)]
        assert incs and all(i.is_dir() for i in incs), incs
        assert {i.name for i in incs} == {"include", *[Path(d).name for d in spec.include_dirs]}
        files = [Path(f) for f in re.findall(r"add_files (?:-tb )?(\S+)", text)]
        assert files
        for f in files:
            assert f.is_file(), f
            _resolve_includes(f.resolve(), incs, seen)
        assert f"-DVITACCEL_TARGET_{cfg.ident}" in text and f"set_part {cfg.part}" in text
        assert f"create_clock -period {1000.0 / cfg.clock_mhz:.4f}" in text
    assert any(p.name == f"{cfg.name}.h" for p in seen), "the config's own header is reached"
    # Each csim script: the kernel's own top and testbench, its top function, its golden cases.
    for k, s in zip(spec.kernels, scripts):
        text = Path(s).read_text()
        kd = REPO_ROOT / "hls" / k.hls_dir
        added = [Path(f).resolve() for f in re.findall(r"add_files (?:-tb )?(\S+)", text)]
        assert added == [kd / f"{k.name}_top.cpp", kd / f"{k.name}_tb.cpp"], (k.name, added)
        assert f"add_files -tb {root / 'hls' / k.hls_dir / (k.name + '_tb.cpp')}" in text
        assert f"set_top {k.name}_top\n" in text
        assert f"csim_design -argv {{{golden / k.name / (k.name + '0')} {golden / k.name / (k.name + '1')}}}" in text
        assert f"open_project -reset {tmp_path / 'build' / board / name / ('csim_' + k.name)}" in text
    synth = Path(scripts[-1]).read_text()
    assert f"set_top {top}\n" in synth and "csynth_design" in synth
    assert re.findall(r"add_files (\S+)", synth) == [str(root / "hls" / spec.top_source)]
    assert "export_design -format ip_catalog -vendor xilinx.com -library hls -version 1.0" in synth
    assert f"hls: {top} meets {1000.0 / cfg.clock_mhz:.4f} ns (estimated 4.100 ns)" in out

    # Block design: the board's PS by wildcard VLNV (newest version picked), its preset, the HLS IP, three
    # HP ports, the control port on the PS master, the interrupt, the fabric clock.
    cell = f"{top}_0"
    assert f"get_ipdefs -all {b.ps_vlnv}" in log and f"get_ipdefs -all xilinx.com:hls:{top}:*" in log
    assert spec.vlnv == f"xilinx.com:hls:{top}:1.0"
    assert any(line.startswith("create_bd_cell -type ip -vlnv " + b.ps_vlnv.replace("*", "3.4")) for line in log)
    assert any(f"create_bd_cell -type ip -vlnv xilinx.com:hls:{top}:3.4 {cell}" in line for line in log)
    assert not any(TOPS[other] in line for other in ACCELS if other != accel for line in log), \
        "nothing of the other accelerator"
    auto = [line for line in log if line.startswith(f"apply_bd_automation -rule {b.ps_rule}")]
    assert len(auto) == 1 and "apply_board_preset 1" in auto[0]
    assert ("make_external {FIXED_IO, DDR}" in auto[0]) == (b.family == "zynq")
    assert spec.axi_bundles == ("gmem_act", "gmem_idx", "gmem_wgt")
    for bundle, hp in zip(("gmem_act", "gmem_idx", "gmem_wgt"), b.hp_ports):
        assert any(f"Master /{cell}/m_axi_{bundle} Slave /ps/{hp}" in line for line in log), (bundle, hp)
    assert any(f"Master /ps/{b.master_port} Slave /{cell}/s_axi_control" in line for line in log)
    assert any(line.startswith("connect_bd_net") and b.irq_pin in line and f"{cell}/interrupt" in line
               for line in log)
    ps_props = [line for line in log if line.startswith("set_property -dict")]
    assert any(f"CONFIG.{b.clock_property} {cfg.clock_mhz}" in line for line in ps_props)
    assert all(f"CONFIG.{k} {v}" in ps_props[0] for k, v in b.ps_config)
    order = [k for k in kinds if k in ("create_bd_design", "assign_bd_address", "validate_bd_design",
                                        "make_wrapper", "launch_runs")]
    assert order == ["create_bd_design", "assign_bd_address", "validate_bd_design", "make_wrapper", "launch_runs"]
    proj = "vitaccel_" + name.replace("-", "_")
    assert any(line.startswith(f"create_project -force {proj} {tmp_path / 'build' / board / name / 'vivado'}")
               for line in log)

    # The overlay files and the manifest, in overlay/<board>/<accelerator>-<config>/ (and nowhere else).
    od = root / "overlay" / board / name
    assert sorted(p.name for p in (root / "overlay" / board).iterdir()) == [name]
    assert (od / f"{name}.bit").exists() and (od / f"{name}.hwh").read_text() == ".gen"
    m = json.loads((od / "manifest.json").read_text())
    assert m["config"] == config and m["config_hash"] == cfg.hash and m["config_hash32"] == f"0x{cfg.hash32:08x}"
    assert m["accelerator"] == accel
    assert m["board"] == board and m["part"] == cfg.part and m["tool"] == "2024.1" and m["name"] == name
    assert m["clock_mhz"] == cfg.clock_mhz and m["clock_period_ns"] == pytest.approx(1000.0 / cfg.clock_mhz)
    assert m["wns_ns"] == 0.12 and m["whs_ns"] == 0.03 and m["hls_estimated_period_ns"] == 4.1
    assert m["utilization"] == {"LUT": 123456, "FF": 98765, "BRAM": 210.5, "URAM": 48, "DSP": 560}
    assert m["files"] == [f"{name}.bit", f"{name}.hwh"]


@pytest.mark.parametrize("argv,accel,config", [
    # --config alone: the config says which accelerator.
    (["--board", "zcu104", "--config", "revit-zcu104"], "revit", "revit-zcu104"),
    (["--board", "zcu104", "--config", "zcu104"], "vitcod", "zcu104"),
    # --accelerator and --config that agree.
    (["--board", "kv260", "--accelerator", "revit", "--config", "revit-kv260"], "revit", "revit-kv260"),
    (["--board", "kv260", "--accelerator", "vitcod", "--config", "kv260"], "vitcod", "kv260"),
    # --accelerator alone: the board's config for it; neither: the registry's first accelerator's.
    (["--board", "pynq-z2", "--accelerator", "revit"], "revit", "revit-pynq-z2"),
    (["--board", "pynq-z2", "--accelerator", "vitcod"], "vitcod", "pynq-z2"),
    (["--board", "pynq-z2"], "vitcod", "pynq-z2"),
])
def test_accelerator_and_config_choice(tmp_path, argv, accel, config):
    rc, out, log, _ = run_build(tmp_path, argv + ["--steps", "csim,hls"])
    assert rc == 0, out
    cfg = load_config(config)
    assert f"accelerator {accel}, config {config} (hash32 0x{cfg.hash32:08x})" in out
    board = argv[1]
    scripts = [Path(line.split()[1]) for line in log if line.startswith("hls_script")]
    assert [s.stem for s in scripts] == [f"csim_{k}" for k in KERNELS[accel]] + [f"hls_{TOPS[accel]}"]
    assert {s.parent for s in scripts} == {tmp_path / "build" / board / variant_name(accel, config)}
    assert f"golden --config {config} --out" in " ".join(log)


@pytest.mark.parametrize("accel", ACCELS)
def test_csim_takes_the_real_golden_layout(tmp_path, accel):
    # What `vitaccel golden` really writes (one folder per kernel of the config's accelerator, one per case)
    # is what the csim step globs: with the folder there, build.tcl writes no new one and hands each
    # testbench exactly its kernel's cases.
    from vitaccel.sim.golden import write_golden

    config = board_config("zcu104", accel)
    golden = tmp_path / "build" / "zcu104" / variant_name(accel, config) / f"golden_{config}"
    cases = write_golden(golden, config)
    assert list(cases) == KERNELS[accel]
    rc, out, log, _ = run_build(tmp_path, accel_argv(accel, "zcu104") + ["--steps", "csim"])
    assert rc == 0, out
    assert not any(line.startswith("exec /opt/fake/vitaccel") for line in log), "the golden folder is reused"
    scripts = [Path(line.split()[1]) for line in log if line.startswith("hls_script")]
    assert [s.stem for s in scripts] == [f"csim_{k}" for k in KERNELS[accel]]
    for k, s in zip(KERNELS[accel], scripts):
        argv = re.search(r"csim_design -argv \{([^}]*)\}", s.read_text()).group(1).split()
        assert argv and sorted(argv) == sorted(str(d) for d in cases[k]), k
        assert f"  csim {k}: {len(cases[k])} golden case(s) passed" in out


@pytest.mark.parametrize("where,expect", [(("srcs",), ".srcs"), (("srcs", "gen"), ".gen"), (("gen", "srcs"), ".srcs")])
def test_hwh_from_either_location_newest_wins(tmp_path, where, expect):
    # Vivado 2020.2+ writes <proj>.gen/.../hw_handoff, older releases <proj>.srcs/...; the newer file wins.
    rc, out, _, root = run_build(tmp_path, ["--board", "pynq-z2", "--steps", "hls,bd,bit"], hwh_in=where)
    assert rc == 0, out
    assert (root / "overlay" / "pynq-z2" / "vitcod-pynq-z2" / "vitcod-pynq-z2.hwh").read_text() == expect


@pytest.mark.parametrize("accel", ACCELS)
def test_step_subsets_keep_the_canonical_order(tmp_path, accel):
    argv = accel_argv(accel, "kv260")
    rc, out, log, _ = run_build(tmp_path, argv + ["--steps", "hls,csim"])
    assert rc == 0, out
    assert steps_run(out) == ["csim", "hls"]
    assert not any(line.startswith("create_project") for line in log)
    # bd,bit on top of that build folder: no HLS run, and the Vivado calls in order.
    rc, out, log, _ = run_build(tmp_path, argv + ["--steps", "bit,bd"], overlay_root=tmp_path / "repo")
    assert rc == 0, out
    assert steps_run(out) == ["bd", "bit"]
    assert not any(line.startswith(("exec", "hls_script")) for line in log)
    assert any(f"{TOPS[accel]}_0" in line for line in log if line.startswith("create_bd_cell"))
    rc, out, _, _ = run_build(tmp_path / "b", argv + ["--steps", "bd"])
    assert rc != 0 and "run the hls step first" in out
    rc, out, _, _ = run_build(tmp_path / "c", argv + ["--steps", "bit"])
    assert rc != 0 and "run the bd step first" in out


def test_registry_that_does_not_fit_fails_clearly(tmp_path):
    # overlay/accelerators.tcl without ReViT (stale): a ReViT config says which file to regenerate.
    root = make_repo(tmp_path / "repo")
    acc = root / "overlay" / "accelerators.tcl"
    text = acc.read_text()
    acc.write_text("\n".join(line for line in text.splitlines() if not line.startswith("dict set ACCELERATORS revit ")))
    rc, out, log, _ = run_build(tmp_path, ["--board", "zcu104", "--config", "revit-zcu104", "--steps", "csim"],
                                overlay_root=root)
    assert rc != 0 and "config 'revit-zcu104' names accelerator 'revit', which overlay/accelerators.tcl does not " \
                       "have (known: vitcod): run `vitaccel config gen`" in out, out
    assert log == []
    # A top with more m_axi bundles than the board has HP ports: the block design says so before wiring any.
    acc.write_text(text.replace("revit_top:1.0 axi_bundles {gmem_act gmem_idx gmem_wgt}",
                                "revit_top:1.0 axi_bundles {gmem_act gmem_idx gmem_wgt gmem_out}"))
    rc, out, log, _ = run_build(tmp_path / "b", accel_argv("revit", "zcu104") + ["--steps", "hls,bd"],
                                overlay_root=root)
    assert rc != 0 and "revit_top has 4 m_axi bundles (gmem_act, gmem_idx, gmem_wgt, gmem_out), the board has 3 HP " \
                       "ports (S_AXI_HP0_FPD, S_AXI_HP1_FPD, S_AXI_HP2_FPD)" in out, out
    assert not any("m_axi_" in line for line in log)


# -- failures that must stop the build ----------------------------------------------------------------------

def _csynth_failures():
    for accel in ACCELS:
        top, (mod, loop), ok = TOPS[accel], SUBMODULE[accel], reports_ok(accel)
        inner = INNER_LOOP[accel]
        yield from (pytest.param(accel, reports, needle, id=f"{accel}-{i}") for i, (reports, needle) in enumerate([
            ({"csynth.xml": CSYNTH[accel].replace("4.100", "5.600")},
             f"HLS estimates a 5.600 ns clock period ({top}), the config needs 5.0000 ns"),
            ({**ok, f"{mod}_csynth.xml": module_report(mod, loop, 1, est="5.2")},
             f"HLS estimates a 5.2 ns clock period ({mod})"),
            ({**ok, f"{mod}_csynth.xml": module_report(mod, loop, 2)},
             f"pipelined loops miss II = 1: {loop} in {mod} (II=2)"),
            ({"csynth.xml": CSYNTH[accel].replace("<PipelineII>1</PipelineII><PipelineDepth>3",
                                                  "<PipelineII>4</PipelineII><PipelineDepth>3")},
             f"pipelined loops miss II = 1: {inner} in {top} (II=4)"),
            ({"csynth.xml": "<profile/>"}, "has no EstimatedClockPeriod"),
            ({}, "csynth report: "),
        ]))


@pytest.mark.parametrize("accel,reports,needle", list(_csynth_failures()))
def test_csynth_report_failures(tmp_path, accel, reports, needle):
    rc, out, log, _ = run_build(tmp_path, accel_argv(accel, "zcu104"), reports=reports)
    assert rc != 0 and needle in out, out
    if needle.startswith("csynth report"):
        assert f"hls_{TOPS[accel]}/sol/syn/report/csynth.xml does not exist" in out
    assert not any(line.startswith("create_project") for line in log)
    assert "== bd" not in out


@pytest.mark.parametrize("accel", ACCELS)
@pytest.mark.parametrize("wns,whs,needle", [
    ("-0.31", "0.02", "timing not met: worst negative slack -0.31 ns at 200.0 MHz"),
    ("0.10", "-0.01", "timing not met: worst hold slack -0.01 ns"),
    ("", "0.02", "no timed setup path"),
])
def test_timing_failure_writes_no_overlay(tmp_path, wns, whs, needle, accel):
    rc, out, _, root = run_build(tmp_path, accel_argv(accel, "zcu104"), wns=wns, whs=whs)
    assert rc != 0 and needle in out, out
    assert "== bit" in out, "it got as far as the bitstream"
    assert not (root / "overlay" / "zcu104").exists()


@pytest.mark.parametrize("accel", ACCELS)
def test_missing_tools_and_failing_csim(tmp_path, accel):
    argv, config = accel_argv(accel, "zcu104"), board_config("zcu104", accel)
    rc, out, _, _ = run_build(tmp_path, argv + ["--steps", "csim"], env={"FAKE_NO_HLS": "1"})
    assert rc != 0 and "neither vitis-run nor vitis_hls is on PATH" in out
    rc, out, _, _ = run_build(tmp_path / "b", argv + ["--steps", "csim"], env={"FAKE_NO_VITACCEL": "1"})
    assert rc != 0 and f"vitaccel golden --config {config} --out" in out
    assert f"/zcu104/{variant_name(accel, config)}/golden_{config}" in out
    rc, out, log, _ = run_build(tmp_path / "c", argv + ["--steps", "csim,hls"], env={"FAKE_HLS_FAIL": "1"})
    assert rc != 0 and "Vitis HLS failed running" in out and f"csim_{KERNELS[accel][0]}.tcl" in out
    assert steps_run(out) == ["csim"] and not any(f"hls_{TOPS[accel]}" in line for line in log)


@pytest.mark.parametrize("accel", ACCELS)
def test_vitis_run_is_preferred_when_present(tmp_path, accel):
    # Vitis 2023.2+ has vitis-run (and, for a while, the deprecated vitis_hls too): vitis-run wins.
    argv = accel_argv(accel, "zcu104")
    rc, out, log, _ = run_build(tmp_path, argv + ["--steps", "csim,hls"], env={"FAKE_VITIS_RUN": "1"})
    assert rc == 0, out
    calls = [c.split() for c in log if c.startswith("exec /opt/fake/vitis")]
    assert len(calls) == len(KERNELS[accel]) + 1      # one csim per kernel, one csynth
    for c in calls:
        assert c[1:5] == ["/opt/fake/vitis-run", "--mode", "hls", "--tcl"] and c[5].endswith(".tcl") and c[6] == ">&"
    plain = [c.split() for c in run_build(tmp_path / "b", argv + ["--steps", "csim"])[2]
             if c.startswith("exec /opt/fake/vitis")]
    assert len(plain) == len(KERNELS[accel]) and all(c[1:3] == ["/opt/fake/vitis_hls", "-f"] for c in plain)


def test_every_pipeline_pragma_targets_ii_1():
    # build.tcl fails any pipelined loop above II = 1: that is only right while every pipeline asks for 1.
    pragmas = []
    for f in (REPO_ROOT / "hls").rglob("*"):
        if f.suffix in (".h", ".cpp", ".hpp"):
            pragmas += re.findall(r"#pragma\s+HLS\s+pipeline\b[^\n]*", f.read_text(), re.I)
    assert pragmas
    assert any(re.search(r"#pragma\s+HLS\s+pipeline", f.read_text(), re.I)
               for f in (REPO_ROOT / "hls" / "revit").rglob("*.h")), "ReViT's engines are in the scan too"
    for p in pragmas:
        ii = re.search(r"\bII\s*=\s*(\d+)", p, re.I)
        assert ii is None or ii.group(1) == "1", p


def test_board_table_matches_the_configs():
    # One table: every FPGA config names a known board whose part it uses; the generated tcl carries it,
    # with each board's configs per accelerator (what build.tcl picks from without --config).
    text = (REPO_ROOT / "overlay" / "boards.tcl").read_text()
    for b in BOARDS.values():
        assert f"dict set VITACCEL_BOARDS {b.name} " in text and b.part in text
        per_accel = " ".join(f"{a} {{{board_config(b.name, a)}}}" for a in ACCELS)
        assert f"accel_configs {{{per_accel}}}" in text, (b.name, per_accel)
    for name in ("zcu104", "kv260", "pynq-z2", "revit-zcu104", "revit-kv260", "revit-pynq-z2"):
        c = load_config(name)
        assert c.board in BOARDS and BOARDS[c.board].part == c.part
        assert c.accelerator == ("revit" if name.startswith("revit-") else "vitcod")


def test_accelerators_tcl_matches_the_registry():
    # build.tcl's csim and hls steps read overlay/accelerators.tcl: it must name each accelerator's kernels
    # (in the registry's order), top, top source and bundles.
    text = (REPO_ROOT / "overlay" / "accelerators.tcl").read_text()
    for accel in ACCELS:
        spec = accelerators.get(accel)
        kernels = " ".join(f"{k.name} {k.hls_dir}" for k in spec.kernels)
        line = next(line for line in text.splitlines() if line.startswith(f"dict set ACCELERATORS {accel} "))
        assert f"top {spec.hls_top} top_source {spec.top_source} vlnv {spec.vlnv}" in line
        assert f"kernels {{{kernels}}}" in line and [k.name for k in spec.kernels] == KERNELS[accel]
        for k in spec.kernels:
            d = REPO_ROOT / "hls" / k.hls_dir
            assert (d / f"{k.name}_top.cpp").is_file() and (d / f"{k.name}_tb.cpp").is_file(), k


# -- the real thing --------------------------------------------------------------------------------------------

@pytest.mark.vivado
@pytest.mark.skipif(shutil.which("vivado") is None, reason="Vivado is not installed (tests run build.tcl under tclsh)")
@pytest.mark.parametrize("accel", ACCELS)
def test_real_build_pynq_z2(tmp_path, accel):
    config = board_config("pynq-z2", accel)
    r = subprocess.run(["vivado", "-mode", "batch", "-nojournal", "-nolog", "-source", str(BUILD_TCL), "-tclargs",
                        *accel_argv(accel, "pynq-z2"), "--build", str(tmp_path)], capture_output=True, text=True,
                       timeout=6 * 3600, cwd=REPO_ROOT)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    m = json.loads((REPO_ROOT / "overlay" / "pynq-z2" / variant_name(accel, config) / "manifest.json").read_text())
    assert m["wns_ns"] >= 0 and m["whs_ns"] >= 0 and m["config_hash"] == load_config(config).hash
    assert m["accelerator"] == accel and m["config"] == config
