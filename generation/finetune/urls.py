"""Pages of the fine-tuning app, under /p/<slug>/finetune/ (included by the root urls)."""

from __future__ import annotations

from django.urls import path

from generation.finetune import views

urlpatterns = [
    path("", views.runs, name="finetune_runs"),
    path("estimate/", views.estimate, name="finetune_estimate"),
    path("runs/<int:run_id>/", views.run_detail, name="finetune_run"),
    path("runs/<int:run_id>/cancel/", views.run_cancel, name="finetune_run_cancel"),
    path("compare/", views.compare, name="finetune_compare"),
    path("acceptance/", views.dashboard, name="finetune_dashboard"),
    path("pairs.jsonl", views.pairs_export, name="finetune_pairs_export"),
]
