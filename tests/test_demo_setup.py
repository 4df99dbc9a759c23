"""The demo archive that `make run` imports: a recent slice first, once."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest

from review import services, setup
from review.models import ArchiveDocument, ImportRun


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    # Keep the embedding out of the broker: record that it was asked for.
    calls: list[int] = []
    monkeypatch.setattr(services, "embed_enqueue", lambda *, project_id: calls.append(project_id))
    return calls


def test_demo_archive_imports_the_recent_addresses_once(cast: dict, enqueued: list[int]) -> None:
    # given
    project = cast["newsroom"]
    expected = [
        r
        for r in setup.sotu_rows()
        if int(r.fields["published_date"][:4]) >= setup.DEMO_ARCHIVE_SINCE
    ]
    # when
    setup.demo_setup(project=project, stdout=StringIO())
    # then: only the slice, its embedding asked for
    docs = ArchiveDocument.objects.filter(project=project)
    assert docs.count() == len(expected) > 500
    years = {d.year for d in docs.values_list("published_date", flat=True)}
    assert min(years) == setup.DEMO_ARCHIVE_SINCE
    assert enqueued == [project.pk]
    # when: `make run` again
    setup.demo_setup(project=project, stdout=StringIO())
    # then: nothing new
    assert ImportRun.objects.filter(project=project).count() == 1
    assert docs.count() == len(expected)
    assert enqueued == [project.pk]


def test_an_older_demo_slice_counts_as_imported_but_not_as_the_full_archive(
    cast: dict, enqueued: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a project set up when the demo slice started in another year
    project = cast["newsroom"]
    rows = setup.sotu_rows()
    services.import_rows_direct(
        project=project, rows=rows[-30:], source_name=f"{setup.SOTU_SOURCE}, since 2010"
    )
    # when / then: the slice is not imported again
    setup.demo_setup(project=project, stdout=StringIO())
    assert ImportRun.objects.filter(project=project).count() == 1
    assert enqueued == []
    # when / then: the full archive still comes when asked for (a few rows stand in for it)
    monkeypatch.setattr(setup, "sotu_rows", lambda: rows[:40])
    out: Any = StringIO()
    setup.demo_setup(project=project, stdout=out, full_archive=True)
    assert ImportRun.objects.filter(project=project, source_name=setup.SOTU_SOURCE).exists()
    assert ArchiveDocument.objects.filter(project=project).count() == 70
    assert enqueued == [project.pk]
    # and only once
    setup.demo_setup(project=project, stdout=StringIO(), full_archive=True)
    assert ImportRun.objects.filter(project=project).count() == 2
