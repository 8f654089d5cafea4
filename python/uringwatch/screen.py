"""Text from the kernel or a traced process (comm, paths, names), escaped
for a terminal and for the table.

A traced process picks its comm and its files' names: raw, an escape
sequence would recolour or clear the operator's terminal, a newline would
forge a line, a space or comma would forge a column or a list entry. So
every such string is shown escaped, as `strace -x` does: non-printable
characters (C0 and C1 controls, DEL, escape, line and paragraph separators,
format characters such as bidi overrides, spaces other than ' ') as
`\\n`, `\\t`, `\\r`, `\\xHH`, `\\uHHHH` or `\\UHHHHHHHH`, the backslash as
`\\\\`, so that `unescape` gives the exact string back. Inside a table field
(`field=True`) the ' ' and ',' the table splits on are escaped too
(`\\x20`, `\\x2c`): a field then holds no whitespace and no comma, so the
table's own spaces and commas are the only ones on a line. The table's
other marks (`=`, `[`, `]`, `:`) need no escape: a field's key is always
the table's, an fd is a number before the first `:`, and a list ends at
its first `]` followed by a space or the line's end (a field holds no
space, and the table's `,` or `]` follows it).
JSON carries the strings exactly; nothing here touches it.
"""

from __future__ import annotations

import re
import sys

_SHORT = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _code(c: str) -> str:
    """One character as an escape."""
    if c in _SHORT:
        return _SHORT[c]
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


# every character below U+00A0 that is not shown as itself: str.translate
# does these in C; the rare others are found by isprintable()
_LATIN = [chr(n) for n in (*range(0x20), *range(0x7F, 0xA1), 0xAD)] + ["\\"]
_LINE = str.maketrans({c: _code(c) for c in _LATIN})
_FIELD = str.maketrans({c: _code(c) for c in _LATIN + [" ", ","]})


def escape(text: str, field: bool = True) -> str:
    """text as the table shows it: every character printable, a backslash
    only as the start of an escape; with field, no ' ' and no ','."""
    if text.isprintable() and "\\" not in text and not (field and (" " in text or
                                                                 "," in text)):
        return text         # the usual case: a tenth of translate()'s time
    out = text.translate(_FIELD if field else _LINE)
    if out.isprintable():
        return out
    return "".join(c if c.isprintable() else _code(c) for c in out)


_ESCAPE = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|[\\ntr])")
_UNSHORT = {v: k for k, v in _SHORT.items()}


def unescape(text: str) -> str:
    """The string escape() was given."""
    return _ESCAPE.sub(lambda m: _UNSHORT.get(m[0]) or chr(int(m[0][2:], 16)), text)


def error(problem) -> None:
    """A problem as one line on stderr, escaped: a recording's JSON (a
    malformed key) or a path can hold anything."""
    print(f"uringwatch: {escape(str(problem), field=False)}", file=sys.stderr)
