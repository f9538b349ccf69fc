"""Fixtures of the site tier: the built book, served locally, in headless Chromium.

The site must already be built in _build/html (`make test` builds it first; so
does `make book`). It is served by http.server on 127.0.0.1 on a free port, and
driven by the system Chromium through playwright's sync API (never `playwright
install`). Every request that is not to that server is blocked and recorded.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "html"

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]

# Console errors and uncaught page errors that Jupyter Book 1 itself produces and that
# break nothing. Anything else fails the page. (substring, why it is harmless)
KNOWN_HARMLESS_ERRORS = [
    (
        "Identifier 'THEBE_JS_URL' has already been declared",
        "Sphinx 7 adds sphinx-thebe's inline script twice (fixed in Sphinx 8.2, which JB1 cannot use)",
    ),
    (
        "Got invalid theme mode",
        "pydata-sphinx-theme on a first visit, before a light/dark mode is stored; it resets to auto",
    ),
]


@pytest.fixture(scope="session")
def site_dir() -> Path:
    if not (SITE / "index.html").is_file():
        pytest.fail(
            f"no built site in {SITE.relative_to(ROOT)}/: run `make book` first (`make test` does)",
            pytrace=False,
        )
    return SITE


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def base_url(site_dir: Path) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site_dir))
    )
    thread = threading.Thread(target=server.serve_forever, name="site-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Visit:
    """One page load and everything that went wrong during it."""

    url: str
    page: Any
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    offsite_requests: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        bad_console = [e for e in self.console_errors if not any(k in e for k, _ in KNOWN_HARMLESS_ERRORS)]
        return (
            [f"console error: {e}" for e in bad_console]
            + [f"failed request: {r}" for r in self.failed_requests]
            + [f"off-site request (blocked): {r}" for r in self.offsite_requests]
        )


@pytest.fixture(scope="session")
def browser_context(
    requires_chromium: str, base_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    user_data = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(user_data),
            executable_path=requires_chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(30_000)
        context.offsite = []  # requests to anything but the local server, blocked

        def route(r: Any) -> None:
            if r.request.url.startswith(base_url):
                r.continue_()
            else:
                context.offsite.append(r.request.url)
                r.abort("blockedbyclient")

        context.route("**/*", route)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def visit(browser_context: Any, base_url: str) -> Iterator[Any]:
    """visit("notebooks/x.html") -> Visit: load a page, wait until the network is idle."""
    opened: list[Any] = []

    def _visit(path: str, wait_for: str | None = None) -> Visit:
        page = browser_context.new_page()
        opened.append(page)
        v = Visit(url=base_url + path, page=page)
        page.on("console", lambda m: m.type == "error" and v.console_errors.append(m.text))
        page.on("pageerror", lambda e: v.console_errors.append(str(e)))
        page.on(
            "requestfailed",
            lambda r: (
                r.url not in browser_context.offsite and v.failed_requests.append(f"{r.url} ({r.failure})")
            ),
        )
        page.on(
            "response", lambda r: r.status >= 400 and v.failed_requests.append(f"{r.url} (HTTP {r.status})")
        )
        before = len(browser_context.offsite)
        page.goto(v.url, wait_until="load")
        page.wait_for_load_state("networkidle")
        if wait_for:
            page.wait_for_selector(wait_for, state="visible")
            page.wait_for_load_state("networkidle")
        v.offsite_requests = browser_context.offsite[before:]
        return v

    yield _visit
    for page in opened:
        page.close()
