"""Fine-tuning in a real headless Chromium: an admin estimates and starts a run, watches the
curve grow live over the websocket, lets it finish and generates with the tuned model."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest

from tests.test_browser import _orm_beside_playwright, browser, login  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser


@pytest.fixture
def slow_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slow every progress report down (the real model still trains every step), so the page is
    seen while the run is going."""
    from finetune import runner

    original = runner.Reporter.on_progress

    def on_progress(self: Any, progress: Any) -> None:
        time.sleep(0.25)
        original(self, progress)

    monkeypatch.setattr(runner.Reporter, "on_progress", on_progress)


def test_an_admin_watches_a_run_live_and_generates_with_the_tuned_model(
    asgi_server: str,
    browser: Any,  # noqa: F811
    cast: dict,
    language_model: Any,
    slow_training: None,
    settings: Any,
    tmp_path: Path,
) -> None:
    from finetune.models import FineTuneRun
    from generation.models import Draft
    from generation.tiny import corpus_sample
    from review.models import ArchiveDocument

    settings.MODEL_CACHE_DIR = tmp_path / "models"
    texts = list(dict.fromkeys(corpus_sample(max_chars=30_000)))[:60]
    ArchiveDocument.objects.bulk_create(
        ArchiveDocument(
            project=cast["newsroom"],
            text=t,
            content_hash=hashlib.sha256(t.encode()).hexdigest(),
        )
        for t in texts
    )
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, asgi_server, "alice")
    page.goto(f"{asgi_server}/p/newsroom/")
    page.click("text=Fine-tuning")
    page.wait_for_url("**/finetune/")
    for name, value in {
        "learning_rate": "0.003",
        "batch_size": "8",
        "max_seq_length": "96",
        "eval_every": "2",
        "max_steps": "0",
        "epochs": "2",
        "patience": "5",
    }.items():
        page.fill(f"#id_{name}", value)

    # the estimate shows before anything starts
    page.click("#estimate-button")
    page.wait_for_function(
        "() => document.querySelector('#estimate').textContent.startsWith('Estimated time')"
    )
    assert not FineTuneRun.objects.exists()

    page.click("#start-button")
    page.wait_for_url("**/finetune/runs/*/")
    run = FineTuneRun.objects.get()

    # the curve grows while the run is going
    count = "Number(document.querySelector('#points-count').dataset.count)"
    page.wait_for_function(f"() => {count} >= 3", timeout=60_000)
    seen = page.evaluate(count)
    assert page.locator("#run-status").inner_text() == "Running"
    page.wait_for_function(f"() => {count} > {seen}", timeout=60_000)
    assert page.evaluate("window.finetuneChart.data.datasets[0].data.length") >= seen

    page.wait_for_function(
        "() => document.querySelector('#run-status').textContent === 'Succeeded'",
        timeout=120_000,
    )
    run.refresh_from_db()
    assert page.locator("#tuned-ppl").inner_text() == f"{run.test_ppl:.3f}"
    assert page.evaluate(count) == len(run.history)

    # generate with the tuned model, through the ordinary generation page
    page.click("#generate-link")
    page.wait_for_url("**/generate/?model=*")
    assert page.locator("#id_model").input_value() == str(run.result_model_id)
    page.select_option("#id_template", "")
    page.fill("#id_seed_text", "The state of the union")
    page.fill("#id_n_candidates", "1")
    # At least a few tokens: a small tuned model may otherwise end its text at once (a random
    # seed whose first token is end-of-text), which is a draft with no words to check.
    page.click('summary:has-text("Sampling settings")')
    page.fill("#id_min_new_tokens", "4")
    page.click("#generate-form button[type=submit]")
    page.wait_for_url("**/jobs/*/")
    page.wait_for_function(
        "() => document.querySelector('#job-status').textContent === 'Succeeded'",
        timeout=60_000,
    )
    draft = Draft.objects.get()
    assert draft.model_id == run.result_model_id and draft.completion_tokens > 0

    # the acceptance dashboard draws its charts for the tuned model's row
    page.goto(f"{asgi_server}/p/newsroom/finetune/acceptance/")
    assert page.locator("#acceptance tbody tr").first.inner_text().startswith(run.result_model.name)
    assert page.evaluate("Chart.getChart(document.getElementById('chart-rates')) !== undefined")
    assert errors == [], errors
    page.close()
