"""The bundle against a hostile file (issue 15, part A): the config a bundle names is a NAME, never a path;
only regular files are read; header size and structure are bounded while parsing; models over the
hardware's limits are refused when opened; text from a bundle is printed escaped; lone surrogates are
refused at load; the checksum covers the header (format version 2; version 1 is still read).
"""
from __future__ import annotations

import copy
import json
import os
import resource
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from vitaccel.host import bundle as B
from vitaccel.host.bundle import Bundle, BundleError, load_bundle, read_header, write_bundle
from vitaccel.hwconfig import CONFIG_DIR, load_config
from vitaccel.sim.vitcod.model import compile_program
from vitaccel.testing import random_bundle


@pytest.fixture(scope="module")
def vb() -> Bundle:
    return random_bundle(seed=1, depth=1)


def with_meta(b: Bundle, fn) -> Bundle:
    meta = copy.deepcopy(b.meta)
    fn(meta)
    return Bundle(meta=meta, tensors=dict(b.tensors))


def unchecked_file(path: Path, b: Bundle) -> Path:
    path.write_bytes(B.encode_unchecked(b.meta, dict(b.tensors)))
    return path


def limited(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Python ``code`` in a child with a 2 GiB address-space limit and a timeout: a regression fails the
    test instead of hanging the suite or eating the machine."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limit)


CLI = "import sys\nfrom vitaccel.cli import main\nsys.exit(main(sys.argv[1:]))\n"


# -- 2. meta.hw.config_name is a shipped config's NAME --------------------------------------------------

def _names(tmp_path: Path) -> Dict[str, str]:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "secret.json").write_text('{"TOPSECRET_KEY": "TOPSECRET_VALUE"}')
    return {"dev_zero": "/dev/zero", "fifo": str(tmp_path / "fifo"), "secret": str(tmp_path / "secret.json"),
            "relative": "../configs/paper", "json": "paper.json", "backslash": "..\\paper", "nul": "pa\0per",
            "escape": "paper\x1b[2J"}


def test_config_name_paths_are_refused_at_load(tmp_path, vb):
    for key, name in _names(tmp_path).items():
        b = with_meta(vb, lambda m: m["hw"].update(config_name=name))
        f = unchecked_file(tmp_path / f"{key}.vcb", b)
        with pytest.raises(BundleError) as ei:
            load_bundle(f)
        assert ei.value.field == "meta.hw.config_name", (key, str(ei.value))
        assert "TOPSECRET" not in str(ei.value) and "\x1b" not in str(ei.value)


@pytest.mark.parametrize("key", ["dev_zero", "fifo", "secret"])
def test_config_name_is_never_opened_by_the_runtime(tmp_path, vb, key):
    """An in-memory (never validated) bundle naming a path: Accelerator and compile_program refuse it by
    name, without opening it (a child with a memory limit and a timeout, so a regression cannot hang)."""
    name = _names(tmp_path)[key]
    code = ("import sys\nfrom vitaccel.testing import random_bundle\nfrom vitaccel.host.bundle import BundleError\n"
            "from vitaccel.host.accelerator import Accelerator\nfrom vitaccel.sim.vitcod.model import compile_program\n"
            "b = random_bundle(seed=1, depth=1)\nb.meta['hw']['config_name'] = sys.argv[1]\n"
            "for fn in (lambda: Accelerator(b, backend='sim'), lambda: compile_program(b)):\n"
            "    try:\n        fn()\n    except BundleError as e:\n"
            "        assert e.field == 'meta.hw.config_name', e\n        print('refused:', e)\n"
            "    else:\n        sys.exit('accepted')\n")
    r = limited(code, name, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("refused: meta.hw.config_name") == 2 and "TOPSECRET" not in r.stdout


def test_cli_sim_refuses_a_bundle_naming_a_path(tmp_path, vb):
    b = with_meta(vb, lambda m: m["hw"].update(config_name="/dev/zero"))
    f = unchecked_file(tmp_path / "z.vcb", b)
    r = limited(CLI, "sim", str(f), timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "z.vcb" in r.stderr and "meta.hw.config_name" in r.stderr


def test_unshipped_config_name_needs_the_config_file_from_the_user(tmp_path, capsys):
    raw = json.loads((CONFIG_DIR / "paper.json").read_text())
    raw["name"] = "mine"
    cfg_file = tmp_path / "mine.json"
    cfg_file.write_text(json.dumps(raw))
    b = random_bundle(config=str(cfg_file), seed=1, depth=1)
    f = write_bundle(tmp_path / "m.vcb", b)
    assert load_bundle(f).config_name == "mine"                 # a valid name loads ...
    from vitaccel.cli import main
    from vitaccel.host.accelerator import Accelerator

    assert main(["sim", str(f)]) == 2                          # ... but is resolved only among shipped configs
    err = capsys.readouterr().err
    assert "meta.hw.config_name" in err and "not a shipped config" in err and "--config" in err
    with pytest.raises(BundleError, match="not a shipped config"):
        Accelerator(b, backend="sim")
    assert main(["sim", str(f), "--config", str(cfg_file), "--json"]) == 0   # the user's file, explicitly
    capsys.readouterr()
    with Accelerator(b, backend="sim", config=str(cfg_file)) as acc:
        assert acc.config.name == "mine"


# -- 7. regular files only; header size and structure bounded while parsing -----------------------------

@pytest.mark.parametrize("fn", ["load_bundle", "read_header"])
def test_non_regular_files_are_refused_without_reading(tmp_path, fn):
    os.mkfifo(tmp_path / "fifo.vcb")
    code = ("import sys\nfrom vitaccel.host.bundle import BundleError, load_bundle, read_header\n"
            f"fn = {fn}\n"
            "for p in sys.argv[1:]:\n    try:\n        fn(p)\n    except BundleError as e:\n"
            "        assert e.field == 'file', e\n        print('refused:', e)\n    else:\n        sys.exit('read')\n")
    r = limited(code, "/dev/zero", str(tmp_path / "fifo.vcb"), str(tmp_path), timeout=30)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert "character device" in out and "FIFO" in out and "directory" in out, out


def test_cli_sim_dev_zero_and_fifo(tmp_path):
    os.mkfifo(tmp_path / "fifo.vcb")
    for p in ("/dev/zero", str(tmp_path / "fifo.vcb")):
        r = limited(CLI, "sim", p, timeout=30)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert "not a regular file" in r.stderr and p in r.stderr


def _raw_header(text: bytes) -> bytes:
    pad = (-(16 + len(text))) % 64
    body = text + b" " * pad
    return B.MAGIC + len(body).to_bytes(8, "little") + body


def test_header_length_limit_is_sized_to_real_bundles():
    """The limit holds a DeiT-Base bundle's header (measured through the writer's own encoding) many
    times over, and refuses anything near the old 64 MiB."""
    from vitaccel.host.bundle.container import _header_bytes
    from vitaccel.host.bundle.validate import _expected_names

    dims = dict(D=768, C=3, P=16, N=197, H=12, K=1000, M=3072, Hc=6)
    shapes = {"D": 768, "C": 3, "P": 16, "N": 197, "H": 12, "K": 1000, "M": 3072, "Hc": 6, "3D": 2304,
              "N+1": 198, "H+1": 13, "nnz": 12 * 197 * 197 // 10}
    directory, off = {}, 0
    for name, spec in _expected_names(12, {"attn_sparse": True, "ae": True, "lsh": False}):
        shape = [shapes[s] if isinstance(s, str) else s for s in spec.shape]
        nbytes = int(np.prod(shape)) * B.DTYPES[spec.dtype].itemsize
        directory[name] = {"dtype": spec.dtype, "shape": shape, "offset": off, "nbytes": nbytes}
        off += -(-nbytes // 64) * 64
    meta = copy.deepcopy(random_bundle().meta)
    meta["extra"] = {"history": [{"epoch": i, "loss": 0.123456789, "acc": 0.987654321} for i in range(300)],
                     "dataset": "imagenet-1k " * 20}
    header = {"format_version": B.FORMAT_VERSION, "meta": meta, "tensors": directory, "data_nbytes": off}
    size = len(_header_bytes(header))
    assert size * 16 < B.MAX_HEADER_BYTES < 16 << 20, (size, B.MAX_HEADER_BYTES)
    demo = read_header(Path(B.__file__).resolve().parents[2] / "models" / "demo" / "demo.vcb")
    assert len(json.dumps(demo)) * 100 < B.MAX_HEADER_BYTES
    assert dims  # documented in BUNDLE.md next to the limit


def test_huge_headers_are_refused_before_parsing(tmp_path):
    from vitaccel.host.bundle.container import MAX_HEADER_ITEMS

    big = _raw_header(b"[" + b"{}," * (B.MAX_HEADER_BYTES // 3 - 100) + b"{}]")    # just under the byte limit
    f = tmp_path / "items.vcb"
    f.write_bytes(big)
    tracemalloc.start()
    try:
        with pytest.raises(BundleError) as ei:
            load_bundle(f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ei.value.field == "header" and f"{MAX_HEADER_ITEMS:,}" in ei.value.message, str(ei.value)
    assert peak < 4 * len(big) + (8 << 20), peak          # no million dicts were built
    over = _raw_header(b"{" + b" " * B.MAX_HEADER_BYTES + b"}")
    with pytest.raises(BundleError) as ei:
        B.bundle_from_bytes(over)
    assert ei.value.field == "header_length" and f"{B.MAX_HEADER_BYTES:,}" in ei.value.message
    deep = _raw_header(b"[" * 100000 + b"]" * 100000)
    with pytest.raises(BundleError, match="nest") as ei:
        B.bundle_from_bytes(deep)
    assert ei.value.field == "header"
    strings = _raw_header(b'{"format_version": 2, "meta": "' + b"[{" * 1000 + b'"}')   # brackets in strings count not
    with pytest.raises(BundleError) as ei:
        B.bundle_from_bytes(strings)
    assert ei.value.field != "header" or "nest" not in ei.value.message


def test_writer_refuses_what_the_reader_would(tmp_path, vb):
    b = with_meta(vb, lambda m: m.update(extra={"x": [[i] for i in range(B.container.MAX_HEADER_ITEMS)]}))
    with pytest.raises(BundleError) as ei:
        write_bundle(tmp_path / "x.vcb", b)
    assert ei.value.field == "header" and not (tmp_path / "x.vcb").exists()


# -- 8. the hardware's limits, checked when the model is opened -----------------------------------------

@pytest.mark.parametrize("heads", [13, 17])
def test_models_over_the_limits_are_refused_when_opened(tmp_path, capsys, heads):
    from vitaccel.cli import main
    from vitaccel.host.accelerator import Accelerator

    b = random_bundle(embed_dim=2 * heads, num_heads=heads, depth=1)
    with pytest.raises(BundleError) as ei:
        Accelerator(b, backend="sim")
    assert ei.value.field == "meta.model.num_heads" and "max_heads = 12 in config 'paper'" in str(ei.value)
    f = write_bundle(tmp_path / "h.vcb", b)
    assert main(["sim", str(f)]) == 2
    err = capsys.readouterr().err
    assert "h.vcb" in err and "max_heads = 12 in config 'paper'" in err and f"found {heads}" in err


def test_limits_of_the_config_given_at_open(capsys):
    from vitaccel.host.accelerator import Accelerator

    b = random_bundle(embed_dim=32, num_heads=8, depth=1)        # fits paper (12 heads), not pynq-z2 (6)
    Accelerator(b, backend="sim").close()
    with pytest.raises(BundleError, match="max_heads = 6 in config 'pynq-z2'"):
        Accelerator(b, backend="sim", config="pynq-z2")
    b = random_bundle(embed_dim=16, num_heads=2, depth=1, img_size=68, patch_size=4)   # 290 tokens > 256
    with pytest.raises(BundleError, match="max_tokens = 256 in config 'paper'") as ei:
        Accelerator(b, backend="sim")
    assert ei.value.field == "meta.model.num_tokens"


# -- 13. output and integrity ---------------------------------------------------------------------------

ESC = "\x1b[2J\x1b]0;owned\x07\x1b[31m"


def test_text_from_a_bundle_is_printed_escaped(tmp_path, vb, capsys):
    from vitaccel.cli import main

    b = with_meta(vb, lambda m: (m["extra"].update(note=ESC + "hi\u202etxt.exe") if isinstance(m.get("extra"), dict)
                                 else m.update(extra={"note": ESC + "hi\u202etxt.exe"}),
                                 m["quant"].update(scheme=ESC)))
    f = write_bundle(tmp_path / "esc.vcb", b)
    assert main(["sim", str(f)]) == 0
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\x07" not in out + err and "\u202e" not in out + err
    assert "\\x1b[2J" in out and "\\u202e" in out
    bad = with_meta(vb, lambda m: m.update({ESC: 1}))           # an unknown key is named in the error
    g = unchecked_file(tmp_path / "key.vcb", bad)
    assert main(["sim", str(g)]) == 2
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\\x1b[2J" in err


@pytest.mark.parametrize("where,field", [
    (lambda m: m.update(extra={"s": "ok \ud800"}), "meta.extra.s"),
    (lambda m: m.update(extra={"list": ["a", {"\udc80": 1}]}), "meta.extra.list.1"),
    (lambda m: m["quant"].update(s="\udfff"), "meta.quant.s"),
    (lambda m: m["model"].update(arch="dei\ud800"), "meta.model.arch"),
])
def test_lone_surrogates_are_refused_at_load(tmp_path, vb, capsys, where, field):
    b = with_meta(vb, where)
    f = unchecked_file(tmp_path / "s.vcb", b)
    with pytest.raises(BundleError) as ei:
        load_bundle(f)
    assert ei.value.field == field and "surrogate" in ei.value.message, str(ei.value)
    str(ei.value).encode("utf-8")                                   # the message itself prints
    with pytest.raises(BundleError):
        write_bundle(tmp_path / "w.vcb", b)


def test_checksum_covers_the_header(tmp_path, vb):
    b = with_meta(vb, lambda m: m.update(extra={"accuracy": 0.5}))
    data = B.bundle_to_bytes(b)
    assert data.count(b'"accuracy":0.5') == 1
    flipped = data.replace(b'"accuracy":0.5', b'"accuracy":0.9')     # valid JSON, valid schema, other metadata
    with pytest.raises(BundleError) as ei:
        B.bundle_from_bytes(flipped)
    assert ei.value.field == "sha256" and "corrupt" in ei.value.message
    rng = np.random.default_rng(15)
    hlen = int.from_bytes(data[8:16], "little")
    loaded_altered = 0
    for _ in range(400):                                             # random single-bit flips in the header
        x = bytearray(data)
        x[int(rng.integers(8, 16 + hlen))] ^= 1 << int(rng.integers(8))
        try:
            got = B.bundle_from_bytes(bytes(x))
        except BundleError:
            continue
        loaded_altered += got.meta != b.meta or not got.identical(b)
    assert loaded_altered == 0


def test_old_files_are_read_and_say_when_they_need_re_exporting(tmp_path, vb):
    # A dense or vitcod file from before format 3 has no integer whole model: it loads (to inspect it) and
    # says it must be exported again when compiled or written as the current version.
    old = {k: v for k, v in vb.tensors.items() if ".int." not in k and not k.startswith("int.")}
    v1 = B.encode_unchecked({**vb.meta, "format_version": 1}, old, format_version=1)
    got = B.bundle_from_bytes(v1)
    assert got.format_version == 1 and got.tensors.keys() == old.keys()
    with pytest.raises(ValueError, match="no integer whole model.*export it again"):
        compile_program(got)
    with pytest.raises(BundleError) as ei:
        write_bundle(tmp_path / "up.vcb", got)
    assert ei.value.field == "int.input.scale"
    with pytest.raises(BundleError, match="need format_version >= 3"):
        B.bundle_from_bytes(B.encode_unchecked({**vb.meta, "format_version": 1}, dict(vb.tensors), format_version=1))
    # A ReViT bundle from before format 3 (no integer model: ReViT's is optional in the schema) survives the
    # round trip to the current version, and the accelerator's compiler says to export it again.
    from vitaccel.sim.revit.model import compile_revit

    rv = random_bundle(method="revit")
    rv_old = {k: v for k, v in rv.tensors.items() if ".int." not in k and not k.startswith("int.")}
    v1 = B.encode_unchecked({**rv.meta, "format_version": 1}, rv_old, format_version=1)
    f = write_bundle(tmp_path / "up.vcb", B.bundle_from_bytes(v1))
    again = load_bundle(f)
    assert read_header(f)["format_version"] == B.FORMAT_VERSION == 3 and again.format_version == 3
    assert all(np.array_equal(again.tensors[k], rv_old[k]) for k in rv_old)
    with pytest.raises(ValueError, match="no integer whole model.*export_revit_bundle"):
        compile_revit(again)
    mixed = B.encode_unchecked({**vb.meta, "format_version": 2}, dict(vb.tensors), format_version=1)
    with pytest.raises(BundleError) as ei:
        B.bundle_from_bytes(mixed)
    assert ei.value.field == "meta.format_version"
