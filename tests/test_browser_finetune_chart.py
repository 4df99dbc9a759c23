"""The running page in a real Chromium: the live chart's step axis runs from 0 to the run's total
steps from its first point on, and durations read as the server writes them."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from contentstudio.durations import duration_text
from finetune.models import FineTuneRun, RunStatus
from finetune.training.config import DEMO_SETTINGS
from tests.test_browser import _orm_beside_playwright, browser, login  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser

SAMPLES = [0, 0.3, 0.7, 1.5, 40.4, 59.4, 59.6, 89, 90, 119.6, 3599, 3600, 6600, 6799, 7200, 90061]


def test_the_step_axis_runs_from_0_to_the_total_and_durations_match_the_server(
    asgi_server: str,
    browser: Any,  # noqa: F811
    cast: dict,
    language_model: Any,
) -> None:
    # given a run that has just measured its base model (one point, at step 0)
    now = timezone.now()
    run = FineTuneRun.objects.create(
        project=cast["newsroom"],
        created_by=cast["alice"],
        base_model=language_model,
        settings=DEMO_SETTINGS.as_dict(),
        status=RunStatus.RUNNING,
        phase="training",
        total_steps=16,
        step=0,
        history=[{"step": 0, "epoch": 0.0, "val_loss": 3.72, "val_ppl": 41.26}],
        seconds_left=6799.0,
        started_at=now,
        heartbeat_at=now,
        worker="elsewhere",
    )
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        login(page, asgi_server, "alice")
        # when the admin opens it
        page.goto(f"{asgi_server}/p/newsroom/finetune/runs/{run.pk}/")
        page.wait_for_function("() => window.finetuneChart && window.finetuneChart.scales.x")
        # then the axis is 0..16, in the configuration and as drawn
        config = page.evaluate("window.finetuneChart.options.scales.x")
        assert (config["min"], config["max"]) == (0, 16)
        drawn = page.evaluate(
            "[window.finetuneChart.scales.x.min, window.finetuneChart.scales.x.max]"
        )
        assert drawn == [0, 16]
        assert page.evaluate("window.finetuneChart.data.datasets[1].data.length") == 1
        # the time left reads as people say it
        assert page.locator("#run-left").inner_text() == "about 1 h 53 min"
        # and the page's duration rule is the server's, value for value
        shown = page.evaluate(
            "(values) => values.map((v) => [Durations.text(v), Durations.text(v, false)])",
            SAMPLES,
        )
        assert shown == [[duration_text(v), duration_text(v, about=False)] for v in SAMPLES]
        assert errors == [], errors
    finally:
        FineTuneRun.objects.filter(pk=run.pk).update(status=RunStatus.FAILED)
        page.close()
