"""``manage.py toxicity_eval FILE.jsonl [--project SLUG]``: how the toxicity model in use does
on an admin's own labelled texts, at the project's current thresholds.

Each line is ``{"text": ..., "label": ...}`` with a category (``threat``, ``insult``...),
``toxic`` or ``none``. Texts are scored exactly as drafts are (whole text and each sentence, the
maximum per category), so the figures are the ones the review pipeline would produce.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from contentstudio.models import Project
from review import holds, services
from review.checks import toxicity
from review.checks.toxicity import head as toxicity_head
from review.services import adapters
from review.services.embedding import encoder_config
from review.tools import toxicity_eval


class Command(BaseCommand):
    help = (
        "Print precision, recall and false-hold rate per category of the toxicity model in use "
        "on a labelled JSONL file, at a project's thresholds (or the defaults)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", type=Path, help='JSON Lines: {"text": ..., "label": ...}')
        parser.add_argument("--project", help="project slug whose thresholds to use")

    def handle(self, *args: Any, **options: Any) -> None:
        thresholds = dict(holds.DEFAULT_TOXICITY_THRESHOLDS)
        if options["project"]:
            project = Project.objects.filter(slug=options["project"]).first()
            if project is None:
                raise CommandError(f"--project: no project with slug {options['project']!r}")
            thresholds.update(services.policy_get(project=project).toxicity_thresholds or {})
        if not options["file"].is_file():
            raise CommandError(f"file: {options['file']} does not exist")
        try:
            rows = toxicity_eval.read_labelled(options["file"], known=toxicity_head.CATEGORIES)
        except ValueError as exc:
            raise CommandError(f"file: {exc}") from exc
        config = adapters.toxicity_config()
        if config.model_name or config.checkpoint:
            try:
                detector: Any = toxicity.get_detector(config)
            except toxicity.ToxicityModelUnavailable as exc:
                raise CommandError(exc.reason) from exc
        else:
            try:
                detector = toxicity_head.get_head_detector(encoder_config())
            except toxicity_head.HeadUnavailable as exc:
                raise CommandError(exc.reason) from exc
        scores = [
            toxicity.check_toxicity(row["text"], detector)["overall"]
            for row in tqdm(rows, unit="text", desc="scoring", disable=None)
        ]
        figures = toxicity_eval.evaluate(scores, rows, thresholds)
        out = self.stdout.write
        label = " (stand-in)" if getattr(detector, "stand_in", False) else ""
        out(f"model: {detector.description}{label}")
        out(f"texts: {figures['texts']} ({figures['toxic']} toxic, {figures['harmless']} harmless)")
        out(
            f"overall: precision {_fmt(figures['precision'])}  recall {_fmt(figures['recall'])}"
            f"  false-hold rate {_fmt(figures['false_hold_rate'])}"
        )
        out(
            f"{'category':<18}{'threshold':>10}{'labelled':>9}{'precision':>11}{'recall':>8}"
            f"{'held':>7}{'false-hold':>12}"
        )
        for category, f in figures["categories"].items():
            out(
                f"{category:<18}{thresholds.get(category, 0.5):>10.2f}{f['labelled']:>9}"
                f"{_fmt(f['precision']):>11}{_fmt(f['category_recall']):>8}"
                f"{_fmt(f['recall']):>7}{_fmt(f['false_hold_rate']):>12}"
            )
        out("recall: over the category's own threshold; held: held for any category.")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
