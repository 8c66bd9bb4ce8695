"""The bundle's file format (spec in ``host/BUNDLE.md``): how a validated bundle becomes bytes and back.

The format is a small fixed container with a JSON header rather than pickle, so that opening a file
never runs code from it, every tensor is a read-only ``np.frombuffer`` view on the file's bytes (no copy;
offsets are aligned, so any dtype views cleanly), and a truncated or corrupted file is refused before any
of it is used::

    b"VITACCB\\x00"  | uint64 LE header length L | L bytes UTF-8 JSON header (space-padded so that
    16 + L is a multiple of 64) | data section: raw little-endian C-order arrays, each 64-byte aligned
    | 32 bytes: sha256 of every byte before them (magic, length, header, data)      [format version 2]

The header holds ``format_version``, ``meta``, the tensor directory ``tensors`` ({name: {dtype, shape,
offset, nbytes}}, offsets relative to the data start) and ``data_nbytes``. Version 1 files (no trailing
digest; ``data_sha256`` in the header covers the data only) are still read; the writer writes version 2.

The reader distrusts the file: it opens regular files only (a FIFO or a device is refused before a byte is
read), bounds the header's size, nesting and number of values before parsing it, refuses duplicate JSON
keys and non-finite numbers, checks the checksum, and checks every directory entry (dtype, shape,
alignment, overlap, extent) before it builds a single array; then the schema validator runs on what it
found. The writer validates first and replaces the target atomically (:func:`vitaccel.fileio.atomic_write`),
so a crash never leaves half a bundle under its name.

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
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Mapping, Tuple, Union

import numpy as np

from vitaccel.fileio import NotRegularFile, atomic_write, file_kind, json_shape, open_regular
from vitaccel.host.bundle.inmemory import Bundle
from vitaccel.host.bundle.schema import DTYPES, FORMAT_VERSION, READ_VERSIONS, BundleError, _fail, _is_int
from vitaccel.host.bundle.validate import _validate

__all__ = [
    "MAGIC",
    "ALIGN",
    "MAX_HEADER_BYTES",
    "MAX_HEADER_ITEMS",
    "MAX_HEADER_DEPTH",
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
#: Largest header accepted, refused before it is parsed: 4 MiB. A DeiT-Base bundle's header (12 layers, 704
#: directory entries) is 62 KB (77 KB with a 300-epoch history in meta.extra), the shipped demo's 21 KB; 4 MiB holds 50 DeiT-Bases' worth of
#: directory and meta, yet parses in ~100 MB even at the item limit below (a PYNQ-Z2 has 512 MB).
MAX_HEADER_BYTES = 4 << 20
#: Most JSON values (containers and scalars) in a header: a DeiT-Base bundle has about 5,600.
MAX_HEADER_ITEMS = 1 << 18
#: Deepest nesting of a header: meta.extra may nest 32 levels (schema), three levels below the top.
MAX_HEADER_DEPTH = 40
_PREAMBLE = len(MAGIC) + 8
#: Bytes of the trailing sha256 of a version-2 file.
DIGEST_BYTES = 32
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


def _header_keys(version: Any) -> Tuple[str, ...]:
    return _HEADER_KEYS_V1 if version == 1 else _HEADER_KEYS


def _write_stream(f: BinaryIO, meta: Any, items: List[Tuple[str, np.ndarray]],
                  format_version: Any = FORMAT_VERSION) -> None:
    """Write a container to a binary stream (seekable for version 1 only); no validation beyond what
    encoding needs. Version 2 ends with the sha256 of everything before it; version 1 (tests only) holds
    the data's sha256 in its header."""
    directory: Dict[str, Dict[str, Any]] = {}
    off = 0
    for name, a in items:
        if a.dtype.name not in DTYPES:
            raise _fail(name, f"expected one of dtypes {', '.join(DTYPES)}, found {a.dtype}")
        nbytes = int(a.size) * DTYPES[a.dtype.name].itemsize
        directory[name] = {"dtype": a.dtype.name, "shape": [int(s) for s in a.shape], "offset": off,
                           "nbytes": nbytes}
        off = _align(off + nbytes)
    header = {"format_version": format_version, "meta": meta, "tensors": directory, "data_nbytes": off}
    v1 = format_version == 1
    if v1:
        header["data_sha256"] = "0" * 64
    hb = _header_bytes(header)
    if len(hb) > MAX_HEADER_BYTES:
        raise _fail("header", f"expected a header of at most {MAX_HEADER_BYTES:,} bytes, found {len(hb):,}")
    _check_structure(hb.decode("ascii"))  # never write what the reader would refuse
    start = f.tell() if v1 else 0
    pre = MAGIC + len(hb).to_bytes(8, "little") + hb
    f.write(pre)
    h_all = hashlib.sha256(pre)   # version 2: everything before the trailer
    h = hashlib.sha256()          # version 1: the data section
    pos = 0

    def put(b: Any) -> None:
        f.write(b)
        h.update(b)
        h_all.update(b)

    for name, a in items:
        ent = directory[name]
        if ent["offset"] > pos:
            put(bytes(ent["offset"] - pos))
        put(_tensor_payload(a))
        pos = ent["offset"] + ent["nbytes"]
    if off > pos:
        put(bytes(off - pos))
    if not v1:
        f.write(h_all.digest())
        return
    header["data_sha256"] = h.hexdigest()
    hb2 = _header_bytes(header)
    assert len(hb2) == len(hb)  # the hash placeholder has the same length
    end = f.tell()
    f.seek(start + _PREAMBLE)
    f.write(hb2)
    f.seek(end)


def _ordered_items(bundle: Bundle) -> List[Tuple[str, np.ndarray]]:
    # Validated as the version it is written as: an older bundle that the current format no longer accepts
    # (a dense or vitcod one without the integer model) is refused instead of written invalid.
    names = _validate(bundle.meta, bundle.tensors)
    if bundle.meta.get("format_version") != FORMAT_VERSION:
        names = _validate({**bundle.meta, "format_version": FORMAT_VERSION}, bundle.tensors)
    return [(n, bundle.tensors[n]) for n in names]


def bundle_to_bytes(bundle: Bundle) -> bytes:
    """Validate and encode a bundle (the exact bytes :func:`write_bundle` writes)."""
    items = _ordered_items(bundle)
    buf = io.BytesIO()
    _write_stream(buf, {**bundle.meta, "format_version": FORMAT_VERSION}, items)
    return buf.getvalue()


def write_bundle(path: Union[str, os.PathLike], bundle: Bundle) -> Path:
    """Validate ``bundle``, then write it to ``path`` atomically (format version 3); return the path.

    Validation runs first (an invalid bundle raises :class:`BundleError` and nothing is written). The file
    is written by :func:`vitaccel.fileio.atomic_write`: a unique temporary file in the same directory,
    flushed and fsynced, ``os.replace``d onto ``path``, the directory fsynced; a crash leaves either the
    old file or the new one under ``path``, never a half bundle, concurrent writers do not collide, and
    temporary files left by killed writers are removed by the next write. A bundle read from an older
    file is written as the current version (``meta.format_version`` follows) if it is valid as one.
    """
    items = _ordered_items(bundle)
    meta = {**bundle.meta, "format_version": FORMAT_VERSION}
    return atomic_write(path, lambda f: _write_stream(f, meta, items))


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


def _check_structure(text: str) -> None:
    """Bound the number of JSON values and the nesting of a header BEFORE it is parsed
    (:func:`vitaccel.fileio.json_shape`): a header of a million empty objects or of 100,000 nested lists
    costs a few MB here instead of gigabytes (or a RecursionError) in ``json.loads``."""
    items, depth = json_shape(text, MAX_HEADER_ITEMS)
    if items > MAX_HEADER_ITEMS:
        raise _fail("header", f"expected at most {MAX_HEADER_ITEMS:,} JSON values in the header, found about "
                              f"{items:,} (checked before parsing)")
    if depth > MAX_HEADER_DEPTH:
        raise _fail("header", f"expected JSON nested at most {MAX_HEADER_DEPTH} levels deep, found {depth} "
                              f"(checked before parsing)")


def _parse_header(buf: Union[bytes, memoryview]) -> Tuple[Dict[str, Any], int]:
    """Magic, header length, structure limits, JSON, version. Returns (header, data_start)."""
    size = len(buf)
    if size < len(MAGIC):
        raise _fail("magic", f"expected {MAGIC!r} at the start, found a {size}-byte file")
    if bytes(buf[:len(MAGIC)]) != MAGIC:
        raise _fail("magic", f"expected {MAGIC!r}, found {bytes(buf[:len(MAGIC)])!r} (not a vitaccel bundle)")
    if size < _PREAMBLE:
        raise _fail("header_length", f"expected an 8-byte header length, file ends after {size} bytes")
    hlen = int.from_bytes(bytes(buf[len(MAGIC):_PREAMBLE]), "little")
    if hlen > MAX_HEADER_BYTES:
        raise _fail("header_length", f"expected at most {MAX_HEADER_BYTES:,} bytes (MAX_HEADER_BYTES), found "
                                     f"{hlen:,}")
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
    _check_structure(text)
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant,
                            parse_float=_finite_float)
    except RecursionError:  # pragma: no cover - _check_structure bounds the depth first
        raise _fail("header", "expected JSON, found nesting too deep to parse") from None
    except ValueError as e:
        raise _fail("header", f"expected a JSON object, found invalid JSON ({str(e)[:200]})") from None
    if not isinstance(header, dict):
        raise _fail("header", f"expected a JSON object, found {type(header).__name__}")
    if "format_version" not in header:
        raise _fail("format_version", "missing from the header")
    v = header["format_version"]
    if not _is_int(v) or v not in READ_VERSIONS:
        raise _fail("format_version", f"expected one of {', '.join(map(str, READ_VERSIONS))} (this loader reads "
                                      f"versions {', '.join(map(str, READ_VERSIONS))}; a newer file needs a newer "
                                      f"vitaccel), found {v!r:.40}")
    return header, _PREAMBLE + hlen


_HEADER_KEYS = ("format_version", "meta", "tensors", "data_nbytes")
_HEADER_KEYS_V1 = _HEADER_KEYS + ("data_sha256",)


def _check_digest(buf: Union[bytes, memoryview]) -> int:
    """Version 2: the trailing sha256 covers every byte before it (header included). Returns the end of
    the data section."""
    end = len(buf) - DIGEST_BYTES
    if end < _PREAMBLE:  # pragma: no cover - _parse_header saw a whole header
        raise _fail("sha256", f"expected a {DIGEST_BYTES}-byte sha256 at the end of the file, found none")
    want = bytes(buf[end:])
    actual = hashlib.sha256(memoryview(buf)[:end]).digest()
    if actual != want:
        raise _fail("sha256", f"the file is corrupt (header or data): expected sha256 {want.hex()}, found "
                              f"{actual.hex()}")
    return end


def _parse_directory(header: Dict[str, Any], buf: Union[bytes, memoryview], data_start: int,
                     data_end: int) -> Dict[str, np.ndarray]:
    v1 = header["format_version"] == 1
    keys = _header_keys(header["format_version"])
    for k in header:
        if k not in keys:
            raise _fail(k, f"unknown header key; expected only {', '.join(keys)}")
    for k in keys:
        if k not in header:
            raise _fail(k, "missing from the header")
    data_nbytes = header["data_nbytes"]
    if not _is_int(data_nbytes) or data_nbytes < 0:
        raise _fail("data_nbytes", f"expected a non-negative integer, found {data_nbytes!r}")
    size = data_end
    trailer = 0 if v1 else DIGEST_BYTES
    if data_start + data_nbytes != size:
        what = "truncated" if data_start + data_nbytes > size else "has trailing bytes"
        raise _fail("data_nbytes", f"expected a {data_start + data_nbytes + trailer}-byte file ({data_nbytes} "
                                   f"data bytes), found {size + trailer} bytes: the file {what}")
    if v1:
        digest = header["data_sha256"]
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise _fail("data_sha256", f"expected 64 lowercase hex digits, found {digest!r}")
        actual = hashlib.sha256(memoryview(buf)[data_start:data_end]).hexdigest()
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
    version = header["format_version"]
    if version != 1:
        # a truncated or extended file is named as such before its digest is compared
        n = header.get("data_nbytes")
        if _is_int(n) and n >= 0 and data_start + n + DIGEST_BYTES != len(buf):
            what = "truncated" if data_start + n + DIGEST_BYTES > len(buf) else "has trailing bytes"
            raise _fail("data_nbytes", f"expected a {data_start + n + DIGEST_BYTES}-byte file ({n} data bytes "
                                       f"and a {DIGEST_BYTES}-byte sha256), found {len(buf)} bytes: the file {what}")
    data_end = len(buf) if version == 1 else _check_digest(buf)
    arrays = _parse_directory(header, buf, data_start, data_end)
    meta = header["meta"]
    if isinstance(meta, dict) and meta.get("format_version") in READ_VERSIONS and meta["format_version"] != version:
        raise _fail("meta.format_version", f"expected {version} (the file's format_version), found "
                                           f"{meta['format_version']}")
    names = _validate(meta, arrays, cfg)
    return Bundle(meta=meta, tensors={n: arrays[n] for n in names})


def _resolve_config(config: Any) -> Any:
    from vitaccel.hwconfig import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as e:
        raise _fail("expect_config", str(e)) from e


def _open(path: Union[str, os.PathLike]) -> BinaryIO:
    """Open a bundle for reading: regular files only, checked on the open descriptor (a FIFO cannot block,
    a device is not read)."""
    try:
        return open_regular(path)
    except NotRegularFile:
        kind = file_kind(os.stat(path).st_mode)
        raise BundleError("file", f"not a regular file ({kind}); a bundle is a regular .vcb file",
                          path=os.fspath(path)) from None


def load_bundle(path: Union[str, os.PathLike], *, expect_config: Any = None) -> Bundle:
    """Read and fully validate the bundle at ``path`` (a regular file; format version 2, or 1).

    ``expect_config`` (a config name, path or ``HardwareConfig``) also checks that the bundle was built
    for that hardware config (name and hash) and that its model fits the config's limits. Every problem
    with the file's contents raises :class:`BundleError` (with ``.path`` set), a path that is not a regular
    file too (field ``file``); only I/O problems (missing file, permissions) raise ``OSError``.
    """
    cfg = _resolve_config(expect_config) if expect_config is not None else None
    with _open(path) as f:
        data = f.read()
    try:
        return bundle_from_bytes(data, expect_config=cfg)
    except BundleError as e:
        raise BundleError(e.field, e.message, path=os.fspath(path)) from None


def read_header(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """The parsed JSON header (container checks only: regular file, magic, length, structure, JSON, version;
    the data and the checksum are not read)."""
    with _open(path) as f:
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
    """(header dict, data section) of a container, trusting the preamble (version 2: the trailing digest is
    not part of the data section). For tests."""
    hlen = int.from_bytes(data[len(MAGIC):_PREAMBLE], "little")
    header = json.loads(data[_PREAMBLE:_PREAMBLE + hlen].decode("utf-8"))
    end = len(data) if header.get("format_version") == 1 else len(data) - DIGEST_BYTES
    return header, data[_PREAMBLE + hlen:end]


def assemble_unchecked(header: Mapping[str, Any], data: bytes, *, fix_checksum: bool = True,
                       fix_nbytes: bool = True) -> bytes:
    """Build a container from a header dict and a data section, optionally recomputing the checksum
    (version 2: the trailing sha256; version 1: ``data_sha256``; without ``fix_checksum`` a version-2 file
    gets an all-zero digest) and ``data_nbytes``. For tests."""
    header = dict(header)
    v1 = header.get("format_version") == 1
    if fix_checksum and v1:
        header["data_sha256"] = hashlib.sha256(data).hexdigest()
    if fix_nbytes:
        header["data_nbytes"] = len(data)
    hb = _header_bytes(header)
    body = MAGIC + len(hb).to_bytes(8, "little") + hb + data
    if v1:
        return body
    return body + (hashlib.sha256(body).digest() if fix_checksum else bytes(DIGEST_BYTES))
