"""Seeded mutation campaigns (issue 15, part A) on the CLI's image loaders and the safetensors reader,
next to the bundle loader's in tests/test_bundle.py. Every mutated file must either load correctly or raise
the one documented error (``ValueError`` naming the file for images, ``SafetensorsError`` for safetensors);
other exceptions, hangs (a case over HANG_S = 20 s) and silent wrong results (loaded data that differs from the
reference reader / the file's own bytes) are counted and must be zero. Each campaign prints its line:

    fuzz <name>: N cases, loaded L, documented errors D, other exceptions 0, hangs 0, silent wrong 0
"""
from __future__ import annotations

import io
import json
import struct
import time
import zipfile
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import pytest

from vitaccel.host.run import load_images

#: A case over this many seconds counts as a hang. Every input is a few KiB, so a healthy case takes
#: milliseconds; the margin is for a loaded 2-core CI machine (a tighter bound flagged scheduling delays).
HANG_S = 20.0


class Tally:
    def __init__(self, name: str):
        self.name, self.cases, self.loaded, self.documented, self.hangs, self.wrong = name, 0, 0, 0, 0, 0
        self.other: List[str] = []

    def line(self) -> str:
        return (f"fuzz {self.name}: {self.cases} cases, loaded {self.loaded}, documented errors {self.documented}, "
                f"other exceptions {len(self.other)}, hangs {self.hangs}, silent wrong {self.wrong}")

    def check(self, capsys) -> None:
        with capsys.disabled():
            print("\n" + self.line())
        assert not self.other, "\n".join(self.other[:10])
        assert self.hangs == 0 and self.wrong == 0, self.line()


def _mutate(rng: np.random.Generator, data: bytes, header_end: int) -> bytes:
    b = bytearray(data)
    kind = int(rng.integers(6))
    if kind == 0:                                           # flip bits, mostly in the header
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(0, header_end if rng.random() < 0.8 else len(b)))] ^= 1 << int(rng.integers(8))
    elif kind == 1:                                         # truncate
        return bytes(b[:int(rng.integers(0, len(b)))])
    elif kind == 2:                                         # extend
        return bytes(b) + rng.integers(0, 256, int(rng.integers(1, 300)), dtype=np.uint8).tobytes()
    elif kind == 3:                                         # random bytes in the header
        for _ in range(int(rng.integers(1, 6))):
            b[int(rng.integers(0, header_end))] = int(rng.integers(256))
    elif kind == 4:                                         # an interesting ASCII token in the header
        tok = rng.choice([b"(", b")", b"[", b"]", b"{", b"}", b"'", b"-1", b"99999999999", b"'<c8'", b"'|O'",
                          b"'<U3'", b"True", b"0,", b"1e400", b"\\x00", b"'>f8'"])
        i = int(rng.integers(0, header_end))
        b[i:i + len(tok)] = tok
    else:                                                   # splice a chunk from elsewhere
        n = int(rng.integers(1, 64))
        i, j = int(rng.integers(0, len(b))), int(rng.integers(0, len(b)))
        b[j:j + n] = data[i:i + n]
    return bytes(b)


# -- image loaders -----------------------------------------------------------------------------------------

def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _png(rng) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _reference(path: Path):
    """numpy's own reader, for the silent-wrong oracle (None when it fails or has no plain array)."""
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False), None
        with np.load(path, allow_pickle=False) as z:
            return z["images"], (z["labels"] if "labels" in z.files else None)
    except Exception:  # noqa: BLE001 - the reference may fail where ours names the problem
        return None


@pytest.mark.filterwarnings("ignore::vitaccel.host.run.InputWarning")
def test_fuzz_image_loaders(tmp_path, capsys):
    pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(20260415)
    x = rng.normal(size=(3, 3, 8, 8)).astype(np.float32)
    seeds = {".npy": [_npy(x), _npy(x.astype(np.float64)), _npy(np.asfortranarray(x))],
             ".npz": [_npz(images=x, labels=np.array([0, 1, 2])), _npz(images=x)],
             ".png": [_png(rng)]}
    t = Tally("image loaders (.npy, .npz, .png)")
    for case in range(1500):
        suffix = [".npy", ".npz", ".png"][case % 3]
        src = seeds[suffix][int(rng.integers(len(seeds[suffix])))]
        data = _mutate(rng, src, 128 if suffix != ".npz" else len(src))
        f = tmp_path / f"c{case}{suffix}"
        f.write_bytes(data)
        t.cases += 1
        t0 = time.perf_counter()
        try:
            imgs, labels = load_images(str(f), size=8, chans=3, num_classes=10)
        except ValueError as e:
            t.documented += 1
            msg = str(e)
            if f.name not in msg or "\n" in msg:
                t.other.append(f"case {case}: message without the file name or on two lines: {msg[:200]}")
        except Exception as e:  # noqa: BLE001 - the point of the campaign
            t.other.append(f"case {case} {suffix}: {type(e).__name__}: {e}")
        else:
            t.loaded += 1
            ok = imgs.dtype == np.float32 and imgs.shape[1:] == (3, 8, 8) and np.isfinite(imgs).all()
            ok = ok and (labels is None or (labels.ndim == 1 and len(labels) == len(imgs)))
            if suffix != ".png":
                ref = _reference(f)
                ok = ok and ref is not None and np.array_equal(imgs, np.asarray(ref[0], np.float32))
                ok = ok and (labels is None or np.array_equal(labels, ref[1]))
            if not ok:
                t.wrong += 1
        if time.perf_counter() - t0 > HANG_S:
            t.hangs += 1
        f.unlink()
    t.check(capsys)
    assert t.loaded > 20 and t.documented > 500


# -- safetensors -------------------------------------------------------------------------------------------

def _st(tensors: Dict[str, np.ndarray], *, header_edit: Callable[[dict], None] = None, meta=None) -> bytes:
    header, chunks, off = {}, [], 0
    codes = {np.dtype("float32"): "F32", np.dtype("int64"): "I64", np.dtype("uint8"): "U8", np.dtype("float16"): "F16"}
    for k, v in tensors.items():
        b = v.tobytes()
        header[k] = {"dtype": codes[v.dtype], "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        chunks.append(b)
        off += len(b)
    if meta is not None:
        header["__metadata__"] = meta
    if header_edit:
        header_edit(header)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(chunks)


ST_TENSORS = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.arange(4, dtype=np.int64),
              "c": np.zeros((0, 5), np.float32), "d": np.arange(3, dtype=np.uint8)}


def _raw_st(header_bytes: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header_bytes)) + header_bytes + data


def _malformed() -> Dict[str, bytes]:
    good = _st(ST_TENSORS)

    def edit(fn):
        return _st(ST_TENSORS, header_edit=fn)

    return {
        "empty": b"", "short": b"\x01\x02", "truncated": good[:-5], "truncated_header": good[:20],
        "huge_header_length": struct.pack("<Q", 1 << 62) + good[8:],
        "header_past_end": struct.pack("<Q", len(good)) + good[8:],
        "not_utf8": _raw_st(b"\xff\xfe{}"), "bad_json": _raw_st(b'{"a": '), "list_header": _raw_st(b"[1, 2]"),
        "duplicate_key": _raw_st(b'{"a": {}, "a": {}}'),
        "deep_nesting": _raw_st(b"{" + b'"a":[' * 50000 + b"]" * 50000 + b"}"),
        "many_values": _raw_st(b'{"a":[' + b"[]," * 400000 + b"[]]}"),
        "entry_not_object": edit(lambda h: h.update(a=[1, 2])),
        "entry_extra_key": edit(lambda h: h["a"].update(x=1)),
        "wrong_dtype": edit(lambda h: h["a"].update(dtype="F128")),
        "dtype_not_str": edit(lambda h: h["a"].update(dtype=["F32"])),
        "shape_negative": edit(lambda h: h["a"].update(shape=[-2, -3])),
        "shape_float": edit(lambda h: h["a"].update(shape=[2.0, 3])),
        "shape_bool": edit(lambda h: h["d"].update(shape=[True, 3])),
        "shape_not_list": edit(lambda h: h["a"].update(shape="2,3")),
        "shape_huge_zero": edit(lambda h: h["c"].update(shape=[0, 1 << 70])),
        "offsets_reversed": edit(lambda h: h["b"].update(data_offsets=h["b"]["data_offsets"][::-1])),
        "offsets_three": edit(lambda h: h["b"].update(data_offsets=[0, 8, 16])),
        "offsets_str": edit(lambda h: h["b"].update(data_offsets=["0", "32"])),
        "overlapping": edit(lambda h: h["b"].update(data_offsets=[0, 32])),
        "size_mismatch": edit(lambda h: h["a"].update(shape=[3, 3])),
        "gap": edit(lambda h: (h["d"].update(data_offsets=[h["d"]["data_offsets"][0] + 1,
                                                            h["d"]["data_offsets"][1] + 1]))),
        "trailing": _st(ST_TENSORS) + b"\0" * 16,
        "metadata_not_str": _st(ST_TENSORS, meta={"x": 1}),
        "metadata_list": _st(ST_TENSORS, meta=["x"]),
    }


def test_read_safetensors_malformed_files_give_one_documented_error(tmp_path):
    pytest.importorskip("torch")
    from vitaccel.models.deit import SafetensorsError, read_safetensors

    f = tmp_path / "ok.safetensors"
    f.write_bytes(_st(ST_TENSORS, meta={"format": "pt"}))
    got = read_safetensors(f)
    assert got["a"].tolist() == [[0, 1, 2], [3, 4, 5]] and tuple(got["c"].shape) == (0, 5)
    for name, data in _malformed().items():
        f = tmp_path / f"{name}.safetensors"
        f.write_bytes(data)
        with pytest.raises(SafetensorsError) as ei:
            read_safetensors(f)
        assert f.name in str(ei.value) and "\n" not in str(ei.value), (name, str(ei.value))
    import os

    os.mkfifo(tmp_path / "fifo.safetensors")
    with pytest.raises(SafetensorsError, match="not a regular file"):
        read_safetensors(tmp_path / "fifo.safetensors")


def test_fuzz_safetensors_reader(tmp_path, capsys):
    pytest.importorskip("torch")
    from vitaccel.models.deit import SafetensorsError, read_safetensors

    rng = np.random.default_rng(20260416)
    seeds = [_st(ST_TENSORS), _st({"w": rng.normal(size=(4, 4)).astype(np.float16)}, meta={"k": "v"}),
             *_malformed().values()]
    t = Tally("safetensors reader")
    f = tmp_path / "x.safetensors"
    f.write_bytes(seeds[0])
    read_safetensors(f)          # the first read imports torch: not part of any case's time
    for case in range(1200):
        src = seeds[int(rng.integers(len(seeds)))] if case % 2 else seeds[case % 2]
        hlen = int.from_bytes(src[:8], "little") if len(src) >= 8 else 0
        data = _mutate(rng, src, min(8 + hlen, len(src)) or 1) if src else src
        f.write_bytes(data)
        t.cases += 1
        t0 = time.perf_counter()
        try:
            got = read_safetensors(f)
        except SafetensorsError as e:
            t.documented += 1
            if f.name not in str(e):
                t.other.append(f"case {case}: message without the file name: {str(e)[:200]}")
        except Exception as e:  # noqa: BLE001 - the point of the campaign
            t.other.append(f"case {case}: {type(e).__name__}: {e}")
        else:
            t.loaded += 1
            header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
            body = data[8 + int.from_bytes(data[:8], "little"):]
            for k, v in got.items():                        # what loaded is exactly the file's bytes
                b0, b1 = header[k]["data_offsets"]
                raw = v.contiguous().view(-1).view(__import__("torch").uint8).numpy().tobytes() if v.numel() else b""
                if raw != body[b0:b1] or list(v.shape) != header[k]["shape"]:
                    t.wrong += 1
                    break
        if time.perf_counter() - t0 > HANG_S:
            t.hangs += 1
    t.check(capsys)
    assert t.loaded > 10 and t.documented > 500
