from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from contentstudio import api as core_api
from contentstudio import views as core_views
from generation import api as gen_api
from generation import views as gen_views
from review import api as review_api
from review import views as review_views

api_v1 = [
    path("projects/", core_api.ProjectListApi.as_view(), name="api_projects"),
    path("projects/<slug:slug>/jobs/", gen_api.JobListCreateApi.as_view(), name="api_jobs"),
    path(
        "projects/<slug:slug>/templates/",
        gen_api.TemplateListApi.as_view(),
        name="api_templates",
    ),
    path("jobs/<int:job_id>/", gen_api.JobDetailApi.as_view(), name="api_job"),
    path("jobs/<int:job_id>/cancel/", gen_api.JobCancelApi.as_view(), name="api_job_cancel"),
    path("models/", gen_api.ModelListApi.as_view(), name="api_models"),
    path("drafts/", review_api.DraftListApi.as_view(), name="api_drafts"),
    path("drafts/<int:draft_id>/", review_api.DraftDetailApi.as_view(), name="api_draft"),
    path(
        "drafts/<int:draft_id>/transition/",
        review_api.DraftTransitionApi.as_view(),
        name="api_draft_transition",
    ),
    path("drafts/<int:draft_id>/edit/", review_api.DraftEditApi.as_view(), name="api_draft_edit"),
    path(
        "drafts/<int:draft_id>/comments/",
        review_api.DraftCommentsApi.as_view(),
        name="api_draft_comments",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="api_schema"),
]

project_pages = [
    path("", core_views.project_detail, name="project_detail"),
    path("generate/", gen_views.generate, name="generate"),
    path("jobs/<int:job_id>/", gen_views.job_detail, name="job_detail"),
    path("jobs/<int:job_id>/cancel/", gen_views.job_cancel, name="job_cancel"),
    path("drafts/<int:draft_id>/", review_views.draft_detail, name="draft_detail"),
    path("drafts/<int:draft_id>/panel/", review_views.draft_panel, name="draft_panel"),
    path("drafts/<int:draft_id>/recheck/", review_views.draft_recheck, name="draft_recheck"),
    path("drafts/<int:draft_id>/activity/", review_views.draft_activity, name="draft_activity"),
    path("drafts/<int:draft_id>/action/", review_views.draft_action, name="draft_action"),
    path("drafts/<int:draft_id>/edit/", review_views.draft_edit, name="draft_edit"),
    path("drafts/<int:draft_id>/comment/", review_views.draft_comment, name="draft_comment"),
    path("drafts/<int:draft_id>/assign/", review_views.draft_assign, name="draft_assign"),
    path("drafts/<int:draft_id>/lock/", review_views.draft_lock, name="draft_lock"),
    path(
        "drafts/<int:draft_id>/regenerate/",
        review_views.draft_regenerate,
        name="draft_regenerate",
    ),
    path("archive/", review_views.archive_list, name="archive_list"),
    path("archive/import/", review_views.archive_import, name="archive_import"),
    path("archive/imports/<int:run_id>/", review_views.import_status, name="import_status"),
    path("archive/<int:document_id>/", review_views.document_detail, name="document_detail"),
    path(
        "archive/<int:document_id>/delete/",
        review_views.document_delete,
        name="document_delete",
    ),
    path("policy/", review_views.policy_edit, name="policy_edit"),
    path("templates/", gen_views.template_list, name="template_list"),
    path("templates/new/", gen_views.template_edit, name="template_create"),
    path("templates/<int:template_id>/", gen_views.template_edit, name="template_edit"),
]

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="project_list", permanent=False)),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("projects/", core_views.project_list_view, name="project_list"),
    path("queue/", review_views.queue, name="queue"),
    path("queue/rows/", review_views.queue_rows, name="queue_rows"),
    path("queue/bulk/", review_views.queue_bulk, name="queue_bulk"),
    path("p/<slug:slug>/", include(project_pages)),
    path("p/<slug:slug>/finetune/", include("generation.finetune.urls")),
    path("api/v1/", include(api_v1)),
    path("admin/", admin.site.urls),
]
