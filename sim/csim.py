"""C-simulation harness: compile the HLS C++ under ``hls/`` with g++ and call it from Python via ctypes.

The HLS sources include ``<ap_int.h>``; g++ gets it from the ``ap_types`` folder that the ``hls4ml``
package ships (``templates/vivado/ap_types``). The folder is located at run time without importing hls4ml
(which would pull in its heavy dependencies) and is never copied into this repository. Set
``VITACCEL_AP_TYPES`` to use another copy (for instance Vitis HLS's ``include`` folder).

Libraries are cached in ``$VITACCEL_CACHE`` (default ``~/.cache/vitaccel/csim``) as
``lib<name>_<key>.so``; the key is a sha256 over the compiler command, the compiler's version, every source
and every header under ``hls/include`` (and the ap_types headers), so editing any of them recompiles, and
two configs or two versions of a source never share a file. A library is compiled into a temporary file
and renamed into place, so concurrent processes can compile the same library safely.

Typical use::

    lib = compile_library("numerics", ["common/numerics_capi.cpp"], config="paper")
    f = lib.bind("vitaccel_requantize",
                 [("acc", Array(np.int32)), ("mult", Array(np.int32)), ("shift", Array(np.int32)),
                  ("out", Array(np.int8, out=True)), ("n", ctypes.c_int)])
    rc = f(acc, mult, shift, out, acc.size)

and for the contract's numerics, :func:`csim_requantize` / :func:`csim_softmax`, which take the same
arguments as :func:`vitaccel.sim.numerics.requantize` / :func:`~vitaccel.sim.numerics.softmax`.

Standard library and numpy only. ``python -m vitaccel.sim.csim`` runs a quick self-check.
"""
from __future__ import annotations

import copy
import ctypes
import functools
import hashlib
import importlib.util
import operator
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from vitaccel.hls import HLS_DIR, INCLUDE_DIR
from vitaccel.sim import numerics as nx

__all__ = [
    "CsimError",
    "CsimUnavailable",
    "CsimCompileError",
    "Array",
    "CFunction",
    "CsimLibrary",
    "build_executable",
    "EXE_FLAGS",
    "SANITIZE_FLAGS",
    "AP_TYPES_ENV",
    "CACHE_ENV",
    "CXXFLAGS",
    "SOFTMAX_NMAX",
    "find_ap_types",
    "find_compiler",
    "cache_dir",
    "compile_library",
    "numerics_library",
    "csim_requantize",
    "csim_softmax",
    "csim_config_hash32",
]

#: Environment variable: a folder holding ``ap_int.h`` to use instead of hls4ml's.
AP_TYPES_ENV = "VITACCEL_AP_TYPES"
#: Environment variable: where compiled libraries are kept.
CACHE_ENV = "VITACCEL_CACHE"
#: C++14 is what Vitis HLS accepts and what the ap_types headers need (C++11 or later).
CXXFLAGS: Tuple[str, ...] = ("-O2", "-std=c++14", "-shared", "-fPIC")
#: The g++-only headers (our hls_stream.h). On the path for C-simulation only, never for synthesis.
CSIM_INCLUDE_DIR = INCLUDE_DIR / "csim"
#: Longest softmax row ``hls/common/numerics_capi.cpp`` is instantiated for.
SOFTMAX_NMAX = 4096

_INSTALL_HINT_CXX = "install a C++ compiler: `apt-get install g++` (Debian/Ubuntu)"
_INSTALL_HINT_AP = ("install hls4ml, which ships the ap_types headers: `pip install hls4ml`, or "
                    f"`pip install -e '.[dev]'` in the repository; or set {AP_TYPES_ENV} to a folder "
                    "holding ap_int.h")


class CsimError(RuntimeError):
    """Base class of the C-simulation harness's errors."""


class CsimUnavailable(CsimError):
    """g++ or the ap_types headers are missing; the message says what to install."""


class CsimCompileError(CsimError):
    """g++ failed. ``command`` is the command line, ``stderr`` g++'s diagnostics."""

    def __init__(self, message: str, command: Sequence[str], stderr: str):
        super().__init__(f"{message}\n$ {' '.join(command)}\n{stderr}")
        self.command = list(command)
        self.stderr = stderr


# -- locating tools --------------------------------------------------------------------------------

def find_ap_types() -> Path:
    """The folder holding ``ap_int.h``: ``$VITACCEL_AP_TYPES`` if set, else hls4ml's copy.

    hls4ml is found with :func:`importlib.util.find_spec`, which does not import it.
    """
    override = os.environ.get(AP_TYPES_ENV)
    if override:
        path = Path(override).expanduser()
        if not (path / "ap_int.h").is_file():
            raise CsimUnavailable(f"{AP_TYPES_ENV}={override!r} does not contain ap_int.h; unset it or "
                                  f"point it at an ap_types folder, or {_INSTALL_HINT_AP}")
        return path.resolve()
    try:
        spec = importlib.util.find_spec("hls4ml")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise CsimUnavailable(f"the hls4ml package is not installed, so the ap_types headers (ap_int.h) "
                              f"that the C-simulation compiles against are missing: {_INSTALL_HINT_AP}")
    for root in spec.submodule_search_locations:
        path = Path(root) / "templates" / "vivado" / "ap_types"
        if (path / "ap_int.h").is_file():
            return path.resolve()
    raise CsimUnavailable(f"hls4ml is installed at {list(spec.submodule_search_locations)} but has no "
                          f"templates/vivado/ap_types/ap_int.h: {_INSTALL_HINT_AP}")


def find_compiler(cxx: str = "g++") -> str:
    """Absolute path of the C++ compiler, or :class:`CsimUnavailable`."""
    path = shutil.which(cxx)
    if path is None:
        raise CsimUnavailable(f"C++ compiler {cxx!r} not found on PATH: {_INSTALL_HINT_CXX}")
    return path


@functools.lru_cache(maxsize=None)
def _compiler_version(path: str, mtime_ns: int) -> str:
    # mtime in the cache key: an upgraded compiler at the same path is asked again.
    proc = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CsimUnavailable(f"{path} --version failed ({proc.stderr.strip()}): {_INSTALL_HINT_CXX}")
    return proc.stdout


def cache_dir() -> Path:
    """``$VITACCEL_CACHE`` or ``~/.cache/vitaccel/csim`` (created on first use)."""
    env = os.environ.get(CACHE_ENV)
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "vitaccel" / "csim"
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- compiling -------------------------------------------------------------------------------------

def _resolve_source(src: Union[str, os.PathLike]) -> Path:
    p = Path(src)
    if not p.is_absolute():
        p = HLS_DIR / p
    if not p.is_file():
        raise FileNotFoundError(f"C++ source not found: {p} (relative sources are under {HLS_DIR})")
    return p.resolve()


def _headers_under(folder: Path) -> List[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".h", ".hpp", ".hh", ".inc"))


def _target_define(config) -> str:
    from vitaccel.hwconfig import load_config

    return f"-DVITACCEL_TARGET_{load_config(config).ident}"


def _check_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        raise ValueError(f"library name must be letters, digits, '_' or '-', got {name!r}")


class Array:
    """Declares a pointer argument of :meth:`CsimLibrary.bind`: a C-contiguous numpy array of ``dtype``;
    ``out=True`` also requires it to be writeable."""

    def __init__(self, dtype, out: bool = False):
        self.dtype = np.dtype(dtype)
        self.out = bool(out)

    def __repr__(self) -> str:
        return f"Array({self.dtype.name}{', out=True' if self.out else ''})"


_ArgSpec = Union[Array, type]


def _int_bounds(ctype: type) -> Optional[Tuple[int, int]]:
    try:
        bits = 8 * ctypes.sizeof(ctype)
    except TypeError:
        return None
    signed = ctype(-1).value == -1
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


_INT_CTYPES = (ctypes.c_byte, ctypes.c_ubyte, ctypes.c_short, ctypes.c_ushort, ctypes.c_int, ctypes.c_uint,
               ctypes.c_long, ctypes.c_ulong, ctypes.c_longlong, ctypes.c_ulonglong, ctypes.c_size_t,
               ctypes.c_int8, ctypes.c_uint8, ctypes.c_int16, ctypes.c_uint16, ctypes.c_int32,
               ctypes.c_uint32, ctypes.c_int64, ctypes.c_uint64)


class CFunction:
    """A C function with a declared signature. Calling it checks every argument before the call:
    arrays must be numpy arrays of the declared dtype, C-contiguous (and writeable for outputs); integer
    scalars must fit their C type. A violation raises :class:`TypeError` or :class:`ValueError` naming the
    argument, instead of letting C read the wrong bytes."""

    def __init__(self, lib: "CsimLibrary", symbol: str, args: Sequence[Tuple[str, _ArgSpec]], restype):
        try:
            fn = getattr(lib.cdll, symbol)
        except AttributeError:
            raise CsimError(f"{lib.path.name} has no symbol {symbol!r} (missing extern \"C\"?)") from None
        self.symbol = symbol
        self.args: List[Tuple[str, _ArgSpec]] = []
        argtypes = []
        for name, spec in args:
            if isinstance(spec, Array):
                argtypes.append(ctypes.c_void_p)
            elif isinstance(spec, type) and issubclass(spec, ctypes._SimpleCData):
                argtypes.append(spec)
            else:
                raise TypeError(f"{symbol}: argument {name!r} must be declared as Array(dtype) or a ctypes "
                                f"scalar type, got {spec!r}")
            self.args.append((name, spec))
        fn.argtypes = argtypes
        fn.restype = restype
        self._fn = fn
        self._lib = lib  # keeps the library loaded while the function is alive

    def __repr__(self) -> str:
        sig = ", ".join(f"{n}: {s!r}" if isinstance(s, Array) else f"{n}: {s.__name__}" for n, s in self.args)
        return f"<CFunction {self.symbol}({sig})>"

    def _convert(self, name: str, spec: _ArgSpec, value):
        where = f"{self.symbol}: argument {name!r}"
        if isinstance(spec, Array):
            if not isinstance(value, np.ndarray):
                raise TypeError(f"{where} must be a numpy.ndarray of dtype {spec.dtype}, got {type(value).__name__}")
            if value.dtype != spec.dtype:
                raise TypeError(f"{where} has dtype {value.dtype}, expected {spec.dtype}")
            if not value.flags.c_contiguous:
                raise ValueError(f"{where} must be C-contiguous (use np.ascontiguousarray)")
            if spec.out and not value.flags.writeable:
                raise ValueError(f"{where} is an output and must be writeable")
            return value.ctypes.data
        if spec in _INT_CTYPES:
            if isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{where} must be an integer, got a bool")
            try:
                v = operator.index(value)
            except TypeError:
                raise TypeError(f"{where} must be an integer, got {type(value).__name__}") from None
            lo, hi = _int_bounds(spec)
            if not lo <= v <= hi:
                raise ValueError(f"{where} is {v}, outside the range of {spec.__name__} [{lo}, {hi}]")
            return v
        return value

    def __call__(self, *values):
        if len(values) != len(self.args):
            names = ", ".join(n for n, _ in self.args)
            raise TypeError(f"{self.symbol}() takes {len(self.args)} arguments ({names}), got {len(values)}")
        converted = [self._convert(n, s, v) for (n, s), v in zip(self.args, values)]
        # `values` holds the arrays alive for the duration of the call. ctypes releases the GIL during it,
        # and the C++ keeps its buffers in function statics (one copy, as in hardware): one call at a time
        # per loaded library.
        with self._lib.lock:
            return self._fn(*converted)


class CsimLibrary:
    """A compiled, loaded shared library. ``compiled`` is True when this call ran the compiler, False
    when the library came from the cache. ``lock`` serialises calls into it (shared by every copy of this
    object, since they share the loaded code and its static buffers)."""

    def __init__(self, name: str, path: Path, key: str, command: List[str], compiled: bool):
        self.name = name
        self.lock = threading.RLock()
        self.path = path
        self.key = key
        self.command = command
        self.compiled = compiled
        self.cdll = ctypes.CDLL(str(path))

    def __repr__(self) -> str:
        return f"<CsimLibrary {self.name} at {self.path}>"

    def bind(self, symbol: str, args: Sequence[Tuple[str, _ArgSpec]] = (), restype=ctypes.c_int) -> CFunction:
        """The C function ``symbol`` with arguments ``[(name, Array(dtype) | ctypes type), ...]``."""
        return CFunction(self, symbol, args, restype)


_LOADED: Dict[str, CsimLibrary] = {}
_LOCK = threading.Lock()


def _digest_path(lib: Path) -> Path:
    return lib.with_name(lib.name + ".sha256")


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"{h.hexdigest()} {path.stat().st_size}"


def _write_digest(final: Path, built: Path) -> None:
    """Record the sha256 and size of a freshly built library beside its cache entry (atomically)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".sha256.tmp", dir=final.parent)
    with os.fdopen(fd, "w") as f:
        f.write(_file_digest(built) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, _digest_path(final))


def _cache_entry_ok(final: Path) -> bool:
    """Whether a cached library is exactly the file that was built (checked before every dlopen)."""
    try:
        return _digest_path(final).read_text().strip() == _file_digest(final)
    except (OSError, UnicodeDecodeError):
        return False


def _command_and_key(sources, config, defines, include_dirs, flags, cxx) -> Tuple[List[str], str]:
    """The g++ command (without -o) and the cache key over it, the compiler's version, every source and
    every header on the include path."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if not sources:
        raise ValueError("no sources to compile")
    compiler = find_compiler(cxx)
    ap_types = find_ap_types()
    srcs = [_resolve_source(s) for s in sources]
    extra_inc = [Path(d).expanduser().resolve() for d in include_dirs]

    cmd: List[str] = [compiler, *flags]
    if config is not None:
        cmd.append(_target_define(config))
    cmd += [d if d.startswith("-D") else f"-D{d}" for d in defines]
    for d in [*extra_inc, INCLUDE_DIR, CSIM_INCLUDE_DIR]:
        cmd += ["-I", str(d)]
    # -isystem: searched after every -I (so our hls_stream.h wins over hls4ml's) and warnings from
    # the vendor headers are silenced.
    cmd += ["-isystem", str(ap_types)]
    cmd += [str(s) for s in srcs]

    h = hashlib.sha256()

    def feed(tag: str, data: bytes) -> None:
        h.update(tag.encode() + b"\0" + len(data).to_bytes(8, "little") + data)

    feed("cmd", "\0".join(cmd).encode())
    feed("cxx-version", _compiler_version(compiler, os.stat(compiler).st_mtime_ns).encode())
    for s in srcs:
        feed(f"src:{s}", s.read_bytes())
    for folder in [*extra_inc, INCLUDE_DIR, ap_types]:
        for hdr in _headers_under(folder):
            feed(f"hdr:{hdr}", hdr.read_bytes())
    return cmd, h.hexdigest()


def _build_cached(final: Path, cmd: List[str], what: str) -> bool:
    """Make ``final`` from ``cmd`` unless the cache holds a verified copy; True when it compiled. The
    output is compiled into a temporary file and renamed into place, so concurrent processes can build
    the same file safely."""
    if final.is_file() and not _cache_entry_ok(final):
        # Truncated or altered (a killed copy, a full disk): dlopen of such a file can kill the process
        # with SIGBUS, so it is never loaded; compile it again.
        for p in (final, _digest_path(final)):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
    if final.is_file():
        return False
    fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}_", suffix=".tmp", dir=final.parent)
    os.close(fd)
    full = cmd + ["-o", tmp]
    try:
        proc = subprocess.run(full, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise CsimCompileError(f"compiling {what} failed (exit {proc.returncode})", full, proc.stderr)
        # mkstemp made it owner-only; a shared cache needs it loadable by others too.
        os.chmod(tmp, 0o755)
        _write_digest(final, Path(tmp))
        # Atomic on POSIX: a concurrent process sees either no file or a complete one.
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return True


def compile_library(
    name: str,
    sources: Sequence[Union[str, os.PathLike]],
    config="paper",
    defines: Iterable[str] = (),
    include_dirs: Iterable[Union[str, os.PathLike]] = (),
    extra_flags: Iterable[str] = (),
    cxx: str = "g++",
) -> CsimLibrary:
    """Compile ``sources`` (relative to ``hls/``, or absolute) into ``lib<name>_<key>.so`` and load it.

    ``config`` (a shipped name, a path or a HardwareConfig; None for no target) selects
    ``-DVITACCEL_TARGET_<IDENT>``. ``defines`` are extra ``NAME`` or ``NAME=VALUE`` macros; ``include_dirs``
    are searched before ``hls/include`` and their headers are part of the cache key as well.
    Returns a cached library when the key matches; raises :class:`CsimUnavailable` when g++ or the
    ap_types headers are missing and :class:`CsimCompileError` with g++'s stderr when compilation fails.
    """
    _check_name(name)
    cmd, key = _command_and_key(sources, config, defines, include_dirs, [*CXXFLAGS, *extra_flags], cxx)
    with _LOCK:
        lib = _LOADED.get(key)
        if lib is not None:
            again = copy.copy(lib)
            again.compiled = False
            return again
        final = cache_dir() / f"lib{name}_{key[:20]}.so"
        compiled = _build_cached(final, cmd, name)
        lib = CsimLibrary(name, final, key, cmd + ["-o", str(final)], compiled)
        _LOADED[key] = lib
        return lib


#: Flags of an executable (a testbench): the library's, without the shared-object ones.
EXE_FLAGS: Tuple[str, ...] = tuple(f for f in CXXFLAGS if f not in ("-shared", "-fPIC"))
#: What a sanitizer build adds: address and undefined-behaviour sanitizers. UB checks stay recoverable,
#: since UBSan applies its suppression file only to those; run with UBSAN_OPTIONS=halt_on_error=1.
SANITIZE_FLAGS: Tuple[str, ...] = ("-O1", "-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g")


def build_executable(
    name: str,
    sources: Sequence[Union[str, os.PathLike]],
    config="paper",
    defines: Iterable[str] = (),
    include_dirs: Iterable[Union[str, os.PathLike]] = (),
    extra_flags: Iterable[str] = (),
    cxx: str = "g++",
) -> Path:
    """Compile ``sources`` into a cached executable ``<name>_<key>`` (a testbench) and return its path; the
    same cache, key and integrity check as :func:`compile_library`."""
    _check_name(name)
    cmd, key = _command_and_key(sources, config, defines, include_dirs, [*EXE_FLAGS, *extra_flags], cxx)
    final = cache_dir() / f"{name}_{key[:20]}"
    _build_cached(final, cmd, name)     # no shared state: safe to call from several threads at once
    return final


# -- the contract's numerics -----------------------------------------------------------------------

class _Numerics:
    def __init__(self, lib: CsimLibrary):
        i32, u8 = np.int32, np.uint8
        self.lib = lib
        self.requantize = lib.bind("vitaccel_requantize", [
            ("acc", Array(i32)), ("mult", Array(i32)), ("shift", Array(i32)),
            ("out", Array(np.int8, out=True)), ("n", ctypes.c_int)])
        self.softmax = lib.bind("vitaccel_softmax", [
            ("scores", Array(i32)), ("keep", Array(u8)), ("rows", ctypes.c_int), ("n", ctypes.c_int),
            ("m_exp", ctypes.c_int32), ("s_exp", ctypes.c_int32), ("out", Array(u8, out=True))])
        self.config_hash32 = lib.bind("vitaccel_config_hash32", [], restype=ctypes.c_uint32)
        self.numerics_version = lib.bind("vitaccel_numerics_version", [])
        self.softmax_nmax = lib.bind("vitaccel_softmax_nmax", [])


@functools.lru_cache(maxsize=None)
def numerics_library(config="paper") -> _Numerics:
    """``hls/common/numerics_capi.cpp`` compiled for ``config``, with its functions bound (attributes
    ``requantize``, ``softmax``, ``config_hash32``, ``numerics_version``, ``softmax_nmax`` and ``lib``).
    Memoised per process: call ``numerics_library.cache_clear()`` after editing the C++ in a session."""
    return _Numerics(compile_library("numerics", ["common/numerics_capi.cpp"], config=config))


_ERRORS = {-1: "length", -2: "multiplier", -3: "shift"}


def _check_rc(rc: int, what: str) -> None:
    if rc != 0:
        raise ValueError(f"{what}: the C++ rejected the {_ERRORS.get(rc, f'input (code {rc})')}")


def _int_array(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {a.dtype}")
    return a


def csim_requantize(acc, multiplier, shift, config="paper") -> np.ndarray:
    """:func:`vitaccel.sim.numerics.requantize` computed by ``vitaccel::requantize`` in C++.

    Same arguments and broadcasting; returns int8 of the broadcast shape. ``acc`` may be any int32 value
    (the C++ type holds -2^31 too)."""
    a, m, s = (_int_array(x, n) for x, n in ((acc, "acc"), (multiplier, "multiplier"), (shift, "shift")))
    if np.any(m < 0) or np.any(m >= (1 << 31)):
        raise ValueError("multiplier must be in [0, 2^31)")
    if np.any(s < 0) or np.any(s > 63):
        raise ValueError("shift must be in [0, 63]")
    if np.any(a < -(1 << 31)) or np.any(a >= (1 << 31)):
        raise ValueError("acc must fit in int32")
    a, m, s = np.broadcast_arrays(a, m, s)
    shape = a.shape
    flat = [np.ascontiguousarray(x, dtype=np.int32).reshape(-1) for x in (a, m, s)]
    out = np.empty(flat[0].size, dtype=np.int8)
    _check_rc(numerics_library(config).requantize(*flat, out, out.size), "requantize")
    return out.reshape(shape)


def csim_softmax(scores, keep, m_exp: int, s_exp: int, config="paper") -> np.ndarray:
    """:func:`vitaccel.sim.numerics.softmax` computed by ``vitaccel::softmax_row`` in C++.

    Same arguments: softmax over the last axis (length 1..SOFTMAX_NMAX), ``keep`` a bool array of the
    same shape or None."""
    s, k, m_exp, s_exp = nx.check_softmax_args(scores, keep, m_exp, s_exp)
    n = s.shape[-1]
    if not 1 <= n <= SOFTMAX_NMAX:
        raise ValueError(f"softmax rows must have 1..{SOFTMAX_NMAX} entries for the C-simulation, got {n}")
    rows = s.size // n
    out = np.empty(s.shape, dtype=np.uint8)
    if rows == 0:
        return out
    sc = np.ascontiguousarray(s, dtype=np.int32).reshape(rows, n)
    kp = np.ascontiguousarray(k).view(np.uint8).reshape(rows, n)
    flat_out = out.reshape(rows, n)
    _check_rc(numerics_library(config).softmax(sc, kp, rows, n, m_exp, s_exp, flat_out), "softmax")
    return out


def csim_config_hash32(config="paper") -> int:
    """``vitaccel::cfg::CONFIG_HASH32`` as compiled from the generated header for ``config``."""
    return int(numerics_library(config).config_hash32())


# -- self-check ------------------------------------------------------------------------------------

def _self_check(cases: int = 2000, seed: int = 0) -> int:
    from vitaccel.hwconfig import load_config
    from vitaccel.sim import numerics as nx

    t0 = time.perf_counter()
    lib = numerics_library("paper")
    t1 = time.perf_counter()
    print(f"{lib.lib.path.name}: {'compiled' if lib.lib.compiled else 'cached'} in {t1 - t0:.2f} s")
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 32, cases)
    acc = (rng.integers(0, 1 << 31, cases) >> (31 - bits)) * rng.choice([-1, 1], cases)
    mult = rng.integers(0, 1 << 31, cases)
    shift = rng.integers(0, 64, cases)
    bad = int(np.count_nonzero(csim_requantize(acc, mult, shift) != nx.requantize(acc, mult, shift)))
    print(f"requantize: {cases} cases, {bad} mismatches")
    rows = 0
    for _ in range(max(1, cases // 20)):
        n = int(rng.integers(1, 300))
        sc = rng.integers(-(1 << 20), 1 << 20, n)
        kp = rng.random(n) < 0.7
        m_exp, s_exp = nx.softmax_params(10.0 ** rng.uniform(-6, -2))
        if not np.array_equal(csim_softmax(sc, kp, m_exp, s_exp), nx.softmax(sc, kp, m_exp, s_exp)):
            bad += 1
        rows += 1
    print(f"softmax: {rows} rows, total mismatches {bad}")
    cfg = load_config("paper")
    if csim_config_hash32("paper") != cfg.hash32:
        print("config hash: header and Python disagree (run `vitaccel config gen`)")
        bad += 1
    return 1 if bad else 0


if __name__ == "__main__":  # pragma: no cover
    try:
        sys.exit(_self_check())
    except CsimUnavailable as e:
        print(f"C-simulation unavailable: {e}", file=sys.stderr)
        sys.exit(2)
