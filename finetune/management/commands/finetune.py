"""The command-line twin of the fine-tuning page.

    manage.py finetune run --project demo --base SmolLM2-135M-Instruct --archive --demo
    manage.py finetune run --project demo --base tiny --pairs --set learning_rate=1e-3 --set lora=1
    manage.py finetune export-pairs --project demo --output pairs.jsonl

``run`` validates exactly as the page does (errors name the field), prints the estimate, then
trains in this process with a progress bar and registers the tuned model.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from contentstudio.durations import duration_text
from contentstudio.models import Membership, Project, Role
from finetune import data as data_mod
from finetune import rules, runner, selectors, services
from finetune.training import loop
from finetune.training.config import DEMO_SETTINGS
from generation.models import LanguageModel


class Command(BaseCommand):
    help = "Fine-tune a model on a project's texts, or export the editors' pairs."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        run = sub.add_parser("run", help="Start a fine-tuning run and wait for it.")
        run.add_argument("--project", required=True, help="Project slug.")
        run.add_argument("--base", required=True, help="Base model name (or id).")
        run.add_argument("--user", help="A project admin to run as (default: the first admin).")
        run.add_argument("--archive", action="store_true", help="Train on the project archive.")
        run.add_argument("--drafts", action="store_true", help="...on approved drafts' final text.")
        run.add_argument("--pairs", action="store_true", help="...on the editors' pairs.")
        run.add_argument("--template", type=int, help="Only drafts/pairs of this template id.")
        run.add_argument("--from", dest="date_from", default="", help="From date (YYYY-MM-DD).")
        run.add_argument("--to", dest="date_to", default="", help="To date (YYYY-MM-DD).")
        run.add_argument("--device", default="auto", help="auto, cpu or cuda.")
        run.add_argument(
            "--demo", action="store_true", help="Start from the demo settings (README)."
        )
        run.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help=f"A setting ({', '.join(rules.SETTING_RULES)}); repeat for several.",
        )
        export = sub.add_parser("export-pairs", help="Write the editors' pairs as JSON Lines.")
        export.add_argument("--project", required=True)
        export.add_argument("--output", default="-", help="File (default: standard output).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            project = Project.objects.get(slug=options["project"])
        except Project.DoesNotExist:
            raise CommandError(f"No project with slug {options['project']!r}.") from None
        if options["action"] == "export-pairs":
            self._export(project, options["output"])
        else:
            self._run(project, options)

    def _export(self, project: Project, output: str) -> None:
        records = data_mod.pair_records(selectors.project_pairs(project=project))
        stream = sys.stdout if output == "-" else open(output, "w", encoding="utf-8")  # noqa: SIM115
        count = 0
        try:
            for record in records:
                stream.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
        finally:
            if stream is not sys.stdout:
                stream.close()
        self.stderr.write(f"{count} pairs written to {output}.")
        missed = selectors.missed_pairs(project=project)
        if missed:
            self.stderr.write(
                f"{missed['count']} approval(s) could not be kept as training pairs; the last "
                f"reason: {missed['last_reason']}"
            )

    def _user(self, project: Project, username: str | None) -> Any:
        users = get_user_model().objects
        if username:
            user = users.filter(username=username).first()
            if user is None:
                raise CommandError(f"No user {username!r}.")
            return user
        membership = (
            Membership.objects.filter(project=project, role=Role.ADMIN).order_by("pk").first()
        )
        if membership is None:
            raise CommandError(f"Project {project.slug} has no admin: pass --user.")
        return membership.user

    def _run(self, project: Project, options: dict[str, Any]) -> None:
        from django.conf import settings as django_settings

        from contentstudio.celery import configure_torch_threads

        configure_torch_threads(django_settings.TORCH_THREADS)
        base = options["base"]
        model = LanguageModel.objects.filter(name=base).first() or (
            LanguageModel.objects.filter(pk=int(base)).first() if base.isdigit() else None
        )
        settings: dict[str, Any] = DEMO_SETTINGS.as_dict() if options["demo"] else {}
        for item in options["set"]:
            name, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--set {item!r}: write NAME=VALUE.")
            settings[name.strip()] = value.strip()
        data = {
            "archive": options["archive"],
            "drafts": options["drafts"],
            "pairs": options["pairs"],
            "template_id": options["template"],
            "date_from": options["date_from"],
            "date_to": options["date_to"],
        }
        user = self._user(project, options["user"])
        self.stdout.write("Checking the settings and estimating the run...")
        try:
            run = services.run_create(
                project=project,
                user=user,
                base_model=model,
                data=data,
                settings=settings,
                device=options["device"],
                enqueue=False,
            )
        except ValidationError as exc:
            lines = [f"  {field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items()]
            raise CommandError("The run cannot start:\n" + "\n".join(lines)) from None
        e = run.estimate
        self.stdout.write(
            f"Run #{run.pk}: {e['train_texts']} training texts ({e['train_tokens']} tokens over "
            f"{e['steps']} steps), {e['validation_texts']} validation, {e['test_texts']} test; "
            f"estimated {duration_text(e['seconds'])} (speed {e['basis']})."
        )
        bar = tqdm(total=run.total_steps, unit="step", desc=f"run {run.pk}")
        phase = {"last": ""}

        def on_progress(p: loop.Progress) -> None:
            if p["total_steps"] and bar.total != p["total_steps"]:
                bar.total = p["total_steps"]
            if p["phase"] != phase["last"] and p["phase"] != "training":
                bar.set_description(f"run {run.pk}: {p['phase']}")
            phase["last"] = p["phase"]
            if p["step"] > bar.n:
                bar.update(p["step"] - bar.n)
            point = p["point"] or {}
            postfix = {}
            if "loss" in point:
                postfix["loss"] = f"{point['loss']:.3f}"
            if "val_ppl" in point:
                postfix["val_ppl"] = f"{point['val_ppl']:.2f}"
            if p["tokens_per_second"]:
                postfix["tok/s"] = f"{p['tokens_per_second']:.0f}"
            if postfix:
                bar.set_postfix(postfix)

        try:
            run = runner.run_execute(
                run_id=run.pk, worker_name="manage.py finetune", on_progress=on_progress
            )
        except KeyboardInterrupt:
            bar.close()
            runner.run_fail(run_id=run.pk, error="Interrupted at the command line.")
            raise CommandError("Interrupted; the run is marked failed.") from None
        bar.close()
        assert run is not None
        run.refresh_from_db()
        if run.status == "failed":
            field = f" (field: {run.error_field})" if run.error_field else ""
            raise CommandError(f"Run #{run.pk} failed: {run.error}{field}")
        took = (run.finished_at - run.started_at).total_seconds() if run.started_at else None
        speed = (
            f"steady-state {run.steady_tokens_per_second:.0f} training tokens/s"
            if run.steady_tokens_per_second
            else f"{run.tokens_per_second:.0f} training tokens/s (too short to pass its warm-up)"
        )
        self.stdout.write(
            f"Run #{run.pk} {run.status_text.lower()} after {run.step} steps"
            f"{' (stopped early)' if run.stopped_early else ''} in "
            f"{duration_text(took, about=False)}: test perplexity "
            f"{run.base_test_ppl:.3f} (base) -> {run.test_ppl:.3f} (tuned), ratio "
            f"{run.ppl_ratio:.3f}; best validation perplexity {run.best_val_ppl:.3f} at step "
            f"{run.best_step}; {speed}."
        )
        if run.result_model is not None:
            self.stdout.write(f"Registered model: {run.result_model.name} ({run.output_dir})")
        else:
            self.stdout.write(selectors.registration_note(run))
