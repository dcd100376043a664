"""The rendered HTML book, and its widgets in a real headless browser with no network.

Two books are checked:

* ``built_book`` (session fixture from ``conftest.py``): the real book, built
  from the executed notebooks of every chapter;
* ``demo_book`` (defined here): a one-notebook book holding a ``frame_slider``
  and a 3 × 2 ``frame_grid``, so the widget mechanism is tested on its own,
  independently of what the chapters happen to show.

The browser is Debian's ``/usr/bin/chromium`` driven by playwright (never
``playwright install``). Every request not addressed to the local server is
blocked and recorded, so the widgets must render and switch offline.
"""
from __future__ import annotations

import functools
import hashlib
import http.server
import re
import shutil
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
]
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
SLIDER_HANDLE = ".widget-slider .noUi-handle"
C1_PAGE = "notebooks/part_c/c1_chmm_generator.html"
C2_PAGE = "notebooks/part_c/c2_learning_models.html"
DEMO_PAGE = "notebooks/demo/widget_demo.html"

# The drawing function of the demo notebook; the test renders it again to know
# which PNG each slider position must show.
DEMO_RENDER_SOURCE = '''\
from matplotlib.figure import Figure

def line(slope, offset=0.0):
    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    ax.plot([0, 1], [offset, offset + slope], color="C0", lw=3)
    ax.set_ylim(-2, 3)
    ax.set_title(f"slope {slope:.2f}, offset {offset:.1f}")
    return fig
'''
DEMO_SLOPES = [0.0, 1.0, 2.0]
DEMO_OFFSETS = [-1.0, 0.0]
DEMO_ETAS = [0.0, 0.5, 1.0, 1.5]


# --- fixtures ------------------------------------------------------------------

@pytest.fixture(scope="session")
def demo_book(tmp_path_factory) -> Path:
    """Execute (papermill) and build a one-notebook book; return its HTML folder."""
    import nbformat
    import papermill
    from tasknb.book.html import build

    root = tmp_path_factory.mktemp("demo_book")
    shutil.copy2(REPO_ROOT / "_config.yml", root / "_config.yml")
    shutil.copytree(REPO_ROOT / "book", root / "book")  # prose, bibliography, _widget_js
    (root / "_toc.yml").write_text(
        "format: jb-book\n"
        "root: book/intro\n"
        "parts:\n"
        "  - caption: Demo\n"
        "    chapters:\n"
        "      - file: notebooks/demo/widget_demo\n"
        "      - file: book/how_to_run\n"
        "      - file: book/references\n",
        encoding="utf-8",
    )
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [
        nbformat.v4.new_markdown_cell(
            "# Widget demo\n\nEvery frame below was drawn before the page was built, "
            "for $\\eta \\in \\{0, \\tfrac12, 1, \\tfrac32\\}$."
        ),
        nbformat.v4.new_code_cell(f"etas = {DEMO_ETAS!r}", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            DEMO_RENDER_SOURCE
            + "\nfrom tasknb.book.widgets import frame_slider, frame_grid\n"
            + 'frame_slider([line(eta) for eta in etas], etas, "η")'
        ),
        nbformat.v4.new_code_cell(
            f'frame_grid(line, {{"slope": {DEMO_SLOPES!r}, "offset": {DEMO_OFFSETS!r}}})'
        ),
    ]
    source = root / "widget_demo_source.ipynb"
    nbformat.write(notebook, source)
    executed = root / "_build" / "executed" / "notebooks" / "demo" / "widget_demo.ipynb"
    executed.parent.mkdir(parents=True)
    papermill.execute_notebook(str(source), str(executed), kernel_name="python3",
                               progress_bar=False, cwd=str(REPO_ROOT))
    source.unlink()
    index = build(repo_root=root)
    return index.parent


@pytest.fixture(scope="session")
def demo_frame_hashes() -> dict:
    """sha256 of the PNG the demo shows for each (slope, offset) and each η."""
    from tasknb.book.widgets import figure_to_png

    namespace: dict = {}
    exec(DEMO_RENDER_SOURCE, namespace)
    line = namespace["line"]
    grid = {(s, o): _sha256(figure_to_png(line(s, o))) for s in DEMO_SLOPES for o in DEMO_OFFSETS}
    etas = {eta: _sha256(figure_to_png(line(eta))) for eta in DEMO_ETAS}
    return {"grid": grid, "eta": etas}


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium driven by playwright."""
    import playwright.sync_api as sync_api  # `make test` installs it: a missing one is a failure
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium; `make test` installs it)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# --- helpers -------------------------------------------------------------------

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _LocalSite:
    """A threaded http.server on 127.0.0.1 (free port) serving one folder."""

    def __init__(self, folder: Path):
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _known_harmless(message: str) -> bool:
    """sphinx-thebe 0.3 (always loaded by Jupyter Book 1) emits its config script
    twice under Sphinx 7, so the second ``const THEBE_JS_URL`` throws. Thebe is
    off in this book; the error touches nothing else on the page."""
    return "THEBE_JS_URL" in message


def _open_offline(browser, url: str):
    """Open ``url`` with every non-local request blocked; return (page, blocked, errors)."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    blocked: list[str] = []
    errors: list[str] = []

    def route(request_route):
        if request_route.request.url.startswith("http://127.0.0.1:"):
            request_route.continue_()
        else:
            blocked.append(request_route.request.url)
            request_route.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda error: _known_harmless(str(error)) or errors.append(str(error)))
    page.on("response", lambda response: response.status >= 400 and errors.append(f"{response.status} {response.url}"))
    page.goto(url)
    page.wait_for_selector(SLIDER_HANDLE, state="visible", timeout=30_000)
    return page, blocked, errors


def _math_rendered(page) -> bool:
    """Whether MathJax (served by the book) typeset at least one formula."""
    page.wait_for_selector("mjx-container", timeout=30_000)
    return page.locator("mjx-container").count() > 0


_SHOWN_FRAME_JS = """
async (handle) => {
    // from the slider up to the widget that also holds the frames
    let box = handle.closest('.widget-slider');
    while (box && !box.querySelector('img.widget-image')) box = box.parentElement;
    const images = Array.from(box.querySelectorAll('img.widget-image'))
        .filter(img => img.getClientRects().length > 0 && getComputedStyle(img).visibility !== 'hidden');
    if (images.length !== 1) return {count: images.length};
    const img = images[0];
    const bytes = await (await fetch(img.src)).arrayBuffer();
    const digest = await crypto.subtle.digest('SHA-256', bytes);
    const hex = Array.from(new Uint8Array(digest)).map(b => b.toString(16).padStart(2, '0')).join('');
    return {count: 1, src: img.src, sha256: hex};
}
"""


def _shown_frame(handle) -> dict:
    """The single frame shown next to a slider handle: its src and the sha256 of its PNG."""
    frame = handle.evaluate(_SHOWN_FRAME_JS)
    assert frame["count"] == 1, f"expected exactly one visible frame next to the slider, found {frame['count']}"
    return frame


def _press(page, handle, key: str = "ArrowRight") -> None:
    handle.focus()
    handle.press(key)
    page.wait_for_timeout(250)


def _readout(handle) -> str:
    return handle.evaluate("h => h.closest('.widget-slider').querySelector('.widget-readout').textContent")


# --- the real book -------------------------------------------------------------

def test_book_has_pages_widget_state_and_local_widget_js(built_book):
    html = Path(built_book)
    for page in ("index.html", "book/intro.html", "book/how_to_run.html", "book/references.html", C1_PAGE, C2_PAGE):
        assert (html / page).is_file(), f"{page} is missing from the built book"
    c1 = (html / C1_PAGE).read_text(encoding="utf-8")
    assert WIDGET_STATE in c1, "the C1 page carries no widget state"
    for page in html.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        # no script or stylesheet from the network: widget JS, MathJax, everything is local
        remote = re.findall(r"<(?:script|link)[^>]*\b(?:src|href)=\"((?:https?:)?//[^\"]+)\"", text)
        assert not remote, f"{page.relative_to(html)} loads from the network: {remote}"
    static = html / "_static"
    for name in ("require.js", "embed-amd.js", "widgets-config.js", "mathjax/tex-mml-chtml.js"):
        assert (static / name).is_file(), f"_static/{name} is missing"


def _chapter_pages() -> list[str]:
    """The HTML page of every notebook listed in _toc.yml, e.g. notebooks/part_c/c3_replica_theory.html."""
    toc = (REPO_ROOT / "_toc.yml").read_text(encoding="utf-8")
    return [f"{path}.html" for path in re.findall(r"file:\s*(notebooks/\S+)", toc)]


def test_every_notebook_is_a_chapter():
    from tasknb.book.runner import list_notebooks

    in_toc = {Path(p).stem for p in _chapter_pages()}
    on_disk = {path.stem for path in list_notebooks(REPO_ROOT).values()}
    assert on_disk == in_toc, f"notebooks missing from _toc.yml: {sorted(on_disk - in_toc)}; " \
                              f"toc entries without a notebook: {sorted(in_toc - on_disk)}"


@pytest.mark.parametrize("chapter", _chapter_pages())
def test_chapter_slider_switches_frames_offline(built_book, browser, chapter):
    """Each chapter page exists, embeds its widget state, and its first slider works with no kernel or network."""
    html = Path(built_book) / chapter
    assert html.is_file(), f"{chapter} is missing from the built book"
    assert WIDGET_STATE in html.read_text(encoding="utf-8"), f"{chapter} carries no widget state"
    with _LocalSite(Path(built_book)) as site:
        page, blocked, errors = _open_offline(browser, site.url + chapter)
        handle = page.locator(SLIDER_HANDLE).first
        handle.scroll_into_view_if_needed()
        before = _shown_frame(handle)
        _press(page, handle)
        after = _shown_frame(handle)
        page.close()
    assert after["sha256"] != before["sha256"], f"ArrowRight on the first slider of {chapter} did not change the frame"
    assert not errors, f"errors while loading {chapter}: {errors}"
    assert not blocked, f"{chapter} tried to reach the network: {blocked}"


# --- the demo book: the mechanism on its own --------------------------------------

def test_build_refuses_a_notebook_with_an_error_output(tmp_path):
    import nbformat
    from tasknb.book.html import build

    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "book", tmp_path / "book")
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1 / 0")
    cell.outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                                           traceback=[])]
    notebook.cells = [cell]
    target = tmp_path / "executed" / "notebooks" / "part_c" / "c1_chmm_generator.ipynb"
    target.parent.mkdir(parents=True)
    nbformat.write(notebook, target)
    with pytest.raises(RuntimeError, match="holds errors: ZeroDivisionError"):
        build(executed_dir="executed", html_dir="html", repo_root=tmp_path)


def test_demo_book_html(demo_book):
    page = (demo_book / DEMO_PAGE).read_text(encoding="utf-8")
    assert WIDGET_STATE in page
    scripts = re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", page)
    widget_scripts = [s.split("?")[0] for s in scripts if re.search(r"require|embed-amd|widgets-config", s)]
    assert widget_scripts == ["../../_static/require.js", "../../_static/widgets-config.js",
                              "../../_static/embed-amd.js"], widget_scripts
    assert "cdn.jsdelivr.net" not in page and "cdnjs.cloudflare.com" not in page
    intro = (demo_book / "book" / "intro.html").read_text(encoding="utf-8")
    assert "embed-amd.js" not in intro, "widget JavaScript must only be loaded on pages with widgets"


def test_demo_sliders_switch_frames_offline(demo_book, demo_frame_hashes, browser, tmp_path):
    with _LocalSite(demo_book) as site:
        page, blocked, errors = _open_offline(browser, site.url + DEMO_PAGE)
        handles = page.locator(SLIDER_HANDLE)
        assert handles.count() == 3, "expected the η slider and the two grid sliders"
        eta, slope, offset = handles.nth(0), handles.nth(1), handles.nth(2)

        # frame_slider: each step shows the frame of its value, the readout names it
        assert _readout(eta) == "η = 0.00"
        assert _shown_frame(eta)["sha256"] == demo_frame_hashes["eta"][0.0]
        _press(page, eta)
        assert _readout(eta) == "η = 0.50"
        assert _shown_frame(eta)["sha256"] == demo_frame_hashes["eta"][0.5]

        # frame_grid: the frame follows both sliders, in either order
        grid = demo_frame_hashes["grid"]
        assert _shown_frame(slope)["sha256"] == grid[(0.0, -1.0)]
        _press(page, offset)                 # offset -1 -> 0
        assert _shown_frame(slope)["sha256"] == grid[(0.0, 0.0)]
        _press(page, slope)                  # slope 0 -> 1: the new branch keeps offset 0
        assert _shown_frame(slope)["sha256"] == grid[(1.0, 0.0)]
        _press(page, slope)                  # slope 1 -> 2
        assert _shown_frame(slope)["sha256"] == grid[(2.0, 0.0)]
        _press(page, offset, "ArrowLeft")    # offset 0 -> -1
        assert _shown_frame(slope)["sha256"] == grid[(2.0, -1.0)]
        assert _readout(slope) == "slope = 2.00" and _readout(offset) == "offset = -1.00"

        assert _math_rendered(page), "MathJax did not typeset the demo's formula"
        page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
        page.close()
    assert not errors, f"errors while loading the demo page: {errors}"
    assert not blocked, f"the demo page tried to reach the network: {blocked}"
