"""Pages of the fine-tuning app, under /p/<slug>/finetune/ (the root urls include this module)."""

from __future__ import annotations

from django.urls import path

from finetune import eval_views, views

P = "p/<slug:slug>/finetune/"

urlpatterns = [
    path(P, views.runs, name="finetune_runs"),
    path(P + "estimate/", views.estimate, name="finetune_estimate"),
    path(P + "runs/<int:run_id>/", views.run_detail, name="finetune_run"),
    path(P + "runs/<int:run_id>/cancel/", views.run_cancel, name="finetune_run_cancel"),
    path(P + "compare/", views.compare, name="finetune_compare"),
    path(P + "acceptance/", views.dashboard, name="finetune_dashboard"),
    path(P + "pairs.jsonl", views.pairs_export, name="finetune_pairs_export"),
    path(P + "evaluations/", eval_views.evaluations, name="finetune_evaluations"),
    path(P + "evaluations/<int:run_id>/", eval_views.evaluation_detail, name="finetune_evaluation"),
    path(
        P + "evaluations/<int:run_id>/status/",
        eval_views.evaluation_status,
        name="finetune_evaluation_status",
    ),
    path(
        P + "evaluations/<int:run_id>/cancel/",
        eval_views.evaluation_cancel,
        name="finetune_evaluation_cancel",
    ),
    path(
        P + "evaluations/<int:run_id>/export.<str:fmt>",
        eval_views.evaluation_export,
        name="finetune_evaluation_export",
    ),
]
