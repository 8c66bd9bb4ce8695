"""Text from files we do not trust, made safe to print on a terminal.

A bundle's metadata, an image file's name or a third-party error message can hold terminal escape
sequences (``ESC [ 2 J``), other control characters, Unicode bidirectional overrides or lone surrogates
(which make ``print`` raise ``UnicodeEncodeError``). :func:`printable` escapes all of them, so what is
printed is what the file holds, visibly, on one line.

Standard library only: imported on the board.
"""
from __future__ import annotations

import unicodedata

__all__ = ["printable", "lone_surrogate"]

#: Unicode format characters that reorder or hide text on a terminal (bidi embeddings, overrides and
#: isolates, marks). Other format characters (zero-width joiners in emoji) are left alone.
_BIDI = frozenset("\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escape(c: str) -> str:
    o = ord(c)
    if o <= 0xFF:
        return f"\\x{o:02x}"
    if o <= 0xFFFF:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def printable(text: object, *, one_line: bool = True) -> str:
    """``str(text)`` with control characters (C0, DEL, C1), bidi controls, lone surrogates and other
    unassigned/private code points escaped as ``\\xNN`` / ``\\uNNNN``. With ``one_line`` newlines and tabs
    are escaped too; without, they are kept."""
    s = text if isinstance(text, str) else str(text)
    if s.isprintable() and not any(c in _BIDI for c in s):
        return s
    out = []
    for c in s:
        if not one_line and c in "\n\t":
            out.append(c)
        elif c.isprintable() and c not in _BIDI:
            out.append(c)
        elif unicodedata.category(c) == "Zs":  # no-break and other spaces print as a space
            out.append(" ")
        else:
            out.append(_escape(c))
    return "".join(out)


def lone_surrogate(text: str) -> int:
    """Index of the first lone surrogate in ``text`` (which cannot be encoded as UTF-8), or -1."""
    try:
        text.encode("utf-8")
        return -1
    except UnicodeEncodeError as e:
        return e.start
