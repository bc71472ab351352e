"""Text made safe to show: every character a terminal acts on, or shows as nothing, written as its escape.

Text from files, servers and models is untrusted: an escape sequence in an item text or a reply
(``ESC ] 52 ;`` writes the clipboard, ``ESC ] 0 ;`` retitles the window, 8-bit CSI ``\x9b`` recolours)
must not reach a terminal. :func:`printable` writes every such character as its escape (``\x1b``,
``\u202e``): C0 and C1 controls and DEL, Unicode format characters (bidi overrides and isolates,
zero-width spaces and joiners, tag characters), line and paragraph separators, lone surrogates,
unassigned code points, variation selectors and invisible fillers. :func:`json_text` keeps the exact
data and writes the same characters as JSON escapes. Dependency-free, so error messages use it too.
"""

from __future__ import annotations

import re
import unicodedata

# Characters outside printable ASCII are examined one by one (most text never gets here).
_SUSPECT = re.compile(r"[^\t\n\x20-\x7e]")
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Zl", "Zp"})
# Visible-looking nothing that is not in those categories: Hangul fillers, the combining grapheme
# joiner, variation selectors (used to smuggle bytes invisibly), the braille blank.
_INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u034f\u2800") | frozenset(map(chr, range(0xFE00, 0xFE10))) | \
    frozenset(map(chr, range(0xE0100, 0xE01F0)))


def hidden(char: str) -> bool:
    """Whether a terminal could act on ``char`` or show nothing for it (see the module docstring)."""
    return unicodedata.category(char) in _HIDDEN_CATEGORIES or char in _INVISIBLE


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str, keep: str = "\t\n") -> str:
    """``text`` with every :func:`hidden` character written as its escape, except those in ``keep``."""
    return _SUSPECT.sub(lambda m: m.group() if m.group() in keep or not hidden(m.group()) else _escape(m.group()),
                        text)


def json_text(payload: object) -> str:
    """``payload`` as indented JSON, every :func:`hidden` character as a JSON escape (the data is unchanged
    for a JSON reader; ``json.dumps`` alone leaves C1 controls and bidi overrides raw)."""
    import json

    return json_escaped(json.dumps(payload, indent=2, ensure_ascii=False))


def json_escaped(document: str) -> str:
    """A JSON document with every :func:`hidden` character written as a JSON escape (inside strings, the
    only place a valid JSON document can have them, the escape means the same character)."""
    return _SUSPECT.sub(lambda m: _json_escape(m.group()) if hidden(m.group()) else m.group(), document)


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
