"""Websocket routes: each app's ``routing.websocket_urlpatterns``, named in settings.

The apps are named, not imported here, so the core imports none of them.
"""

from __future__ import annotations

from importlib import import_module

from django.conf import settings


def websocket_urlpatterns() -> list:
    patterns: list = []
    for module in settings.WEBSOCKET_ROUTING_MODULES:
        patterns += import_module(module).websocket_urlpatterns
    return patterns
