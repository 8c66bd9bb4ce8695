"""The one hardware spec: validation, hashing, derived figures, and the files rendered from it."""
import dataclasses
import json
import subprocess
import sys

import pytest

from vitaccel import accelerators, hwconfig
from vitaccel.hwconfig import ConfigError, config_from_dict, load_config

SHIPPED = ["kv260", "paper", "pynq-z2", "revit-kv260", "revit-paper", "revit-pynq-z2", "revit-zcu104", "zcu104"]


def raw(name="paper"):
    return json.loads((hwconfig.CONFIG_DIR / f"{name}.json").read_text())


SECTION = {f.name for f in accelerators.get("vitcod").section}


def put(d, key, value):
    """Set a common key, or a key of the ViTCoD section, in a raw config."""
    (d["vitcod"] if key in SECTION else d)[key] = value
    return d


def test_shipped_configs_load():
    assert hwconfig.list_configs() == SHIPPED
    for n in SHIPPED:
        c = load_config(n)
        assert c.name == n
        assert len(c.hash) == 64 and c.hash32 == int(c.hash[:8], 16)


def test_paper_config_matches_the_paper():
    c = load_config("paper")
    assert (c.mac_lines, c.macs_per_line, c.clock_mhz, c.dram_gbps) == (64, 8, 500.0, 76.8)
    assert c.buffer_bytes() == {"qkvs": 128 * 1024, "index": 20 * 1024, "output": 108 * 1024, "weight": 64 * 1024}
    assert c.peak_macs_per_cycle == 512
    assert c.bytes_per_cycle == pytest.approx(153.6)
    assert c.ridge_macs_per_byte == pytest.approx(512 / 153.6)


def test_hashes_differ_and_are_stable():
    hashes = {n: load_config(n).hash for n in SHIPPED}
    assert len(set(hashes.values())) == len(SHIPPED)
    assert load_config("paper").hash == load_config("paper").hash


def test_description_does_not_change_hash_but_hardware_does():
    base = config_from_dict(raw())
    d = raw()
    d["description"] = "something else"
    d["assumptions"] = ["x"]
    assert config_from_dict(d).hash == base.hash
    put(d, "mac_lines", 128)
    assert config_from_dict(d).hash != base.hash


@pytest.mark.parametrize("key,value,needle", [
    ("mac_lines", 0, "'vitcod.mac_lines' is 0; allowed range [1, 1024]"),
    ("mac_lines", 2.5, "'vitcod.mac_lines' must be an integer"),
    ("macs_per_line", 6, "'vitcod.macs_per_line' is 6; must be a power of two"),
    ("ae_lines", 64, "'vitcod.ae_lines' (64) must be smaller than vitcod.mac_lines"),
    ("clock_mhz", -1, "'clock_mhz' is -1.0; allowed range"),
    ("clock_mhz", "fast", "'clock_mhz' must be a number"),
    ("kind", "gpu", "'kind' is 'gpu'; allowed: asic, fpga"),
    ("board", "zcu104", "'board' must be null when kind is 'asic'"),
    ("max_head_dim", 60, "'max_head_dim' (60) must be a multiple of vitcod.macs_per_line"),
    ("dram_gbps", True, "'dram_gbps' must be a number"),
    ("name", "", "'name' must be a non-empty string"),
])
def test_bad_values_name_the_key(key, value, needle):
    d = put(raw(), key, value)
    with pytest.raises(ConfigError) as e:
        config_from_dict(d)
    assert needle in str(e.value)


def test_missing_and_unknown_keys():
    d = raw()
    del d["axi_bits"]
    with pytest.raises(ConfigError, match="missing key 'axi_bits'"):
        config_from_dict(d)
    d = raw()
    d["mac_line"] = 3
    with pytest.raises(ConfigError, match="unknown key.*'mac_line'"):
        config_from_dict(d)
    d = raw()
    d["vitcod"]["mac_line"] = 3
    with pytest.raises(ConfigError, match="unknown key.*'vitcod.mac_line'"):
        config_from_dict(d)
    d = raw()
    del d["vitcod"]["sparse_q_ports"]
    with pytest.raises(ConfigError, match="missing key 'vitcod.sparse_q_ports'"):
        config_from_dict(d)


def test_accelerator_key_and_section():
    d = raw()
    del d["accelerator"]
    with pytest.raises(ConfigError, match="missing key 'accelerator'.*vitcod"):
        config_from_dict(d)
    d = raw()
    d["accelerator"] = "tpu"
    with pytest.raises(ConfigError, match="'accelerator' is 'tpu'; allowed: vitcod"):
        config_from_dict(d)
    d = raw()
    d["vitcod"] = 64
    with pytest.raises(ConfigError, match="key 'vitcod' must be an object"):
        config_from_dict(d)
    # A config in the old flat layout says where its keys went.
    d = raw()
    flat = {**{k: v for k, v in d.items() if k != "vitcod"}, **d["vitcod"]}
    with pytest.raises(ConfigError, match="'mac_lines'.*belong in the accelerator's section now"):
        config_from_dict(flat)
    c = load_config("paper")
    assert c.accelerator == "vitcod" and c.spec is accelerators.get("vitcod")
    assert c.to_dict()["vitcod"]["mac_lines"] == c.mac_lines == 64
    assert config_from_dict(c.to_dict()) == c
    r = c.replace(sparse_q_ports=64, clock_mhz=400.0)
    assert (r.sparse_q_ports, r.clock_mhz, r.mac_lines) == (64, 400.0, 64) and r.hash != c.hash
    with pytest.raises(ConfigError, match="no field 'warp_size'"):
        c.replace(warp_size=32)
    with pytest.raises(ConfigError, match="'vitcod.sparse_q_ports' \\(65\\) exceeds"):
        c.replace(sparse_q_ports=65)
    with pytest.raises(AttributeError, match="no field 'warp_size'"):
        c.warp_size


def _toy_spec(extra_fields=()):
    vit = accelerators.get("vitcod")
    return dataclasses.replace(vit, name="toy", section=(hwconfig.Field("lanes", int, 1, 64, doc="toy lanes"),
                                                         *extra_fields), check=None)


def test_adding_a_field_to_one_accelerator_leaves_the_others_hashes_alone():
    """The hash covers the common fields, the config's own section and its numerics version only."""
    before = {n: load_config(n).hash for n in SHIPPED}
    toy_raw = {**{k: v for k, v in raw().items() if k != "vitcod"}, "name": "toy", "accelerator": "toy",
               "toy": {"lanes": 8}}
    accelerators.register(_toy_spec())
    try:
        toy = config_from_dict(toy_raw)
        toy_hash = toy.hash
        assert toy.lanes == 8 and toy.accelerator == "toy"
    finally:
        accelerators.unregister("toy")
    # A new field in toy's table (and in toy's configs) changes toy's hash and nothing of ViTCoD's.
    accelerators.register(_toy_spec((hwconfig.Field("depth", int, 1, 64, doc="toy depth"),)))
    try:
        toy2 = config_from_dict({**toy_raw, "toy": {"lanes": 8, "depth": 4}})
        assert toy2.hash != toy_hash
        assert {n: load_config(n).hash for n in SHIPPED} == before
    finally:
        accelerators.unregister("toy")
    # And a new ViTCoD field changes ViTCoD's hashes but not toy's.
    accelerators.register(_toy_spec())
    vit = accelerators.get("vitcod")
    try:
        accelerators.ACCELERATORS["vitcod"] = dataclasses.replace(
            vit, section=(*vit.section, hwconfig.Field("spare", int, 0, 9, doc="a new field")))
        d = raw()
        d["vitcod"]["spare"] = 1
        assert config_from_dict(d).hash != before["paper"]
        assert config_from_dict(toy_raw).hash == toy_hash
    finally:
        accelerators.ACCELERATORS["vitcod"] = vit
        accelerators.unregister("toy")
    assert {n: load_config(n).hash for n in SHIPPED} == before


def test_numerics_version_is_hashed_per_accelerator():
    vit = accelerators.get("vitcod")
    before = load_config("paper").hash
    try:
        accelerators.ACCELERATORS["vitcod"] = dataclasses.replace(vit, numerics_version=vit.numerics_version + 1)
        assert config_from_dict(raw()).hash != before
    finally:
        accelerators.ACCELERATORS["vitcod"] = vit


def test_registry_refuses_a_section_field_that_repeats_a_common_one():
    with pytest.raises(ValueError, match="repeat common fields"):
        accelerators.register(_toy_spec((hwconfig.Field("clock_mhz", float, 1, 9, doc="clash"),)))
    with pytest.raises(ValueError, match="registered already"):
        accelerators.register(accelerators.get("vitcod"))
    with pytest.raises(ValueError, match="unknown accelerator 'nope'; known: vitcod"):
        accelerators.get("nope")


def test_fpga_needs_board_and_part():
    d = raw("zcu104")
    d["part"] = None
    with pytest.raises(ConfigError, match="'part' is required when kind is 'fpga'"):
        config_from_dict(d)


def test_config_is_frozen():
    c = load_config("paper")
    with pytest.raises(Exception):
        c.mac_lines = 1


def test_load_by_path_and_unknown_name(tmp_path):
    p = tmp_path / "mine.json"
    d = raw()
    d["name"] = "mine"
    p.write_text(json.dumps(d))
    assert load_config(str(p)).name == "mine"
    with pytest.raises(ConfigError, match="unknown hardware config 'nope'.*paper"):
        load_config("nope")
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(str(p))


def test_generated_files_are_fresh():
    stale = hwconfig.stale_generated()
    assert not stale, f"run `vitaccel config gen`; stale: {stale}"


@pytest.mark.parametrize("rel,old,new", [
    ("hls/include/configs/zcu104.h", "MAC_LINES = 64", "MAC_LINES = 32"),
    ("overlay/configs/zcu104.tcl", "VITACCEL_VITCOD_MAC_LINES 64", "VITACCEL_VITCOD_MAC_LINES 32"),
    ("hls/include/isa/vitcod_isa.h", "A_N_GLOBAL = 48", "A_N_GLOBAL = 47"),   # the ISA table's header
    ("hls/include/isa/common_isa.h", "ERR_RANGE = 0x003", "ERR_RANGE = 0x006"),
    ("hls/vitcod/DESCRIPTOR.md", "| 0x306 | attention |", "| 0x308 | attention |"),  # its status table
    ("overlay/accelerators.tcl", "vitcod_top", "vitcod_top2"),  # the registry build.tcl reads
    ("overlay/boards.tcl", "S_AXI_HP2_FPD", "S_AXI_HP3_FPD"),    # the board table build.tcl reads
    ("overlay/BOARDS.md", "xczu7ev-ffvc1156-2-e", "xczu7ev-ffvc1156-1-e"),
])
def test_staleness_is_detected(tmp_path, rel, old, new):
    # Render into a scratch root, then edit one file: the check must name it.
    hwconfig.write_generated(tmp_path)
    assert hwconfig.stale_generated(tmp_path) == []
    victim = tmp_path / rel
    assert old in victim.read_text()
    victim.write_text(victim.read_text().replace(old, new))
    assert hwconfig.stale_generated(tmp_path) == [victim]
    victim.unlink()
    assert hwconfig.stale_generated(tmp_path) == [victim]


def test_header_and_tcl_carry_the_hash():
    for n in SHIPPED:
        c = load_config(n)
        files = hwconfig.generated_files()
        h = files[hwconfig.REPO_ROOT / "hls" / "include" / "configs" / f"{n}.h"]
        t = files[hwconfig.REPO_ROOT / "overlay" / "configs" / f"{n}.tcl"]
        assert f"0x{c.hash32:08x}u" in h and c.hash in h
        assert f"set VITACCEL_CONFIG_HASH {c.hash}" in t
        acc = c.accelerator
        assert f"namespace {acc} {{" in h
        for f in c.spec.section:
            assert f"set VITACCEL_{acc.upper()}_{f.name.upper()} {getattr(c, f.name)}" in t
            assert f"static const int {f.name.upper()} = {getattr(c, f.name)};" in h


def test_generated_tcl_parses_under_tclsh():
    import shutil
    if shutil.which("tclsh") is None:
        pytest.skip("tclsh not installed")
    p = hwconfig.REPO_ROOT / "overlay" / "configs" / "pynq-z2.tcl"
    out = subprocess.run(["tclsh"], input=f"source {p}\nputs \"$VITACCEL_PART $VITACCEL_VITCOD_MAC_LINES $VITACCEL_BOARD\"\n",
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "xc7z020clg400-1 16 pynq-z2"
