"""Word-level differences between two texts, for revision diffs and refused saves."""

from __future__ import annotations

import difflib
import re

_TOKEN = re.compile(r"\s+|[^\s]+")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def word_diff(old: str, new: str) -> list[tuple[str, str]]:
    """``[("equal"|"insert"|"delete", text), ...]`` turning ``old`` into ``new``; whitespace is
    kept so the pieces concatenate back to either text."""
    a, b = _tokens(old), _tokens(new)
    out: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.append(("equal", "".join(a[i1:i2])))
        else:
            if i2 > i1:
                out.append(("delete", "".join(a[i1:i2])))
            if j2 > j1:
                out.append(("insert", "".join(b[j1:j2])))
    return out


def change_stats(old: str, new: str) -> dict[str, int]:
    pieces = word_diff(old, new)
    return {
        "words_added": sum(len(t.split()) for op, t in pieces if op == "insert"),
        "words_removed": sum(len(t.split()) for op, t in pieces if op == "delete"),
    }
