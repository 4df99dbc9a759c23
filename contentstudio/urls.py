"""The root URLs: the core's own pages and API, then each app's ``urls`` module.

The apps are included by name, so the core imports none of them (imports run one way:
contentstudio <- generation <- review).
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from contentstudio import api, views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="project_list", permanent=False)),
    # Browsers ask for /favicon.ico whatever the page says; send them the studio's icon.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("projects/", views.project_list_view, name="project_list"),
    path("workers/", views.workers_view, name="workers"),
    path("workers/restart/", views.workers_restart, name="workers_restart"),
    path("api/v1/projects/", api.ProjectListApi.as_view(), name="api_projects"),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("", include("generation.urls")),
    path("", include("review.urls")),
    path("", include("publishing.urls")),  # publications, export API, webhooks
    path("", include("contentstudio.token_urls")),  # API tokens
    path("", include("finetune.urls")),
    path("admin/", admin.site.urls),
]

# A bad request to the API gets the API's JSON error body, not an HTML page.
handler400 = "contentstudio.views.bad_request"
handler404 = "contentstudio.views.not_found"
handler500 = "contentstudio.views.server_error"
