"""The OpenAI-compatible backend: vLLM, llama.cpp's server, TGI, ``transformers serve``.

The studio's worker stays thin: it sends requests and relays the server's SSE stream into the
same token frames as the local backends. One streaming request per candidate, each with its own
``seed`` (``transformers serve`` ignores ``n``; vLLM honours it, set "server honours n" to send
one request with ``n``, at the price of per-candidate seeds). Requests run in threads of their own
that only talk to a queue; the calling thread does every callback (the runner's database work
stays in one thread).

Errors fail the job with the server's own message: a refused connection, a timeout, an HTTP
error with the body's ``error.message`` / ``detail``. Failures before the first token are retried
(``max_retries``, with backoff); after it a retry would write a different text, so they are not.
The API key goes into the Authorization header and nowhere else: not in messages, logs or reprs.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from generation.backends.base import Backend
from generation.backends.types import (
    BackendConfig,
    BackendError,
    CandidateOutput,
    OnDelta,
    Provenance,
    SamplingSettings,
    ShouldStop,
    clean_text,
)

USER_AGENT = "ContentStudio"
# Idle kept-alive connections per backend (one per concurrent candidate stream is enough).
POOL_SIZE = 8
_FINISH = {"stop": "eos", "eos_token": "eos", "length": "length", "abort": "cancelled"}


class _Transient(Exception):
    """Worth retrying (nothing streamed yet): refused connection, timeout, 5xx, 429."""


@dataclass
class _Event:
    index: int
    kind: str  # delta | done | error
    text: str = ""
    tokens: int = 0
    finish_reason: str = ""
    error: str = ""


def server_message(status: int, body: bytes) -> str:
    """The server's own words for an HTTP error (OpenAI, vLLM and FastAPI shapes)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500] or f"HTTP {status}"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
        if isinstance(error, str):
            return error[:500]
        if data.get("detail"):
            return str(data["detail"])[:500]
        if data.get("message"):
            return str(data["message"])[:500]
    return text[:500]


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, config: BackendConfig, *, cache_root: Path | None = None) -> None:
        parts = urlsplit(config.base_url.rstrip("/"))
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise BackendError(f"base URL {config.base_url!r} must look like http://host:port/v1.")
        if not config.remote_model:
            raise BackendError("The server's model name is required.")
        self.config = config
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._path = parts.path.rstrip("/")
        self.device = f"server {self._scheme}://{self._host}:{self._port}"
        self.load_seconds = 0.0
        self.context_length = None
        self._pool_lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []

    # -- HTTP --

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self.config.timeout)

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        """An idle kept-alive connection (True) or a new one (False)."""
        with self._pool_lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connection(), False

    def _give_back(self, conn: http.client.HTTPConnection, response: Any) -> None:
        """Keep a connection whose response was read to its end, for the next request: no TCP
        (or TLS) handshake per candidate and per job. Anything else is closed."""
        if response is None or not response.isclosed() or response.will_close:
            conn.close()
            return
        with self._pool_lock:
            if len(self._idle) < POOL_SIZE:
                self._idle.append(conn)
                return
        conn.close()

    def _headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "User-Agent": USER_AGENT,
        }
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return headers

    def _where(self) -> str:
        return f"{self._scheme}://{self._host}:{self._port}{self._path}"

    def _open(self, path: str, body: dict[str, Any] | None) -> tuple[Any, Any]:
        payload = None if body is None else json.dumps(body).encode()
        method = "GET" if body is None else "POST"
        conn, reused = self._take()
        try:
            try:
                conn.request(method, self._path + path, body=payload, headers=self._headers())
                response = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not reused:
                    raise
                # The server closed the idle connection meanwhile: nothing was processed, so
                # a fresh connection is the same request, not a retry.
                conn.close()
                conn = self._connection()
                conn.request(method, self._path + path, body=payload, headers=self._headers())
                response = conn.getresponse()
        except TimeoutError as exc:
            conn.close()
            raise _Transient(
                f"the server at {self._where()} did not answer within {self.config.timeout:g} s"
            ) from exc
        except OSError as exc:
            conn.close()
            raise _Transient(f"cannot reach the server at {self._where()}: {exc}") from exc
        if response.status >= 400:
            body_bytes = response.read()
            conn.close()
            message = (
                f"the server at {self._where()} answered HTTP {response.status}: "
                f"{server_message(response.status, body_bytes)}"
            )
            if response.status >= 500 or response.status == 429:
                raise _Transient(message)
            raise BackendError(message)
        return conn, response

    def _events(self, response: Any) -> Iterator[dict[str, Any]]:
        """The JSON payloads of an SSE stream, until ``data: [DONE]``."""
        buffer: list[str] = []
        while True:
            try:
                raw = response.readline()
            except TimeoutError as exc:
                raise BackendError(
                    f"the server at {self._where()} stopped streaming for more than "
                    f"{self.config.timeout:g} s"
                ) from exc
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("data:"):
                buffer.append(line[5:].lstrip())
                continue
            if line or not buffer:
                continue
            data = "\n".join(buffer)
            buffer = []
            if data == "[DONE]":
                return
            try:
                payload = json.loads(data)
            except ValueError:
                continue
            if isinstance(payload, dict) and payload.get("error"):
                raise BackendError(
                    f"the server at {self._where()} reported: "
                    f"{server_message(500, json.dumps(payload).encode())}"
                )
            yield payload

    # -- the interface --

    def provenance(self) -> Provenance:
        return {
            "backend": self.name,
            "version": f"OpenAI-compatible {self.config.api_mode} API",
            "weights": f"server model {self.config.remote_model}",
            "server": self._where(),
            "sampler": "server-side, seed per request",
        }

    def render_prompt(self, *, system: str, user: str) -> str:
        if self.config.api_mode == "chat":
            # The exact messages sent (the server applies its own chat template).
            messages = []
            if system.strip():
                messages.append({"role": "system", "content": system})
            messages.append({"role": "user", "content": user})
            return json.dumps(messages, ensure_ascii=False)
        parts = [p.strip() for p in (system, user) if p.strip()]
        return "\n\n".join(parts) + "\n\n"

    def count_tokens(self, prompt: str) -> int | None:
        return None

    def _body(
        self, *, prompt: str, settings: SamplingSettings, seed: int, temperature: float, n: int
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.remote_model,
            "max_tokens": settings.max_new_tokens,
            "temperature": temperature,
            "top_p": settings.top_p,
            "seed": int(seed) % 2**31,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if n > 1:
            body["n"] = n
        # Outside the OpenAI API: vLLM understands them, transformers serve refuses them (422).
        if self.config.server_sampling_extras:
            if settings.top_k:
                body["top_k"] = settings.top_k
            if settings.repetition_penalty != 1.0:
                body["repetition_penalty"] = settings.repetition_penalty
            if settings.min_new_tokens:
                body["min_tokens"] = settings.min_new_tokens
        if self.config.api_mode == "chat":
            body["messages"] = json.loads(prompt)
        else:
            body["prompt"] = prompt
        return body

    def _stream_group(self, group: list[dict[str, Any]], stop: threading.Event) -> None:
        for request in group:
            if stop.is_set():
                return
            if not self._stream_one(**request):
                return

    def _stream_one(
        self,
        *,
        indexes: list[int],
        body: dict[str, Any],
        events: queue.Queue[_Event],
        stop: threading.Event,
    ) -> bool:
        """One request (for one candidate, or ``n`` of them): events into the queue."""
        path = "/chat/completions" if self.config.api_mode == "chat" else "/completions"
        attempt = 0
        streamed = False
        tokens = dict.fromkeys(indexes, 0)
        finish: dict[int, str] = {}
        while True:
            conn = response = None
            complete = False
            try:
                conn, response = self._open(path, body)
                for payload in self._events(response):
                    if stop.is_set():
                        return False
                    for choice in payload.get("choices") or []:
                        position = int(choice.get("index") or 0)
                        index = indexes[position] if position < len(indexes) else indexes[0]
                        if self.config.api_mode == "chat":
                            text = (choice.get("delta") or {}).get("content") or ""
                        else:
                            text = choice.get("text") or ""
                        if text:
                            streamed = True
                            tokens[index] += 1
                            events.put(_Event(index, "delta", text=text))
                        if choice.get("finish_reason"):
                            finish[index] = str(choice["finish_reason"])
                    usage = payload.get("usage")
                    if (
                        isinstance(usage, dict)
                        and len(indexes) == 1
                        and usage.get("completion_tokens")
                    ):
                        tokens[indexes[0]] = int(usage["completion_tokens"])
                for index in indexes:
                    reason = finish.get(index, "")
                    events.put(
                        _Event(
                            index,
                            "done",
                            tokens=tokens[index],
                            finish_reason=_FINISH.get(reason, reason or "eos"),
                        )
                    )
                # What follows [DONE] (the end of the chunked body), read after the candidates
                # are done so a server slow to end it never holds a job up: then the connection
                # can carry the next request. If that fails, it is just not kept.
                with contextlib.suppress(Exception):
                    response.read()
                    complete = True
                return True
            except _Transient as exc:
                if streamed or attempt >= self.config.max_retries or stop.is_set():
                    events.put(_Event(indexes[0], "error", error=str(exc)))
                    return False
                attempt += 1
                time.sleep(min(4.0, 0.5 * 2 ** (attempt - 1)))
            except BackendError as exc:
                events.put(_Event(indexes[0], "error", error=str(exc)))
                return False
            except Exception as exc:  # a broken stream: say what broke
                message = f"{type(exc).__name__} from {self._where()}: {exc}"
                events.put(_Event(indexes[0], "error", error=message))
                return False
            finally:
                if conn is not None:
                    if complete:
                        self._give_back(conn, response)
                    else:
                        conn.close()

    def generate(
        self,
        *,
        prompt: str,
        n: int,
        seeds: Sequence[int],
        settings: SamplingSettings,
        on_delta: OnDelta | None = None,
        should_stop: ShouldStop | None = None,
        temperatures: Sequence[float] | None = None,
        preamble: str = "",
    ) -> list[CandidateOutput]:
        temps = list(temperatures) if temperatures else [settings.temperature] * n
        outputs = [CandidateOutput(index=i, seed=int(s)) for i, s in enumerate(seeds[:n])]
        texts = [""] * n
        events: queue.Queue[_Event] = queue.Queue()
        stop = threading.Event()
        if self.config.server_honours_n and n > 1 and len(set(temps)) == 1:
            plans = [(list(range(n)), seeds[0], temps[0], n)]
        else:
            plans = [([i], seeds[i], temps[i], 1) for i in range(n)]
        requests = [
            {
                "indexes": indexes,
                "body": self._body(
                    prompt=prompt, settings=settings, seed=seed, temperature=temp, n=count
                ),
                "events": events,
                "stop": stop,
            }
            for indexes, seed, temp, count in plans
        ]
        # Else one after another: a server that seeds one global generator per request
        # (transformers serve) then gives every candidate its own seed's text.
        concurrent = self.config.server_concurrent_requests
        groups = [[r] for r in requests] if concurrent else [requests]
        threads = [
            threading.Thread(
                target=self._stream_group,
                args=(group, stop),
                name=f"openai-stream-{group[0]['indexes'][0]}",
                daemon=True,
            )
            for group in groups
        ]
        for thread in threads:
            thread.start()
        pending = n
        error = ""
        cancelled = False
        try:
            while pending:
                if should_stop is not None and should_stop():
                    cancelled = True
                    break
                try:
                    event = events.get(timeout=0.05)
                except queue.Empty:
                    continue
                out = outputs[event.index]
                now = time.monotonic()
                if event.kind == "delta":
                    if out.first_token_at is None:
                        out.first_token_at = now
                    text = clean_text(event.text)
                    texts[event.index] += text
                    if on_delta is not None:
                        deltas: list[str | None] = [None] * n
                        deltas[event.index] = text
                        on_delta(deltas)
                elif event.kind == "done":
                    out.finished, out.finished_at = True, now
                    out.finish_reason = event.finish_reason
                    out.completion_tokens = event.tokens
                    pending -= 1
                else:
                    error = event.error
                    break
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=0.2)
        if error:
            raise BackendError(error)
        now = time.monotonic()
        for out, text in zip(outputs, texts, strict=True):
            out.text = text
            if not out.finished:
                out.finished, out.finished_at = True, now
                out.finish_reason = "cancelled" if cancelled else "length"
                out.completion_tokens = out.completion_tokens or 0
        return outputs

    def check(self) -> str:
        started = time.monotonic()
        try:
            conn, response = self._open("/models", None)
            listing = json.loads(response.read() or b"{}")
            self._give_back(conn, response)
        except _Transient as exc:
            raise BackendError(str(exc)) from None
        served = [m.get("id") for m in listing.get("data", []) if isinstance(m, dict)]
        if served and self.config.remote_model not in served:
            raise BackendError(
                f"the server at {self._where()} does not serve {self.config.remote_model!r}; "
                f"it serves: {', '.join(map(str, served[:10]))}"
            )
        report = super().check()
        return f"{report} (server answered /models in {time.monotonic() - started:.1f} s)"
