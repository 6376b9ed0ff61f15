"""Text from files and users made safe to print on a terminal: escape sequences and other control
characters removed (a benchmark name must not set the terminal's title or colours) and lengths bounded
(a 10 MiB name must not flood the screen)."""

from __future__ import annotations

import re

# How long a name (a benchmark, a file) may be when shown; longer ones keep their head and tail.
MAX_SHOWN_NAME = 160
# How long one line of a message may be when shown.
MAX_SHOWN_LINE = 2000

# ANSI/ECMA-48 sequences: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), and two-byte ESC x.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x9b[0-?]*[ -/]*[@-~]|\x1b[@-_]?")
# C0 and C1 controls and DEL, and the Unicode marks that reorder or hide text (bidi overrides, isolates).
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def shorten(text: str, limit: int = MAX_SHOWN_NAME, *, length: int | None = None) -> str:
    """`text` if it has at most `limit` characters, else its head and tail around `…(N more)…`.
    `length`: how long the text it stands for is, when `text` is already a cut of it."""
    length = len(text) if length is None else length
    if length <= limit:
        return text
    note = f"…({length - limit} more)…"
    keep = max(limit - len(note), 2)
    head = keep * 2 // 3
    return text[:head] + note + text[len(text) - (keep - head):]


def terminal_safe(text: object, limit: int | None = MAX_SHOWN_LINE) -> str:
    """`text` as one printable line: escape sequences dropped, other control characters (newlines and
    tabs included) as spaces, and at most `limit` characters (None: any length)."""
    s = str(text)
    extra = 0
    if limit is not None and len(s) > 4 * limit:  # bound the work on a huge text: only its ends are shown
        extra = len(s) - 4 * limit
        s = s[:2 * limit] + s[-2 * limit:]
    s = _CONTROLS.sub(" ", _ESCAPES.sub("", s))
    return s if limit is None else shorten(s, limit, length=len(s) + extra)


def shown_name(name: object, limit: int = MAX_SHOWN_NAME) -> str:
    """A name (a benchmark, a file) as printed: `terminal_safe`, at most `limit` characters."""
    return terminal_safe(name, limit)
