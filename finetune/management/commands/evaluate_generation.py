"""The command-line twin of the Evaluation page.

    manage.py evaluate_generation --project demo --model tiny-gpt2 --grounding both -n 5 -k 2
    manage.py evaluate_generation --project demo --model base --model tuned --documents 4,9,12

Validates exactly as the page does (errors name the field), prints the held-out split and the
estimate, then runs in this process with a progress bar (``--enqueue``: on the worker instead),
and prints the mean scores per variant; ``--output`` writes the JSON export.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from contentstudio.durations import duration_text
from contentstudio.models import Membership, Project, Role
from finetune import evaluation
from generation.models import LanguageModel


class Command(BaseCommand):
    help = "Evaluate generation against held-out archive documents (ROUGE-L, similarity, ...)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument(
            "--model", action="append", required=True, help="Model name or id (repeat to compare)."
        )
        parser.add_argument(
            "--grounding", choices=["off", "on", "both"], default="off", help="Archive background."
        )
        parser.add_argument("--passages", type=int, default=3, help="Passages when grounded.")
        parser.add_argument("-n", "--n-documents", type=int, default=5)
        parser.add_argument("-k", type=int, default=2, help="Candidates per document.")
        parser.add_argument("--documents", default="", help="Comma-separated archive ids.")
        parser.add_argument("--max-new-tokens", type=int, default=64)
        parser.add_argument("--temperature", type=float, default=0.8)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--enqueue", action="store_true", help="Run on the worker.")
        parser.add_argument("--output", help="Write the results as JSON to this file.")

    def _model(self, ref: str) -> LanguageModel:
        model = LanguageModel.objects.filter(name=ref).first()
        if model is None and ref.isdigit():
            model = LanguageModel.objects.filter(pk=int(ref)).first()
        if model is None:
            raise CommandError(f"model: no model {ref!r}.")
        return model

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"project: no project {options['project']!r}.")
        admin = Membership.objects.filter(project=project, role=Role.ADMIN).order_by("pk").first()
        modes = {"off": [0], "on": [options["passages"]], "both": [0, options["passages"]]}
        variants = [
            {"model_id": self._model(ref).pk, "grounding": g}
            for ref in options["model"]
            for g in modes[options["grounding"]]
        ]
        try:
            ids = [int(i) for i in options["documents"].replace(",", " ").split()]
        except ValueError as exc:
            raise CommandError("documents: ids are whole numbers, comma-separated.") from exc
        try:
            run = evaluation.evaluation_create(
                project=project,
                user=admin.user if admin else None,
                variants=variants,
                n_documents=options["n_documents"],
                k=options["k"],
                seed=options["seed"],
                max_new_tokens=options["max_new_tokens"],
                temperature=options["temperature"],
                document_ids=ids,
                enqueue=options["enqueue"],
            )
        except ValidationError as exc:
            lines = [f"{f}: {m}" for f, ms in exc.message_dict.items() for m in ms]
            raise CommandError("\n".join(lines)) from exc
        est = run.estimate
        self.stdout.write(f"Evaluation {run.pk}: documents {run.document_ids}")
        scored = sum((est.get("scored_tokens") or {}).values())
        self.stdout.write(
            f"Estimate: {duration_text(est.get('seconds'))} for at most {est['tokens']} tokens "
            f"generated ({est['source']}) and {scored} scored ({est.get('scoring_source')})"
        )
        if options["enqueue"]:
            self.stdout.write("Queued on the worker.")
            return
        bar = tqdm(total=run.total, unit="doc", file=self.stderr._out)

        def step(r: Any) -> None:
            bar.update(r.done - bar.n)

        run = evaluation.evaluation_execute(run_id=run.pk, on_item=step)
        bar.close()
        self.stdout.write(f"Status: {run.status}{': ' + run.error if run.error else ''}")
        for s in evaluation.summary(run):
            sim = "not measured" if s["embedding_similarity"] is None else s["embedding_similarity"]
            self.stdout.write(
                f"{s['variant']}: rouge_l {s['rouge_l']} · similarity {sim} · coverage "
                f"{s['brief_coverage']} · unsupported {s['unsupported_specifics']} · "
                + (
                    f"perplexity of the real text {s['perplexity']} "
                    f"({s['reference_tokens']} tokens)"
                    if s["perplexity"] is not None
                    else "perplexity not measured"
                )
            )
        if options["output"]:
            with open(options["output"], "w", encoding="utf-8") as fh:
                json.dump({"id": run.pk, "summary": evaluation.summary(run), "rows": run.rows}, fh)
        if run.status == "failed":
            raise CommandError(run.error)
