"""The review API: drafts with their check summary, decisions (409 on an impossible or stale
move), edits with optimistic versions, comments."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from contentstudio import keyset
from contentstudio.api import (
    LimitPagination,
    etag_response,
    keyset_page_response,
    validation_response,
)
from contentstudio.html import html_to_text
from contentstudio.selectors import membership_role
from generation.models import Draft
from review import editorial, lifecycle, queue, selectors
from review.models import Comment, CommentKind


class SummaryOut(serializers.Serializer):
    toxicity_max = serializers.FloatField(allow_null=True)
    toxicity_category = serializers.CharField()
    ethics_hits = serializers.IntegerField()
    lexical_max = serializers.FloatField(allow_null=True)
    semantic_share = serializers.FloatField(allow_null=True)
    not_run = serializers.IntegerField()


class DraftOut(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.CharField(source="project.slug")
    title = serializers.CharField()
    status = serializers.CharField()
    version = serializers.IntegerField()
    job = serializers.IntegerField(source="job_id")
    model = serializers.CharField(source="model_name")
    seed = serializers.IntegerField()
    # "length": cut off at the token limit; "eos": the model ended the text.
    finish_reason = serializers.CharField()
    # ISO 639-1 code of the text's detected language; "und" when unsure, "" before detection.
    language = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    summary = serializers.SerializerMethodField()
    # The quality score (0..1, generation.quality; null: written before the signals) and
    # whether the draft covers fewer than half of its brief's key terms.
    quality_score = serializers.FloatField(allow_null=True)
    off_brief = serializers.SerializerMethodField()

    def get_off_brief(self, draft: Draft) -> bool | None:
        quality = draft.quality or {}
        return bool(quality["off_brief"]) if "off_brief" in quality else None

    def get_summary(self, draft: Draft) -> dict[str, Any] | None:
        summary = getattr(draft, "check_summary", None)
        return SummaryOut(summary).data if summary is not None else None


class CheckOut(serializers.Serializer):
    kind = serializers.CharField()
    status = serializers.CharField()
    reason = serializers.CharField()
    engine = serializers.CharField()
    engine_version = serializers.CharField()
    # Which model scored (with its checksum), and, for a stand-in, what it measured.
    model = serializers.SerializerMethodField()
    stand_in = serializers.SerializerMethodField()
    scores = serializers.DictField()
    spans = serializers.ListField(child=serializers.DictField())

    def get_model(self, check: Any) -> str | None:
        return (check.details or {}).get("model")

    def get_stand_in(self, check: Any) -> dict[str, Any] | None:
        return (check.details or {}).get("stand_in")


class DraftDetailOut(DraftOut):
    body = serializers.CharField()
    text = serializers.SerializerMethodField()
    model_output = serializers.CharField()
    variables = serializers.DictField()
    settings = serializers.DictField()
    # The engine that wrote it: backend, version, weights checksum or revision.
    engine = serializers.DictField()
    # The archive background put into the prompt: sources (document, title, offsets, score,
    # the text given), those left out for lack of room, and a note (generation.grounding).
    background = serializers.DictField()
    checks = serializers.SerializerMethodField()
    # Every quality signal as computed when the draft was written (relevance at its checks):
    # score, components, reasons, coverage, relevance, fluency, repetition, completeness,
    # length, unsupported (specifics to verify, contradictions), register, off_brief.
    quality = serializers.DictField()
    # The specifics of the current text to verify (positions in ``text``).
    specifics = serializers.SerializerMethodField()
    # The number of the current text (1: the model's output); unlike ``version`` it does not
    # move when the checks run. Send it back as ``revision`` with an edit.
    revision_number = serializers.SerializerMethodField()

    def get_revision_number(self, draft: Draft) -> int:
        return editorial.text_revision(draft)

    def get_specifics(self, draft: Draft) -> list[dict[str, Any]]:
        return selectors.draft_specifics(draft=draft, text=html_to_text(draft.body))

    def get_text(self, draft: Draft) -> str:
        return html_to_text(draft.body)

    def get_checks(self, draft: Draft) -> list[dict[str, Any]]:
        return CheckOut(selectors.latest_checks(draft=draft), many=True).data


def _draft(request: Request, draft_id: int) -> Draft:
    draft = Draft.objects.select_related("project", "check_summary").filter(pk=draft_id).first()
    if draft is None or membership_role(user=request.user, project=draft.project) is None:
        raise Http404("No such draft.")
    return draft


class DraftListApi(APIView):
    @extend_schema(
        responses=DraftOut(many=True),
        parameters=[
            OpenApiParameter("updated_since", OpenApiTypes.DATETIME),
            OpenApiParameter(
                "language",
                str,
                description="Only drafts in this language (ISO 639-1 code, such as en or zh; "
                "und: undetermined).",
            ),
            OpenApiParameter(
                "search",
                str,
                description="Words that must all appear in the title or the text (any case).",
            ),
            OpenApiParameter(
                "ordering",
                str,
                enum=list(keyset.ORDERINGS),
                description="Keyset pages by update time (with cursor), instead of the queue "
                "order with limit/offset.",
            ),
            OpenApiParameter("cursor", str, description="From the previous page's next link."),
        ],
    )
    def get(self, request: Request) -> Response:
        filters = queue.parse_filters(request.query_params)
        if filters.errors:
            # A script must not mistake unfiltered results for filtered ones.
            return validation_response({"filters": filters.errors})
        if "state" not in request.query_params:
            from review.lifecycle import DraftStatus

            filters.states = list(DraftStatus.values)
        drafts = queue.queue_drafts(user=request.user, filters=filters)
        since = request.query_params.get("updated_since")
        if since:
            # For integrations that sync: only drafts changed since their last look.
            at = parse_datetime(since)
            if at is None or at.tzinfo is None:
                return validation_response(
                    {"updated_since": [f"{since!r} is not an ISO 8601 date-time with a time zone."]}
                )
            drafts = drafts.filter(updated_at__gte=at)
        ordering = request.query_params.get("ordering")
        if ordering in keyset.ORDERINGS:
            # For syncing integrations: keyset pages by (updated_at, id), stable while drafts
            # change, each as cheap as the first; the next page is the ``next`` link.
            return keyset_page_response(
                request,
                drafts,
                ordering=ordering,
                serialize=lambda page: DraftOut(page, many=True).data,
            )
        paginator = LimitPagination()
        page = paginator.paginate_queryset(drafts, request, view=self)
        listed = paginator.get_paginated_response(DraftOut(page, many=True).data)
        return etag_response(request, listed.data)


class DraftDetailApi(APIView):
    @extend_schema(responses=DraftDetailOut)
    def get(self, request: Request, draft_id: int) -> Response:
        # With an ETag: integrations polling a draft get 304 until it changes.
        return etag_response(request, DraftDetailOut(_draft(request, draft_id)).data)


class TransitionIn(serializers.Serializer):
    action = serializers.ChoiceField(choices=sorted(lifecycle.ACTIONS))
    reason = serializers.CharField(required=False, allow_blank=True, default="")
    version = serializers.IntegerField(required=False, allow_null=True)


class DraftTransitionApi(APIView):
    @extend_schema(request=TransitionIn, responses={200: DraftOut})
    def post(self, request: Request, draft_id: int) -> Response:
        data = TransitionIn(data=request.data)
        data.is_valid(raise_exception=True)
        moved = lifecycle.draft_transition(
            draft=_draft(request, draft_id),
            action=data.validated_data["action"],
            user=request.user,
            reason=data.validated_data["reason"],
            expected_version=data.validated_data.get("version"),
        )
        return Response(DraftOut(moved).data)


class EditIn(serializers.Serializer):
    body = serializers.CharField(allow_blank=True)
    title = serializers.CharField(required=False, allow_blank=True)
    version = serializers.IntegerField()
    note = serializers.CharField(required=False, allow_blank=True, default="")
    revision = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="The text revision the edit started from (the draft's revision_number): "
        "when only the checks moved the draft on since, the edit is saved instead of refused.",
    )


class DraftEditApi(APIView):
    @extend_schema(request=EditIn, responses={200: DraftDetailOut})
    def post(self, request: Request, draft_id: int) -> Response:
        data = EditIn(data=request.data)
        data.is_valid(raise_exception=True)
        edited = editorial.draft_edit(
            draft=_draft(request, draft_id),
            user=request.user,
            body=data.validated_data["body"],
            title=data.validated_data.get("title"),
            expected_version=data.validated_data["version"],
            note=data.validated_data["note"],
            base_revision=data.validated_data.get("revision"),
        )
        return Response(DraftDetailOut(edited).data)


class CommentIn(serializers.Serializer):
    body = serializers.CharField(allow_blank=True)
    kind = serializers.ChoiceField(choices=CommentKind.values, default=CommentKind.COMMENT)
    parent = serializers.IntegerField(required=False, allow_null=True)


class CommentOut(serializers.Serializer):
    id = serializers.IntegerField()
    author = serializers.CharField(source="author.username", allow_null=True)
    kind = serializers.CharField()
    body = serializers.CharField()
    parent = serializers.IntegerField(source="parent_id", allow_null=True)
    created_at = serializers.DateTimeField()


class DraftCommentsApi(APIView):
    @extend_schema(responses=CommentOut(many=True))
    def get(self, request: Request, draft_id: int) -> Response:
        draft = _draft(request, draft_id)
        comments = Comment.objects.filter(draft=draft).select_related("author")
        return Response(CommentOut(comments, many=True).data)

    @extend_schema(request=CommentIn, responses={201: CommentOut})
    def post(self, request: Request, draft_id: int) -> Response:
        draft = _draft(request, draft_id)
        data = CommentIn(data=request.data)
        data.is_valid(raise_exception=True)
        parent = None
        if data.validated_data.get("parent"):
            parent = Comment.objects.filter(pk=data.validated_data["parent"], draft=draft).first()
            if parent is None:
                return validation_response({"parent": ["No such comment on this draft."]})
        comment = editorial.comment_add(
            draft=draft,
            user=request.user,
            body=data.validated_data["body"],
            kind=data.validated_data["kind"],
            parent=parent,
        )
        return Response(CommentOut(comment).data, status=201)
