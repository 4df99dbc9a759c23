"""Pages and API of the generation app (the root urls include this module)."""

from __future__ import annotations

from django.urls import path

from generation import api, views

urlpatterns = [
    path("p/<slug:slug>/generate/", views.generate, name="generate"),
    path("p/<slug:slug>/jobs/<int:job_id>/", views.job_detail, name="job_detail"),
    path("p/<slug:slug>/jobs/<int:job_id>/cancel/", views.job_cancel, name="job_cancel"),
    path("p/<slug:slug>/templates/", views.template_list, name="template_list"),
    path("p/<slug:slug>/templates/new/", views.template_edit, name="template_create"),
    path("p/<slug:slug>/templates/<int:template_id>/", views.template_edit, name="template_edit"),
    path("api/v1/projects/<slug:slug>/jobs/", api.JobListCreateApi.as_view(), name="api_jobs"),
    path(
        "api/v1/projects/<slug:slug>/templates/",
        api.TemplateListApi.as_view(),
        name="api_templates",
    ),
    path("api/v1/jobs/<int:job_id>/", api.JobDetailApi.as_view(), name="api_job"),
    path("api/v1/jobs/<int:job_id>/cancel/", api.JobCancelApi.as_view(), name="api_job_cancel"),
    path("api/v1/models/", api.ModelListApi.as_view(), name="api_models"),
]
