"""Word-level differences between two texts, for revision diffs and refused saves.

Chinese has no spaces between words, so a Han character is a token of its own: an edit inside a
Chinese sentence shows the characters that changed, not the whole line. (Characters rather than
jieba's words: an edit can change how a segmenter cuts the words around it, and a diff of
characters stays minimal.)
"""

from __future__ import annotations

import difflib
import re

from review.checks.text import HAN, segment_han

_TOKEN = re.compile(rf"\s+|[{HAN}]|[^\s{HAN}]+")
_HAN_RUN = re.compile(f"[{HAN}]+")
_WORDISH = re.compile(r"\w")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _key(token: str) -> str:
    """What a token is compared by. Runs of whitespace compare by the break they make (a space,
    a line break, a paragraph break), not by their exact characters: the model's raw output and
    the same text after a round trip through HTML differ only there, and an unedited draft must
    show no change."""
    if not token.isspace():
        return token
    newlines = token.count("\n")
    return "\n\n" if newlines >= 2 else "\n" if newlines else " "


def word_diff(old: str, new: str) -> list[tuple[str, str]]:
    """``[("equal"|"insert"|"delete", text), ...]`` turning ``old`` into ``new``. The "equal"
    and "insert" pieces concatenate back to ``new`` exactly; "equal" and "delete" to ``old`` up
    to the exact characters of its whitespace (equal pieces carry ``new``'s)."""
    a, b = _tokens(old), _tokens(new)
    out: list[tuple[str, str]] = []
    # Whitespace is junk: a lone space between two changed words must not anchor a match, or
    # "new library" -> "old town hall" reads as -new +old -library +town hall.
    matcher = difflib.SequenceMatcher(
        isjunk=str.isspace, a=[_key(t) for t in a], b=[_key(t) for t in b], autojunk=False
    )
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.append(("equal", "".join(b[j1:j2])))
        else:
            if i2 > i1:
                out.append(("delete", "".join(a[i1:i2])))
            if j2 > j1:
                out.append(("insert", "".join(b[j1:j2])))
    return out


def _word_count(text: str) -> int:
    """Whitespace-separated words (punctuation alone is none), with each run of Han characters
    counted in jieba's words."""
    han = sum(len(segment_han(run)) for run in _HAN_RUN.findall(text))
    return han + sum(1 for w in _HAN_RUN.sub(" ", text).split() if _WORDISH.search(w))


def change_stats(old: str, new: str) -> dict[str, int]:
    pieces = word_diff(old, new)
    return {
        "words_added": sum(_word_count(t) for op, t in pieces if op == "insert"),
        "words_removed": sum(_word_count(t) for op, t in pieces if op == "delete"),
    }
