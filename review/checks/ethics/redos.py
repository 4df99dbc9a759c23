"""The ReDoS guard: custom regexes run on Python's backtracking ``re`` with no timeout, so
the shapes that backtrack catastrophically are refused before a pattern is ever compiled.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from re import _constants as sre_constants  # the parse tree types; stable within Python 3.11
from re import _parser as sre_parser
from typing import Any

# --------------------------------------------------------------------------- regex safety

# A quantifier whose upper bound reaches this counts as "repeating" for the nested-quantifier
# check; ``(\w+\s){2}`` is harmless, ``(\w+\s){50}`` is not.
_REPEATING_BOUND = 10

REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


def flags_value(flags_text: str) -> int:
    value = 0
    for letter in flags_text:
        value |= REGEX_FLAGS[letter]
    return value


_REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT)


def pattern_problem(pattern: str, flags: int) -> str | None:
    """Why ``pattern`` is unusable (does not compile, or may backtrack catastrophically)."""
    try:
        re.compile(pattern, flags)
    except re.error as exc:
        return f"pattern does not compile: {exc}"
    try:
        tree = sre_parser.parse(pattern, flags)
    except Exception:  # the private parser changed shape; compiling already succeeded
        return None
    ignore_case = bool(flags & re.IGNORECASE) or bool(tree.state.flags & re.IGNORECASE)
    problem = _walk_for_backtracking(
        list(tree), inside_repeat=False, repeat_first=None, ignore_case=ignore_case
    )
    if problem:
        return (
            f"pattern may backtrack catastrophically ({problem}); use a possessive quantifier "
            "(a++), an atomic group (?>...) or a simpler pattern"
        )
    return None


# The first character a repeated body can start with: what may follow an empty branch inside
# it. ``None`` means unknown (any character).
_FirstTest = Callable[[str], bool] | None


def _walk_for_backtracking(
    items: list[Any], *, inside_repeat: bool, repeat_first: _FirstTest, ignore_case: bool
) -> str | None:
    """Why ``items`` may backtrack catastrophically, or None.

    Flags a variable-length quantifier that can take more than one character ("+", "*",
    "{2,5}"; "?" is harmless) nested in a repeating one, and a repeated alternation whose
    branches can start with the same character (an empty branch starts with whatever follows:
    the next repetition). Python's parser already folds single-character alternations such as
    ``(\\w|\\d)`` into one class, which is safe, so those pass.
    """

    def walk(sub: list[Any], inside: bool, first: _FirstTest) -> str | None:
        return _walk_for_backtracking(
            sub, inside_repeat=inside, repeat_first=first, ignore_case=ignore_case
        )

    for op, av in items:
        found: str | None = None
        if op in _REPEATS:
            low, high, sub = av
            if inside_repeat and low != high and high > 1:
                return "a variable-length quantifier inside a repeated group"
            repeats = high == sre_constants.MAXREPEAT or high >= _REPEATING_BOUND
            if repeats and not inside_repeat:
                found = walk(list(sub), True, _first_char_test(list(sub), ignore_case))
            else:
                found = walk(list(sub), inside_repeat, repeat_first)
        elif op in (sre_constants.POSSESSIVE_REPEAT, sre_constants.ATOMIC_GROUP):
            continue  # these never give back what they matched, so they cannot blow up
        elif op == sre_constants.SUBPATTERN:
            found = walk(list(av[3]), inside_repeat, repeat_first)
        elif op == sre_constants.BRANCH:
            branches = [list(b) for b in av[1]]
            if inside_repeat and _branches_overlap(
                branches, follow=repeat_first, ignore_case=ignore_case
            ):
                return "a repeated alternation whose branches can start alike"
            for branch in branches:
                found = found or walk(branch, inside_repeat, repeat_first)
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            found = walk(list(av[1]), inside_repeat, repeat_first)
        elif op == sre_constants.GROUPREF_EXISTS:
            for sub in av[1:]:
                if sub is not None:
                    found = found or walk(list(sub), inside_repeat, repeat_first)
        if found:
            return found
    return None


# Characters used to test whether two branches can start with the same character: exact for
# literals and classes over this alphabet, which covers what newsroom rules use in practice.
_PROBE_CHARS = [chr(c) for c in range(32, 127)] + list("\t\n\u00a0éüßçñ€£’“”–—")


def _first_char_test(items: list[Any], ignore_case: bool) -> Callable[[str], bool] | None:
    """A predicate for the first character ``items`` can match; None means "any character"."""
    for op, av in items:
        if op == sre_constants.AT:
            continue  # anchors consume nothing
        if op == sre_constants.LITERAL:
            ch = chr(av)
            if ignore_case:
                return lambda c, ch=ch: c.casefold() == ch.casefold()
            return lambda c, ch=ch: c == ch
        if op == sre_constants.NOT_LITERAL:
            ch = chr(av)
            return lambda c, ch=ch: c != ch
        if op == sre_constants.IN:
            pattern = re.compile(_class_source(av), re.IGNORECASE if ignore_case else 0)
            return lambda c, pattern=pattern: pattern.fullmatch(c) is not None
        if op == sre_constants.SUBPATTERN:
            return _first_char_test(list(av[3]), ignore_case)
        if op in _REPEATS and av[0] >= 1:
            return _first_char_test(list(av[2]), ignore_case)
        return None  # ANY, optional repeats, branches: assume the worst
    return None  # the items can match nothing: what follows decides, so assume the worst


def _class_source(av: list[Any]) -> str:
    """Rebuild a character class ``[...]`` from its parse tree."""
    parts: list[str] = []
    negate = ""
    categories = {
        sre_constants.CATEGORY_DIGIT: r"\d",
        sre_constants.CATEGORY_NOT_DIGIT: r"\D",
        sre_constants.CATEGORY_SPACE: r"\s",
        sre_constants.CATEGORY_NOT_SPACE: r"\S",
        sre_constants.CATEGORY_WORD: r"\w",
        sre_constants.CATEGORY_NOT_WORD: r"\W",
    }
    for op, value in av:
        if op == sre_constants.NEGATE:
            negate = "^"
        elif op == sre_constants.LITERAL:
            parts.append(re.escape(chr(value)))
        elif op == sre_constants.RANGE:
            parts.append(f"{re.escape(chr(value[0]))}-{re.escape(chr(value[1]))}")
        elif op == sre_constants.CATEGORY and value in categories:
            parts.append(categories[value])
        else:
            return r"[\s\S]"  # unknown member: treat the class as matching anything
    return f"[{negate}{''.join(parts)}]"


def _branches_overlap(branches: list[list[Any]], *, follow: _FirstTest, ignore_case: bool) -> bool:
    # An empty branch (the parser turns "(a|ab)" into "a(|b)") starts with what follows it.
    tests = [_first_char_test(b, ignore_case) if b else follow for b in branches]
    if any(t is None for t in tests):
        return True
    return any(sum(1 for t in tests if t is not None and t(ch)) > 1 for ch in _PROBE_CHARS)
