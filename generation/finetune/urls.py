"""Pages of the fine-tuning app, under /p/<slug>/finetune/ (the root urls include this module)."""

from __future__ import annotations

from django.urls import path

from generation.finetune import views

P = "p/<slug:slug>/finetune/"

urlpatterns = [
    path(P, views.runs, name="finetune_runs"),
    path(P + "estimate/", views.estimate, name="finetune_estimate"),
    path(P + "runs/<int:run_id>/", views.run_detail, name="finetune_run"),
    path(P + "runs/<int:run_id>/cancel/", views.run_cancel, name="finetune_run_cancel"),
    path(P + "compare/", views.compare, name="finetune_compare"),
    path(P + "acceptance/", views.dashboard, name="finetune_dashboard"),
    path(P + "pairs.jsonl", views.pairs_export, name="finetune_pairs_export"),
]
