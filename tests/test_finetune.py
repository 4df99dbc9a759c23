"""Fine-tuning: the training loop on a tiny GPT-2, runs through the services and the worker's
path, cancel, refused settings, the command, the websocket, editor pairs and their export."""

from __future__ import annotations

import hashlib
import json
import math
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from finetune import rules, runner, services
from finetune.models import EditPair, FineTuneEvent, FineTuneRun
from finetune.training import evaluation, examples, loop

# A small run: about 2-4 s on one core with the tiny model.
SMALL = {
    "learning_rate": 3e-3,
    "batch_size": 8,
    "epochs": 1,
    "max_seq_length": 96,
    "eval_every": 3,
    "patience": 3,
    "warmup_steps": 1,
    "val_fraction": 0.15,
    "test_fraction": 0.15,
    "seed": 3,
}


@pytest.fixture(scope="module")
def paragraphs() -> list[str]:
    from generation.tiny import corpus_sample

    return corpus_sample(max_chars=40_000)


def add_archive(project: Any, texts: list[str]) -> None:
    from review.models import ArchiveDocument

    texts = list(dict.fromkeys(texts))  # speeches repeat a few lines ("Thank you.")
    ArchiveDocument.objects.bulk_create(
        ArchiveDocument(
            project=project,
            title=f"Paragraph {i}",
            text=text,
            content_hash=hashlib.sha256(text.encode()).hexdigest(),
        )
        for i, text in enumerate(texts)
    )


@pytest.fixture
def archive(cast: dict, paragraphs: list[str]) -> None:
    add_archive(cast["newsroom"], paragraphs[:80])


@pytest.fixture
def settings_fast(settings: Any, tmp_path: Path) -> Any:
    settings.GENERATION_CANCEL_POLL = 0.01
    settings.MODEL_CACHE_DIR = tmp_path / "models"
    return settings


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Runs stay out of the broker: the test plays the worker (run_execute) itself."""
    from finetune import tasks

    held: list[int] = []
    monkeypatch.setattr(tasks.finetune_run, "delay_on_commit", held.append)
    return held


def create_run(cast: dict, model: Any, **settings: Any) -> FineTuneRun:
    return services.run_create(
        project=cast["newsroom"],
        user=cast["alice"],
        base_model=model,
        data={"archive": True},
        settings={**SMALL, **settings},
    )


# --- The training loop ------------------------------------------------------------------------


def test_training_lowers_the_loss_and_early_stopping_keeps_the_best_checkpoint(
    tiny_model_dir: Path, paragraphs: list[str], tmp_path: Path
) -> None:
    # given eight training paragraphs and a high learning rate: the model first learns, then
    # overfits them, so the validation loss falls and then rises
    split = examples.Split(
        train=[examples.Example(text=t) for t in paragraphs[20:28]],
        validation=[examples.Example(text=t) for t in paragraphs[:10]],
        test=[examples.Example(text=t) for t in paragraphs[10:20]],
    )
    settings, errors = rules.parse_settings(
        {
            "learning_rate": 1e-2,
            "epochs": 40,
            "batch_size": 8,
            "eval_every": 2,
            "patience": 2,
            "max_seq_length": 64,
        }
    )
    assert not errors
    model, tokenizer = loop.load_for_training(str(tiny_model_dir), device="cpu")

    # when
    result = loop.train(
        model=model, tokenizer=tokenizer, split=split, settings=settings, output_dir=tmp_path / "m"
    )

    # then the training loss went down
    losses = [p["loss"] for p in result.history if "loss" in p]
    assert losses[-1] < losses[0] - 1.0
    # validation improved, then worsened for `patience` evaluations: the run stopped early
    evals = [(p["step"], p["val_loss"]) for p in result.history if "val_loss" in p]
    assert result.stopped_early and result.steps < result.total_steps
    assert 0 < result.best_step < result.steps
    assert result.best_val_loss == pytest.approx(min(v for _, v in evals), abs=1e-4)
    assert result.best_val_loss < evals[0][1]
    assert evals[-1][1] > result.best_val_loss
    # the directory holds the best weights, not the last ones
    saved, _ = loop.load_for_training(str(tmp_path / "m"), device="cpu")
    enc = examples.encode_examples(split.validation, tokenizer, max_length=64, chat=False)
    reloaded = evaluation.evaluate(
        saved, enc, batch_size=8, pad_id=tokenizer.pad_token_id, device="cpu"
    )
    assert reloaded == pytest.approx(result.best_val_loss, abs=1e-4)
    # test perplexity of both models, on the same test texts
    assert result.test_ppl < result.base_test_ppl
    assert result.base_test_ppl == pytest.approx(math.exp(result.base_test_loss))


def test_lora_trains_an_adapter_and_saves_a_plain_merged_model(
    tiny_model_dir: Path, paragraphs: list[str], tmp_path: Path
) -> None:
    split = examples.Split(
        train=[examples.Example(text=t) for t in paragraphs[20:60]],
        validation=[examples.Example(text=t) for t in paragraphs[:8]],
        test=[examples.Example(text=t) for t in paragraphs[8:16]],
    )
    settings, _ = rules.parse_settings(
        {
            "lora": True,
            "lora_r": 4,
            "learning_rate": 1e-2,
            "batch_size": 8,
            "max_seq_length": 64,
            "eval_every": 4,
            "max_steps": 8,
        }
    )
    model, tokenizer = loop.load_for_training(str(tiny_model_dir), device="cpu")
    result = loop.train(
        model=model, tokenizer=tokenizer, split=split, settings=settings, output_dir=tmp_path / "m"
    )
    # only the adapter trained, and it helped
    assert result.trainable_parameters < result.parameters / 4
    assert result.test_ppl < result.base_test_ppl
    # the saved directory is a plain transformers model (merged; no adapter files) that gives
    # the measured test perplexity
    assert not (tmp_path / "m" / "adapter_config.json").exists()
    saved, _ = loop.load_for_training(str(tmp_path / "m"), device="cpu")
    assert not hasattr(saved, "peft_config")
    enc = examples.encode_examples(split.test, tokenizer, max_length=64, chat=False)
    loss = evaluation.evaluate(
        saved, enc, batch_size=8, pad_id=tokenizer.pad_token_id, device="cpu"
    )
    assert loss == pytest.approx(result.test_loss, abs=1e-4)


def test_padding_and_prompts_are_never_learned(tiny_model_dir: Path) -> None:
    _, tokenizer = loop.load_for_training(str(tiny_model_dir), device="cpu")
    enc = examples.encode_examples(
        [
            examples.Example(text="A short answer.", prompt="Write something:"),
            examples.Example(text="A much longer text that needs more tokens than the other one."),
        ],
        tokenizer,
        max_length=64,
        chat=False,
    )
    prompt_len = len(tokenizer("Write something:")["input_ids"])
    assert enc.labels[0][:prompt_len] == [examples.IGNORE_INDEX] * prompt_len
    assert enc.labels[0][prompt_len:] == enc.ids[0][prompt_len:]
    [(_ids, mask, labels)] = examples.batches(
        enc, batch_size=2, pad_id=tokenizer.pad_token_id, shuffle_seed=None
    )
    assert (labels[mask == 0] == examples.IGNORE_INDEX).all()
    assert int(mask.sum()) == enc.tokens


# --- Runs through the services ----------------------------------------------------------------


@pytest.mark.usefixtures("archive", "hold_queue", "settings_fast")
def test_a_run_registers_a_tuned_model_that_generates_through_the_job_path(
    cast: dict, language_model: Any, captured: list[int]
) -> None:
    from generation import runner as generation_runner
    from generation import services as gen_services
    from generation.models import Draft

    # given an admin's run on the archive
    run = create_run(cast, language_model)
    assert captured == [run.pk]
    assert run.estimate["seconds"] > 0 and run.estimate["steps"] == run.total_steps

    # when the worker runs it
    runner.run_execute(run_id=run.pk, worker_name="test")

    # then
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.step == run.total_steps and len(run.history) == run.total_steps + 1
    assert run.base_test_ppl and run.test_ppl and run.test_ppl < run.base_test_ppl
    tuned = run.result_model
    assert tuned.project == cast["newsroom"] and tuned.source_kind == "local"
    provenance = json.loads((Path(tuned.source) / "contentstudio_provenance.json").read_text())
    assert provenance["base_model"]["name"] == "tiny-gpt2"
    assert provenance["settings"]["learning_rate"] == SMALL["learning_rate"]
    assert provenance["data"]["archive"] is True
    assert list(FineTuneEvent.objects.filter(run=run).values_list("action", flat=True)) == [
        "create",
        "start",
        "finish",
    ]
    # the tuned model writes drafts through the normal generation path
    job = gen_services.job_create(
        project=cast["newsroom"],
        user=cast["bob"],
        model=tuned,
        seed_text="The nation",
        n_candidates=1,
        # a tuned model may close a sample at once (its archive ends texts after short lines):
        # a fixed seed and a floor on the length keep this about the job path, not the dice
        base_seed=7,
        settings={"min_new_tokens": 4},
    )
    generation_runner.job_execute(job_id=job.pk, worker_name="test")
    draft = Draft.objects.get(job=job)
    assert draft.model == tuned and draft.completion_tokens > 0
    # another project may not use it
    with pytest.raises(ValidationError) as refused:
        gen_services.job_create(
            project=cast["other"], user=cast["eve"], model=tuned, seed_text="x", n_candidates=1
        )
    assert "model" in refused.value.message_dict


@pytest.mark.usefixtures("archive", "settings_fast")
def test_cancel_stops_a_running_run_and_keeps_the_best_checkpoint(
    cast: dict, language_model: Any, captured: list[int]
) -> None:
    run = create_run(cast, language_model, epochs=5, eval_every=2, patience=50)

    def cancel_at_step_five(progress: loop.Progress) -> None:
        if progress["step"] == 5 and progress["phase"] == "training":
            services.run_cancel(run=run, user=cast["alice"])

    runner.run_execute(run_id=run.pk, worker_name="test", on_progress=cancel_at_step_five)

    run.refresh_from_db()
    assert run.status == "cancelled"
    assert 5 <= run.step < run.total_steps
    assert run.result_model is not None and run.test_ppl is not None
    assert run.best_step is not None and run.best_step <= run.step
    assert Path(run.output_dir, "model.safetensors").exists()
    # a finished run cannot be cancelled again; a queued one ends at once
    from contentstudio.errors import InvalidTransition

    with pytest.raises(InvalidTransition):
        services.run_cancel(run=run, user=cast["alice"])
    queued = create_run(cast, language_model)
    assert services.run_cancel(run=queued, user=cast["alice"]).status == "cancelled"


@pytest.mark.usefixtures("archive")
def test_bad_settings_no_data_and_low_roles_are_refused(
    cast: dict, language_model: Any, captured: list[int], client: Any
) -> None:
    from contentstudio.errors import PermissionDenied

    with pytest.raises(ValidationError) as bad:
        services.run_create(
            project=cast["newsroom"],
            user=cast["alice"],
            base_model=language_model,
            data={"archive": True, "date_from": "yesterday"},
            settings={"learning_rate": -1, "batch_size": "four", "momentum": 0.9, "lora": "maybe"},
        )
    assert set(bad.value.message_dict) == {
        "settings.learning_rate",
        "settings.batch_size",
        "settings.momentum",
        "settings.lora",
        "data.date_from",
    }
    with pytest.raises(ValidationError) as empty:
        services.run_create(
            project=cast["newsroom"],
            user=cast["alice"],
            base_model=language_model,
            data={"drafts": True},
            settings=SMALL,
        )
    assert "no training text" in empty.value.message_dict["data"][0]
    with pytest.raises(PermissionDenied):
        services.run_create(
            project=cast["newsroom"],
            user=cast["bob"],
            base_model=language_model,
            data={"archive": True},
            settings=SMALL,
        )
    assert captured == [] and not FineTuneRun.objects.exists()

    # the page: the error names the field; editors get 403, non-members 404
    client.force_login(cast["alice"])
    response = client.post(
        "/p/newsroom/finetune/",
        {
            "base_model": language_model.pk,
            "data_archive": "on",
            "learning_rate": "0",
            "epochs": "1",
        },
    )
    assert response.status_code == 400
    assert b"settings.learning_rate" in response.content
    estimate = client.post(
        "/p/newsroom/finetune/estimate/",
        {"base_model": language_model.pk, "data_archive": "on", **SMALL},
    )
    assert estimate.status_code == 200 and estimate.json()["estimate"]["steps"] > 0
    client.force_login(cast["bob"])
    assert client.get("/p/newsroom/finetune/").status_code == 403
    client.force_login(cast["eve"])
    assert client.get("/p/newsroom/finetune/").status_code == 404


@pytest.mark.usefixtures("archive", "settings_fast")
def test_out_of_memory_fails_the_run_naming_the_batch_size(
    cast: dict, language_model: Any, captured: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = create_run(cast, language_model)

    # The allocator's own error, raised where a real forward pass would run out.
    def exhausted(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 GB")

    monkeypatch.setattr(loop, "evaluate", exhausted)
    runner.run_execute(run_id=run.pk, worker_name="test")
    run.refresh_from_db()
    assert run.status == "failed" and run.error_field == "settings.batch_size"
    assert "Out of memory" in run.error and run.result_model is None


@pytest.mark.usefixtures("archive", "settings_fast")
def test_the_command_runs_with_a_progress_bar_and_refuses_bad_settings(
    cast: dict, language_model: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=r"settings\.epochs"):
        call_command(
            "finetune",
            "run",
            "--project",
            "newsroom",
            "--base",
            "tiny-gpt2",
            "--archive",
            "--set",
            "epochs=0",
        )
    out = StringIO()
    args = [f"--set={k}={v}" for k, v in SMALL.items()]
    call_command(
        "finetune",
        "run",
        "--project",
        "newsroom",
        "--base",
        "tiny-gpt2",
        "--archive",
        *args,
        stdout=out,
    )
    text = out.getvalue()
    assert "estimated" in text and "test perplexity" in text
    run = FineTuneRun.objects.get()
    # the progress bar (tqdm, on standard error) reached the last step
    assert f"{run.total_steps}/{run.total_steps}" in capsys.readouterr().err
    assert run.status == "succeeded" and run.result_model.name in text


# --- Learning from editors --------------------------------------------------------------------


def test_approval_keeps_the_pair_which_exports_and_trains(
    cast: dict, client: Any, language_model: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from contentstudio.html import text_to_html
    from finetune import data as data_mod
    from generation.models import Draft
    from review import lifecycle
    from tests.factories import make_draft

    # given a draft an editor corrected
    draft = make_draft(
        cast["newsroom"],
        cast["bob"],
        "The council voted on Tuesday to shut the bridge.",
        status="awaiting_review",
    )
    Draft.objects.filter(pk=draft.pk).update(
        body=text_to_html("The city council voted on Tuesday to close the bridge.")
    )
    draft.refresh_from_db()

    # when the editor approves it (and the approval commits)
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.draft_transition(draft=draft, action="approve", user=cast["bob"])

    # then the pair is kept with its diff and distance
    pair = EditPair.objects.get(draft=draft)
    assert pair.model_output.startswith("The council") and pair.final_text.startswith("The city")
    assert ["+", "city"] in pair.diff and ["-", "shut"] in pair.diff
    assert pair.edit_distance == 2 and pair.approved_by == cast["bob"]
    # it exports as JSON Lines (admins only)
    client.force_login(cast["alice"])
    response = client.get("/p/newsroom/finetune/pairs.jsonl")
    [record] = [json.loads(line) for line in response.content.decode().splitlines()]
    assert record["completion"] == pair.final_text and record["prompt"] == draft.prompt
    assert record["model_output"] == draft.model_output
    client.force_login(cast["bob"])
    assert client.get("/p/newsroom/finetune/pairs.jsonl").status_code == 403
    # a run can train on it: the prompt is context, the editor's text the target
    [example] = data_mod.examples(project_id=cast["newsroom"].pk, spec={"pairs": True})
    assert example.prompt == draft.prompt and example.text == pair.final_text
    # the dashboard counts it
    rows = {r["model"]: r for r in services_acceptance(cast)}
    assert rows["review-fixture"]["approval_rate"] == 1.0
    assert rows["review-fixture"]["edit_distance"] == 2
    client.force_login(cast["alice"])
    page = client.get("/p/newsroom/finetune/acceptance/")
    assert page.status_code == 200 and b"chart-rates" in page.content


def services_acceptance(cast: dict) -> list[Any]:
    from finetune import selectors

    return selectors.acceptance(project=cast["newsroom"])


# --- The websocket ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_run_websocket_is_for_project_admins_and_starts_with_the_curve(
    cast: dict, language_model: Any
) -> None:
    from channels.db import database_sync_to_async
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator

    from contentstudio.routing import websocket_urlpatterns
    from tests.factories import refusal_code

    run = await database_sync_to_async(FineTuneRun.objects.create)(
        project=cast["newsroom"],
        base_model=language_model,
        history=[{"step": 0, "val_loss": 7.0, "val_ppl": 1096.6}],
    )

    def communicator(user: Any) -> WebsocketCommunicator:
        comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns()), f"/ws/finetune/{run.pk}/")
        comm.scope["user"] = user
        return comm

    comm = communicator(cast["alice"])
    connected, _ = await comm.connect()
    assert connected
    snapshot = await comm.receive_json_from(timeout=10)
    assert snapshot["type"] == "finetune.status" and snapshot["run"]["history"][0]["step"] == 0
    await comm.disconnect()
    # an editor of the project and a non-member are both refused, without telling which
    for name in ("bob", "eve"):
        assert await refusal_code(communicator(cast[name])) == 4404


@pytest.mark.usefixtures("hold_queue")
def test_base_against_tuned_starts_two_jobs_with_one_prompt_and_seed(
    cast: dict, language_model: Any, client: Any
) -> None:
    from generation.models import GenerationJob, LanguageModel

    tuned = LanguageModel.objects.create(
        name="tiny-gpt2 · tuned #1",
        source_kind="local",
        source=language_model.source,
        project=cast["newsroom"],
    )
    FineTuneRun.objects.create(
        project=cast["newsroom"], base_model=language_model, result_model=tuned, status="succeeded"
    )
    client.force_login(cast["bob"])
    response = client.post(
        "/p/newsroom/finetune/compare/", {"model": tuned.pk, "prompt": "The economy"}
    )
    assert response.status_code == 302
    base_job, tuned_job = GenerationJob.objects.order_by("pk")
    assert (base_job.model, tuned_job.model) == (language_model, tuned)
    assert base_job.seed_text == tuned_job.seed_text == "The economy"
    assert base_job.base_seed == tuned_job.base_seed
    page = client.get(response["Location"])
    assert page.status_code == 200 and f'data-job="{tuned_job.pk}"'.encode() in page.content
    # viewers may not start jobs; other projects do not see the page at all
    client.force_login(cast["dave"])
    assert client.get("/p/newsroom/finetune/compare/").status_code == 403
    client.force_login(cast["eve"])
    assert client.get("/p/newsroom/finetune/compare/").status_code == 404


def test_the_sweep_fails_a_run_whose_worker_died_and_resends_a_lost_one(
    cast: dict, language_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.utils import timezone

    from finetune import tasks

    resent: list[int] = []
    monkeypatch.setattr(tasks.finetune_run, "delay", resent.append)
    long_ago = timezone.now() - timezone.timedelta(hours=1)
    dead = FineTuneRun.objects.create(
        project=cast["newsroom"],
        base_model=language_model,
        status="running",
        heartbeat_at=long_ago,
        worker="gone@host",
    )
    lost = FineTuneRun.objects.create(project=cast["newsroom"], base_model=language_model)
    FineTuneRun.objects.filter(pk=lost.pk).update(created_at=long_ago)
    alive = FineTuneRun.objects.create(
        project=cast["newsroom"],
        base_model=language_model,
        status="running",
        heartbeat_at=timezone.now(),
    )

    assert runner.runs_sweep() == {"failed": 1, "resent": 1}

    dead.refresh_from_db()
    assert dead.status == "failed" and "gone@host" in dead.error
    assert resent == [lost.pk]
    alive.refresh_from_db()
    assert alive.status == "running"
