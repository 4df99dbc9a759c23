"""ASGI entry point: HTTP (Django, static files) and websockets (Channels).

Served by uvicorn (``make run``) or daphne. In the embedded set-up the Celery worker starts here,
in a thread of this process, because the in-memory broker and channel layer reach no further.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contentstudio.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - needs the app registry
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from contentstudio.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Static files straight from the apps and static/: no collectstatic step for a
        # self-hosted studio (put a CDN or nginx in front for heavy traffic).
        "http": ASGIStaticFilesHandler(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns()))
        ),
    }
)

if settings.EMBEDDED_WORKER_AUTOSTART:
    from contentstudio.embedded import start_embedded_worker

    start_embedded_worker()
    if settings.EMBEDDED_BEAT_AUTOSTART:
        from contentstudio.periodic import start_embedded_beat

        start_embedded_beat()
