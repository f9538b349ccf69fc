"""The built static site, as a reader's browser sees it (site tier).

- every built page loads in headless Chromium with no console error (beyond the
  known harmless ones of Jupyter Book 1), no failed request and no off-site request;
- every script and stylesheet in the built HTML is served by the site itself (no CDN);
- widgets render, and a lab's controls work on the static page with no kernel;
- search finds terms of the labs; the launch buttons are well formed; no page is orphaned;
- the light/dark theme switcher is there.
"""

from __future__ import annotations

import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "html"


def site_pages() -> list[str]:
    """Every HTML page of the built site, relative to its root (assets and sources excluded)."""
    if not SITE.is_dir():
        return []
    skip = {"_static", "_sources", "_images", "_downloads", "reports", "jupyter_execute"}
    return sorted(
        p.relative_to(SITE).as_posix()
        for p in SITE.rglob("*.html")
        if not skip.intersection(p.relative_to(SITE).parts[:-1])
    )


PAGES = site_pages()
NOTEBOOK_PAGES = [p for p in PAGES if p.startswith("notebooks/")]
KEY_PAGE = "notebooks/pod-network.html"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
SEARCH_TERMS = ["bridge", "veth"]


def pages_or_missing(pages: list[str]) -> list[str]:
    # With no site, collect one test that fails clearly instead of silently collecting none.
    return pages or ["<no built site: run make book>"]


def read(page: str) -> str:
    path = SITE / page
    if not path.is_file():
        pytest.fail(
            f"{page} is not in the built site {SITE.relative_to(ROOT)}/: run `make book`", pytrace=False
        )
    return path.read_text(encoding="utf8")


class _Refs(HTMLParser):
    """Collect the URLs a page loads (scripts, stylesheets, icons, preloads) and its links."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[tuple[str, str]] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("script", "img", "iframe", "source", "audio", "video") and a.get("src"):
            self.loads.append((tag, a["src"]))
        elif tag == "link" and a.get("href"):
            rel = set(a.get("rel", "").lower().split())
            if rel & {"stylesheet", "icon", "preload", "modulepreload", "manifest", "shortcut"}:
                self.loads.append((f"link rel={a.get('rel')}", a["href"]))
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])


def refs(page: str) -> _Refs:
    parser = _Refs()
    parser.feed(read(page))
    return parser


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))


# --------------------------------------------------------------------------- static checks


def test_site_is_built(site_dir: Path) -> None:
    assert (site_dir / "index.html").is_file()
    assert PAGES, "no HTML pages in the built site"
    assert KEY_PAGE in PAGES, f"{KEY_PAGE} was not built"


@pytest.mark.parametrize("page", pages_or_missing(PAGES))
def test_everything_a_page_loads_is_local(page: str) -> None:
    offsite = [
        f"<{tag}> {url}"
        for tag, url in refs(page).loads
        if urlsplit(url).scheme not in ("", "data") or url.startswith("//")
    ]
    assert not offsite, f"{page} loads from off the site:\n" + "\n".join(offsite)


# --------------------------------------------------------------------------- in the browser


@pytest.mark.parametrize("page", pages_or_missing(PAGES))
def test_page_loads_cleanly(visit, page: str) -> None:
    v = visit(page)
    html = read(page)
    if WIDGET_VIEW in html:
        views = html.count(f'<script type="{WIDGET_VIEW}">')
        v.page.wait_for_selector(".widget-subarea .jupyter-widgets", state="visible")
        v.page.wait_for_load_state("networkidle")
        rendered = v.page.locator(".widget-subarea > .jupyter-widgets").count()
        assert rendered >= views, f"{page}: {views} widget views, {rendered} rendered"
        body = v.page.inner_text("body")
        assert "Error displaying widget" not in body, f"{page}: a widget failed to render"
    if 'class="math' in html:
        v.page.wait_for_selector("mjx-container", state="attached", timeout=20_000)
        v.page.wait_for_load_state("networkidle")
    assert not v.problems(), f"{page}:\n" + "\n".join(v.problems())


@pytest.mark.parametrize("term", SEARCH_TERMS)
def test_search_finds(visit, term: str) -> None:
    v = visit(f"search.html?q={term}")
    results = v.page.locator("#search-results ul.search li")
    results.first.wait_for(state="visible", timeout=20_000)
    assert results.count() >= 1, f"search for {term!r} found nothing"
    assert not v.problems(), "\n".join(v.problems())


def test_no_page_is_orphaned(visit) -> None:
    """Every page is reachable from the book's navigation (the toc), except the specials."""
    v = visit("index.html")  # redirects to the root page of the toc
    v.page.wait_for_selector("nav.bd-docs-nav")
    hrefs = v.page.eval_on_selector_all("nav.bd-docs-nav a[href]", "as => as.map(a => a.href)")
    linked = {urlsplit(h).path.lstrip("/") for h in hrefs}
    linked.add(urlsplit(v.page.url).path.lstrip("/"))
    specials = {"index.html", "genindex.html", "search.html", "py-modindex.html"}
    orphans = [p for p in PAGES if p not in linked and p not in specials]
    assert not orphans, f"built pages not reachable from the navigation: {orphans}"


def test_theme_switcher(visit) -> None:
    v = visit("index.html")
    button = v.page.locator("button.theme-switch-button").first
    button.wait_for(state="visible")
    before = v.page.evaluate("() => document.documentElement.dataset.mode")
    button.click()
    after = v.page.evaluate("() => document.documentElement.dataset.mode")
    assert before != after, f"clicking the theme switcher left the mode at {before!r}"
    modes = set()
    for _ in range(3):
        button.click()
        modes.add(v.page.evaluate("() => document.documentElement.dataset.theme"))
    assert {"light", "dark"} <= modes, f"the switcher cycles through {modes}, expected light and dark"


@pytest.mark.parametrize("page", pages_or_missing(NOTEBOOK_PAGES))
def test_launch_and_download_buttons(page: str) -> None:
    cfg = config()
    repo_url = cfg["repository"]["url"].rstrip("/")
    branch = cfg["repository"].get("branch", "main")
    book = cfg["repository"].get("path_to_book", "").strip("/")
    launch = cfg["launch_buttons"]
    ui = {"jupyterlab": "lab/tree", "classic": "tree"}[launch.get("notebook_interface", "classic")]
    org, repo = urlsplit(repo_url).path.strip("/").split("/")[-2:]
    nb_path = (f"{book}/" if book else "") + page.removesuffix(".html") + ".ipynb"
    links = refs(page).links

    def one(prefix: str) -> str:
        found = [href for href in links if href.startswith(prefix)]
        assert len(found) == 1, f"{page}: expected one launch link starting {prefix}, found {found}"
        parts = urlsplit(found[0])
        assert parts.scheme == "https" and parts.netloc, f"not a well-formed https URL: {found[0]}"
        return found[0]

    binder = one(launch["binderhub_url"].rstrip("/") + "/")
    assert (
        binder == f"{launch['binderhub_url'].rstrip('/')}/v2/gh/{org}/{repo}/{branch}?urlpath={ui}/{nb_path}"
    )

    colab = one(launch["colab_url"].rstrip("/") + "/")
    assert colab == f"{launch['colab_url'].rstrip('/')}/github/{org}/{repo}/blob/{branch}/{nb_path}"

    hub = urlsplit(one(launch["jupyterhub_url"].rstrip("/") + "/"))
    assert hub.path == "/hub/user-redirect/git-pull"
    query = {k: v[0] for k, v in parse_qs(hub.query).items()}
    assert query == {"repo": repo_url, "urlpath": f"{ui}/{repo}/{nb_path}", "branch": branch}

    downloads = [h for h in links if h.endswith(".ipynb") and "_sources/" in h]
    assert downloads, f"{page}: no download link for the notebook"
    target = (SITE / page).parent / downloads[0]
    assert target.resolve().is_file(), f"{page}: the download link {downloads[0]} is broken"


# --------------------------------------------------------------------------- controls work with no kernel

VISIBLE_OUTPUT_JS = """
async (area) => {
  // What a reader sees in a cell's output, except the dropdowns themselves:
  // visible text, and visible images by content (an Image widget gets a fresh
  // blob: URL each time it is shown, so its URL says nothing).
  const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length)
      && getComputedStyle(el).visibility !== 'hidden';
  const texts = [];
  const walker = document.createTreeWalker(area, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!n.textContent.trim() || !el || el.closest('.widget-dropdown, select')) continue;
    if (visible(el)) texts.push(n.textContent.trim());
  }
  const images = [];
  for (const img of area.querySelectorAll('img')) {
    if (!visible(img)) continue;
    if (/^(blob|data):/.test(img.src)) {
      const bytes = await (await fetch(img.src)).arrayBuffer();
      const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
      images.push('sha256:' + Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join(''));
    } else {
      images.push(img.src);
    }
  }
  return JSON.stringify({texts, images});
}
"""


def _snapshot(area) -> str:
    return area.evaluate(VISIBLE_OUTPUT_JS)


def _wait_change(area, old: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    now = _snapshot(area)
    while now == old and time.monotonic() < deadline:
        time.sleep(0.1)
        now = _snapshot(area)
    return now


@pytest.mark.parametrize("page", pages_or_missing(NOTEBOOK_PAGES))
def test_controls_change_the_display_without_a_kernel(visit, page: str) -> None:
    """THE static-page promise: choosing another value of a lab's dropdown changes what is shown."""
    html = read(page)
    if page != KEY_PAGE and WIDGET_VIEW not in html:
        pytest.skip(f"{page} has no widgets")
    v = visit(page, wait_for=".cell_output .widget-dropdown select")
    selects = v.page.locator(".cell_output .widget-dropdown select")
    count = selects.count()
    assert count >= 1, f"{page}: no dropdown control in the lab's outputs"
    for i in range(count):
        select = selects.nth(i)
        select.scroll_into_view_if_needed()
        area = select.locator(
            "xpath=ancestor::div[contains(concat(' ', normalize-space(@class), ' '), ' cell_output ')][1]"
        )
        options = select.locator("option").count()
        assert options >= 2, f"{page}: dropdown {i} offers {options} option(s)"
        start = select.evaluate("s => s.selectedIndex")
        before = _snapshot(area)
        select.select_option(index=(start + 1) % options)
        after = _wait_change(area, before)
        assert after != before, (
            f"{page}: changing dropdown {i} changed nothing on the static page (a dead widget):\n{before}"
        )
        select.select_option(index=start)
        back = _wait_change(area, after)
        assert back == before, f"{page}: choosing the first value again did not restore the display"
    assert not v.problems(), "\n".join(v.problems())


def test_vendored_widget_and_math_assets_are_served(site_dir: Path) -> None:
    """The CDN replacements are in the site (built with the vendored config, not the CDN fallback)."""
    static = site_dir / "_static"
    for asset in (
        "requirejs/require.js",
        "widgets-paths.js",
        "html-manager/dist/embed-amd.js",
        "mathjax/es5/tex-mml-chtml.js",
    ):
        assert (static / asset).is_file(), (
            f"_static/{asset} is missing: was the book built with CDN fallback?"
        )
    page = read(KEY_PAGE)
    order = [
        page.find(f"_static/{a}")
        for a in ("requirejs/require.js", "widgets-paths.js", "html-manager/dist/embed-amd.js")
    ]
    assert -1 not in order and order == sorted(order), (
        "require.js, widgets-paths.js, embed-amd.js must load in this order"
    )
