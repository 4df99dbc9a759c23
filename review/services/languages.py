"""Which languages each check reads, and the result of a check that cannot read a draft's.

The checks declare their languages (``review.checks.language``, the toxicity models'
``ToxicityConfig.model_languages``, the sentence model's card); an admin may declare a
configured model's (``TOXICITY_LANGUAGES``, ``EMBEDDING_MODEL_LANGUAGES``). The pipeline asks
:func:`unreadable_outcome` before it runs a check, and the Policy page shows
:func:`check_languages`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from generation.languages import card_languages
from review.checks import language, semantic
from review.checks.toxicity import head as toxicity_head
from review.models import CheckKind, CheckStatus
from review.services.adapters import toxicity_config

# What each check is called when it says it cannot read a text ("toxicity model is
# English-only").
CHECK_READERS = {
    CheckKind.TOXICITY: "toxicity model",
    CheckKind.ETHICS: "ethics rules check",
    CheckKind.LEXICAL: "lexical plagiarism check",
    CheckKind.SEMANTIC: "sentence model",
}


def _any(declared: tuple[str, ...]) -> tuple[str, ...] | None:
    return None if declared == ("*",) else declared


def toxicity_languages() -> tuple[str, ...] | None:
    """The languages the toxicity model that scores drafts now reads (None: any)."""
    config = toxicity_config()
    if config.model_name or config.checkpoint:
        return _any(config.model_languages())
    # The offline stand-in: what it reads is fixed (an admin's list is for a configured model).
    return toxicity_head.LANGUAGES


def semantic_languages() -> tuple[str, ...] | None:
    """The languages of the sentence model: declared by its admin, else its model card's,
    else English (a model that says nothing is not trusted with other languages)."""
    if settings.EMBEDDING_MODEL_LANGUAGES:
        return _any(settings.EMBEDDING_MODEL_LANGUAGES)
    path = settings.EMBEDDING_MODEL_PATH or None
    try:
        folder = path or semantic.default_model_path()
    except semantic.EmbeddingModelUnavailable:
        return ("en",)
    return card_languages(folder) or ("en",)


def check_languages() -> dict[str, tuple[str, ...] | None]:
    """Which languages each check reads (None: any), for the pipeline and the Policy page."""
    return {
        CheckKind.TOXICITY: toxicity_languages(),
        # Word-level checks read what their tokenisers split (review.checks.text).
        CheckKind.ETHICS: language.WORD_CHECK_LANGUAGES,
        CheckKind.LEXICAL: language.WORD_CHECK_LANGUAGES,
        CheckKind.SEMANTIC: semantic_languages(),
    }


def unreadable_outcome(
    kind: str, text_language: str, languages: tuple[str, ...] | None
) -> dict[str, Any] | None:
    """The stored result of a check that cannot read the draft's language, or None when it
    can: not run, with the reason ("toxicity model is English-only (the draft is Chinese)")."""
    reason = language.unreadable_reason(CHECK_READERS[kind], text_language, languages)
    if reason is None:
        return None
    return {
        "status": CheckStatus.NOT_RUN,
        "reason": reason,
        "engine": kind,
        "details": {
            "unreadable_language": True,
            "language": text_language,
            "languages": list(languages or []),
        },
    }
