"""Ethics rules per project: blocked terms, custom regexes, personal data, required disclosures
and claims that need a source.

A project stores its rules as a JSON-able dict (:class:`RuleSet`); project admins edit it, so
:func:`validate_rules` reports every problem with the field and item it concerns, and
:func:`compile_rules` turns a valid config into :class:`CompiledRules` (regexes compiled once).
:func:`check_ethics` reports every hit with its character span and the rule that fired. It does
not decide whether a draft is blocked: policy elsewhere maps ``rule_kind``/``severity`` to that.

Decisions worth knowing (also in the docstrings below):

* A config field that is absent means "off / empty", not "default": :data:`DEFAULT_RULES` is the
  template a new project starts from, and a stored config is taken literally.
* Custom regexes run on Python's backtracking ``re`` with no timeout, so :func:`validate_rules`
  rejects the shapes that backtrack catastrophically: a variable-length quantifier nested inside
  a repeating one (``(\\w+\\s?)+``, ``(a*)*``) and a repeated alternation whose branches can start
  with the same character (``(a|a)*``, ``(\\w|\\d)+``). Possessive quantifiers (``a++``) and
  atomic groups (``(?>...)``) never backtrack and are accepted anywhere; the error message
  suggests them. Patterns are capped at :data:`MAX_PATTERN_CHARS`.
* A missing required disclosure is a hit with ``start``/``end`` set to ``None`` (there is no
  place in the text to point at) and ``text`` empty.
* Card-number hits carry a masked ``text`` (all but the last four digits replaced) so the stored
  result does not copy the number again; the span still points at it in the draft.
* Chinese text has no spaces between words, so boundaries treat Han characters as non-letters:
  a Chinese term, a mobile number (``1[3-9]`` and nine digits), a landline or an identity card
  number (18 characters, birth date and ISO 7064 check tested; masked like card numbers) matches
  inside running text, and a Chinese term may have spaces or marks between its characters.
  Claims and their attributions are recognised in Chinese phrasing too (``据…报道``,
  ``…表示``, ``来源：``; ``研究表明`` is a claim of its own, the ``research`` detector), and a
  disclosure matches however spaces are put around Han characters ("AI 生成", "AI生成").

The package: :mod:`.rules` (the stored rule set, its types, defaults and validation),
:mod:`.redos` (the guard against catastrophic backtracking), :mod:`.claims` (claims that need a
source) and :mod:`.matchers` (compiling and running the rules). Nothing here touches the ORM.
"""

from __future__ import annotations

from review.checks.ethics.matchers import CompiledRules, check_ethics, compile_rules
from review.checks.ethics.rules import (
    CLAIM_DETECTORS,
    DEFAULT_RULES,
    ENGINE,
    ENGINE_VERSION,
    PII_DETECTORS,
    RULE_KINDS,
    SEVERITIES,
    EthicsHit,
    EthicsResult,
    InvalidRules,
    RuleSet,
    validate_rules,
)

__all__ = [
    "CLAIM_DETECTORS",
    "DEFAULT_RULES",
    "ENGINE",
    "ENGINE_VERSION",
    "PII_DETECTORS",
    "RULE_KINDS",
    "SEVERITIES",
    "CompiledRules",
    "EthicsHit",
    "EthicsResult",
    "InvalidRules",
    "RuleSet",
    "check_ethics",
    "compile_rules",
    "validate_rules",
]
