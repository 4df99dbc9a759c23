"""Publishing in a real headless Chromium against the real ASGI server and worker: an admin
adds a webhook destination (its secret shown once), an editor approves a draft, publishes it,
and watches the delivery reach a receiver on 127.0.0.1 and its log turn green; with the receiver
down a correction waits, and once it is back "retry now" delivers it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks import Webhook

from publishing.models import Delivery, Destination
from review.lifecycle import DraftStatus
from tests.factories import make_draft
from tests.publishing_helpers import STORY, Receiver
from tests.test_browser_review import _orm_beside_playwright, browser, login  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("local_receivers_allowed")]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: dict[str, Any] = {"secret": None, "payloads": []}

    def respond(handler: Any, body: bytes) -> tuple[int, Any]:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        state["payloads"].append(Webhook(state["secret"]).verify(body, headers))
        return 200, {"received": headers["webhook-id"]}

    server = Receiver(respond).start()
    server.state = state  # type: ignore[attr-defined]
    yield server
    server.stop()


def test_an_editor_publishes_and_sees_deliveries_arrive_even_after_the_receiver_was_down(
    asgi_server: str,
    browser: Any,  # noqa: F811
    cast: dict,
    receiver: Receiver,
    settings: Any,
) -> None:
    # The automatic retry waits ten minutes here, so it is the button that sends it.
    settings.PUBLISHING_RETRY_DELAYS = [600]
    # An admin adds the destination; the signing secret is shown once.
    admin = login(browser, asgi_server, "alice")
    admin.goto(f"{asgi_server}/p/newsroom/destinations/")
    admin.fill("#d-name", "Local site")
    admin.select_option("#d-kind", "generic")
    admin.fill("#d-url", receiver.url + "/hooks")
    with admin.expect_navigation():
        admin.click("text=Add destination")
    secret = admin.inner_text("#secret-value").strip()
    assert secret.startswith("whsec_")
    receiver.state["secret"] = secret  # type: ignore[attr-defined]
    admin.goto(f"{asgi_server}/p/newsroom/destinations/")
    assert secret not in admin.content() and "Local site" in admin.content()
    destination = Destination.objects.get()

    # An editor approves a draft on its page, then publishes it from the Publications page.
    draft = make_draft(
        cast["newsroom"],
        cast["bob"],
        STORY,
        title="Chess club turns 100",
        status=DraftStatus.AWAITING_REVIEW,
    )
    page = login(browser, asgi_server, "bob")
    page.goto(f"{asgi_server}/p/newsroom/drafts/{draft.pk}/")
    with page.expect_navigation():
        page.click("#action-approve")
    assert page.locator("#draft-status").inner_text() == "Approved"
    page.goto(f"{asgi_server}/p/newsroom/publications/")
    page.fill(f"#tags-{draft.pk}", "chess, local")
    with page.expect_navigation():
        page.click(f"[data-publish='{draft.pk}']")
    assert "/publications/" in page.url
    # The delivery goes out from the worker; the log turns green without a reload.
    page.wait_for_selector("#deliveries tr[data-status='delivered']", timeout=30_000)
    first = receiver.state["payloads"]  # type: ignore[attr-defined]
    assert [p["type"] for p in first] == ["publication.published"]
    assert first[0]["data"]["tags"] == ["chess", "local"]
    assert (
        page.locator("#deliveries tr[data-status='delivered'] .badge").inner_text() == "Delivered"
    )

    # The receiver goes down; a correction waits, with the reason and its next try shown.
    receiver.stop()
    # the correction is written in the editor (the form is open, the text below its toolbar)
    page.locator("#c-editor").fill("The chess club marked one hundred years of play.")
    page.fill("#c-note", "The club is a century old, not the hall.")
    with page.expect_navigation():
        page.click("#correct button[type=submit]")
    waiting = page.locator("#deliveries tr[data-status='pending']")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#deliveries tr[data-status=pending]')]"
        ".some(r => r.textContent.includes('Could not connect'))",
        timeout=30_000,
    )
    assert waiting.count() == 1
    assert Delivery.objects.get(version__number=2).attempts >= 1

    # It comes back; "retry now" delivers the correction and its row turns green too.
    receiver.start()
    with page.expect_navigation():
        page.click("#deliveries tr[data-status='pending'] button[data-retry]")
    page.wait_for_function(
        "() => document.querySelectorAll('#deliveries tr[data-status=delivered]').length === 2",
        timeout=30_000,
    )
    payloads = receiver.state["payloads"]  # type: ignore[attr-defined]
    assert [p["type"] for p in payloads] == ["publication.published", "publication.corrected"]
    assert "one hundred years" in payloads[1]["data"]["body_text"]
    assert json.dumps(payloads).count(secret) == 0
    # Versions with their diff are on the page.
    page.reload()
    assert page.locator("article.version").count() == 2
    assert "one hundred years" in " ".join(page.locator("article.version ins").all_inner_texts())
    assert destination.deliveries.filter(status="delivered").count() == 2
