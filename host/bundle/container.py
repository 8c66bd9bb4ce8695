"""The bundle's file format (spec in ``host/BUNDLE.md``): how a validated bundle becomes bytes and back.

The format is a small fixed container with a JSON header rather than pickle, so that opening a file
never runs code from it, every tensor is a read-only ``np.frombuffer`` view on the file's bytes (no copy;
offsets are aligned, so any dtype views cleanly), and a truncated or corrupted file is refused before any
of it is used::

    b"VITACCB\\x00"  | uint64 LE header length L | L bytes UTF-8 JSON header (space-padded so that
    16 + L is a multiple of 64) | data section: raw little-endian C-order arrays, each 64-byte aligned

The header holds ``format_version``, ``meta``, the tensor directory ``tensors`` ({name: {dtype, shape,
offset, nbytes}}, offsets relative to the data start), ``data_nbytes`` and ``data_sha256``.

The reader distrusts the file: it bounds the header before parsing it, refuses duplicate JSON keys and
non-finite numbers, and checks every directory entry (dtype, shape, alignment, overlap, extent) and the
checksum before it builds a single array; then the schema validator runs on what it found. The writer
validates first and replaces the target atomically, so a crash never leaves half a bundle under its name.

``encode_unchecked``, ``split_unchecked`` and ``assemble_unchecked`` skip all validation: they exist so
tests can build broken files. Never ship their output.

NumPy and the standard library only: this runs on a PYNQ board, without torch.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Mapping, Tuple, Union

import numpy as np

from vitaccel.host.bundle.inmemory import Bundle
from vitaccel.host.bundle.schema import DTYPES, FORMAT_VERSION, BundleError, _fail, _is_int
from vitaccel.host.bundle.validate import _validate

__all__ = [
    "MAGIC",
    "ALIGN",
    "MAX_HEADER_BYTES",
    "write_bundle",
    "load_bundle",
    "bundle_to_bytes",
    "bundle_from_bytes",
    "read_header",
    "encode_unchecked",
    "split_unchecked",
    "assemble_unchecked",
]

MAGIC = b"VITACCB\x00"
#: Alignment of the data section and of every tensor in it (bytes).
ALIGN = 64
#: Largest header accepted: refuse before reading or parsing it.
MAX_HEADER_BYTES = 64 << 20
_PREAMBLE = len(MAGIC) + 8
_MAX_NDIM = 8
_MAX_DIM = (1 << 31) - 1
_MAX_ARRAY_BYTES = 1 << 48


# ==================================================================================================
# Container: writing
# ==================================================================================================

def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _tensor_payload(a: np.ndarray) -> np.ndarray:
    """The array's bytes in the file: little-endian, C order, bool as uint8 0/1 (a flat uint8 view)."""
    dt = DTYPES[a.dtype.name]
    c = np.ascontiguousarray(a, dtype=dt)
    return c.reshape(-1).view(np.uint8)


def _header_bytes(header: Mapping[str, Any]) -> bytes:
    text = json.dumps(header, sort_keys=True, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    raw = text.encode("ascii")
    pad = _align(_PREAMBLE + len(raw)) - _PREAMBLE - len(raw)
    return raw + b" " * pad


def _write_stream(f: BinaryIO, meta: Any, items: List[Tuple[str, np.ndarray]],
                  format_version: Any = FORMAT_VERSION) -> None:
    """Write a container to a seekable binary stream; no validation beyond what encoding needs."""
    directory: Dict[str, Dict[str, Any]] = {}
    off = 0
    for name, a in items:
        if a.dtype.name not in DTYPES:
            raise _fail(name, f"expected one of dtypes {', '.join(DTYPES)}, found {a.dtype}")
        nbytes = int(a.size) * DTYPES[a.dtype.name].itemsize
        directory[name] = {"dtype": a.dtype.name, "shape": [int(s) for s in a.shape], "offset": off,
                           "nbytes": nbytes}
        off = _align(off + nbytes)
    header = {"format_version": format_version, "meta": meta, "tensors": directory, "data_nbytes": off,
              "data_sha256": "0" * 64}
    hb = _header_bytes(header)
    if len(hb) > MAX_HEADER_BYTES:
        raise _fail("header", f"expected a header of at most {MAX_HEADER_BYTES} bytes, found {len(hb)}")
    start = f.tell()
    f.write(MAGIC + len(hb).to_bytes(8, "little") + hb)
    h = hashlib.sha256()
    pos = 0
    for name, a in items:
        ent = directory[name]
        if ent["offset"] > pos:
            z = bytes(ent["offset"] - pos)
            f.write(z)
            h.update(z)
        payload = _tensor_payload(a)
        f.write(payload)
        h.update(payload)
        pos = ent["offset"] + ent["nbytes"]
    if off > pos:
        z = bytes(off - pos)
        f.write(z)
        h.update(z)
    header["data_sha256"] = h.hexdigest()
    hb2 = _header_bytes(header)
    assert len(hb2) == len(hb)  # the hash placeholder has the same length
    end = f.tell()
    f.seek(start + _PREAMBLE)
    f.write(hb2)
    f.seek(end)


def _ordered_items(bundle: Bundle) -> List[Tuple[str, np.ndarray]]:
    names = _validate(bundle.meta, bundle.tensors)
    return [(n, bundle.tensors[n]) for n in names]


def bundle_to_bytes(bundle: Bundle) -> bytes:
    """Validate and encode a bundle (the exact bytes :func:`write_bundle` writes)."""
    items = _ordered_items(bundle)
    buf = io.BytesIO()
    _write_stream(buf, bundle.meta, items)
    return buf.getvalue()


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(str(d), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # not supported on every platform / file system
        pass
    finally:
        os.close(fd)


def write_bundle(path: Union[str, os.PathLike], bundle: Bundle) -> Path:
    """Validate ``bundle``, then write it to ``path`` atomically; return the path.

    Validation runs first (an invalid bundle raises :class:`BundleError` and nothing is written). The
    file is written to a temporary file in the same directory, flushed and fsynced, then ``os.replace``d
    onto ``path`` (and the directory fsynced where possible): a crash leaves either the old file or the
    new one under ``path``, never a half bundle, and the temporary file is removed on any error.
    """
    items = _ordered_items(bundle)
    path = Path(path)
    d = path.parent if str(path.parent) else Path(".")
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(d))
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            _write_stream(f, bundle.meta, items)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(d)
    return path


# ==================================================================================================
# Container: reading
# ==================================================================================================

def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"number {text[:40]} overflows a float")
    return v


def _parse_header(buf: Union[bytes, memoryview]) -> Tuple[Dict[str, Any], int]:
    """Magic, header length, JSON, version. Returns (header, data_start)."""
    size = len(buf)
    if size < len(MAGIC):
        raise _fail("magic", f"expected {MAGIC!r} at the start, found a {size}-byte file")
    if bytes(buf[:len(MAGIC)]) != MAGIC:
        raise _fail("magic", f"expected {MAGIC!r}, found {bytes(buf[:len(MAGIC)])!r} (not a vitaccel bundle)")
    if size < _PREAMBLE:
        raise _fail("header_length", f"expected an 8-byte header length, file ends after {size} bytes")
    hlen = int.from_bytes(bytes(buf[len(MAGIC):_PREAMBLE]), "little")
    if hlen > MAX_HEADER_BYTES:
        raise _fail("header_length", f"expected at most {MAX_HEADER_BYTES} bytes, found {hlen}")
    if _PREAMBLE + hlen > size:
        raise _fail("header_length", f"header of {hlen} bytes runs past the end of the {size}-byte file "
                                     f"(truncated?)")
    if (_PREAMBLE + hlen) % ALIGN:
        raise _fail("header_length", f"expected 16 + header length to be a multiple of {ALIGN}, found "
                                     f"16 + {hlen}")
    raw = bytes(buf[_PREAMBLE:_PREAMBLE + hlen])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _fail("header", f"expected UTF-8 JSON, found an invalid byte at {e.start}") from None
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant,
                            parse_float=_finite_float)
    except RecursionError:
        raise _fail("header", "expected JSON, found nesting too deep to parse") from None
    except ValueError as e:
        raise _fail("header", f"expected a JSON object, found invalid JSON ({str(e)[:200]})") from None
    if not isinstance(header, dict):
        raise _fail("header", f"expected a JSON object, found {type(header).__name__}")
    if "format_version" not in header:
        raise _fail("format_version", "missing from the header")
    v = header["format_version"]
    if not _is_int(v) or v != FORMAT_VERSION:
        raise _fail("format_version", f"expected {FORMAT_VERSION} (this loader reads version {FORMAT_VERSION} "
                                      f"only), found {v!r}")
    return header, _PREAMBLE + hlen


_HEADER_KEYS = ("format_version", "meta", "tensors", "data_nbytes", "data_sha256")


def _parse_directory(header: Dict[str, Any], buf: Union[bytes, memoryview], data_start: int) -> Dict[str, np.ndarray]:
    for k in header:
        if k not in _HEADER_KEYS:
            raise _fail(k, f"unknown header key; expected only {', '.join(_HEADER_KEYS)}")
    for k in _HEADER_KEYS:
        if k not in header:
            raise _fail(k, "missing from the header")
    data_nbytes = header["data_nbytes"]
    if not _is_int(data_nbytes) or data_nbytes < 0:
        raise _fail("data_nbytes", f"expected a non-negative integer, found {data_nbytes!r}")
    size = len(buf)
    if data_start + data_nbytes != size:
        what = "truncated" if data_start + data_nbytes > size else "has trailing bytes"
        raise _fail("data_nbytes", f"expected a {data_start + data_nbytes}-byte file ({data_nbytes} data "
                                   f"bytes), found {size} bytes: the file {what}")
    digest = header["data_sha256"]
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise _fail("data_sha256", f"expected 64 lowercase hex digits, found {digest!r}")
    actual = hashlib.sha256(memoryview(buf)[data_start:]).hexdigest()
    if actual != digest:
        raise _fail("data_sha256", f"data section is corrupt: expected sha256 {digest}, found {actual}")
    if not isinstance(header["meta"], dict):
        raise _fail("meta", f"expected a JSON object, found {type(header['meta']).__name__}")
    directory = header["tensors"]
    if not isinstance(directory, dict):
        raise _fail("tensors", f"expected a JSON object, found {type(directory).__name__}")
    spans: List[Tuple[int, int, str]] = []
    parsed: List[Tuple[str, np.dtype, Tuple[int, ...], int, int]] = []
    for name, ent in directory.items():
        if not isinstance(ent, dict) or set(ent) != {"dtype", "shape", "offset", "nbytes"}:
            raise _fail(name, f"expected a directory entry {{dtype, shape, offset, nbytes}}, found {ent!r:.200}")
        dt = ent["dtype"]
        if not isinstance(dt, str) or dt not in DTYPES:
            raise _fail(name, f"expected a dtype in {', '.join(DTYPES)}, found {dt!r:.100}")
        shape = ent["shape"]
        if (not isinstance(shape, list) or len(shape) > _MAX_NDIM
                or not all(_is_int(s) and 0 <= s <= _MAX_DIM for s in shape)):
            raise _fail(name, f"expected a shape of at most {_MAX_NDIM} integers in [0, 2^31), found {shape!r:.200}")
        off, nbytes = ent["offset"], ent["nbytes"]
        if not _is_int(off) or off < 0 or off % ALIGN:
            raise _fail(name, f"expected an offset that is a non-negative multiple of {ALIGN}, found {off!r}")
        itemsize = DTYPES[dt].itemsize
        count = math.prod(shape)
        if math.prod(max(s, 1) for s in shape) * itemsize > _MAX_ARRAY_BYTES:
            raise _fail(name, f"expected a shape of at most 2^48 bytes (zero dims counted as 1), found {shape!r}")
        if not _is_int(nbytes) or nbytes != count * itemsize:
            raise _fail(name, f"expected nbytes = {count} elements x {itemsize} = {count * itemsize}, "
                              f"found {nbytes!r}")
        if off + nbytes > data_nbytes:
            raise _fail(name, f"expected the tensor inside the {data_nbytes}-byte data section, found bytes "
                              f"[{off}, {off + nbytes})")
        if nbytes:
            spans.append((off, off + nbytes, name))
        parsed.append((name, DTYPES[dt], tuple(shape), off, count))
    spans.sort()
    for (a0, a1, an), (b0, _b1, bn) in zip(spans, spans[1:]):
        if b0 < a1:
            raise _fail(bn, f"expected non-overlapping tensors, found bytes [{b0}, ...) inside {an} [{a0}, {a1})")
    arrays: Dict[str, np.ndarray] = {}
    for name, dt, shape, off, count in parsed:
        if count == 0:
            a = np.zeros(shape, dtype=dt)
            a.setflags(write=False)
        else:
            a = np.frombuffer(buf, dtype=dt, count=count, offset=data_start + off).reshape(shape)
        arrays[name] = a
    return arrays


def _as_readonly_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    return bytes(data)


def bundle_from_bytes(data: Union[bytes, bytearray, memoryview], *, expect_config: Any = None) -> Bundle:
    """Decode and fully validate a bundle from its bytes. Raises :class:`BundleError` on any problem."""
    buf = _as_readonly_bytes(data)
    cfg = _resolve_config(expect_config) if expect_config is not None else None
    header, data_start = _parse_header(buf)
    arrays = _parse_directory(header, buf, data_start)
    meta = header["meta"]
    # meta.format_version must equal FORMAT_VERSION (schema), which the header's version was checked against.
    names = _validate(meta, arrays, cfg)
    return Bundle(meta=meta, tensors={n: arrays[n] for n in names})


def _resolve_config(config: Any) -> Any:
    from vitaccel.hwconfig import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as e:
        raise _fail("expect_config", str(e)) from e


def load_bundle(path: Union[str, os.PathLike], *, expect_config: Any = None) -> Bundle:
    """Read and fully validate the bundle at ``path``.

    ``expect_config`` (a config name, path or ``HardwareConfig``) also checks that the bundle was built
    for that hardware config (name and hash) and that its model fits the config's limits. Every problem
    with the file's contents raises :class:`BundleError` (with ``.path`` set); only I/O problems
    (missing file, permissions) raise ``OSError``.
    """
    cfg = _resolve_config(expect_config) if expect_config is not None else None
    with open(path, "rb") as f:
        data = f.read()
    try:
        return bundle_from_bytes(data, expect_config=cfg)
    except BundleError as e:
        raise BundleError(e.field, e.message, path=os.fspath(path)) from None


def read_header(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """The parsed JSON header (container checks only: magic, length, JSON, version; data not read)."""
    with open(path, "rb") as f:
        pre = f.read(_PREAMBLE)
        if len(pre) == _PREAMBLE and pre[:len(MAGIC)] == MAGIC:
            hlen = int.from_bytes(pre[len(MAGIC):], "little")
            size = os.fstat(f.fileno()).st_size
            body = f.read(min(hlen, MAX_HEADER_BYTES + 1, max(size - _PREAMBLE, 0)))
            pre = pre + body
    try:
        return _parse_header(pre)[0]
    except BundleError as e:
        raise BundleError(e.field, e.message, path=os.fspath(path)) from None


# ==================================================================================================
# Unchecked tools (tests only)
# ==================================================================================================

def encode_unchecked(meta: Any, tensors: Mapping[str, np.ndarray], *, format_version: Any = FORMAT_VERSION) -> bytes:
    """Encode a container WITHOUT validating meta or the schema (tensors in the given order). For tests
    that need broken bundles; never ship the result."""
    buf = io.BytesIO()
    _write_stream(buf, meta, [(k, np.asarray(v)) for k, v in tensors.items()], format_version)
    return buf.getvalue()


def split_unchecked(data: bytes) -> Tuple[Dict[str, Any], bytes]:
    """(header dict, data section) of a container, trusting the preamble. For tests."""
    hlen = int.from_bytes(data[len(MAGIC):_PREAMBLE], "little")
    return json.loads(data[_PREAMBLE:_PREAMBLE + hlen].decode("utf-8")), data[_PREAMBLE + hlen:]


def assemble_unchecked(header: Mapping[str, Any], data: bytes, *, fix_checksum: bool = True,
                       fix_nbytes: bool = True) -> bytes:
    """Build a container from a header dict and a data section, optionally recomputing ``data_sha256`` and
    ``data_nbytes``. For tests."""
    header = dict(header)
    if fix_checksum:
        header["data_sha256"] = hashlib.sha256(data).hexdigest()
    if fix_nbytes:
        header["data_nbytes"] = len(data)
    hb = _header_bytes(header)
    return MAGIC + len(hb).to_bytes(8, "little") + hb + data

