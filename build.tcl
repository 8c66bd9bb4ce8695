# vitaccel hardware build: Vitis HLS + Vivado in batch mode.
#   vivado -mode batch -source build.tcl -tclargs --board zcu104 [--config NAME] [--steps csim,hls,bd,bit]
#
# Every constant comes from overlay/configs/<config>.tcl, rendered from configs/<config>.json by
# `vitaccel config gen` (never edit those by hand). The HLS, block-design and bitstream steps arrive with
# issue #5; until then this script checks its arguments, loads the config and stops with an error that
# says so, rather than pretending to build.

set script_dir [file dirname [file normalize [info script]]]

proc usage {} {
    return "usage: vivado -mode batch -source build.tcl -tclargs --board BOARD \[--config NAME\] \[--steps csim,hls,bd,bit\]"
}

set board ""
set config ""
set steps "csim,hls,bd,bit"
set args_left $argv
while {[llength $args_left] > 0} {
    set opt [lindex $args_left 0]
    set val [lindex $args_left 1]
    switch -- $opt {
        --board  { set board $val }
        --config { set config $val }
        --steps  { set steps $val }
        default  { error "build.tcl: unknown option '$opt'\n[usage]" }
    }
    if {$val eq ""} { error "build.tcl: option '$opt' needs a value\n[usage]" }
    set args_left [lrange $args_left 2 end]
}
if {$board eq ""} { error "build.tcl: --board is required\n[usage]" }
if {$config eq ""} { set config $board }

set cfg_tcl [file join $script_dir overlay configs "$config.tcl"]
if {![file exists $cfg_tcl]} {
    set known [lsort [lmap f [glob -nocomplain -directory [file join $script_dir overlay configs] *.tcl] {file rootname [file tail $f]}]]
    error "build.tcl: no hardware config '$config' (known: [join $known {, }]); add configs/$config.json and run `vitaccel config gen`"
}
source $cfg_tcl
if {$VITACCEL_BOARD ne $board} {
    error "build.tcl: config '$config' targets board '$VITACCEL_BOARD', not '$board'"
}
puts "vitaccel build: board $board, config $config (hash $VITACCEL_CONFIG_HASH32), part $VITACCEL_PART, steps $steps"
error "build.tcl: the HLS/Vivado steps are not implemented yet (issue #5)"
