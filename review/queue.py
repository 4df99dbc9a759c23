"""Reads for the approval queue: drafts needing action in the user's projects, filtered, sorted
and paginated with a fixed number of queries whatever the page size (no N+1)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F, Q, QuerySet
from django.http import QueryDict

from contentstudio.models import Membership, Project, Role
from contentstudio.selectors import project_list, request_token
from generation.models import Draft, PromptTemplate
from generation.selectors import models_listed
from review.checks.language import language_name
from review.lifecycle import NEEDS_ACTION, DraftStatus

SORTS: dict[str, tuple[str, list[Any]]] = {
    "oldest": ("Oldest first", [F("created_at").asc(), F("pk").asc()]),
    "newest": ("Newest first", [F("created_at").desc(), F("pk").desc()]),
    "due": ("Due soonest", [F("assignment__due_at").asc(nulls_last=True), F("created_at").asc()]),
    "toxicity": (
        "Most toxic",
        [F("check_summary__toxicity_max").desc(nulls_last=True), F("created_at").asc()],
    ),
    "plagiarism": (
        "Most copied",
        [F("check_summary__lexical_max").desc(nulls_last=True), F("created_at").asc()],
    ),
    "project": ("Project", [F("project__name").asc(), F("created_at").asc()]),
}
PAGE_SIZES = (10, 25, 50, 100)
MAX_SEARCH = 200  # characters of a search


def search_condition(search: str) -> Q:
    """Every word of ``search`` in the title or the text, any case.

    Substrings rather than PostgreSQL's full-text search: its parser does not split Chinese
    (a Chinese word inside a sentence would never be found) and its stemming would make the
    two databases disagree; this finds the same drafts on SQLite and PostgreSQL."""
    condition = Q()
    for word in search.split():
        # The text is stored as HTML: "keeper's" may be there as "keeper&#x27;s".
        forms = {word, html.escape(word, quote=False), html.escape(word, quote=True)}
        either = Q(title__icontains=word)
        for form in forms:
            either |= Q(body__icontains=form)
        condition &= either
    return condition


@dataclass
class QueueFilters:
    projects: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=lambda: sorted(NEEDS_ACTION))
    assignee: str = ""  # "" anyone, "me", "none", or a username
    template: str = ""  # template id
    model: str = ""  # model name
    language: str = ""  # ISO 639-1 code of the draft's detected language ("und": undetermined)
    search: str = ""  # words that must all appear in the title or the text
    tox_min: float | None = None
    tox_max: float | None = None
    plag_min: float | None = None
    plag_max: float | None = None
    sort: str = "oldest"
    page_size: int = 50
    errors: list[str] = field(default_factory=list)

    def querystring(self, **override: Any) -> str:
        params: list[tuple[str, Any]] = [("project", p) for p in self.projects]
        params += [("state", s) for s in self.states]
        for name in (
            "assignee",
            "template",
            "model",
            "language",
            "search",
            "tox_min",
            "tox_max",
            "plag_min",
            "plag_max",
            "sort",
            "page_size",
        ):
            value = override.get(name, getattr(self, name))
            if value not in ("", None):
                params.append((name, value))
        if "page" in override:
            params.append(("page", override["page"]))
        return urlencode(params)


def _number(raw: str | None, name: str, errors: list[str], low: float, high: float) -> float | None:
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except ValueError:
        errors.append(f"{name}: {raw!r} is not a number.")
        return None
    if not low <= value <= high:
        errors.append(f"{name}: must be between {low:g} and {high:g}.")
        return None
    return value


def parse_filters(query: QueryDict) -> QueueFilters:
    """Filters from the query string; a bad value is dropped and reported, never a 500."""
    errors: list[str] = []
    states = [s for s in query.getlist("state") if s in DraftStatus.values]
    if query.getlist("state") and not states:
        errors.append("state: none of the given states exist.")
    sort = query.get("sort", "oldest")
    if sort not in SORTS:
        errors.append(f"sort: unknown order {sort!r}.")
        sort = "oldest"
    raw_size = query.get("page_size") or "50"
    try:
        page_size = int(raw_size)
    except ValueError:
        errors.append(f"page_size: {raw_size!r} is not a number.")
        page_size = 50
    if page_size not in PAGE_SIZES:
        page_size = min(PAGE_SIZES, key=lambda s: abs(s - page_size))
    template = query.get("template", "").strip()
    if template and not template.isdigit():
        errors.append(f"template: {template!r} is not a template id.")
        template = ""
    language = query.get("language", "").strip().lower()
    if language and not (language == "und" or (len(language) == 2 and language.isalpha())):
        errors.append(f"language: {language[:20]!r} is not a language code (such as en or zh).")
        language = ""
    return QueueFilters(
        projects=[p for p in query.getlist("project") if p],
        states=states or sorted(NEEDS_ACTION),
        assignee=query.get("assignee", "").strip(),
        template=template,
        model=query.get("model", "").strip(),
        language=language,
        search=" ".join(query.get("search", "").split())[:MAX_SEARCH],
        tox_min=_number(query.get("tox_min"), "tox_min", errors, 0, 1),
        tox_max=_number(query.get("tox_max"), "tox_max", errors, 0, 1),
        plag_min=_number(query.get("plag_min"), "plag_min", errors, 0, 100),
        plag_max=_number(query.get("plag_max"), "plag_max", errors, 0, 100),
        sort=sort,
        page_size=page_size,
        errors=errors,
    )


def visible_projects(*, user: AbstractBaseUser) -> QuerySet[Project]:
    if request_token(user) is not None:
        return project_list(user=user)  # an API token sees its own project only
    if getattr(user, "is_superuser", False):
        return Project.objects.order_by("name")
    return Project.objects.filter(memberships__user=user).order_by("name")


def queue_drafts(*, user: AbstractBaseUser, filters: QueueFilters) -> QuerySet[Draft]:
    projects = visible_projects(user=user)
    if filters.projects:
        projects = projects.filter(slug__in=filters.projects)
    # A plain list, not a subquery: PostgreSQL then knows how big the project is and uses the
    # queue index instead of a whole-table plan (bench/bench_queue.py).
    project_ids = list(projects.values_list("pk", flat=True))
    drafts = Draft.objects.filter(project_id__in=project_ids, status__in=filters.states)
    if filters.assignee == "me":
        drafts = drafts.filter(assignment__assignee=user)
    elif filters.assignee == "none":
        drafts = drafts.filter(assignment__isnull=True)
    elif filters.assignee:
        drafts = drafts.filter(assignment__assignee__username=filters.assignee)
    if filters.template.isdigit():
        drafts = drafts.filter(template_version__template_id=int(filters.template))
    if filters.model:
        drafts = drafts.filter(model_name=filters.model)
    if filters.language:
        drafts = drafts.filter(language=filters.language)
    if filters.search:
        drafts = drafts.filter(search_condition(filters.search))
    if filters.tox_min is not None:
        drafts = drafts.filter(check_summary__toxicity_max__gte=filters.tox_min)
    if filters.tox_max is not None:
        drafts = drafts.filter(
            Q(check_summary__toxicity_max__lte=filters.tox_max)
            | Q(check_summary__toxicity_max__isnull=True)
        )
    if filters.plag_min is not None:
        drafts = drafts.filter(check_summary__lexical_max__gte=filters.plag_min)
    if filters.plag_max is not None:
        drafts = drafts.filter(
            Q(check_summary__lexical_max__lte=filters.plag_max)
            | Q(check_summary__lexical_max__isnull=True)
        )
    return drafts.select_related(
        "project",
        "job",  # "candidate 2 of 4"
        "candidate",
        "template_version__template",
        "check_summary",
        "assignment__assignee",
        "edit_lock__user",
    ).order_by(*SORTS[filters.sort][1])


def filter_choices(*, user: AbstractBaseUser) -> dict[str, Any]:
    projects = list(visible_projects(user=user))
    member_ids = Membership.objects.filter(
        project__in=projects, role__in=[Role.ADMIN, Role.EDITOR, Role.REVIEWER]
    ).values_list("user_id", flat=True)
    from django.contrib.auth import get_user_model

    return {
        "projects": projects,
        "states": [(s.value, s.label) for s in DraftStatus],
        "templates": PromptTemplate.objects.filter(project__in=projects)
        .select_related("project")
        .order_by("project__name", "name"),
        # Shared models and those of the projects shown, never another project's tuned model.
        "models": models_listed(projects=projects).values_list("name", flat=True),
        # The languages the visible projects' drafts are in, with their names.
        "languages": [
            (code, language_name(code))
            for code in Draft.objects.filter(project__in=projects)
            .exclude(language="")
            .values_list("language", flat=True)
            .distinct()
            .order_by("language")
        ],
        "assignees": get_user_model().objects.filter(pk__in=member_ids).order_by("username"),
        "sorts": [(key, label) for key, (label, _) in SORTS.items()],
        "page_sizes": PAGE_SIZES,
    }


def neighbours(*, user: AbstractBaseUser, filters: QueueFilters, draft: Draft) -> dict[str, Any]:
    """The previous and next drafts of the queue around ``draft`` (for j/k on the draft page)."""
    ids = list(queue_drafts(user=user, filters=filters).values_list("pk", flat=True)[:2000])
    if draft.pk not in ids:
        return {"previous": None, "next": ids[0] if ids else None}
    at = ids.index(draft.pk)
    return {
        "previous": ids[at - 1] if at > 0 else None,
        "next": ids[at + 1] if at + 1 < len(ids) else None,
    }
