"""Helpers of the publishing tests: approved drafts, and real HTTP receivers on 127.0.0.1
(generic Standard Webhooks, WordPress-shaped, Ghost-shaped) that the tests start and stop."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from review import lifecycle
from review.lifecycle import DraftStatus
from review.models import CheckKind, CheckResult, CheckStatus
from tests.factories import make_draft

STORY = (
    "The chess club in the old town hall celebrated its centenary with a tournament for "
    "players of every age.\n\nThe youngest entrant won most of her games against much older "
    "opponents."
)


def approved_draft(cast: dict[str, Any], *, title: str = "Chess club turns 100", text: str = STORY):
    """A draft with two check results, approved by bob (the editor)."""
    draft = make_draft(
        cast["newsroom"], cast["bob"], text, title=title, status=DraftStatus.AWAITING_REVIEW
    )
    for kind, engine, version, scores in [
        (CheckKind.TOXICITY, "detoxify", "0.5.4", {"toxicity": 0.01}),
        (CheckKind.LEXICAL, "minhash-lsh", "datasketch-2.0.0", {"max_similarity": 3.0}),
    ]:
        CheckResult.objects.create(
            draft=draft,
            draft_version=draft.version,
            kind=kind,
            status=CheckStatus.OK,
            engine=engine,
            engine_version=version,
            scores=scores,
        )
    return lifecycle.draft_transition(draft=draft, action="approve", user=cast["bob"])


class Receiver:
    """A real HTTP server on 127.0.0.1 in a thread. ``respond(handler, body) -> (status, json)``
    (or ``(status, json, headers)``) decides each answer; every request is kept in
    ``requests`` (method, path, headers, body).
    ``stop()`` closes the port (a receiver that is down); ``start()`` opens it again on the same
    port."""

    def __init__(self, respond: Callable[[Any, bytes], tuple[int, Any]]) -> None:
        self.respond = respond
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.port = 0
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with receiver.lock:
                    receiver.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                        }
                    )
                # (status, json) or (status, json, extra headers) such as a redirect's location
                status, payload, *extra = receiver.respond(self, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in (extra[0] if extra else {}).items():
                    self.send_header(name, value)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.thread is not None:
            self.thread.join(timeout=10)
            self.thread = None

    def bodies(self, method: str = "POST") -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests if r["method"] == method]


def sources_indexed(project: Any) -> None:
    """Embed every published text and archive passage of ``project`` now (the worker's
    embedding chain, run inline), so a correction's semantic check covers them all."""
    from review.services.embedding import passages_embed

    while passages_embed(project_id=project.pk):
        pass


def start(receivers: list[Receiver], respond: Callable[[Any, bytes], tuple[int, Any]]) -> Receiver:
    """A receiver started and kept in the ``receivers`` fixture's list (stopped at the end)."""
    receiver = Receiver(respond).start()
    receivers.append(receiver)
    return receiver
