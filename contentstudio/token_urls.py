from __future__ import annotations

from django.urls import path

from contentstudio import token_views

urlpatterns = [
    path("p/<slug:slug>/tokens/", token_views.token_list, name="token_list"),
    path(
        "p/<slug:slug>/tokens/<int:token_id>/revoke/",
        token_views.token_revoke,
        name="token_revoke",
    ),
]
