"""Websocket routes of the generation app (collected by contentstudio.routing)."""

from __future__ import annotations

from django.urls import path

from generation.consumers import JobConsumer

websocket_urlpatterns = [
    path("ws/jobs/<int:job_id>/", JobConsumer.as_asgi()),
]
