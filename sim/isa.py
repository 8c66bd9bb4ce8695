"""How an accelerator's instruction set is defined once: descriptor words, opcodes, status codes and their
messages as a Python table, from which ``vitaccel config gen`` renders the C++ header the HLS includes
(``hls/include/isa/<accelerator>_isa.h``) and the status table of the accelerator's DESCRIPTOR.md; the
NumPy model of the top and the host read the same table. The staleness test covers both renderings.

The pieces every accelerator shares live here: the dispatcher's status codes, the GEMM descriptor (the
common GEMM kernel) and the whole model's vector kernels (LayerNorm, add, LUT) with their codes. Each accelerator's table (``vitaccel.sim.<name>.isa``) composes
them with its own operations. Standard library only.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

__all__ = ["Status", "Op", "Isa", "DISPATCH_STATUS", "GEMM_OP", "GEMM_STATUS", "HEADER_WORDS", "COMMON_STATUS",
           "VECTOR_OPS", "VECTOR_STATUS",
           "common_c_header", "with_status_table"]


@dataclasses.dataclass(frozen=True)
class Status:
    code: int
    name: str          # the C++ constant: ERR_RANGE, GEMM_ERR_DIMS, ...
    source: str        # who returns it: "top", "GEMM", ...
    message: str


@dataclasses.dataclass(frozen=True)
class Op:
    name: str                              # NOP, GEMM, ... (C++: OP_<name>)
    code: int
    prefix: str                            # C++ word names: <prefix>_<FIELD>
    words: Tuple[Tuple[str, int], ...]     # (field, word index), field as the Python builders spell it

    def c_word(self, field: str) -> str:
        return f"{self.prefix}_{field.upper()}"


#: Words every descriptor has.
HEADER_WORDS = (("W_OP", 0), ("W_FLAGS", 1))

DISPATCH_STATUS = (
    Status(0x001, "ERR_OP", "top", "unknown opcode, or reserved word 1 not 0"),
    Status(0x002, "ERR_ALIGN", "top", "an int32 array, or the descriptor list, not 4-byte aligned"),
    Status(0x003, "ERR_RANGE", "top", "a range outside `[0, mem_bytes)` (descriptor list included)"),
    Status(0x004, "ERR_STRIDE", "top", "a negative stride"),
    Status(0x005, "ERR_COUNT", "top", "`num_instr >= 65536`"),
    Status(0x006, "ERR_OVERLAP", "top", "an operation's output overlaps one of its inputs (checked after the ranges, "
           "before the engine starts)"),
)

GEMM_OP = Op("GEMM", 1, "G", (("M", 2), ("K", 3), ("O", 4), ("x", 5), ("w", 6), ("bias", 7), ("mult", 8),
                              ("shift", 9), ("y", 10)))
GEMM_STATUS = (
    Status(0x101, "GEMM_ERR_DIMS", "GEMM", "M, K or O < 1"),
    Status(0x102, "GEMM_ERR_K_TOO_LONG", "GEMM",
           "K longer than half the activation (Q/K/S/V) buffer: one activation row must fit"),
    Status(0x103, "GEMM_ERR_MULT", "GEMM", "a multiplier outside [0, 2^31) (per channel)"),
    Status(0x104, "GEMM_ERR_SHIFT", "GEMM", "a shift outside [0, 63] (per channel)"),
)


# The whole model's vector kernels (hls/common/layernorm, hls/common/eltwise; NUMERICS.md). int16 operands
# are 2-byte aligned, int32 ones 4-byte aligned (0x002 otherwise).
VECTOR_OPS = (
    Op("LAYERNORM", 4, "L", (("rows", 2), ("D", 3), ("x", 4), ("g", 5), ("b", 6), ("shift", 7), ("eps", 8),
                             ("y", 9))),
    Op("ADD", 5, "R", (("n", 2), ("a", 3), ("a_bits", 4), ("ma", 5), ("b", 6), ("b_bits", 7), ("mb", 8),
                       ("shift", 9), ("y", 10), ("y_bits", 11))),
    Op("LUT", 6, "T", (("n", 2), ("x", 3), ("table", 4), ("y", 5))),
)
VECTOR_STATUS = (
    Status(0x401, "LN_ERR_DIMS", "LayerNorm", "rows < 1, or D outside [1, 8192]"),
    Status(0x402, "LN_ERR_PARAM", "LayerNorm", "shift outside [16, 62], or eps < 0"),
    Status(0x501, "ADD_ERR_DIMS", "add", "n < 1"),
    Status(0x502, "ADD_ERR_PARAM", "add", "a width not 8 or 16, a multiplier outside [0, 2^31), or shift outside [0, 62]"),
    Status(0x601, "LUT_ERR_DIMS", "LUT", "n < 1"),
)


@dataclasses.dataclass(frozen=True)
class Isa:
    accelerator: str
    desc_words: int
    max_instr: int
    ops: Tuple[Op, ...]
    status: Tuple[Status, ...]
    #: Extra C++ constants of the format (name, value, comment), e.g. where per-head words start.
    constants: Tuple[Tuple[str, int, str], ...] = ()

    def __post_init__(self):
        codes = [s.code for s in self.status]
        names = [s.name for s in self.status]
        if len(set(codes)) != len(codes) or len(set(names)) != len(names):
            raise ValueError(f"{self.accelerator}: status codes and names must be unique")
        for op in self.ops:
            for f, w in op.words:
                if not len(HEADER_WORDS) <= w < self.desc_words:
                    raise ValueError(f"{self.accelerator}: OP_{op.name} word {f} = {w} outside the descriptor")

    def op(self, name: str) -> Op:
        for o in self.ops:
            if o.name == name:
                return o
        raise KeyError(name)

    def words(self, op: str) -> Dict[str, int]:
        return dict(self.op(op).words)

    def opcode(self, op: str) -> int:
        return self.op(op).code

    def code(self, name: str) -> int:
        for s in self.status:
            if s.name == name:
                return s.code
        raise KeyError(name)

    @property
    def messages(self) -> Dict[int, str]:
        return {s.code: f"{s.source}: {s.message}" if s.source != "top" else s.message for s in self.status}

    def status_message(self, status: int) -> str:
        """Human-readable form of an engine or top status (``(index << 16) | code``; 0 is ok)."""
        status = int(status)
        if status == 0:
            return "ok"
        if status < 0:
            return f"C API error {status}: bad arguments (DRAM window too large or misaligned)"
        index, code = status >> 16, status & 0xFFFF
        what = self.messages.get(code, f"unknown code 0x{code:03x}")
        return f"descriptor {index}: {what} (0x{code:03x})" if index else f"{what} (0x{code:03x})"

    def layout(self) -> Tuple[Tuple[str, int], ...]:
        """Every C++ constant of the layout, in header order (the C-simulation reports the compiled values)."""
        out = [("DESC_WORDS", self.desc_words)]
        out += [(f"OP_{o.name}", o.code) for o in self.ops]
        out += list(HEADER_WORDS)
        for o in self.ops:
            out += [(o.c_word(f), w) for f, w in o.words]
        out += [(n, v) for n, v, _ in self.constants]
        return tuple(out)

    # -- renderings -------------------------------------------------------------------------------------
    def c_header(self, source: str) -> str:
        guard = f"VITACCEL_ISA_{self.accelerator.upper()}_H"
        ns = self.accelerator
        lines = [
            f"// Generated by `vitaccel config gen` from {source}. Do not edit: edit the table and regenerate.",
            f"// The descriptor format and status codes of {self.accelerator}_top (DESCRIPTOR.md).",
            f"#ifndef {guard}", f"#define {guard}", "", '#include "isa/common_isa.h"', "",
            "namespace vitaccel {", "namespace isa {",
            f"namespace {ns} {{", "",
            f"static const int DESC_WORDS = {self.desc_words};  // one descriptor: int32 words",
            f"static const unsigned MAX_INSTR = {self.max_instr}u;  // num_instr must be below this",
            "",
            "enum Op { " + ", ".join(f"OP_{o.name} = {o.code}" for o in self.ops) + " };",
            "",
            "// Word indices of a descriptor. Offsets are bytes from the window start; strides are bytes.",
            "enum Word {",
        ]
        lines += [f"    {n} = {w}," for n, w in HEADER_WORDS]
        for o in self.ops:
            if o.words:
                lines.append(f"    // OP_{o.name}")
                lines += [f"    {o.c_word(f)} = {w}," for f, w in o.words]
        lines.append("};")
        for n, v, doc in self.constants:
            lines.append(f"static const int {n} = {v};  // {doc}")
        own = [s for s in self.status if s not in COMMON_STATUS]
        lines += ["", "// This accelerator's engines' status codes (the dispatcher's and the GEMM's: common_isa.h)."]
        lines += [f"static const int {s.name} = 0x{s.code:03x};  // {s.source}: {_plain(s.message)}" for s in own]
        lines += ["", f"}}  // namespace {ns}", "}  // namespace isa", "}  // namespace vitaccel", "",
                  f"#endif  // {guard}", ""]
        return "\n".join(lines)

    def markdown_status(self) -> str:
        rows = ["| code | source | meaning |", "| --- | --- | --- |"]
        rows += [f"| 0x{s.code:03x} | {s.source} | {s.message} |" for s in self.status]
        return "\n".join(rows)


#: Status codes every top shares: its dispatcher's, the common GEMM's and the vector kernels'.
COMMON_STATUS = DISPATCH_STATUS + GEMM_STATUS + VECTOR_STATUS


def common_c_header(source: str) -> str:
    """``hls/include/isa/common_isa.h``: the dispatcher's, the GEMM's and the vector kernels' status codes, in
    ``vitaccel::isa``."""
    lines = [f"// Generated by `vitaccel config gen` from {source}. Do not edit: edit the table and regenerate.",
             "// Status codes every top shares. ap_return is (index of the failing descriptor << 16) | code.",
             "#ifndef VITACCEL_ISA_COMMON_H", "#define VITACCEL_ISA_COMMON_H", "", "namespace vitaccel {",
             "namespace isa {", "", "static const int OK = 0;"]
    lines += [f"static const int {s.name} = 0x{s.code:03x};  // {s.source}: {_plain(s.message)}" for s in COMMON_STATUS]
    lines += ["", "}  // namespace isa", "}  // namespace vitaccel", "", "#endif  // VITACCEL_ISA_COMMON_H", ""]
    return "\n".join(lines)


def _plain(text: str) -> str:
    return text.replace("`", "")


BEGIN_MARK = "<!-- generated: status table (vitaccel config gen) -->"
END_MARK = "<!-- end of generated status table -->"


def with_status_table(markdown: str, isa: Isa, where: str) -> str:
    """``markdown`` with the text between the two markers replaced by the ISA's status table."""
    try:
        head, rest = markdown.split(BEGIN_MARK, 1)
        _, tail = rest.split(END_MARK, 1)
    except ValueError:
        raise ValueError(f"{where}: the status-table markers are missing ({BEGIN_MARK!r} ... {END_MARK!r})") from None
    return f"{head}{BEGIN_MARK}\n{isa.markdown_status()}\n{END_MARK}{tail}"

