"""Import archive documents from files: ``manage.py archive_import demo ./stories.csv``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from contentstudio.models import Project
from review import archive, services
from review.models import ImportFormat


def guess_format(path: Path) -> str:
    if path.is_dir() or path.suffix.lower() in {".txt", ".md", ".text", ".zip"}:
        return ImportFormat.TEXT
    if path.suffix.lower() == ".csv":
        return ImportFormat.CSV
    if path.suffix.lower() in {".jsonl", ".json", ".ndjson"}:
        return ImportFormat.JSONL
    raise CommandError(f"Cannot tell the format of {path}; pass --format text|csv|jsonl.")


class Command(BaseCommand):
    help = (
        "Import archive documents into a project: plain text files or a folder of them (one "
        "document per file), CSV or JSON Lines (one per row, with --map field=column)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("project", help="Project slug")
        parser.add_argument("paths", nargs="+", type=Path)
        parser.add_argument("--format", choices=ImportFormat.values)
        parser.add_argument(
            "--map", default="", help="Column mapping, e.g. text=body,title=headline,author=byline"
        )
        for name in ("license", "author", "citation"):
            parser.add_argument(f"--{name}", default="", help=f"{name} for every document")
        parser.add_argument(
            "--embed",
            action="store_true",
            help="Also compute the paraphrase index now (otherwise the worker does it).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"No project with slug {options['project']!r}.")
        try:
            mapping = archive.parse_mapping(options["map"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        defaults = {k: options[k] for k in ("license", "author", "citation") if options[k]}
        failed = False
        for path in options["paths"]:
            if not path.exists():
                raise CommandError(f"{path} does not exist.")
            fmt = options["format"] or guess_format(path)
            total = archive.count_rows(path, fmt)
            with tqdm(total=total, desc=path.name, unit="doc", file=self.stderr._out) as bar:

                def on_progress(progress: archive.Progress, bar: tqdm = bar) -> None:
                    bar.update(progress.processed - bar.n)

                run = services.import_path(
                    project=project,
                    path=path,
                    fmt=fmt,
                    mapping=mapping,
                    defaults=defaults,
                    on_progress=on_progress,
                )
            self.stdout.write(
                f"{path}: {run.imported} imported, {run.duplicates} already in the archive, "
                f"{len(run.errors)} problem(s)."
            )
            for error in run.errors:
                self.stdout.write(self.style.WARNING(f"  {error['line']}: {error['message']}"))
                failed = failed or "left out" not in error["message"]
        if options["embed"]:
            embed_all(project, self.stderr._out)
        if failed:
            self.stdout.write(self.style.WARNING("Some rows were not imported (see above)."))


def embed_all(project: Project, out: Any) -> None:
    from review.models import SourcePassage

    left = SourcePassage.objects.filter(project=project, embedded_at__isnull=True).count()
    with tqdm(total=left, desc="paraphrase index", unit="passage", file=out) as bar:
        while left:
            now = services.passages_embed(project_id=project.pk, limit=256)
            bar.update(left - now)
            left = now
