"""Benchmark of the approval queue page: does it stay fast as a project fills up, and is it free
of N+1 queries?

Run from the repo root: ``.venv/bin/python bench/bench_queue.py``. Prints one ``name: value``
line per figure on stdout; details (absolute times, rows shown, per-query times, query plans and
what other ways of fetching the page's rows would cost) on stderr.

* ``queue_page_scaling_10k_vs_100``: p50 time of the whole ``/queue/`` page (default filters:
  drafts needing action, oldest first, 50 a page) for an editor whose project holds 10,000
  drafts / for one whose project holds 100. Goal <= 1.5. Both pages show 50 rows, so the
  difference is what the database has to look through.
* ``queue_queries_growth``: SQL queries of ``/queue/?page_size=100`` minus those of
  ``/queue/?page_size=10``, in the 10,000-draft project. Goal 0 (no N+1). When it is not 0 the
  queries only the larger page runs are printed on stderr.

Each page goes through Django's test ``Client``: every middleware (sessions, CSRF, auth,
messages), the real view and template rendering, a session from ``force_login``.

The two datasets live in two databases, so the small one is not slowed by the big one's rows:
"small" holds a 100-draft project; "default" holds the 10,000-draft project and, beside it, a
second 100-draft project (timed too, on stderr: what a small desk pays for sharing a database
with a big one). Each database also holds a 300-draft project no bench editor belongs to. The
rows are bulk-created directly: a generation job per four candidates, a draft per candidate in
a fixed mix of states (60% awaiting review, 15% held, 10% changes requested, 15% approved),
check summaries with varied scores (a tenth still pending), assignments with due dates on a
quarter, two edit locks (one live, one lapsed), two templates and two models; news-length texts
(about 2 KB, stored as the product does: model output, HTML body and the candidate's text) and
creation times spread over 30 days. Requests to the three projects take turns, so a busy moment
of the machine hits all sizes alike.

Also on stderr: ``sort=toxicity&tox_min=0.05`` (the "most toxic" order with a score filter) and
``page_size=100`` at each size; for the default and the toxicity pages, the median time of each
query, the time outside the database (Python, templates) and the plan of every query that is
slower than for the 100-draft project; and the default page's rows fetched three ways outside a
request (as the product does, with the long unshown columns deferred, and as page ids first then
those rows), with the page ratio each would give.

Database: two fresh temporary SQLite files by default, as the studio runs embedded. With
``DATABASE_URL`` set (PostgreSQL) the bench creates two temporary databases next to the given
one and drops them at the end; when it may not create databases it puts both datasets in the
given database and deletes its rows afterwards. On PostgreSQL it runs ``VACUUM ANALYZE`` after
loading, as autovacuum would before long; on SQLite nothing, as the product does nothing.

Options (environment): ``BENCH_QUICK=1`` for a smoke run (1,000 drafts instead of 10,000, fewer
repetitions; the figure keeps its name); ``BENCH_REPS`` sets the timed repetitions (default 20).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUICK = os.environ.get("BENCH_QUICK") == "1"
SMALL = 100
BIG = 1_000 if QUICK else 10_000
OTHER = 300  # drafts in a project the bench user is not a member of
CANDIDATES_PER_JOB = 4
WARMUP = 2 if QUICK else 3
REPS = int(os.environ.get("BENCH_REPS", "") or (6 if QUICK else 20))
PLAN_REPS = 3 if QUICK else 7  # requests per page for the per-query timings
SEED = 20240611

# The pages timed at both sizes. The first is the headline figure.
VIEWS: dict[str, str] = {
    "default": "",
    "toxicity": "sort=toxicity&tox_min=0.05",
    "page100": "page_size=100",
}
# Draft states by position (a fixed cycle, so 100 drafts have the same mix as 10,000):
# 12 awaiting review, 3 held, 2 changes requested, 3 approved in every 20.
STATE_CYCLE = ["awaiting_review"] * 12 + ["held"] * 3 + ["changes_requested"] * 2 + ["approved"] * 3

SENTENCES = [
    "The city council voted on Tuesday to extend the downtown bus lanes through next spring.",
    "Officials said the measure would cut average commute times by about eight minutes.",
    "Residents of the eastern districts packed the public hearing, many of them opposed.",
    "A spokesperson for the transit authority declined to comment on the projected costs.",
    "The storm brought down power lines across three counties, leaving thousands without heat.",
    "Crews worked through the night to restore service to hospitals and emergency shelters.",
    "Forecasters expect temperatures to fall below freezing again by the end of the week.",
    "The company reported quarterly revenue of 412 million dollars, above analysts' estimates.",
    "Shares rose nearly six percent in early trading after the announcement.",
    "The chief executive told investors that demand had recovered faster than expected.",
    "Local farmers say the drought has already cost them a third of this year's harvest.",
    "The state agriculture department has opened applications for emergency relief funds.",
    "Police said the suspect was detained near the harbour shortly after midnight.",
    "No injuries were reported, and the investigation is continuing, according to a statement.",
    "The museum's new wing, designed by a local architecture firm, opens to the public in May.",
    "Admission will be free on the first Sunday of every month, the director announced.",
    "Teachers at the district's twelve high schools began a one-day strike over class sizes.",
    "Negotiations between the union and the school board are scheduled to resume on Monday.",
    "The home team extended its winning streak to nine games with a late goal in overtime.",
    "The coach praised the defence, which has allowed only four goals in the last six matches.",
    "Health officials urged residents to get vaccinated before the flu season peaks.",
    "Clinics in the northern suburbs will offer walk-in appointments on weekends.",
    "The bridge will close to traffic for repairs from June until at least September.",
    "Detours through the industrial park are expected to add twenty minutes at rush hour.",
]
HEADLINES = [
    "Council extends bus lanes downtown",
    "Storm leaves thousands without power",
    "Quarterly results beat estimates",
    "Drought cuts harvest by a third",
    "Suspect detained near the harbour",
    "Museum opens new wing in May",
    "Teachers strike over class sizes",
    "Home team extends winning streak",
    "Officials urge flu vaccinations",
    "Bridge to close for summer repairs",
]
TOX_CATEGORIES = ["toxicity", "insult", "obscene", "threat", "identity_attack"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# --- Environment, before Django is set up ----------------------------------------------------


@dataclass
class Databases:
    """The two databases (one per dataset) and how the bench cleans up after itself."""

    kind: str  # "sqlite" or "postgresql"
    small_name: str  # NAME of the "small" alias; the 10k dataset lives in "default"
    created: list[str] = field(default_factory=list)  # PostgreSQL databases to drop at the end
    admin_url: str = ""  # the URL the bench was given (to drop ``created``)
    shared: bool = False  # both aliases are the given database: delete the rows afterwards


def prepare_environment(tmp: Path) -> Databases:
    """Two fresh SQLite files, or two temporary PostgreSQL databases created next to the one
    DATABASE_URL names (falling back to that database itself, for both datasets, when it may
    not create databases). Side effect: sets environment variables read by the settings."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "contentstudio.settings"
    os.environ["CONTENTSTUDIO_EMBEDDED_WORKER"] = "0"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        os.environ["SQLITE_PATH"] = str(tmp / "queue-10k.sqlite3")
        return Databases(kind="sqlite", small_name=str(tmp / "queue-100.sqlite3"))
    import psycopg

    parts = urlsplit(url)
    stem = f"bench_queue_{uuid.uuid4().hex[:8]}"
    dbs = Databases(kind="postgresql", small_name=parts.path.lstrip("/"), admin_url=url)
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            for name in (f"{stem}_100", f"{stem}_10k"):
                conn.execute(f'CREATE DATABASE "{name}"')
                dbs.created.append(name)
    except psycopg.Error as exc:
        log(f"could not create temporary databases ({exc}); using the given one for both")
        drop_databases(dbs)
        dbs.shared = True
        return dbs
    dbs.small_name = f"{stem}_100"
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{stem}_10k"))
    return dbs


def register_small_alias(dbs: Databases) -> None:
    """Add the "small" database alias: the default one's settings with another NAME."""
    from django.db import connections

    connections.settings["small"] = {**connections.settings["default"], "NAME": dbs.small_name}


@contextlib.contextmanager
def on_database(alias: str) -> Iterator[None]:
    """Make ``alias`` the default connection of this thread for a while, so the product's own
    code (services, views, templates) reads and writes that database unchanged."""
    from django.db import connections

    default = connections["default"]
    connections["default"] = connections[alias]
    try:
        yield
    finally:
        connections["default"] = default


def drop_databases(dbs: Databases) -> None:
    """Drop the temporary PostgreSQL databases, closing Django's connections to them first."""
    import psycopg

    if not dbs.created:
        return
    if "django.db" in sys.modules:  # Django was set up and may hold connections
        from django.db import connections

        connections.close_all()
    with psycopg.connect(dbs.admin_url, autocommit=True, connect_timeout=10) as conn:
        for name in dbs.created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    dbs.created.clear()


# --- Rows --------------------------------------------------------------------------------------


@contextlib.contextmanager
def explicit_timestamps(*models: Any) -> Iterator[None]:
    """Let bulk_create keep the creation times the bench sets (auto_now/auto_now_add would
    overwrite them with "now"), so drafts have realistic ages. Restores the fields after."""
    changed: list[tuple[Any, str, bool]] = []
    for model in models:
        for f in model._meta.concrete_fields:
            for attr in ("auto_now", "auto_now_add"):
                if getattr(f, attr, False):
                    changed.append((f, attr, True))
                    setattr(f, attr, False)
    try:
        yield
    finally:
        for f, attr, value in changed:
            setattr(f, attr, value)


def draft_text(rng: random.Random) -> str:
    """A news-length text: 4-6 paragraphs of 3-4 sentences (about 2 KB)."""
    paragraphs = [
        " ".join(rng.choice(SENTENCES) for _ in range(rng.randint(3, 4)))
        for _ in range(rng.randint(4, 6))
    ]
    return "\n\n".join(paragraphs)


@dataclass
class Desk:
    """A project with its own editor: the editor sees only this project in the queue."""

    name: str
    alias: str  # the database it lives in
    size: int  # drafts in the project
    user: Any
    project: Any
    versions: list[Any]
    client: Any = None


@dataclass
class World:
    alias: str
    suffix: str
    owner: Any
    reviewers: list[Any]
    models: list[Any]
    desks: dict[str, Desk]


def build_world(alias: str, suffix: str, sizes: dict[str, int]) -> World:
    """Users, projects (one per desk: name -> drafts), models and templates, in the current
    default database. Passwords are unusable: sessions come from force_login, and hashing would
    only slow the set-up."""
    from django.contrib.auth import get_user_model

    from contentstudio.models import Role
    from contentstudio.services import membership_set, project_create
    from generation.models import LanguageModel, PromptTemplate, PromptTemplateVersion

    users = get_user_model().objects
    owner = users.create_user(username=f"bench-admin-{suffix}", password=None)
    reviewers = [
        users.create_user(username=f"bench-rev{i}-{suffix}", password=None) for i in (1, 2)
    ]
    models = [
        LanguageModel.objects.create(
            name=f"bench-smollm2-{suffix}", source_kind="local", source="/models/smollm2"
        ),
        LanguageModel.objects.create(
            name=f"bench-gpt2-{suffix}", source_kind="local", source="/models/gpt2"
        ),
    ]
    desks: dict[str, Desk] = {}
    for name, size in sizes.items():
        user = users.create_user(username=f"bench-{name}-{suffix}", password=None)
        project = project_create(
            name=f"Desk {name} {suffix}", slug=f"bench-{name}-{suffix}", admin=owner
        )
        membership_set(project=project, user=user, role=Role.EDITOR)
        if name != "other":
            for reviewer in reviewers:
                membership_set(project=project, user=reviewer, role=Role.REVIEWER)
        versions = []
        for template_name in ("News report", "Brief"):
            template = PromptTemplate.objects.create(project=project, name=template_name)
            versions.append(
                PromptTemplateVersion.objects.create(
                    template=template,
                    number=1,
                    system_prompt="You are a careful news writer.",
                    body="Headline: {{headline}}\nLede: {{lede}}\nBody:",
                    variables=[{"name": "headline"}, {"name": "lede", "multiline": True}],
                    created_by=owner,
                )
            )
        desks[name] = Desk(
            name=name, alias=alias, size=size, user=user, project=project, versions=versions
        )
    return World(
        alias=alias, suffix=suffix, owner=owner, reviewers=reviewers, models=models, desks=desks
    )


def add_drafts(world: World, desk: Desk, *, rng: random.Random) -> None:
    """Bulk-create the desk's drafts with their jobs, candidates, check summaries, assignments
    and two edit locks, in one transaction."""
    from django.db import transaction
    from django.utils import timezone

    from contentstudio.html import text_to_html
    from generation.models import Candidate, Draft, GenerationJob
    from review.models import Assignment, CheckSummary, EditLock

    now = timezone.now()
    project, count, versions = desk.project, desk.size, desk.versions
    settings = {"max_new_tokens": 400, "temperature": 0.7, "top_p": 0.9, "top_k": 50}
    with transaction.atomic(), explicit_timestamps(GenerationJob, Draft):
        n_jobs = -(-count // CANDIDATES_PER_JOB)
        jobs = []
        for j in range(n_jobs):
            created = now - timedelta(seconds=rng.uniform(600, 30 * 86400))
            version = rng.choice([*versions, None])  # a third are free prompts
            jobs.append(
                GenerationJob(
                    project=project,
                    created_by=desk.user,
                    model=rng.choice(world.models),
                    template_version=version,
                    variables={"headline": rng.choice(HEADLINES), "lede": "A short lede."}
                    if version
                    else {},
                    seed_text="" if version else "Write a short news report about the storm.",
                    prompt="<|im_start|>user\nHeadline: ...<|im_end|>\n<|im_start|>assistant\n",
                    settings=settings,
                    n_candidates=min(CANDIDATES_PER_JOB, count - j * CANDIDATES_PER_JOB),
                    base_seed=rng.randrange(2**31),
                    status="succeeded",
                    created_at=created,
                    started_at=created + timedelta(seconds=2),
                    finished_at=created + timedelta(seconds=40),
                )
            )
        GenerationJob.objects.bulk_create(jobs, batch_size=500)
        candidates = []
        texts = []
        for i in range(count):
            job = jobs[i // CANDIDATES_PER_JOB]
            text = draft_text(rng)
            texts.append(text)
            candidates.append(
                Candidate(
                    job=job,
                    index=i % CANDIDATES_PER_JOB,
                    seed=job.base_seed + i % CANDIDATES_PER_JOB,
                    settings=settings,
                    status="finished",
                    text=text,
                    prompt_tokens=48,
                    completion_tokens=len(text) // 4,
                    finish_reason="eos",
                    started_at=job.started_at,
                    first_token_at=job.started_at,
                    finished_at=job.finished_at,
                )
            )
        Candidate.objects.bulk_create(candidates, batch_size=500)
        drafts = []
        for i, (candidate, text) in enumerate(zip(candidates, texts, strict=True)):
            job = candidate.job
            model = next(m for m in world.models if m.pk == job.model_id)
            drafts.append(
                Draft(
                    project=project,
                    job=job,
                    candidate=candidate,
                    title=f"{rng.choice(HEADLINES)} ({i + 1})",
                    model_output=text,
                    body=text_to_html(text),
                    status=STATE_CYCLE[i % len(STATE_CYCLE)],
                    version=rng.randint(1, 4),
                    model=model,
                    model_name=model.name,
                    model_source=model.source,
                    template_version=job.template_version,
                    variables=job.variables,
                    prompt=job.prompt,
                    settings=settings,
                    seed=candidate.seed,
                    prompt_tokens=48,
                    completion_tokens=candidate.completion_tokens,
                    finish_reason="eos",
                    timings={"queue_seconds": 0.4, "generation_seconds": 38.0},
                    created_at=job.finished_at,
                    updated_at=job.finished_at,
                )
            )
        Draft.objects.bulk_create(drafts, batch_size=500)
        summaries = []
        assignments = []
        people = [desk.user, *world.reviewers]
        for i, draft in enumerate(drafts):
            if i % 10 == 7:
                continue  # checks still pending: the queue shows "pending"
            held = draft.status == "held"
            tox = rng.uniform(0.5, 0.97) if held and i % 2 else rng.betavariate(1.5, 6)
            summaries.append(
                CheckSummary(
                    draft=draft,
                    draft_version=draft.version,
                    toxicity_max=round(tox, 4),
                    toxicity_category=rng.choice(TOX_CATEGORIES),
                    ethics_hits=rng.choice([0, 0, 0, 0, 1, 2]),
                    lexical_max=round(
                        rng.uniform(50, 95) if held and not i % 2 else rng.uniform(0, 35), 1
                    ),
                    semantic_share=round(rng.uniform(0, 0.4), 3) if rng.random() < 0.5 else None,
                    not_run=1 if rng.random() < 0.03 else 0,
                )
            )
            if rng.random() < 0.25:
                assignments.append(
                    Assignment(
                        draft=draft,
                        assignee=rng.choice(people),
                        due_at=now + timedelta(hours=rng.uniform(-72, 240))
                        if rng.random() < 0.8
                        else None,
                        assigned_by=world.owner,
                    )
                )
        CheckSummary.objects.bulk_create(summaries, batch_size=500)
        Assignment.objects.bulk_create(assignments, batch_size=500)
        # The oldest drafts are on the first page: one is being edited now, one lock lapsed.
        oldest = sorted(drafts, key=lambda d: d.created_at)
        EditLock.objects.bulk_create(
            [
                EditLock(
                    draft=oldest[0],
                    user=world.reviewers[0],
                    acquired_at=now - timedelta(minutes=2),
                    expires_at=now + timedelta(minutes=10),
                ),
                EditLock(
                    draft=oldest[1],
                    user=world.owner,
                    acquired_at=now - timedelta(hours=3),
                    expires_at=now - timedelta(hours=2),
                ),
            ]
        )


def vacuum_if_postgres() -> None:
    """VACUUM ANALYZE on PostgreSQL: the statistics and visibility map autovacuum would have
    made soon after a load this size (the planner's choices depend on both)."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")


def remove_rows(world: World) -> None:
    """Delete everything the bench wrote (for a shared PostgreSQL database)."""
    from django.contrib.auth import get_user_model

    from generation.models import Draft, GenerationJob, LanguageModel

    for desk in world.desks.values():
        if desk.client is not None:
            desk.client.logout()  # deletes its session row
    projects = [desk.project.pk for desk in world.desks.values()]
    # Drafts and jobs protect their template versions and models: they go first (with their
    # summaries, assignments, locks and candidates), then the projects and what hangs on them.
    Draft.objects.filter(project__in=projects).delete()
    GenerationJob.objects.filter(project__in=projects).delete()
    for desk in world.desks.values():
        desk.project.delete()
    LanguageModel.objects.filter(pk__in=[m.pk for m in world.models]).delete()
    get_user_model().objects.filter(
        username__startswith="bench-", username__endswith=f"-{world.suffix}"
    ).delete()


# --- Measurements ------------------------------------------------------------------------------


@dataclass
class PageFacts:
    rows: int
    count_label: str


def fetch(desk: Desk, url: str) -> tuple[float, Any]:
    """GET ``url`` as the desk's editor, on the desk's database; the time of the whole call."""
    with on_database(desk.alias):
        started = time.perf_counter()
        response = desk.client.get(url)
        elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"GET {url} answered {response.status_code}")
    return elapsed, response


def page_facts(response: Any) -> PageFacts:
    html = response.content.decode()
    found = re.search(r'id="queue-count">([^<]*)<', html)
    return PageFacts(
        rows=html.count('class="queue-row"'), count_label=found.group(1) if found else "?"
    )


Key = tuple[str, str]  # (desk, view)


def time_pages(
    desks: list[Desk], urls: dict[str, str]
) -> tuple[dict[Key, list[float]], dict[Key, PageFacts]]:
    """Warm up, then time every page of every desk REPS times. The desks take turns request by
    request (in a rotating order), so a busy moment of the machine hits every size alike."""
    facts: dict[Key, PageFacts] = {}
    for _ in range(WARMUP):
        for view, url in urls.items():
            for desk in desks:
                _, response = fetch(desk, url)
                facts[desk.name, view] = page_facts(response)
    times: dict[Key, list[float]] = {(d.name, v): [] for d in desks for v in urls}
    for rep in range(REPS):
        order = desks[rep % len(desks) :] + desks[: rep % len(desks)]
        for view, url in urls.items():
            for desk in order:
                elapsed, _ = fetch(desk, url)
                times[desk.name, view].append(elapsed)
    return times, facts


@dataclass
class QueryTiming:
    sql: str
    params: Any
    seconds: list[float] = field(default_factory=list)


@dataclass
class RequestProfile:
    desk: Desk
    queries: list[QueryTiming]
    totals: list[float]


def profile_request(desk: Desk, url: str) -> RequestProfile:
    """The request's queries in order, each with its time in every one of PLAN_REPS requests
    (measured around the cursor call), and the requests' total times."""
    from django.db import connections

    timings: list[QueryTiming] = []
    totals: list[float] = []
    seen: list[tuple[str, Any, float]] = []

    def wrapper(execute: Callable, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            seen.append((sql, params, time.perf_counter() - started))

    for rep in range(PLAN_REPS):
        seen.clear()
        with connections[desk.alias].execute_wrapper(wrapper):
            elapsed, _ = fetch(desk, url)
        totals.append(elapsed)
        if rep == 0:
            timings = [QueryTiming(sql=s, params=p) for s, p, _ in seen]
        if len(seen) != len(timings):
            raise SystemExit(
                f"{url}: {len(seen)} queries in one request, {len(timings)} in another"
            )
        for timing, (_, _, seconds) in zip(timings, seen, strict=True):
            timing.seconds.append(seconds)
    return RequestProfile(desk=desk, queries=timings, totals=totals)


def short_sql(sql: str, width: int = 150) -> str:
    flat = re.sub(r"\s+", " ", sql)
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def explain(alias: str, sql: str, params: Any) -> str:
    from django.db import connections

    connection = connections[alias]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        rows = cursor.fetchall()
    if connection.vendor == "postgresql":
        return "\n".join(f"      {r[0]}" for r in rows)
    return "\n".join(f"      {r[-1]}" for r in rows)


def report_profiles(view: str, base: RequestProfile, others: list[RequestProfile]) -> None:
    """Per-query medians side by side, then the plan of each query that is more than a
    millisecond slower than in ``base``."""
    log(f"--- where the {view} page's time goes (median of {PLAN_REPS} requests) ---")
    profiles = [base, *others]
    names = [p.desk.name for p in profiles]
    log("  #  " + "".join(f"{n:>10}" for n in names) + "  query")
    n = max(len(p.queries) for p in profiles)
    slower: list[tuple[float, int, RequestProfile]] = []
    for i in range(n):
        cells = []
        for p in profiles:
            cells.append(ms(median(p.queries[i].seconds)) if i < len(p.queries) else "-")
        sql = next(p.queries[i].sql for p in profiles if i < len(p.queries))
        log(f" {i:>2}  " + "".join(f"{c:>10}" for c in cells) + f"  {short_sql(sql)}")
        for p in others:
            if i < len(p.queries) and i < len(base.queries):
                extra = median(p.queries[i].seconds) - median(base.queries[i].seconds)
                if extra > 0.001:
                    slower.append((extra, i, p))
    for p in profiles:
        db = sum(median(q.seconds) for q in p.queries)
        total = median(p.totals)
        log(
            f"  {p.desk.name} ({p.desk.size} drafts, database '{p.desk.alias}'): request "
            f"{ms(total)}, SQL {ms(db)} in {len(p.queries)} queries, outside the database "
            f"{ms(total - db)}"
        )
    for extra, i, p in sorted(slower, key=lambda item: -item[0]):
        log(f"query {i} takes {ms(extra)} more for {p.desk.name} than for {base.desk.name}; plan:")
        log(f"    {short_sql(p.queries[i].sql, 1000)}")
        log(explain(p.desk.alias, p.queries[i].sql, p.queries[i].params))


# Columns of a draft the queue's rows never show: long texts and JSON blobs.
UNSHOWN = ("model_output", "body", "prompt", "variables", "settings", "timings", "model_source")


def page_query_variants(desk: Desk) -> dict[str, float]:
    """Median time of the default page's rows fetched three ways, outside any request: as the
    product does now, with the unshown columns deferred, and as two queries (the page's ids,
    sorted on narrow rows, then those rows with their relations). A diagnostic of what a fix
    would buy; each variant must return the same drafts in the same order."""
    from django.http import QueryDict

    from review.queue import parse_filters, queue_drafts

    filters = parse_filters(QueryDict(""))
    size = filters.page_size

    def as_is() -> list[int]:
        drafts = queue_drafts(user=desk.user, filters=filters)
        return [d.pk for d in drafts[:size]]

    def deferred() -> list[int]:
        drafts = queue_drafts(user=desk.user, filters=filters)
        return [d.pk for d in drafts.defer(*UNSHOWN)[:size]]

    def ids_first() -> list[int]:
        drafts = queue_drafts(user=desk.user, filters=filters)
        ids = list(drafts.values_list("pk", flat=True)[:size])
        return [d.pk for d in drafts.filter(pk__in=ids)]

    variants = {"as is": as_is, "defer unshown columns": deferred, "ids, then rows": ids_first}
    times: dict[str, list[float]] = {name: [] for name in variants}
    with on_database(desk.alias):
        expected = as_is()
        for _ in range(PLAN_REPS + 2):
            for name, fn in variants.items():
                started = time.perf_counter()
                got = fn()
                times[name].append(time.perf_counter() - started)
                if got != expected:
                    raise SystemExit(f"variant {name!r} returned other drafts than the product")
    return {name: median(values[2:]) for name, values in times.items()}


def normalise(sql: str) -> str:
    """The shape of a query: literals and IN lists replaced, so the same query for another
    row compares equal."""
    sql = re.sub(r"'(?:[^']|'')*'", "?", sql)
    sql = re.sub(r"\b\d+(\.\d+)?\b", "?", sql)
    sql = re.sub(r"\((?:\s*(?:\?|%s)\s*,)*\s*(?:\?|%s)\s*\)", "(...)", sql)
    return re.sub(r"\s+", " ", sql).strip()


def count_queries(desk: Desk, url: str) -> list[str]:
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connections[desk.alias]) as captured:
        fetch(desk, url)
    return [q["sql"] for q in captured.captured_queries]


# --- The run -----------------------------------------------------------------------------------


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp_name:
        dbs = prepare_environment(Path(tmp_name))
        worlds: list[World] = []
        started = time.perf_counter()
        try:
            import django

            django.setup()
            from django.conf import settings

            # Outside the test runner the test client's host must be allowed explicitly
            # (setup_test_environment would also instrument template rendering, which costs).
            settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
            register_small_alias(dbs)
            run(dbs, worlds)
        finally:
            if dbs.shared:
                for world in worlds:
                    with on_database(world.alias):
                        remove_rows(world)
            drop_databases(dbs)
            log(f"total {time.perf_counter() - started:.0f} s")


def build(dbs: Databases, worlds: list[World]) -> dict[str, Desk]:
    """Migrate both databases and fill them: "small" holds the 100-draft project, "default"
    the 10,000-draft one and, beside it, another 100-draft project; each database also holds
    a project of OTHER drafts that no bench editor belongs to."""
    from django.core.management import call_command
    from django.test import Client

    rng = random.Random(SEED)
    layout = {
        "small": {"small": SMALL, "other": OTHER},
        "default": {"big": BIG, "beside": SMALL, "other": OTHER},
    }
    desks: dict[str, Desk] = {}
    for alias, sizes in layout.items():
        with on_database(alias):
            call_command("migrate", verbosity=0, interactive=False)
            world = build_world(alias, uuid.uuid4().hex[:8], sizes)
            worlds.append(world)
            for desk in world.desks.values():
                add_drafts(world, desk, rng=rng)
            vacuum_if_postgres()
            for name, desk in world.desks.items():
                if name != "other":
                    desk.client = Client()
                    desk.client.force_login(desk.user)
                    desks[name] = desk
    return desks


def run(dbs: Databases, worlds: list[World]) -> None:
    from django.db import connections
    from django.urls import reverse

    vendor = connections["default"].vendor
    where = "one shared database" if dbs.shared else "two databases"
    log(
        f"bench_queue: {vendor}, {where}; projects of {SMALL} and {BIG} drafts, {REPS} timed "
        f"requests per page, {'quick' if QUICK else 'full'} run"
    )
    started = time.perf_counter()
    desks = build(dbs, worlds)
    log(f"rows written in {time.perf_counter() - started:.1f} s")
    small, big, beside = desks["small"], desks["big"], desks["beside"]
    timed = [small, big, beside]

    base = reverse("queue")
    urls = {name: f"{base}?{query}" if query else base for name, query in VIEWS.items()}
    times, facts = time_pages(timed, urls)
    profiled = ("default", "toxicity")
    profiles = {view: [profile_request(desk, urls[view]) for desk in timed] for view in profiled}
    variants = {desk.name: page_query_variants(desk) for desk in (small, big)}
    # Queries: a page of 100 rows minus a page of 10 rows, in the big project.
    q100 = count_queries(big, f"{base}?page_size=100")
    q10 = count_queries(big, f"{base}?page_size=10")
    growth = len(q100) - len(q10)

    log(
        f"--- page times, p50 of {REPS} (min .. max). small: {SMALL} drafts in their own "
        f"database; big: {BIG}; beside: {SMALL} drafts in the database that holds the {BIG} ---"
    )
    for view, url in urls.items():
        log(f"{view} ({url}):")
        for desk in timed:
            t, f = times[desk.name, view], facts[desk.name, view]
            log(
                f"  {desk.name:>7}: {ms(median(t)):>9} ({ms(min(t))} .. {ms(max(t))}), "
                f"{f.rows} rows of '{f.count_label}'; vs small "
                f"{median(t) / median(times['small', view]):.3f}"
            )
        if facts["small", view].rows != facts["big", view].rows:
            log("  note: the small project has fewer matching drafts than a page holds")
    for view in profiled:
        report_profiles(view, profiles[view][0], profiles[view][1:])

    log("--- the default page's rows fetched other ways (median, outside a request) ---")
    p50 = {name: median(times[name, "default"]) for name in ("small", "big")}
    for variant in variants["big"]:
        a, b = variants["small"][variant], variants["big"][variant]
        # The page as measured, with the product's rows query swapped for this variant.
        est = {
            name: p50[name] - variants[name]["as is"] + variants[name][variant]
            for name in ("small", "big")
        }
        log(
            f"  {variant:>22}: small {ms(a)}, big {ms(b)}; the page ratio with it would be "
            f"about {est['big'] / est['small']:.2f}"
        )

    log(f"--- queries: page_size=100 ran {len(q100)}, page_size=10 ran {len(q10)} ---")
    if growth:
        extra = Counter(normalise(s) for s in q100) - Counter(normalise(s) for s in q10)
        for shape, n in extra.most_common():
            log(f"  only in the larger page (x{n}): {short_sql(shape, 600)}")

    print(f"queue_page_scaling_10k_vs_100: {p50['big'] / p50['small']:.3f}")
    print(f"queue_queries_growth: {growth}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
