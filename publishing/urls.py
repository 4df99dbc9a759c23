"""Publishing's URLs: the API under /api/v1/ and the pages under /p/<slug>/ (included by the
root urls with one line)."""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import SpectacularSwaggerView

from publishing import api, feeds, views

api_v1 = [
    path("publications/", api.PublicationListApi.as_view(), name="api_publications"),
    path(
        "publications/<int:publication_id>/",
        api.PublicationDetailApi.as_view(),
        name="api_publication",
    ),
    path(
        "publications/<int:publication_id>/versions/",
        api.VersionListApi.as_view(),
        name="api_publication_versions",
    ),
    path(
        "publications/<int:publication_id>/versions/<int:number>/",
        api.VersionDetailApi.as_view(),
        name="api_publication_version",
    ),
    path(
        "publications/<int:publication_id>/ninjs/",
        api.NinjsApi.as_view(),
        name="api_publication_ninjs",
    ),
    path(
        "publications/<int:publication_id>/versions/<int:number>/ninjs/",
        api.NinjsApi.as_view(),
        name="api_publication_version_ninjs",
    ),
    path(
        "publications/<int:publication_id>/correct/",
        api.CorrectApi.as_view(),
        name="api_publication_correct",
    ),
    path(
        "publications/<int:publication_id>/unpublish/",
        api.UnpublishApi.as_view(),
        name="api_publication_unpublish",
    ),
    path(
        "publications/<int:publication_id>/cancel-schedule/",
        api.CancelScheduleApi.as_view(),
        name="api_publication_cancel_schedule",
    ),
    path(
        "publications/<int:publication_id>/deliveries/",
        api.DeliveryListApi.as_view(),
        name="api_publication_deliveries",
    ),
    path(
        "deliveries/<int:delivery_id>/retry/",
        api.DeliveryRetryApi.as_view(),
        name="api_delivery_retry",
    ),
    path("projects/<slug:slug>/feed.json", api.JsonFeedApi.as_view(), name="api_feed_json"),
    path("projects/<slug:slug>/feed.atom", api.AtomFeedApi.as_view(), name="api_feed_atom"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api_schema"), name="api_docs"),
]

project_pages = [
    path("publications/", views.publication_list, name="publication_list"),
    path("publications/rows/", views.publication_rows, name="publication_rows"),
    path("publications/publish/", views.publication_publish, name="publication_publish"),
    path(
        "publications/<int:publication_id>/",
        views.publication_detail,
        name="publication_detail",
    ),
    path(
        "publications/<int:publication_id>/deliveries/",
        views.publication_deliveries,
        name="publication_deliveries",
    ),
    path(
        "publications/<int:publication_id>/action/",
        views.publication_action,
        name="publication_action",
    ),
    path("deliveries/<int:delivery_id>/retry/", views.delivery_retry, name="delivery_retry"),
    path("feed/", feeds.feed_settings_page, name="feed_settings"),
    path("destinations/", views.destination_list, name="destination_list"),
    path(
        "destinations/<int:destination_id>/",
        views.destination_log,
        name="destination_log",
    ),
    path(
        "destinations/<int:destination_id>/action/",
        views.destination_action,
        name="destination_action",
    ),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("p/<slug:slug>/", include(project_pages)),
    # Readers' feeds: public when the project's admins opened them, 404 otherwise.
    path("feeds/<slug:slug>/feed.json", feeds.public_feed_json, name="public_feed_json"),
    path("feeds/<slug:slug>/feed.atom", feeds.public_feed_atom, name="public_feed_atom"),
]
