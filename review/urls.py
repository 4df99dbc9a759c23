"""Pages and API of the review app (the root urls include this module)."""

from __future__ import annotations

from django.urls import include, path

from review import api
from review.views import archive, drafts, policy, project, queue

project_pages = [
    # A project's home: its generate form, recent jobs and drafts with their review states.
    path("", project.project_home, name="project_detail"),
    path("drafts/<int:draft_id>/", drafts.draft_detail, name="draft_detail"),
    path("drafts/<int:draft_id>/panel/", drafts.draft_panel, name="draft_panel"),
    path("drafts/<int:draft_id>/recheck/", drafts.draft_recheck, name="draft_recheck"),
    path("drafts/<int:draft_id>/activity/", drafts.draft_activity, name="draft_activity"),
    path("drafts/<int:draft_id>/action/", drafts.draft_action, name="draft_action"),
    path("drafts/<int:draft_id>/edit/", drafts.draft_edit, name="draft_edit"),
    path("drafts/<int:draft_id>/comment/", drafts.draft_comment, name="draft_comment"),
    path("drafts/<int:draft_id>/assign/", drafts.draft_assign, name="draft_assign"),
    path("drafts/<int:draft_id>/lock/", drafts.draft_lock, name="draft_lock"),
    path(
        "drafts/<int:draft_id>/regenerate/",
        drafts.draft_regenerate,
        name="draft_regenerate",
    ),
    path("archive/", archive.archive_list, name="archive_list"),
    path("archive/import/", archive.archive_import, name="archive_import"),
    path("archive/imports/<int:run_id>/", archive.import_status, name="import_status"),
    path("archive/indexing/", archive.indexing_status, name="indexing_status"),
    path("archive/<int:document_id>/", archive.document_detail, name="document_detail"),
    path("archive/<int:document_id>/delete/", archive.document_delete, name="document_delete"),
    path("policy/", policy.policy_edit, name="policy_edit"),
]

api_v1 = [
    path("drafts/", api.DraftListApi.as_view(), name="api_drafts"),
    path("drafts/<int:draft_id>/", api.DraftDetailApi.as_view(), name="api_draft"),
    path(
        "drafts/<int:draft_id>/transition/",
        api.DraftTransitionApi.as_view(),
        name="api_draft_transition",
    ),
    path("drafts/<int:draft_id>/edit/", api.DraftEditApi.as_view(), name="api_draft_edit"),
    path(
        "drafts/<int:draft_id>/comments/",
        api.DraftCommentsApi.as_view(),
        name="api_draft_comments",
    ),
]

urlpatterns = [
    path("queue/", queue.queue, name="queue"),
    path("queue/rows/", queue.queue_rows, name="queue_rows"),
    path("queue/bulk/", queue.queue_bulk, name="queue_bulk"),
    path("p/<slug:slug>/", include(project_pages)),
    path("api/v1/", include(api_v1)),
]
