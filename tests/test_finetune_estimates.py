"""Fine-tuning says how long, honestly: estimates from the steady-state speed of earlier runs
(warm-up steps excluded, and saying how it was measured), time left from the steady step time,
durations as people read them; and a run registers a tuned model only when it beat the base on
validation."""

from __future__ import annotations

import time
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import torch
from django.core.management import call_command
from django.test import Client

from contentstudio.durations import duration_text
from finetune import rules, runner, services
from finetune.models import FineTuneEvent, FineTuneRun
from finetune.training import examples, loop
from generation.models import LanguageModel
from tests.test_finetune import (  # noqa: F401 - fixtures
    SMALL,
    archive,
    captured,
    create_run,
    paragraphs,
    settings_fast,
)

WARM_UP_SLEEP = 2.0  # seconds each of the first two steps is made to take


def test_durations_read_as_people_say_them() -> None:
    assert duration_text(6799) == "about 1 h 53 min"
    assert duration_text(6600) == "about 1 h 50 min"
    assert duration_text(7200) == "about 2 h"
    assert duration_text(3599) == "about 1 h"
    assert duration_text(119.6) == "about 2 min"
    assert duration_text(89) == "about 1 min"
    assert duration_text(90) == "about 2 min"  # 1.5 min, half up as the browser rounds
    assert duration_text(40.4) == "about 40 s"
    assert duration_text(0.7) == "about 1 s"
    assert duration_text(0.3) == "under a second"
    assert duration_text(None) == "—"
    assert duration_text(245, about=False) == "4 min"


def estimate_now(cast: dict, model: Any, **settings: Any) -> dict[str, Any]:
    return services.run_estimate(
        project=cast["newsroom"],
        user=cast["alice"],
        base_model=model,
        data={"archive": True},
        settings={**SMALL, **settings},
    )


@pytest.fixture
def slow_warm_up(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The first two optimiser steps take WARM_UP_SLEEP s longer (as a big model's first steps
    do while they allocate the optimiser state); the model still trains every step."""
    original = torch.nn.utils.clip_grad_norm_
    calls: list[float] = []

    def clip(*args: Any, **kwargs: Any) -> Any:
        calls.append(time.monotonic())
        if len(calls) <= loop.SPEED_SKIP_STEPS:
            time.sleep(WARM_UP_SLEEP)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    return calls


@pytest.mark.usefixtures("archive", "settings_fast")
def test_a_one_step_runs_warm_up_does_not_make_the_next_estimate(
    cast: dict, language_model: LanguageModel, slow_warm_up: list[float]
) -> None:
    # given no run yet: the machine constant, and the estimate says so
    before = estimate_now(cast, language_model)
    assert before["basis"].startswith("machine constant, no run yet")
    assert before["duration"] == duration_text(before["seconds"])
    # when a 1-step run (all warm-up) runs from the command line
    out = StringIO()
    call_command(
        "finetune",
        "run",
        "--project=newsroom",
        "--base=tiny-gpt2",
        "--archive",
        *[f"--set={k}={v}" for k, v in {**SMALL, "max_steps": 1}.items()],
        stdout=out,
    )
    text = out.getvalue()
    one_step = FineTuneRun.objects.get()
    # then it measured no steady speed, and the next estimate is still the constant's
    assert one_step.step == 1 and one_step.steady_tokens_per_second is None
    assert one_step.tokens_per_second > 0
    after = estimate_now(cast, language_model)
    assert after["basis"] == before["basis"] and after["seconds"] == before["seconds"]
    # and the command line spoke in words
    said = one_step.estimate
    assert f"estimated {said['duration']} (speed machine constant, no run yet" in text
    assert "too short to pass its warm-up" in text


def test_the_steady_speed_leaves_the_warm_up_steps_out(
    tiny_model_dir: Path,
    paragraphs: list[str],  # noqa: F811 - the fixture
    tmp_path: Path,
    slow_warm_up: list[float],
) -> None:
    # given a real training of 6 steps whose first two are slow
    split = examples.Split(
        train=[examples.Example(text=t) for t in paragraphs[20:60]],
        validation=[examples.Example(text=t) for t in paragraphs[:10]],
        test=[examples.Example(text=t) for t in paragraphs[10:20]],
    )
    settings, errors = rules.parse_settings(
        {**SMALL, "max_steps": 6, "epochs": 5, "batch_size": 4, "eval_every": 100}
    )
    assert not errors
    model, tokenizer = loop.load_for_training(str(tiny_model_dir), device="cpu")
    # when it trains
    result = loop.train(
        model=model, tokenizer=tokenizer, split=split, settings=settings, output_dir=tmp_path / "m"
    )
    # then the steady speed is measured over steps 3-6 only: the slow steps are not in it
    assert result.steps == 6 and len(slow_warm_up) == 6
    assert 0 < result.steady_tokens < result.train_tokens
    assert result.steady_seconds <= result.train_seconds - 2 * WARM_UP_SLEEP


def test_time_left_counts_steady_steps_evaluations_and_the_test_pass() -> None:
    # 2 warm-up steps took 10 s, the 4 steady ones 2 s: 10 steps left are 5 s, not 20 s
    left = loop.time_left(
        steps_left=10,
        steady_steps=4,
        steady_seconds=2.0,
        steps_done=6,
        train_seconds=12.0,
        evaluations=2,
        per_evaluation=1.5,
        test_seconds=1.0,
    )
    assert left == pytest.approx(5.0 + 3.0 + 1.0)
    # before any steady step the average so far is all there is
    assert loop.time_left(
        steps_left=4,
        steady_steps=0,
        steady_seconds=0.0,
        steps_done=2,
        train_seconds=6.0,
        evaluations=0,
        per_evaluation=0.0,
        test_seconds=0.0,
    ) == pytest.approx(12.0)


@pytest.mark.usefixtures("archive", "settings_fast", "captured")
def test_the_next_estimate_uses_the_steady_speed_and_says_so(
    cast: dict, language_model: LanguageModel
) -> None:
    # given a run of 6 steps, run by the worker
    run = create_run(cast, language_model, max_steps=6, eval_every=3, epochs=3)
    seen: list[loop.Progress] = []
    runner.run_execute(run_id=run.pk, worker_name="test", on_progress=seen.append)
    run.refresh_from_db()
    assert run.status == "succeeded" and run.step == 6
    assert run.steady_tokens_per_second and run.steady_tokens_per_second > 0
    # the live time left was reported all along, and ran out at the end
    lefts = [p["seconds_left"] for p in seen if p["phase"] == "training" and p["step"]]
    assert len(lefts) == 6 and all(left is not None and left >= 0 for left in lefts)
    # then the next estimate uses its steady speed (same model, so the same tokens/s), saying so
    estimate = estimate_now(cast, language_model)
    assert estimate["basis"].startswith("from 1 earlier run on this installation, steady-state ")
    assert estimate["basis"].endswith("tokens/s (warm-up steps excluded)")
    assert estimate["tokens_per_second"] == pytest.approx(run.steady_tokens_per_second, rel=0.01)
    # and the run page shows its estimate in words, never as a count of seconds
    client = Client()
    client.force_login(cast["alice"])
    page = client.get(f"/p/newsroom/finetune/runs/{run.pk}/").content.decode()
    assert f"{duration_text(run.estimate['seconds'])} ({run.estimate['steps']} steps" in page
    assert f"{run.estimate['seconds']:.0f} s (" not in page


@pytest.mark.usefixtures("archive", "settings_fast", "captured")
def test_a_cancelled_run_whose_best_is_step_0_registers_nothing(
    cast: dict, language_model: LanguageModel
) -> None:
    models_before = LanguageModel.objects.count()
    run = create_run(cast, language_model, epochs=3, eval_every=4, patience=50)

    def cancel_at_step_one(progress: loop.Progress) -> None:
        if progress["step"] == 1 and progress["phase"] == "training":
            services.run_cancel(run=run, user=cast["alice"])

    # when it is cancelled before any checkpoint was evaluated (the best is the base, step 0)
    runner.run_execute(run_id=run.pk, worker_name="test", on_progress=cancel_at_step_one)
    run.refresh_from_db()
    # then no model is registered and no weights are left on disk
    assert run.status == "cancelled" and run.best_step == 0
    assert run.result_model is None and LanguageModel.objects.count() == models_before
    assert not Path(runner.output_dir_for(run.pk)).exists()
    assert run.base_val_ppl == pytest.approx(run.best_val_ppl)
    assert run.status_text == "Cancelled, no better than the base: not registered"
    event = FineTuneEvent.objects.get(run=run, action="cancelled")
    assert event.data["registered"] is False and event.data["result_model"] is None
    # and the pages say so with the numbers
    client = Client()
    client.force_login(cast["alice"])
    page = client.get(f"/p/newsroom/finetune/runs/{run.pk}/").content.decode()
    assert "Cancelled, no better than the base: not registered" in page
    assert f"validation perplexity {run.base_val_ppl:.3f} for the base" in page
    runs_page = client.get("/p/newsroom/finetune/").content.decode()
    assert "no better than the base: not registered" in runs_page


def test_a_result_that_beat_the_base_counts_as_improved() -> None:
    def result(best_step: int, best: float, base: float) -> loop.TrainResult:
        return loop.TrainResult(
            output_dir=Path("/nonexistent"),
            base_test_loss=3.0,
            base_test_ppl=20.0,
            test_loss=3.0,
            test_ppl=20.0,
            best_val_loss=best,
            best_val_ppl=0.0,
            best_step=best_step,
            steps=4,
            total_steps=4,
            stopped_early=False,
            cancelled=False,
            train_tokens=100,
            train_seconds=1.0,
            steady_tokens=0,
            steady_seconds=0.0,
            train_cpu_seconds=1.0,
            seconds=2.0,
            history=[],
            counts={},
            parameters=10,
            trainable_parameters=10,
            base_val_loss=base,
        )

    assert result(2, 2.9, 3.0).improved
    assert not result(0, 3.0, 3.0).improved
    assert result(0, 3.0, 3.0).steady_tokens_per_second is None
    assert loop.evaluations_left(0, 8, 4) == 2
    assert loop.evaluations_left(4, 10, 4) == 2  # at 8 and at the end (10)
    assert loop.evaluations_left(8, 8, 4) == 0
