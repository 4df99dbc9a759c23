"""Websocket routes of the review app (collected by contentstudio.routing)."""

from __future__ import annotations

from django.urls import path

from review.consumers import ProjectConsumer, QueueConsumer

websocket_urlpatterns = [
    path("ws/projects/<slug:slug>/", ProjectConsumer.as_asgi()),
    path("ws/queue/", QueueConsumer.as_asgi()),
]
