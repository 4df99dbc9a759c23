"""Benchmark of fine-tuning runs, through the product's own path.

Run from the repo root: ``.venv/bin/python bench/bench_finetune.py``. Prints one ``name: value``
line per figure on stdout; details (absolute speeds, perplexities, times, estimate against the
real time) on stderr.

* ``finetune_tokens_per_s_ratio``: training tokens per second of a run through the studio
  (run_create, run_execute: a real database row, progress saved and published, cancel polls;
  evaluations excluded) / a bare PyTorch loop on the same model, the same batches in the same
  order, with the same settings (AdamW, weight decay, warm-up schedule, gradient clipping).
  Three pairs (bare loop, then run), one torch thread; the median pair's ratio is reported.
  Seconds are CPU seconds of the process (all its threads, so the run's progress saves,
  publishing and heartbeat count against it): on this shared 2-core machine wall time mostly
  measured the neighbours (repeated bare loops differed 2-5x).
  ``finetune_tokens_per_wall_s_ratio`` is the same pairs in wall seconds, printed beside it.
  Model: a GPT-2 shape of 4 layers x 256 built in a temporary directory (random weights: speed
  does not depend on them). Goal >= 0.9.
* ``finetune_test_ppl_ratio``: the tuned model's test perplexity / the base model's, on the
  held-out test split of the demo archive (every State of the Union paragraph, as ``make
  setup`` imports it; the split is fixed by the run's seed), for the default model
  (SmolLM2-135M-Instruct) with the demo settings (``finetune.training.config.DEMO_SETTINGS``),
  trained through the product. Goal <= 0.8.

Options (environment): ``BENCH_ONLY=speed|ppl`` (one of the two figures); ``BENCH_THREADS``
(torch threads, default 2); ``BENCH_QUICK=1`` (the 2-layer test model for the perplexity figure
too: a smoke run, not the figure); ``BENCH_MODEL_CACHE`` (where the default model's converted
directory is kept; default ``var/models``, converted once in about 30 s); ``BENCH_LORA=1`` (the
demo settings with LoRA, r 16, learning rate 1e-3, for the perplexity figure).
"""

from __future__ import annotations

import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUICK = os.environ.get("BENCH_QUICK") == "1"
ONLY = os.environ.get("BENCH_ONLY", "")
# BENCH_LORA=1: the demo settings with LoRA instead of full fine-tuning (a diagnostic figure).
LORA = os.environ.get("BENCH_LORA") == "1"
LORA_DEMO = {"lora": True, "lora_r": 16, "lora_alpha": 32, "learning_rate": 1e-3}
SPEED_REPS = 3
SPEED_SETTINGS = {
    "learning_rate": 1e-3,
    "weight_decay": 0.01,
    "batch_size": 8,
    "max_seq_length": 128,
    "max_steps": 12 if QUICK else 30,
    "epochs": 1,
    "warmup_steps": 2,
    "eval_every": 0,
    "seed": 0,
    "max_texts": 1500,
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare(tmp: Path, threads: int) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "contentstudio.settings"
    os.environ["CONTENTSTUDIO_EMBEDDED_WORKER"] = "0"
    os.environ["CONTENTSTUDIO_TORCH_THREADS"] = str(threads)
    os.environ["CONTENTSTUDIO_DATA_DIR"] = str(tmp)
    os.environ["CONTENTSTUDIO_MODEL_CACHE"] = os.environ.get(
        "BENCH_MODEL_CACHE", str(ROOT / "var" / "models")
    )
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if not os.environ.get("DATABASE_URL"):
        os.environ["SQLITE_PATH"] = str(tmp / "bench.sqlite3")


def demo_archive_texts() -> list[str]:
    """The demo archive's documents: every State of the Union paragraph of 12 words or more
    (review.setup.sotu_rows, as ``make setup`` imports them)."""
    from review.setup import sotu_rows

    return list(dict.fromkeys(row.fields["text"] for row in sotu_rows() if row.fields))


def setup_project(texts: list[str]) -> tuple[Any, Any]:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from contentstudio.services import project_create
    from review.models import ArchiveDocument

    call_command("migrate", verbosity=0, interactive=False)
    admin = get_user_model().objects.create_user(username="bench-admin", password="x" * 20)
    project = project_create(name="Bench", slug="bench", admin=admin)
    ArchiveDocument.objects.bulk_create(
        (
            ArchiveDocument(
                project=project, text=t, content_hash=hashlib.sha256(t.encode()).hexdigest()
            )
            for t in texts
        ),
        batch_size=2000,
    )
    return project, admin


def product_run(project: Any, admin: Any, model: Any, settings: dict[str, Any]) -> Any:
    from finetune import runner, services
    from finetune.training import loop

    # Keep the trainer's result (its CPU-time figure is not stored on the run row).
    results: list[Any] = []
    original = loop.train

    def keep(**kwargs: Any) -> Any:
        results.append(original(**kwargs))
        return results[-1]

    loop.train = keep
    started = time.monotonic()
    run = services.run_create(
        project=project,
        user=admin,
        base_model=model,
        data={"archive": True},
        settings=settings,
        device="cpu",
        enqueue=False,
    )
    try:
        runner.run_execute(run_id=run.pk, worker_name="bench")
    finally:
        loop.train = original
    run.refresh_from_db()
    if run.status != "succeeded":
        raise SystemExit(f"run {run.pk} {run.status}: {run.error} ({run.error_field})")
    run.wall_seconds = time.monotonic() - started
    run.cpu_tokens_per_second = results[0].train_tokens / results[0].train_cpu_seconds
    return run


def bare_loop(
    model_dir: str, texts: list[str], settings_dict: dict[str, Any]
) -> tuple[float, float]:
    """(tokens per CPU second, tokens per wall second) of a plain PyTorch loop: the same split,
    windows, batch order and settings."""
    import torch

    from finetune import rules
    from finetune.training import examples, loop
    from finetune.training.estimate import plan_steps

    settings, _ = rules.parse_settings(settings_dict)
    split = examples.split_examples([examples.Example(text=t) for t in texts], settings)
    model, tokenizer = loop.load_for_training(model_dir, device="cpu")
    enc = examples.encode_examples(
        split.train, tokenizer, max_length=settings.max_seq_length, chat=False, pack=True
    )
    _per_epoch, total = plan_steps(len(enc.ids), settings)
    data = examples.batches(
        enc, batch_size=settings.batch_size, pad_id=tokenizer.pad_token_id, shuffle_seed=0
    )[:total]
    torch.manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: loop.lr_factor(s, warmup=settings.warmup_steps, total=total)
    )
    model.train()
    tokens = 0
    started = time.monotonic()
    cpu_started = time.process_time()
    for ids, mask, labels in data:
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(mask.sum())
    return tokens / (time.process_time() - cpu_started), tokens / (time.monotonic() - started)


def measure_speed(project: Any, admin: Any, texts: list[str], tmp: Path, threads: int) -> None:
    """finetune_tokens_per_s_ratio: the product's run against a bare loop."""
    import torch

    from finetune import data as data_mod
    from generation.models import LanguageModel
    from generation.tiny import build_tiny_gpt2

    speed_dir = build_tiny_gpt2(
        tmp / "speed-model", texts=texts[:3000], n_layer=4, n_embd=256, n_head=4
    )
    speed_model = LanguageModel.objects.create(
        name="bench-speed", source_kind="local", source=str(speed_dir)
    )
    # Data for the bare loop: exactly what the run selects (the archive, in its order).
    selected = [e.text for e in data_mod.examples(project_id=project.pk, spec={"archive": True})]
    # One thread for this comparison: on a shared 2-core machine two threads wait on each other
    # whenever another process holds a core.
    torch.set_num_threads(1)
    ratios, wall_ratios = [], []
    for rep in range(SPEED_REPS):
        bare_cpu, bare_wall = bare_loop(str(speed_dir), selected, SPEED_SETTINGS)
        run = product_run(project, admin, speed_model, SPEED_SETTINGS)
        ratios.append(run.cpu_tokens_per_second / bare_cpu)
        wall_ratios.append(run.tokens_per_second / bare_wall)
        log(
            f"speed rep {rep}: tokens per CPU second: bare loop {bare_cpu:.0f}, run "
            f"{run.cpu_tokens_per_second:.0f}; per wall second: bare {bare_wall:.0f}, run "
            f"{run.tokens_per_second:.0f} ({run.step} steps, {run.parameters:,} parameters, "
            "1 thread)"
        )
    # Each run is paired with the bare loop just before it (the machine's load changes between
    # pairs more than within one); the median pair is reported.
    # CPU seconds (the process's own work) and wall seconds (what a user waits) side by side.
    print(f"finetune_tokens_per_s_ratio: {statistics.median(ratios):.3f}", flush=True)
    print(f"finetune_tokens_per_wall_s_ratio: {statistics.median(wall_ratios):.3f}", flush=True)
    torch.set_num_threads(threads)


def measure_ppl(project: Any, admin: Any, tmp: Path) -> None:
    """finetune_test_ppl_ratio: the default model, the demo settings, the demo archive."""
    from finetune.training.config import DEMO_SETTINGS
    from generation.defaults import DEFAULT_MODEL_SOURCE
    from generation.models import LanguageModel
    from generation.tiny import build_tiny_gpt2

    if QUICK:
        path = build_tiny_gpt2(tmp / "quick-model")
        model = LanguageModel.objects.create(name="quick", source_kind="local", source=str(path))
        settings = {**DEMO_SETTINGS.as_dict(), "max_steps": 6, "eval_every": 3}
    else:
        model = LanguageModel.objects.create(
            name="SmolLM2-135M-Instruct", source_kind="package_gguf", source=DEFAULT_MODEL_SOURCE
        )
        settings = DEMO_SETTINGS.as_dict()
    if LORA:
        settings.update(LORA_DEMO)
    run = product_run(project, admin, model, settings)
    e = run.estimate
    log(
        f"demo run ({model.name}, {run.step} steps"
        f"{', stopped early' if run.stopped_early else ''}): test perplexity "
        f"{run.base_test_ppl:.2f} -> {run.test_ppl:.2f} on {run.counts.get('test')} held-out "
        f"paragraphs ({run.counts.get('test_tokens')} tokens); best validation perplexity "
        f"{run.best_val_ppl:.2f} at step {run.best_step}; {run.tokens_per_second:.0f} training "
        f"tokens/s; {run.wall_seconds:.0f} s in all (estimated {e['seconds']:.0f} s, "
        f"{e['basis']})"
    )
    log(f"curve: {[(p['step'], p.get('val_ppl')) for p in run.history if 'val_ppl' in p]}")
    print(f"finetune_test_ppl_ratio: {run.test_ppl / run.base_test_ppl:.3f}", flush=True)


def main() -> None:
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmp_name:
        tmp = Path(tmp_name)
        prepare(tmp, threads)
        import django

        django.setup()
        import torch

        torch.set_num_threads(threads)
        texts = demo_archive_texts()
        log(f"demo archive: {len(texts)} paragraphs; torch threads {threads}")
        project, admin = setup_project(texts)
        if ONLY in ("", "speed"):
            measure_speed(project, admin, texts, tmp, threads)
        if ONLY in ("", "ppl"):
            measure_ppl(project, admin, tmp)


if __name__ == "__main__":
    main()
