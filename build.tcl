# vitaccel hardware build: Vitis HLS + Vivado in batch mode.
#
#   vivado -mode batch -source build.tcl -tclargs --board zcu104 [--accelerator vitcod|revit] [--config NAME]
#                                                  [--steps csim,hls,bd,bit] [--jobs N] [--build DIR]
#   tclsh build.tcl --board zcu104 --steps csim,hls        (the HLS steps alone need only Vitis HLS)
#   tclsh build.tcl --board zcu104 --accelerator revit --steps csim,hls
#
# --accelerator is one of the registry's (vitaccel/accelerators.py: vitcod, revit). A config is for one
# accelerator (its "accelerator" key), so --accelerator, when given, must agree with --config's. Without
# --config the build takes the board's one config for --accelerator (zcu104 -> revit-zcu104 for revit),
# and without either the board's config of the registry's first accelerator (zcu104 -> zcu104, vitcod);
# overlay/BOARDS.md lists each board's configs.
#
# Steps, always in this order (a subset runs its part, reusing what earlier runs left in the build folder):
#   csim  each of the accelerator's engines' FINN-style top + testbench pairs (hls/<dir>/<k>_top.cpp,
#         <k>_tb.cpp, the registry's kernel table: gemm, autoencoder, ... for vitcod, rmmu, groupgen, ...
#         for revit, each ending with the whole top's own testbench) in Vitis HLS C-simulation, on golden
#         files the simulator writes for the config (`vitaccel golden --config NAME`);
#   hls   synthesise the accelerator's top (vitcod_top or revit_top), fail when the csynth reports (the
#         top's and every sub-module's) miss the clock or a pipelined loop misses II = 1, export it as an IP
#         (xilinx.com:hls:<top>:1.0);
#   bd    a Vivado project and block design: the board's PS (board preset), the IP as cell <top>_0, its
#         m_axi bundles (three for either accelerator) on the board's HP ports, its AXI-Lite control on a PS
#         master, the interrupt; addresses, validation, HDL wrapper;
#   bit   implementation to a bitstream, timing check (WNS and WHS >= 0), then
#         overlay/<board>/<accelerator>-<config>/<accelerator>-<config>.bit, .hwh and manifest.json
#         (accelerator, config name and hash, tool version, resources, timing); e.g.
#         overlay/zcu104/vitcod-zcu104/ and overlay/zcu104/revit-zcu104/.
#
# Every constant comes from files `vitaccel config gen` renders from configs/*.json and the accelerator
# registry: the config's overlay/configs/<config>.tcl, the board table overlay/boards.tcl and the
# accelerators' tops, kernels and AXI bundles in overlay/accelerators.tcl. IP is looked up by wildcard version
# (get_ipdefs), so no Vivado release is pinned. tests/test_build_tcl.py runs this script under plain tclsh
# with recording stand-ins for the Vivado and HLS commands.

set script_dir [file dirname [file normalize [info script]]]
set ALL_STEPS {csim hls bd bit}

proc usage {} {
    return "usage: vivado -mode batch -source build.tcl -tclargs --board BOARD \[--config NAME\]\
\[--accelerator NAME\] \[--steps csim,hls,bd,bit\] \[--jobs N\] \[--build DIR\] (csim and hls alone also run under tclsh)"
}

proc fail {msg} {
    # One line that says what is wrong; batch Vivado prints it and exits non-zero.
    error "build.tcl: $msg"
}

# -- arguments ---------------------------------------------------------------------------------------------

set board ""
set config ""
set accelerator ""
set steps_arg [join $ALL_STEPS ,]
set jobs 4
set build_root [file join $script_dir build]
set args_left $argv
while {[llength $args_left] > 0} {
    set opt [lindex $args_left 0]
    if {$opt in {-h --help}} {
        puts [usage]
        exit 0
    }
    if {[llength $args_left] < 2 || [string match --* [lindex $args_left 1]]} {
        fail "option '$opt' needs a value\n[usage]"
    }
    set val [lindex $args_left 1]
    switch -- $opt {
        --board  { set board $val }
        --config { set config $val }
        --accelerator { set accelerator $val }
        --steps  { set steps_arg $val }
        --jobs   { set jobs $val }
        --build  { set build_root [file normalize $val] }
        default  { fail "unknown option '$opt'\n[usage]" }
    }
    set args_left [lrange $args_left 2 end]
}
if {$board eq ""} { fail "--board is required\n[usage]" }
if {![string is integer -strict $jobs] || $jobs < 1} { fail "--jobs must be a positive integer, got '$jobs'" }

set boards_tcl [file join $script_dir overlay boards.tcl]
if {![file exists $boards_tcl]} { fail "$boards_tcl is missing: run `vitaccel config gen`" }
source $boards_tcl
if {![dict exists $VITACCEL_BOARDS $board]} {
    fail "unknown board '$board' (known: [join [dict keys $VITACCEL_BOARDS] {, }])"
}
set B [dict get $VITACCEL_BOARDS $board]
# The accelerator registry (vitaccel/accelerators.py, rendered by `vitaccel config gen`): its top, sources,
# kernels and AXI bundles. Read before the config is chosen, so an unknown --accelerator is named as such.
set accel_tcl [file join $script_dir overlay accelerators.tcl]
if {![file exists $accel_tcl]} { fail "$accel_tcl is missing: run `vitaccel config gen`" }
source $accel_tcl
if {$accelerator ne "" && ![dict exists $ACCELERATORS $accelerator]} {
    fail "unknown accelerator '$accelerator' (known: [join [dict keys $ACCELERATORS] {, }])"
}
# The board's configs per accelerator (boards.tcl accel_configs, in registry order).
set by_accel [dict get $B accel_configs]
proc board_configs_for {acc} {
    global by_accel
    if {[dict exists $by_accel $acc]} { return [dict get $by_accel $acc] }
    return {}
}
if {$config eq ""} {
    # The board's config for --accelerator, or for the registry's first accelerator that has one.
    if {$accelerator ne ""} {
        set cands [board_configs_for $accelerator]
        if {[llength $cands] == 0} {
            fail "board '$board' has no config for accelerator '$accelerator' (its configs: [join [dict get $B configs] {, }]):\
add configs/<name>.json with \"accelerator\": \"$accelerator\", \"board\": \"$board\" and run `vitaccel config gen`"
        }
    } elseif {[dict size $by_accel] > 0} {
        set cands [lindex $by_accel 1]
    } else {
        set cands [dict get $B configs]
    }
    if {[llength $cands] != 1} { fail "board '$board' has configs [join $cands {, }]: choose one with --config" }
    set config [lindex $cands 0]
}
set cfg_tcl [file join $script_dir overlay configs "$config.tcl"]
if {![file exists $cfg_tcl]} {
    set known [lsort [lmap f [glob -nocomplain -directory [file join $script_dir overlay configs] *.tcl] {file rootname [file tail $f]}]]
    fail "no hardware config '$config' (known: [join $known {, }]); add configs/$config.json and run `vitaccel config gen`"
}
source $cfg_tcl
if {$VITACCEL_BOARD eq ""} {
    fail "config '$config' targets no board (kind $VITACCEL_KIND): build.tcl builds FPGA configs\
(board '$board' has [join [dict get $B configs] {, }])"
}
if {$VITACCEL_BOARD ne $board} {
    fail "config '$config' targets board '$VITACCEL_BOARD', not '$board'"
}
# A config is for one accelerator; --accelerator, when given, must agree.
if {$accelerator eq ""} { set accelerator $VITACCEL_ACCELERATOR }
if {![dict exists $ACCELERATORS $accelerator]} {
    fail "config '$config' names accelerator '$accelerator', which overlay/accelerators.tcl does not have\
(known: [join [dict keys $ACCELERATORS] {, }]): run `vitaccel config gen`"
}
if {$accelerator ne $VITACCEL_ACCELERATOR} {
    set hint [board_configs_for $accelerator]
    set hint [expr {[llength $hint] ? " (board '$board' has [join $hint {, }] for $accelerator)" : ""}]
    fail "config '$config' is for accelerator '$VITACCEL_ACCELERATOR', not '$accelerator'$hint"
}
set A [dict get $ACCELERATORS $accelerator]

set steps {}
foreach s [split $steps_arg ,] {
    set s [string trim $s]
    if {$s eq ""} continue
    if {[lsearch -exact $ALL_STEPS $s] < 0} { fail "unknown step '$s' (steps: [join $ALL_STEPS ,])" }
    lappend steps $s
}
if {[llength $steps] == 0} { fail "--steps names no step (steps: [join $ALL_STEPS ,])" }
# Canonical order, whatever order they were given in.
set steps [lmap s $ALL_STEPS { if {[lsearch -exact $steps $s] >= 0} { set s } else continue }]

# The block design and the bitstream need Vivado; csim and hls only call Vitis HLS through exec.
if {([lsearch -exact $steps bd] >= 0 || [lsearch -exact $steps bit] >= 0) && [info commands create_project] eq ""} {
    fail "steps bd and bit run inside Vivado (vivado -mode batch -source build.tcl -tclargs ...): [usage]"
}

set hls_dir [file join $script_dir hls]
# Builds and overlays are keyed by accelerator and config, so two of either on one board never collide; a
# config named after its accelerator already (revit-zcu104) is not prefixed twice (host/pynq_backend.py).
if {[string first "$accelerator-" $config] == 0} {
    set variant $config
} else {
    set variant "$accelerator-$config"
}
set bdir [file join $build_root $board $variant]
file mkdir $bdir
set top [dict get $A top]
set top_cell ${top}_0
set proj_name "vitaccel_[string map {- _} $variant]"
set proj_dir [file join $bdir vivado]
set hls_proj [file join $bdir hls_$top]
set ip_dir [file join $hls_proj sol impl ip]
set out_dir [file join $script_dir overlay $board $variant]
set cflags "-std=c++14 -I[file join $hls_dir include]"
foreach d [dict get $A include_dirs] { append cflags " -I[file join $hls_dir $d]" }
append cflags " -DVITACCEL_TARGET_$VITACCEL_IDENT"

puts "vitaccel build: board $board ([dict get $B title]), accelerator $accelerator, config $config\
(hash32 $VITACCEL_CONFIG_HASH32), part $VITACCEL_PART, $VITACCEL_CLOCK_MHZ MHz, steps [join $steps ,]"

# -- helpers -----------------------------------------------------------------------------------------------

proc need_file {path what} {
    if {![file exists $path]} { fail "$what: $path does not exist" }
    return $path
}

# Run a Vitis HLS tcl script with whichever HLS front end this installation has: vitis-run (2023.2 and
# later) or vitis_hls (up to 2024.x).
proc run_hls {script log} {
    if {[set exe [auto_execok vitis-run]] ne ""} {
        set cmd [list {*}$exe --mode hls --tcl $script]
    } elseif {[set exe [auto_execok vitis_hls]] ne ""} {
        set cmd [list {*}$exe -f $script]
    } else {
        fail "neither vitis-run nor vitis_hls is on PATH (source <Vitis>/settings64.sh)"
    }
    puts "  [join $cmd]  (log: $log)"
    if {[catch {exec {*}$cmd >& $log} err]} {
        fail "Vitis HLS failed running $script (see $log): $err"
    }
}

proc write_file {path text} {
    set f [open $path w]
    puts -nonewline $f $text
    close $f
}

proc read_file {path} {
    set f [open $path r]
    set text [read $f]
    close $f
    return $text
}

# The pipelined loops of one csynth report, as {module loop II} triples. A loop is an element of
# SummaryOfLoopLatency named after the loop; its PipelineII child holds the achieved II (a number, or
# "no"/"-" when it is not pipelined). Other children (Slack, TripCount, Latency ranges, nested loops) come
# in any order depending on the Vitis release, so the report is read as a tree, not by position. Reports
# that carry every module (ModuleInformation/Module/Name) name each loop's own module.
proc csynth_loops {xml module} {
    set stack {}
    set found {}
    set re {<(/?)([A-Za-z_][-A-Za-z0-9_.:]*)[^>]*>([^<]*)}
    foreach {whole close name text} [regexp -all -inline $re [read_file $xml]] {
        if {[regexp {^<[^>]*/>} $whole]} continue
        if {$close eq "/"} {
            set stack [lrange $stack 0 end-1]
            continue
        }
        set parent [lindex $stack end]
        if {$name eq "Name" && $parent eq "Module"} { set module [string trim $text] }
        if {$name eq "PipelineII" && [lsearch -exact $stack SummaryOfLoopLatency] >= 0} {
            lappend found [list $module $parent [string trim $text]]
        }
        lappend stack $name
    }
    return $found
}

# Every csynth report of the solution: csynth.xml for the top, <module>_csynth.xml for each sub-module
# (Vitis HLS 2021+ moves each pipelined loop into a module of its own, <function>_Pipeline_<loop>, whose
# II only its own report holds). Returns a dict: est (worst estimated clock period, ns), est_module,
# target (the report's target period), bad (loops whose achieved II is above 1).
proc csynth_summary {report_dir top} {
    set main [need_file [file join $report_dir csynth.xml] "csynth report"]
    set reports [list $main $top]
    foreach f [lsort [glob -nocomplain -directory $report_dir *_csynth.xml]] {
        lappend reports $f [string range [file tail $f] 0 end-[string length _csynth.xml]]
    }
    set est -1
    set est_module ""
    set target ""
    set bad {}
    foreach {xml module} $reports {
        set text [read_file $xml]
        if {[regexp {<EstimatedClockPeriod>\s*([0-9.]+)\s*</EstimatedClockPeriod>} $text -> e] && $e > $est} {
            set est $e
            set est_module $module
        }
        if {$xml eq $main} {
            if {$est < 0} { fail "$xml has no EstimatedClockPeriod" }
            regexp {<TargetClockPeriod>\s*([0-9.]+)\s*</TargetClockPeriod>} $text -> target
        }
        foreach loop [csynth_loops $xml $module] {
            lassign $loop m name ii
            if {[string is integer -strict $ii] && $ii > 1} { lappend bad "$name in $m (II=$ii)" }
        }
    }
    return [dict create est $est est_module $est_module target $target bad [lsort -unique $bad]]
}

# Every pipelined loop of the design targets II = 1 (tests/test_build_tcl.py checks the pragmas) and the
# whole design must meet the config's clock period.
proc check_csynth {report_dir top period} {
    set s [csynth_summary $report_dir $top]
    set est [dict get $s est]
    if {$est > $period} {
        fail "HLS estimates a $est ns clock period ([dict get $s est_module]), the config needs $period ns:\
the design misses timing"
    }
    if {[llength [dict get $s bad]] > 0} {
        fail "pipelined loops miss II = 1: [join [dict get $s bad] {, }]"
    }
    return $est
}

# -- csim: each engine's testbench on the simulator's golden files ----------------------------------------

proc step_csim {} {
    global A bdir hls_dir config cflags VITACCEL_PART VITACCEL_CLOCK_PERIOD_NS
    # Golden cases are sized for the config, so each config has its own folder.
    set golden [file join $bdir golden_$config]
    if {![file isdirectory $golden]} {
        set gen [auto_execok vitaccel]
        if {$gen eq ""} {
            fail "the golden files are missing and the vitaccel command is not on PATH: run\
`vitaccel golden --config $config --out $golden` (pip install -e . in the repository) and build again"
        }
        puts "  writing golden files: vitaccel golden --config $config --out $golden"
        if {[catch {exec {*}$gen golden --config $config --out $golden} err]} {
            file delete -force $golden
            fail "`vitaccel golden --config $config --out $golden` failed: $err"
        }
    }
    foreach {k kdir} [dict get $A kernels] {
        set kd [file join $hls_dir $kdir]
        set cases [lsort [glob -nocomplain -type d -directory [file join $golden $k] *]]
        if {[llength $cases] == 0} {
            fail "no golden cases in [file join $golden $k]: delete $golden and build again"
        }
        set script [file join $bdir csim_$k.tcl]
        write_file $script [join [list \
            "open_project -reset [file join $bdir csim_$k]" \
            "set_top ${k}_top" \
            "add_files [need_file [file join $kd ${k}_top.cpp] {kernel top}] -cflags {$cflags}" \
            "add_files -tb [need_file [file join $kd ${k}_tb.cpp] {testbench}] -cflags {$cflags}" \
            "open_solution -reset sol -flow_target vivado" \
            "set_part $VITACCEL_PART" \
            "create_clock -period $VITACCEL_CLOCK_PERIOD_NS" \
            "csim_design -argv {[join $cases { }]}" \
            "exit"] "\n"]
        run_hls $script [file join $bdir csim_$k.log]
        puts "  csim $k: [llength $cases] golden case(s) passed"
    }
}

# -- hls: synthesise and export the accelerator's top (vitcod_top, revit_top) ------------------------------

proc step_hls {} {
    global A bdir hls_dir hls_proj top cflags VITACCEL_PART VITACCEL_CLOCK_PERIOD_NS
    set script [file join $bdir hls_$top.tcl]
    write_file $script [join [list \
        "open_project -reset $hls_proj" \
        "set_top $top" \
        "add_files [need_file [file join $hls_dir [dict get $A top_source]] {HLS top}] -cflags {$cflags}" \
        "open_solution -reset sol -flow_target vivado" \
        "set_part $VITACCEL_PART" \
        "create_clock -period $VITACCEL_CLOCK_PERIOD_NS" \
        "csynth_design" \
        "export_design -format ip_catalog -vendor xilinx.com -library hls -version 1.0" \
        "exit"] "\n"]
    run_hls $script [file join $bdir hls_$top.log]
    set est [check_csynth [file join $hls_proj sol syn report] $top $VITACCEL_CLOCK_PERIOD_NS]
    puts "  hls: $top meets $VITACCEL_CLOCK_PERIOD_NS ns (estimated $est ns), every pipelined loop at II = 1"
}

# -- bd: the block design around the IP ------------------------------------------------------------------

# The newest IP definition matching a wildcard VLNV, so no Vivado release is pinned.
proc ipdef {pattern} {
    set defs [lsort -dictionary [get_ipdefs -all $pattern]]
    if {[llength $defs] == 0} { fail "no IP matches $pattern in this Vivado's catalog" }
    return [lindex $defs end]
}

proc step_bd {} {
    global A B proj_name proj_dir ip_dir top top_cell VITACCEL_PART VITACCEL_CLOCK_MHZ
    if {![file isdirectory $ip_dir]} { fail "no exported IP in $ip_dir: run the hls step first" }
    create_project -force $proj_name $proj_dir -part $VITACCEL_PART
    set ::project_open 1
    set bp [lindex [lsort -dictionary [get_board_parts -quiet [dict get $B board_part]]] end]
    if {$bp ne ""} {
        set_property board_part $bp [current_project]
    } else {
        puts "  note: no board files for [dict get $B board_part]; using the part and explicit PS settings"
    }
    set_property ip_repo_paths [list $ip_dir] [current_project]
    update_ip_catalog
    create_bd_design design_1

    set ps_def [ipdef [dict get $B ps_vlnv]]
    set ps [create_bd_cell -type ip -vlnv $ps_def ps]
    # The board preset; on Zynq-7000 also the DDR and MIO (FIXED_IO) ports of the PS.
    apply_bd_automation -rule [dict get $B ps_rule] -config [dict get $B ps_automation] $ps
    set_property -dict [concat [dict get $B ps_config] [list [dict get $B clock_property] $VITACCEL_CLOCK_MHZ]] $ps

    set acc_def [ipdef "xilinx.com:hls:$top:*"]
    create_bd_cell -type ip -vlnv $acc_def $top_cell
    set clk "/ps/[dict get $B clock_pin]"
    # AXI-Lite control through an interconnect from the PS master port (the rule adds the interconnect and
    # a processor reset block, and clocks everything from the PS fabric clock).
    apply_bd_automation -rule xilinx.com:bd_rule:axi4 \
        -config [list Master "/ps/[dict get $B master_port]" Slave "/$top_cell/s_axi_control" \
                     Clk_master $clk Clk_slave $clk Clk_xbar $clk intc_ip Auto] \
        [get_bd_intf_pins $top_cell/s_axi_control]
    # One HP port per m_axi bundle, so activations, indexes and weights stream in parallel.
    set bundles [dict get $A axi_bundles]
    if {[llength $bundles] > [llength [dict get $B hp_ports]]} {
        fail "$top has [llength $bundles] m_axi bundles ([join $bundles {, }]), the board has\
[llength [dict get $B hp_ports]] HP ports ([join [dict get $B hp_ports] {, }])"
    }
    foreach bundle $bundles hp [lrange [dict get $B hp_ports] 0 [llength $bundles]-1] {
        apply_bd_automation -rule xilinx.com:bd_rule:axi4 \
            -config [list Master "/$top_cell/m_axi_$bundle" Slave "/ps/$hp" \
                         Clk_master $clk Clk_slave $clk Clk_xbar $clk intc_ip Auto] \
            [get_bd_intf_pins ps/$hp]
    }
    # ap_done interrupt (the host polls; the line is there for interrupt-driven drivers).
    connect_bd_net [get_bd_pins $top_cell/interrupt] [get_bd_pins ps/[dict get $B irq_pin]]
    assign_bd_address
    validate_bd_design
    save_bd_design
    set bd [get_files design_1.bd]
    add_files -norecurse [make_wrapper -files $bd -top]
    set_property top design_1_wrapper [current_fileset]
    puts "  bd: $ps_def + $acc_def, m_axi on [join [dict get $B hp_ports] {, }]"
}

# -- bit: implementation, timing, overlay files ------------------------------------------------------------

proc json_str {s} { return "\"[string map {\\ \\\\ \" \\\" \n \\n} $s]\"" }

# Used cells per kind from report_utilization's tables (names differ between 7-series and UltraScale+;
# some releases mark a row with '*').
proc utilization {} {
    set report [report_utilization -return_string]
    set util {}
    foreach {key pattern} {LUT {CLB LUTs|Slice LUTs} FF {CLB Registers|Slice Registers} BRAM {Block RAM Tile}
                           URAM {URAM} DSP {DSPs}} {
        foreach line [split $report "\n"] {
            if {[regexp "^\\|\\s*($pattern)\\*?\\s*\\|\\s*(\[0-9.\]+)\\s*\\|" $line -> _ used]} {
                dict set util $key $used
                break
            }
        }
    }
    return $util
}

# Worst slack of the routed design; fails with what is wrong.
proc slack {kind} {
    global VITACCEL_CLOCK_MHZ
    set s [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -$kind]]
    if {$s eq "" || ![string is double -strict $s]} {
        fail "no timed $kind path in the routed design (slack '$s'): are the clocks constrained?"
    }
    if {$s < 0} {
        set what [expr {$kind eq "setup" ? "worst negative slack" : "worst hold slack"}]
        fail "timing not met: $what $s ns at $VITACCEL_CLOCK_MHZ MHz"
    }
    return $s
}

proc step_bit {} {
    global B board config accelerator variant proj_name proj_dir out_dir jobs hls_proj top VITACCEL_CONFIG_HASH \
        VITACCEL_CONFIG_HASH32 VITACCEL_CLOCK_MHZ VITACCEL_CLOCK_PERIOD_NS VITACCEL_PART
    if {![info exists ::project_open]} {
        set xpr [file join $proj_dir $proj_name.xpr]
        if {![file exists $xpr]} { fail "no Vivado project $xpr: run the bd step first" }
        open_project $xpr
    }
    reset_run impl_1
    launch_runs impl_1 -to_step write_bitstream -jobs $jobs
    wait_on_run impl_1
    set status [get_property STATUS [get_runs impl_1]]
    if {![string match "*write_bitstream Complete*" $status]} { fail "implementation did not finish: $status" }
    open_run impl_1
    set wns [slack setup]
    set whs [slack hold]
    set util [utilization]
    set run_dir [get_property DIRECTORY [get_runs impl_1]]
    set bits [glob -nocomplain -directory $run_dir *.bit]
    if {[llength $bits] != 1} { fail "expected one bitstream in $run_dir, found [llength $bits]" }
    # Vivado 2020.2+ writes the hardware handoff under <proj>.gen, earlier releases under <proj>.srcs; a
    # project that went through both has one in each, and the newer file is the one for this bitstream.
    set hwh {}
    foreach base [list [file join $proj_dir $proj_name.gen] [file join $proj_dir $proj_name.srcs]] {
        foreach f [glob -nocomplain [file join $base sources_1 bd design_1 hw_handoff design_1.hwh]] {
            lappend hwh [list [file mtime $f] $f]
        }
    }
    if {[llength $hwh] == 0} {
        fail "no design_1.hwh under $proj_name.gen or $proj_name.srcs (sources_1/bd/design_1/hw_handoff)"
    }
    set hwh [lindex [lsort -integer -index 0 -decreasing $hwh] 0 1]
    file mkdir $out_dir
    set name $variant
    file copy -force [lindex $bits 0] [file join $out_dir $name.bit]
    file copy -force $hwh [file join $out_dir $name.hwh]
    # The HLS estimate, when this build folder still has the report.
    set hls_est null
    set report_dir [file join $hls_proj sol syn report]
    if {[file exists [file join $report_dir csynth.xml]]} {
        set hls_est [dict get [csynth_summary $report_dir $top] est]
    }
    set u [join [lmap {k v} $util {format "[json_str $k]: %s" $v}] ", "]
    write_file [file join $out_dir manifest.json] "\{
  \"name\": [json_str $name],
  \"accelerator\": [json_str $accelerator],
  \"board\": [json_str $board],
  \"part\": [json_str $VITACCEL_PART],
  \"config\": [json_str $config],
  \"config_hash\": [json_str $VITACCEL_CONFIG_HASH],
  \"config_hash32\": [json_str $VITACCEL_CONFIG_HASH32],
  \"clock_mhz\": $VITACCEL_CLOCK_MHZ,
  \"clock_period_ns\": $VITACCEL_CLOCK_PERIOD_NS,
  \"tool\": [json_str [version -short]],
  \"hls_estimated_period_ns\": $hls_est,
  \"wns_ns\": $wns,
  \"whs_ns\": $whs,
  \"utilization\": \{$u\},
  \"files\": \[[json_str $name.bit], [json_str $name.hwh]\]
\}
"
    puts "  bit: overlay/$board/$variant/$name.bit, $name.hwh, manifest.json (WNS $wns ns, WHS $whs ns)"
}

foreach s $steps {
    puts "== $s"
    step_$s
}
puts "vitaccel build: done ([join $steps ,])"
