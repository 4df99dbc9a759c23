"""The publishing API (``/api/v1/``): publications with their versions and exports, feeds,
deliveries. Authenticated by project API tokens or the browser session; every list is
keyset-paginated, every GET answers with an ETag and honours If-None-Match."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpResponse
from django.urls import reverse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from contentstudio import keyset
from contentstudio.api import etag, page_limit
from contentstudio.api import etag_response as cached
from contentstudio.models import Project, Role, role_at_least
from contentstudio.selectors import membership_role, project_get
from generation.models import Draft
from publishing import feeds, formats, selectors, services
from publishing.models import Delivery, Publication, PublicationVersion
from publishing.redaction import public_error

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


class TokenScheme(OpenApiAuthenticationExtension):
    target_class = "contentstudio.tokens.ApiTokenAuthentication"
    name = "projectToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A project API token (cs_...), created by a project admin.",
        }


# --- Serializers (explicit, for the schema and for input validation) ---------------------------


class PublicationOut(serializers.Serializer):
    id = serializers.IntegerField()
    guid = serializers.UUIDField()
    project = serializers.CharField(source="project.slug")
    draft = serializers.IntegerField(source="draft_id")
    status = serializers.CharField()
    headline = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    current_version = serializers.IntegerField()
    scheduled_for = serializers.DateTimeField(allow_null=True)
    first_published_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()
    error = serializers.CharField()


class VersionOut(serializers.Serializer):
    """Our JSON of one version (the webhook ``data`` is the same)."""

    id = serializers.UUIDField()
    uri = serializers.CharField()
    project = serializers.CharField()
    version = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.CharField()
    headline = serializers.CharField()
    summary = serializers.CharField()
    body_html = serializers.CharField()
    body_text = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    byline = serializers.CharField()
    ai_disclosure = serializers.CharField()
    digital_source_type = serializers.CharField()
    correction_note = serializers.CharField()
    first_published_at = serializers.DateTimeField(allow_null=True)
    version_created_at = serializers.DateTimeField()
    provenance = serializers.DictField()


class PublicationDetailOut(PublicationOut):
    current = VersionOut(allow_null=True)
    versions = serializers.ListField(child=serializers.DictField())


class PublicationPage(serializers.Serializer):
    next = serializers.CharField(allow_null=True)
    results = PublicationOut(many=True)


class DeliveryOut(serializers.Serializer):
    id = serializers.IntegerField()
    destination = serializers.CharField(source="destination.name")
    destination_kind = serializers.CharField(source="destination.kind")
    version = serializers.IntegerField(source="version.number")
    event_type = serializers.CharField()
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.SerializerMethodField(
        help_text="What went wrong; the receiver's answer is included for project admins only."
    )
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    idempotency_key = serializers.CharField(source="version.idempotency_key")

    def get_last_error(self, delivery: Delivery) -> str:
        if self.context.get("admin"):
            return delivery.last_error
        return public_error(delivery.last_error)


class PublishIn(serializers.Serializer):
    draft = serializers.IntegerField()
    tags = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    summary = serializers.CharField(required=False, allow_blank=True, default="")
    headline = serializers.CharField(required=False, allow_blank=True, default="")
    scheduled_for = serializers.DateTimeField(required=False, allow_null=True, default=None)
    version = serializers.IntegerField(
        required=False, allow_null=True, help_text="The draft version you saw (409 if stale)."
    )


class CorrectIn(serializers.Serializer):
    body = serializers.CharField(help_text="The corrected text (HTML; sanitised).")
    note = serializers.CharField(help_text="What the correction changes (shown to readers).")
    headline = serializers.CharField(required=False)
    summary = serializers.CharField(required=False, allow_blank=True)
    tags = serializers.ListField(child=serializers.CharField(), required=False)
    version = serializers.IntegerField(required=False, allow_null=True)


class UnpublishIn(serializers.Serializer):
    reason = serializers.CharField()


def publication_out(publication: Publication) -> dict[str, Any]:
    return PublicationOut(publication).data


def publication_detail(publication: Publication) -> dict[str, Any]:
    versions = list(
        PublicationVersion.objects.filter(publication=publication)
        .select_related("publication__project")
        .order_by("number")
    )
    current = next((v for v in versions if v.number == publication.current_version), None)
    return {
        **publication_out(publication),
        "current": formats.publication_json(current) if current else None,
        "versions": [
            {
                "number": v.number,
                "kind": v.kind,
                "headline": v.headline,
                "note": v.note,
                "created_at": v.created_at.isoformat(),
            }
            for v in versions
        ],
    }


# --- Views ------------------------------------------------------------------------------------


class PublicationListApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("project", str, many=True, description="Project slug(s)."),
            OpenApiParameter(
                "state", str, many=True, enum=["scheduled", "published", "unpublished", "cancelled"]
            ),
            OpenApiParameter("updated_since", OpenApiTypes.DATETIME),
            OpenApiParameter("tag", str),
            OpenApiParameter("ordering", str, enum=list(selectors.ORDERINGS)),
            OpenApiParameter("cursor", str, description="From the previous page's next link."),
            OpenApiParameter(
                "limit",
                int,
                description=f"1-{MAX_PAGE_SIZE}, default {PAGE_SIZE} (page_size is an alias).",
            ),
        ],
        responses=PublicationPage,
        operation_id="publications_list",
    )
    def get(self, request: Request) -> Response | HttpResponse:
        filters = selectors.parse_filters(request.query_params)
        rows = selectors.publication_list(user=request.user, filters=filters)
        size = _page_size(request)
        page, next_cursor = keyset.page(
            rows, cursor=request.query_params.get("cursor"), ordering=filters.ordering, size=size
        )
        next_url = None
        if next_cursor:
            params = request.query_params.copy()
            params["cursor"] = next_cursor
            next_url = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
        return cached(request, {"next": next_url, "results": [publication_out(p) for p in page]})

    @extend_schema(request=PublishIn, responses={201: PublicationOut})
    def post(self, request: Request) -> Response:
        data = PublishIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        draft = Draft.objects.select_related("project").filter(pk=values["draft"]).first()
        if draft is None:
            raise Http404("No such draft.")
        project_get(user=request.user, slug=draft.project.slug)  # 404 for other projects
        if values["scheduled_for"] is not None:
            publication = services.publication_schedule(
                draft=draft,
                user=request.user,
                when=values["scheduled_for"],
                tags=values["tags"],
                summary=values["summary"],
                headline=values["headline"],
            )
        else:
            publication = services.publication_publish(
                draft=draft,
                user=request.user,
                tags=values["tags"],
                summary=values["summary"],
                headline=values["headline"],
                expected_version=values.get("version"),
            )
        return Response(publication_out(publication), status=201)


def _page_size(request: Request) -> int:
    # ``limit``, as every list of the API; ``page_size`` (documented here before) still works.
    return page_limit(request, default=PAGE_SIZE, maximum=MAX_PAGE_SIZE)


class PublicationDetailApi(APIView):
    @extend_schema(responses=PublicationDetailOut)
    def get(self, request: Request, publication_id: int) -> Response | HttpResponse:
        publication = selectors.publication_get(user=request.user, publication_id=publication_id)
        return cached(request, publication_detail(publication))


class VersionListApi(APIView):
    @extend_schema(responses=VersionOut(many=True))
    def get(self, request: Request, publication_id: int) -> Response | HttpResponse:
        publication = selectors.publication_get(user=request.user, publication_id=publication_id)
        versions = PublicationVersion.objects.filter(publication=publication).select_related(
            "publication__project"
        )
        return cached(request, [formats.publication_json(v) for v in versions])


class VersionDetailApi(APIView):
    @extend_schema(responses=VersionOut)
    def get(self, request: Request, publication_id: int, number: int) -> Response | HttpResponse:
        publication = selectors.publication_get(user=request.user, publication_id=publication_id)
        version = selectors.version_get(publication=publication, number=number)
        return cached(request, formats.publication_json(version))


class NinjsApi(APIView):
    """The current (or a given) version as IPTC ninjs 3.1."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(
        self, request: Request, publication_id: int, number: int | None = None
    ) -> Response | HttpResponse:
        publication = selectors.publication_get(user=request.user, publication_id=publication_id)
        version = selectors.version_get(publication=publication, number=number)
        return cached(request, formats.ninjs(version))


class CorrectApi(APIView):
    @extend_schema(request=CorrectIn, responses={201: VersionOut})
    def post(self, request: Request, publication_id: int) -> Response:
        publication = selectors.publication_get(user=request.user, publication_id=publication_id)
        data = CorrectIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        version = services.publication_correct(
            publication=publication,
            user=request.user,
            body=values["body"],
            note=values["note"],
            headline=values.get("headline"),
            summary=values.get("summary"),
            tags=values.get("tags"),
            expected_version=values.get("version"),
        )
        return Response(formats.publication_json(version), status=201)


class UnpublishApi(APIView):
    @extend_schema(request=UnpublishIn, responses={200: PublicationOut})
    def post(self, request: Request, publication_id: int) -> Response:
        publication = selectors.publication_get(user=request.user, publication_id=publication_id)
        data = UnpublishIn(data=request.data)
        data.is_valid(raise_exception=True)
        publication = services.publication_unpublish(
            publication=publication, user=request.user, reason=data.validated_data["reason"]
        )
        return Response(publication_out(publication))


class CancelScheduleApi(APIView):
    @extend_schema(request=None, responses={200: PublicationOut})
    def post(self, request: Request, publication_id: int) -> Response:
        publication = selectors.publication_get(user=request.user, publication_id=publication_id)
        services.publication_schedule_cancel(publication=publication, user=request.user)
        publication.refresh_from_db()
        return Response(publication_out(publication))


class DeliveryListApi(APIView):
    @extend_schema(responses=DeliveryOut(many=True))
    def get(self, request: Request, publication_id: int) -> Response | HttpResponse:
        publication = selectors.publication_get(user=request.user, publication_id=publication_id)
        rows = Delivery.objects.filter(publication=publication).select_related(
            "destination", "version__publication"
        )
        admin = _is_admin(request, publication.project)
        rows = rows.order_by("destination__name", "sequence")
        return cached(request, DeliveryOut(rows, many=True, context={"admin": admin}).data)


class DeliveryRetryApi(APIView):
    @extend_schema(request=None, responses={200: DeliveryOut})
    def post(self, request: Request, delivery_id: int) -> Response:
        delivery = selectors.delivery_get(user=request.user, delivery_id=delivery_id)
        delivery = services.delivery_retry_now(delivery=delivery, user=request.user)
        admin = _is_admin(request, delivery.publication.project)
        return Response(DeliveryOut(delivery, context={"admin": admin}).data)


def _is_admin(request: Request, project: Any) -> bool:
    """Receivers' answers may quote internal details: project admins only (a token never)."""
    return role_at_least(membership_role(user=request.user, project=project), Role.ADMIN)


def _members_feed(request: Request, project: Project) -> dict[str, Any]:
    """The members' feed: item links go to the public articles once the project has a public
    base URL (see ``publishing.feeds``), to the studio's publication pages until then."""
    return {
        "title": project.name,
        "home_url": request.build_absolute_uri(reverse("publication_list", args=[project.slug])),
        "feed_url": request.build_absolute_uri(request.path),
        "versions": selectors.feed_versions(project_id=project.pk),
        "article_url": feeds.article_links(
            request, project, feeds.feed_settings_get(project=project)
        ),
    }


class JsonFeedApi(APIView):
    """JSON Feed 1.1 of a project's live publications (newest 50)."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, slug: str) -> Response | HttpResponse:
        project, _ = project_get(user=request.user, slug=slug)
        feed = formats.json_feed(**_members_feed(request, project))
        return cached(request, feed, content_type="application/feed+json")


class AtomFeedApi(APIView):
    """Atom 1.0 of a project's live publications (newest 50)."""

    @extend_schema(responses={(200, "application/atom+xml"): OpenApiTypes.STR})
    def get(self, request: Request, slug: str) -> HttpResponse:
        project, _ = project_get(user=request.user, slug=slug)
        xml = formats.atom_feed(**_members_feed(request, project))
        tag = etag(xml.encode())
        if tag in request.headers.get("If-None-Match", ""):
            response = HttpResponse(status=304)
        else:
            response = HttpResponse(xml, content_type="application/atom+xml; charset=utf-8")
        response["ETag"] = tag
        return response
