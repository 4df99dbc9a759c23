from __future__ import annotations

from django.urls import path

from finetune.consumers import FineTuneRunConsumer

websocket_urlpatterns = [
    path("ws/finetune/<int:run_id>/", FineTuneRunConsumer.as_asgi()),
]
