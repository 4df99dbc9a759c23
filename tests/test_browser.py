"""The studio in a real headless Chromium against the real ASGI server and worker."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch: pytest.MonkeyPatch) -> None:
    # Playwright's sync API runs an event loop in this thread; the test's own ORM reads are
    # plain blocking calls, which Django would otherwise refuse next to a running loop.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module scope: Playwright's sync API keeps an event loop running in this thread while it
    # is open, which would make Django refuse plain ORM calls in the tests that follow.
    from playwright.sync_api import sync_playwright

    if not shutil.which("chromium") and not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is not installed: run `make deps` (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def login(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", f"{username}-password-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/projects/")


def test_an_editor_watches_two_candidates_stream_live_and_finds_the_drafts(
    asgi_server: str,
    browser: Any,
    cast: dict,
    language_model: Any,
    news_template: Any,
    slow_steps: Any,
) -> None:
    from generation.models import Draft, GenerationJob

    slow_steps(0.03)  # about 30 tokens/s, so the page is seen mid-stream
    page = browser.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    login(page, asgi_server, "bob")
    page.goto(f"{asgi_server}/p/newsroom/generate/")
    page.select_option("#id_template", str(news_template.template_id))
    page.fill(f"#var-{news_template.template_id}-headline", "Storm hits the coast")
    page.fill(f"#var-{news_template.template_id}-lede", "A storm hit the coast on Monday.")
    page.fill("#id_n_candidates", "2")
    page.click('summary:has-text("Sampling settings")')
    page.fill("#id_max_new_tokens", "120")
    page.click("#generate-form button[type=submit]")
    page.wait_for_url("**/jobs/*/")
    job = GenerationJob.objects.get()

    # text appears in both columns while the job is still running
    texts = page.locator(".candidate [data-role=text]")
    try:
        page.wait_for_function(
            "() => [...document.querySelectorAll('.candidate [data-role=text]')]"
            ".every(el => el.textContent.length > 20)",
            timeout=60_000,
        )
    except Exception as exc:  # seen once in CI, not reproduced: say what the page and job held
        job.refresh_from_db()
        saved = list(Draft.objects.filter(job=job).values_list("model_output", flat=True))
        raise AssertionError(
            f"columns {[texts.nth(i).inner_text() for i in range(texts.count())]!r}, "
            f"page status {page.locator('#job-status').inner_text()!r}, "
            f"job {job.status} {job.error!r}, drafts {saved!r}, console {console!r}"
        ) from exc
    assert page.locator("#job-status").inner_text() == "Running"
    partial = [texts.nth(i).inner_text() for i in range(2)]
    page.wait_for_function(
        "() => document.querySelector('#job-status').textContent === 'Succeeded'",
        timeout=120_000,
    )
    page.wait_for_selector(".candidate [data-role=draft] a >> nth=1")
    # by candidate index: once scored, the page puts the best candidate first
    final = {
        int(c.get_attribute("data-index")): c.locator("[data-role=text]").text_content()
        for c in page.locator(".candidate").all()
    }
    assert all(len(f.strip()) >= 20 for f in final.values()), final
    assert sum(len(p.strip()) for p in partial) <= sum(len(f.strip()) for f in final.values())
    drafts = {d.candidate.index: d.model_output for d in Draft.objects.filter(job=job)}
    assert final == drafts, "the page shows exactly what was saved"
    assert page.locator("#cancel-form").is_hidden()

    page.goto(f"{asgi_server}/p/newsroom/")
    assert page.locator("#drafts tbody tr").count() == 2
    assert page.locator("#jobs tbody tr").count() == 1
    page.close()


def test_cancel_button_stops_a_running_job(
    asgi_server: str,
    browser: Any,
    cast: dict,
    language_model: Any,
    news_template: Any,
    slow_steps: Any,
) -> None:
    from generation import services

    slow_steps(0.05)
    job = services.job_create(
        project=cast["newsroom"],
        user=cast["bob"],
        template_version=news_template,
        variables={"headline": "H", "lede": "L"},
        n_candidates=2,
        settings={"max_new_tokens": 200},
    )
    page = browser.new_page()
    login(page, asgi_server, "bob")
    page.goto(f"{asgi_server}/p/newsroom/jobs/{job.pk}/")
    page.wait_for_function(
        "() => document.querySelector('.candidate [data-role=text]').textContent.length > 5",
        timeout=60_000,
    )
    page.click("#cancel-button")
    page.wait_for_function(
        "() => document.querySelector('#job-status').textContent === 'Cancelled'",
        timeout=10_000,
    )
    job.refresh_from_db()
    assert job.status == "cancelled"
    kept = page.locator(".candidate [data-role=text]").first.text_content()
    assert kept and kept == job.candidates.get(index=0).text
    page.close()
