from __future__ import annotations

from django.urls import path

from generation.consumers import JobConsumer
from generation.finetune.routing import websocket_urlpatterns as finetune_ws
from review.consumers import ProjectConsumer, QueueConsumer

websocket_urlpatterns = [
    path("ws/jobs/<int:job_id>/", JobConsumer.as_asgi()),
    path("ws/projects/<slug:slug>/", ProjectConsumer.as_asgi()),
    path("ws/queue/", QueueConsumer.as_asgi()),
    *finetune_ws,
]
