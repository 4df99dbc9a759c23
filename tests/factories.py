"""Rows for review tests, made directly (the generation path that normally makes them is tested
in test_jobs.py), and a small archive with known answers for the checks.

The archive is eight news stories of 50-100 words on unrelated topics; the drafts in the review
tests copy, edit, reorder or paraphrase them, so each check has an answer known in advance.
"""

from __future__ import annotations

from typing import Any

from django.test import Client

from contentstudio.html import text_to_html
from contentstudio.models import Project
from generation.models import (
    Candidate,
    CandidateStatus,
    Draft,
    GenerationJob,
    JobStatus,
    LanguageModel,
)
from review.lifecycle import DraftStatus

# --- Drafts -------------------------------------------------------------------------------------


def fixture_model() -> LanguageModel:
    """A model row for provenance only: review tests never load it."""
    model, _ = LanguageModel.objects.get_or_create(
        name="review-fixture",
        defaults={"source_kind": "local", "source": "/nonexistent/review-fixture"},
    )
    return model


def make_job(project: Project, user: Any) -> GenerationJob:
    return GenerationJob.objects.create(
        project=project,
        created_by=user,
        model=fixture_model(),
        seed_text="Write a story.",
        prompt="Write a story.",
        n_candidates=1,
        base_seed=1,
        status=JobStatus.SUCCEEDED,
    )


def make_draft(
    project: Project,
    user: Any,
    text: str,
    *,
    job: GenerationJob | None = None,
    title: str = "Test draft",
    status: str = DraftStatus.GENERATED,
) -> Draft:
    """A draft whose body is ``text`` as the app stores it (sanitised paragraphs).

    Pass the ``job`` of an earlier draft to make a sibling (another candidate of that job).
    Side effects: a GenerationJob (unless given), a Candidate and a Draft row; no signal is
    sent, so no check starts (call ``review.services.draft_checks_start`` or send
    ``generation.signals.draft_created`` to start them).
    """
    if job is None:
        job = make_job(project, user)
        index = 0
    else:
        index = job.candidates.count()
        GenerationJob.objects.filter(pk=job.pk).update(n_candidates=index + 1)
    model = job.model
    candidate = Candidate.objects.create(
        job=job,
        index=index,
        seed=job.base_seed + index,
        status=CandidateStatus.FINISHED,
        text=text,
        finish_reason="eos",
    )
    return Draft.objects.create(
        project=project,
        job=job,
        candidate=candidate,
        title=title,
        model_output=text,
        body=text_to_html(text),
        status=status,
        model=model,
        model_name=model.name,
        model_source=model.source,
        prompt=job.prompt,
        settings={},
        seed=candidate.seed,
    )


# --- People and checks ---------------------------------------------------------------------------


def logged_in(user: Any) -> Client:
    """A test client with ``user`` logged in."""
    client = Client()
    client.force_login(user)
    return client


def run_held_checks(held: list) -> None:
    """Run the check tasks that the ``hold_queue`` fixture kept out of the broker, oldest first,
    as the worker would; whatever else it held (generation jobs, embedding batches) is dropped."""
    from review import tasks

    while held:
        item = held.pop(0)
        if isinstance(item, tuple) and len(item) == 2:
            tasks.draft_check(*item)


def checked(draft: Draft, held: list, *, announce: bool = False) -> Draft:
    """``draft`` re-read after its checks ran (:func:`run_held_checks`). They are started by
    ``review.services.draft_checks_start``, or with ``announce`` as the generation app starts
    them when it saves a draft: by sending ``generation.signals.draft_created``."""
    if announce:
        from generation.signals import draft_created

        draft_created.send(sender=Draft, draft=draft)
    else:
        from review import services

        services.draft_checks_start(draft=draft)
    run_held_checks(held)
    draft.refresh_from_db()
    return draft


# --- Indexes ------------------------------------------------------------------------------------


def reset_indexes() -> None:
    """Forget the per-project plagiarism indexes of this process, and the shared lexical store
    in Redis when it is configured.

    Project ids repeat between tests (a rolled-back SQLite transaction reuses them, and a
    recreated PostgreSQL test database starts again at 1), while the indexes are keyed by
    project id and the Redis store outlives the test database.
    """
    from django.conf import settings

    from review import source_indexes

    source_indexes.forget_all()
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        keys = list(client.scan_iter(match="contentstudio:plagiarism:*", count=1000))
        if keys:
            client.delete(*keys)


# --- The archive --------------------------------------------------------------------------------

HARBOUR, FLOOD, LIBRARY = 0, 1, 2

ARCHIVE: list[dict[str, str]] = [
    {
        "title": "Harbour bridge to close for two years",
        "citation": "Port Herald, 3 March 2021",
        "license": "© Port Herald, all rights reserved",
        "author": "Mina Ortega",
        "source_url": "https://example.org/port-herald/bridge",
        "text": (
            "The city council voted on Tuesday to close the old harbour bridge to cars for two "
            "years while engineers replace its rusting steel frame. Ferry services will run every "
            "twenty minutes during the closure, and cyclists and pedestrians may still cross on a "
            "temporary walkway. Local shop owners warned that the closure could cut their trade by "
            "a third, and the chamber of commerce asked the council for a fund to help them. The "
            "council said work would begin in the autumn and that the final cost would be "
            "published once the contract is signed."
        ),
    },
    {
        "title": "Floods leave valley towns under water",
        "citation": "Valley Courier, 12 January 2022",
        "license": "CC BY 4.0",
        "author": "Sam Reyes",
        "source_url": "",
        "text": (
            "Heavy rain flooded hundreds of homes in the river valley overnight. Emergency crews "
            "rescued forty people from rooftops using boats and a helicopter. The town of "
            "Millbrook was cut off after the main road collapsed into the swollen river. "
            "Forecasters expect the water to fall slowly over the next three days, but more rain "
            "is due at the end of the week. Schools across the district will stay closed until "
            "Monday."
        ),
    },
    {
        "title": "Library reopens after long renovation",
        "citation": "Northside Gazette, 8 September 2023",
        "license": "© Northside Gazette",
        "author": "Priya Nand",
        "source_url": "",
        "text": (
            "The central library reopened its doors on Saturday after a renovation that lasted "
            "almost three years. Visitors queued around the block to see the new reading rooms, "
            "which now have large windows facing the park. The building also houses a small "
            "theatre, a recording studio for local musicians and a cafe run by a youth charity. "
            "The head librarian said the number of books on the shelves had doubled and that "
            "opening hours would be extended into the evening on weekdays."
        ),
    },
    {
        "title": "Rail workers announce weekend strike",
        "citation": "Transport Weekly, 14 May 2022",
        "license": "© Transport Weekly",
        "author": "Dan Okafor",
        "source_url": "",
        "text": (
            "Train drivers on the coastal line will walk out on Saturday and Sunday in a dispute "
            "over rosters and overtime pay. The operator said it would run a reduced timetable "
            "with replacement buses between the smaller stations. Union leaders said they had "
            "offered to meet managers at any time before the weekend but had received no reply. "
            "Passengers were advised to check journeys online before setting out."
        ),
    },
    {
        "title": "Orchard growers report record apple harvest",
        "citation": "Farm and Field, 2 October 2021",
        "license": "© Farm and Field",
        "author": "Lena Berg",
        "source_url": "",
        "text": (
            "Apple growers in the northern orchards picked a record crop this autumn thanks to a "
            "mild spring and a wet summer. Cooperatives said prices had dropped as a result and "
            "that some fruit would go to juice factories instead of supermarkets. Several farms "
            "opened their gates to the public for pick your own weekends, which drew families from "
            "the nearby cities."
        ),
    },
    {
        "title": "Hospital opens new children's ward",
        "citation": "Health Bulletin, 20 June 2024",
        "license": "© Health Bulletin",
        "author": "Ravi Menon",
        "source_url": "",
        "text": (
            "The regional hospital opened a children's ward with thirty beds, a playroom and "
            "rooms where parents can stay overnight. Doctors said the ward would shorten waiting "
            "times for operations that had been delayed for months. The project was funded partly "
            "by donations collected over five years by a local charity run by former patients."
        ),
    },
    {
        "title": "Wildfire forces evacuation of hill villages",
        "citation": "Mountain Times, 30 July 2023",
        "license": "© Mountain Times",
        "author": "Jon Alvarez",
        "source_url": "",
        "text": (
            "A wildfire fanned by strong winds forced the evacuation of four villages in the hills "
            "above the lake on Sunday. Firefighters from three provinces fought the blaze through "
            "the night with the help of water bombing planes. No injuries were reported, but "
            "several barns and a timber yard were destroyed. Residents were told they could return "
            "once the roads had been inspected."
        ),
    },
    {
        "title": "Startup raises funds for battery recycling plant",
        "citation": "Tech Ledger, 11 April 2024",
        "license": "© Tech Ledger",
        "author": "Hana Kim",
        "source_url": "",
        "text": (
            "A young company that recovers lithium and cobalt from old car batteries has raised "
            "money from investors to build its first large plant on the edge of the industrial "
            "estate. The founders said the plant would employ about two hundred people and process "
            "enough batteries each year to fill several warehouses. Environmental groups welcomed "
            "the plan but asked for strict controls on the chemicals used."
        ),
    },
]

# A paragraph on a topic the archive does not cover, without personal data or blocked terms.
UNRELATED = (
    "The chess club in the old town hall celebrated its centenary with a tournament for "
    "players of every age. The youngest entrant won most of her games against much older "
    "opponents. Organisers thanked the volunteers who set up the boards and served tea all "
    "afternoon."
)

# Sentence-by-sentence paraphrases of the flood story (MiniLM cosine 0.90-0.92 with their
# source sentences) that share no five-word run with it.
FLOOD_PARAPHRASE = (
    "During the night, heavy rainfall flooded hundreds of houses across the river valley. "
    "Using a helicopter and boats, rescue workers saved forty people stranded on rooftops. "
    "The main road into Millbrook fell into the swollen river, cutting the town off."
)


def archive_rows(documents: list[dict[str, str]] | None = None) -> list[Any]:
    from review import archive

    return [
        archive.RawRow(f"row {number}", dict(document))
        for number, document in enumerate(documents or ARCHIVE, start=1)
    ]


def make_archive(
    project: Project, documents: list[dict[str, str]] | None = None, *, embed: bool = True
) -> Any:
    """Import ``documents`` (the ARCHIVE by default) and, with ``embed``, compute their sentence
    vectors at once instead of in the worker. Returns the ImportRun."""
    from review import services

    run = services.import_rows_direct(
        project=project, rows=archive_rows(documents), source_name="test archive"
    )
    if embed:
        while services.passages_embed(project_id=project.pk):
            pass
    return run


async def refusal_code(comm: Any) -> int:
    """The close code a websocket consumer refused ``comm`` with.

    Consumers accept and then close at once with 4401 / 4404 (a close before the handshake
    reaches browsers as a bare HTTP 403 that pages cannot tell from a network failure)."""
    connected, _ = await comm.connect()
    assert connected, "the handshake completes, so the page receives the close code"
    message = await comm.receive_output(timeout=2)
    assert message["type"] == "websocket.close", message
    return message["code"]


def make_house_model(
    cast: dict,
    base: Any,
    *,
    name: str = "tiny-house",
    project: str = "newsroom",
    by: str = "alice",
    **fields: Any,
) -> Any:
    """A project's house model (the newsroom's by default): a succeeded fine-tune run whose
    result is a model of its own (``base``'s weights, on the transformers backend the studio
    uses for tuned models)."""
    from finetune.models import FineTuneRun
    from finetune.training.config import TrainSettings
    from generation.models import LanguageModel

    house = LanguageModel.objects.create(
        name=name,
        source_kind="local",
        source=base.source,
        backend="transformers",
        project=cast[project],
        **fields,
    )
    FineTuneRun.objects.create(
        project=cast[project],
        created_by=cast[by],
        base_model=base,
        result_model=house,
        data={"drafts": True},
        settings=TrainSettings(seed=1).as_dict(),
        status="succeeded",
    )
    return house
