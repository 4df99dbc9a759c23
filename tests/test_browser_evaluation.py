"""The Evaluation page in a real headless Chromium: an admin starts a held-out evaluation of the
tiny test model, watches its progress move without reloading, and reads the results and chart."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.test_browser import _orm_beside_playwright, browser, login  # noqa: F401 - fixtures
from tests.test_evaluation import DOCS

pytestmark = pytest.mark.browser


@pytest.fixture
def slow_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every candidate is still written and scored for real, just slower, so the page is seen
    while the run is going."""
    from finetune import evaluation

    original = evaluation.Scorer.score

    def score(self: Any, **kwargs: Any) -> Any:
        time.sleep(0.6)
        return original(self, **kwargs)

    monkeypatch.setattr(evaluation.Scorer, "score", score)


def test_an_admin_starts_an_evaluation_and_watches_it_to_the_results(
    asgi_server: str,
    browser: Any,  # noqa: F811
    cast: dict,
    language_model: Any,
    slow_scoring: None,
) -> None:
    from finetune.models import EvaluationRun
    from tests.factories import make_archive

    make_archive(cast["newsroom"], DOCS)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, asgi_server, "alice")
    page.goto(f"{asgi_server}/p/newsroom/")
    page.click("text=Evaluation")
    page.wait_for_url("**/finetune/evaluations/")
    page.fill("#id_n_documents", "3")
    page.fill("#id_k", "1")
    page.fill("#id_max_new_tokens", "6")
    page.fill("#id_grounding_passages", "1")
    page.click("button:has-text('Start the evaluation')")
    page.wait_for_url("**/finetune/evaluations/*/")
    run = EvaluationRun.objects.get()
    assert page.text_content("#evaluation-split") == ", ".join(map(str, run.document_ids))
    # the progress moves on the page while the run goes (polled, no reload)
    page.wait_for_function(
        "() => Number(document.querySelector('#evaluation-done').textContent) > 0"
        " && document.querySelector('#evaluation-status').textContent === 'running'",
        timeout=120_000,
    )
    # and at the end the page reloads with the results per variant and the chart (a bar per
    # variant and metric; a score of 0 is a bar of no height)
    page.wait_for_selector("#evaluation-chart", timeout=120_000)
    assert page.locator("#evaluation-chart rect").count() == 2 * 3
    rows = page.locator("#evaluation-summary tbody tr")
    assert rows.count() == 2
    assert "tiny-gpt2, grounded (1)" in rows.nth(1).text_content()
    assert page.locator("#evaluation-rows tbody tr").count() == 6
    assert page.locator("#evaluation-cancel").count() == 0
    assert errors == []
