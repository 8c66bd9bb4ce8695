"""Reading files we do not trust and writing files atomically: the one copy both the bundle writer and the
checkpoint writer use.

* :func:`open_regular`: open a path for reading only if it is a regular file. The file is opened with
  ``O_NONBLOCK`` and checked with ``fstat`` on the open descriptor, so a FIFO cannot block the open and a
  device (``/dev/zero``), a directory or a socket is refused before a byte is read.
* :func:`atomic_write`: write a file through a uniquely named temporary file in the target's directory
  (``.<name>.<random>.vitaccel-tmp``), flushed and fsynced, then ``os.replace``d onto the target, then the
  directory fsynced. Concurrent writers to one path never share a temporary file, so each replace is of a
  complete file and the last one wins. A writer killed before its replace leaves its temporary file; the
  next write to the same target removes such leftovers when they are older than :data:`STALE_TMP_S`
  (a live writer's file is younger), matching only our own pattern for that target name (and the pattern
  of the bundle writer before this module, ``.<name>.<8 characters>.tmp``).

Standard library only: imported on the board.
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Callable, List, Optional, Union

__all__ = ["json_shape", "NotRegularFile", "file_kind", "open_regular", "atomic_write", "stale_temporaries", "TMP_SUFFIX", "STALE_TMP_S"]

#: Suffix of our temporary files; the full name is ``.<target name>.<random>`` + this.
TMP_SUFFIX = ".vitaccel-tmp"
#: A temporary file of ours older than this (seconds since its last write) belongs to a dead writer.
STALE_TMP_S = 15 * 60

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_shape(text: str, max_items: "int | None" = None) -> "tuple[int, int]":
    """(about how many values, deepest nesting) of JSON ``text``, without parsing it: strings are removed,
    values counted from separators and brackets (C-level counts) and the depth taken from the brackets'
    running sum. Lets a reader refuse a header of a million empty objects or of 100,000 nested lists in a
    few MB, before ``json.loads`` spends gigabytes (or a RecursionError) on it. Over ``max_items`` values
    the depth is not computed (returned as 0): the count alone refuses the text."""
    bare = _JSON_STRING.sub("0", text)
    opens = bare.count("[") + bare.count("{")
    items = bare.count(",") + opens + 1
    if opens == 0 or (max_items is not None and items > max_items):
        return items, 0
    import numpy as np  # numpy is there wherever a reader needs this (host, models)

    b = np.frombuffer(bare.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    where = np.flatnonzero((b == 0x5B) | (b == 0x7B) | (b == 0x5D) | (b == 0x7D))
    step = np.where((b[where] == 0x5B) | (b[where] == 0x7B), 1, -1).astype(np.int32)
    return items, int(np.cumsum(step).max())


class NotRegularFile(OSError):
    """The path exists but is not a regular file (a device, FIFO, socket or directory)."""


def file_kind(mode: int) -> str:
    for test, what in _KINDS:
        if test(mode):
            return what
    return "not a regular file"


def open_regular(path: Union[str, os.PathLike]) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file; raise :class:`NotRegularFile` (naming
    what it is) otherwise, and ``OSError`` for I/O problems (missing, permissions). Never blocks on a FIFO."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(os.fspath(path), flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"{os.fspath(path)}: not a regular file ({file_kind(mode)})")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


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


def _tmp_pattern(name: str) -> "re.Pattern[str]":
    n = re.escape(name)
    # ours: mkstemp's random part ([a-z0-9_], 8 characters today); the bundle writer's before this module
    return re.compile(rf"\.{n}\.[A-Za-z0-9_]{{6,16}}{re.escape(TMP_SUFFIX)}|\.{n}\.[A-Za-z0-9_]{{8}}\.tmp")


def stale_temporaries(path: Union[str, os.PathLike], *, older_than_s: float = STALE_TMP_S) -> List[Path]:
    """Our temporary files for target ``path`` whose last write is more than ``older_than_s`` ago."""
    path = Path(path)
    d = path.parent if str(path.parent) else Path(".")
    pat = _tmp_pattern(path.name)
    now = time.time()
    out: List[Path] = []
    try:
        entries = list(os.scandir(d))
    except OSError:
        return out
    for e in entries:
        if not pat.fullmatch(e.name):
            continue
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and now - st.st_mtime > older_than_s:
            out.append(Path(e.path))
    return out


def atomic_write(path: Union[str, os.PathLike], write: Callable[[BinaryIO], None], *,
                 mode: Optional[int] = None) -> Path:
    """Write ``path`` atomically: ``write(f)`` fills a new temporary file in the same directory, which is
    flushed, fsynced and ``os.replace``d onto ``path``; the directory is fsynced after. On any exception
    (``KeyboardInterrupt`` included) the temporary file is removed and ``path`` is untouched.

    The file mode of a replaced file is kept (``mode`` overrides; new files get 0644). Stale temporary
    files of earlier, killed writes to the same target are removed first (:func:`stale_temporaries`)."""
    path = Path(path)
    d = path.parent if str(path.parent) else Path(".")
    for old in stale_temporaries(path):
        try:
            old.unlink()
        except OSError:
            pass
    if mode is None:
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=str(d))
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            write(f)
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
