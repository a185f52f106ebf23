"""The book end to end: every chapter executed in the ci profile through ``nsf book`` (the code path
of ``nsf run``), a strict Jupyter Book build, and the rendered site checked in headless Chromium.

The build runs in a throw-away git copy of the working tree (tracked and untracked-not-ignored
files), so the tests never touch the developer's own build, and a chapter that needs a file git
does not know fails here as it would on a clean clone.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

from nsf.book.provenance import repo_root

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _git(cwd: Path, *args: str) -> str:
    who = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t"}
    env = {**os.environ, **who, "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout


def _nsf(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "NSF_REPO_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "nsf", *args], cwd=root, env=env, capture_output=True, text=True,
        check=check,
    )  # fmt: skip


@pytest.fixture(scope="session")
def clone(tmp_path_factory) -> Path:
    """A git copy of the working tree, with the MathJax the Makefile installed."""
    source = repo_root()
    target = tmp_path_factory.mktemp("book") / "nsf-book"
    files = _git(source, "ls-files", "-co", "--exclude-standard", "-z").split("\0")
    for name in filter(None, files):
        if (source / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, target / name)
    mathjax = source / ".cache" / "mathjax-static"
    if not (mathjax / "mathjax" / "tex-chtml.js").exists():
        pytest.fail("MathJax is not installed in .cache/mathjax-static: run `make test`")
    shutil.copytree(mathjax, target / ".cache" / "mathjax-static")
    _git(target, "init", "-q")
    _git(target, "add", "-A")
    _git(target, "commit", "-qm", "snapshot")
    return target


@pytest.fixture(scope="session")
def built(clone) -> str:
    """Run ``nsf book --profile ci`` once (the only book build of the test session); its log."""
    result = _nsf(clone, "book", "--profile", "ci", "--no-progress", check=False)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        problems = [line for line in output.splitlines() if "WARNING" in line or "ERROR" in line]
        pytest.fail("nsf book failed:\n" + "\n".join(problems or [output[-6000:]]))
    return result.stdout + result.stderr


def test_every_chapter_executes_in_ci_profile(clone, built):
    chapters = sorted(p.stem for p in (clone / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert chapters, "no chapter notebooks"
    walls = {}
    for chapter in chapters:
        executed = clone / "book" / "chapters" / f"{chapter}.ipynb"
        meta = json.loads(executed.read_text())["metadata"]
        assert meta["nsf"]["profile"] == "ci"
        assert meta["papermill"]["parameters"]["profile"] == "ci"
        walls[chapter] = meta["nsf"]["wall_time_s"]
    print("\nci-profile execution times (s):", json.dumps(walls))


def test_build_leaves_tracked_files_untouched(clone, built):
    assert _git(clone, "status", "--porcelain") == ""


def test_a_second_build_would_execute_nothing(clone, built):
    """The cache answers directly (tests/test_book_build.py checks when it must not)."""
    check = "from nsf import book; print([book.is_cached(c, 'ci') for c in book.chapter_names()])"
    env = {**os.environ, "NSF_REPO_ROOT": str(clone)}
    out = subprocess.run(
        [sys.executable, "-c", check], cwd=clone, env=env, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    assert out.stdout.strip() == str([True] * len(list((clone / "notebooks").glob("*.ipynb"))))


def test_the_kernel_transport_warning_is_not_shown(built):
    assert "without encryption" not in built


def test_cli_output_records_provenance(clone, built, tmp_path):
    out = tmp_path / "X.ipynb"
    _nsf(clone, "run", "01", "--profile", "ci", "--output", str(out))
    meta = json.loads(out.read_text())["metadata"]
    commit = _git(clone, "rev-parse", "--short", "HEAD").strip()
    assert meta["papermill"]["parameters"]["profile"] == "ci"
    assert meta["nsf"]["commit"] == commit and meta["nsf"]["dirty"] is False
    assert meta["nsf"]["version"] and meta["nsf"]["device"] and "wall_time_s" in meta["nsf"]


def test_figures_are_published_at_stable_paths(clone, built):
    figures = clone / "_build" / "html" / "_static" / "figures"
    pngs = sorted(figures.glob("*/*.png"))
    assert pngs, "no figure was published"
    for png in pngs:
        assert png.with_suffix(".pdf").exists(), f"{png.name} has no PDF twin"


# ------------------------------------------------------------------------------ the browser


@pytest.fixture(scope="session")
def site(clone, built):
    """Serve _build/html on a loopback port for the browser."""
    html = clone / "_build" / "html"
    handler = functools.partial(QuietHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield html, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_pages_render_in_chromium(site):
    playwright = pytest.importorskip("playwright.sync_api")
    html, base = site
    pages = sorted(  # the site's pages; _static holds the theme's HTML partials, not pages
        p.relative_to(html).as_posix() for p in html.rglob("*.html") if "_static" not in p.parts
    )
    problems: list[str] = []
    anchors_needed: list[tuple[str, str, Path, str]] = []
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        for name in pages:
            redirect = re.search(
                r'http-equiv="Refresh" content="0; url=([^"]+)"', (html / name).read_text()
            )
            if redirect:  # a redirect stub (index.html): its target must exist
                if not ((html / name).parent / redirect.group(1)).exists():
                    problems.append(f"{name}: redirects to missing {redirect.group(1)}")
                continue
            errors.clear()
            page.goto(base + name, wait_until="load")
            if page.locator(".math").count():
                page.wait_for_function("window.MathJax?.startup?.promise")
                page.evaluate("MathJax.startup.promise")
                if page.locator("mjx-container").count() == 0:
                    problems.append(f"{name}: math is not typeset")
            broken = page.evaluate(
                "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
                ".map(i => i.getAttribute('src'))"
            )
            problems += [f"{name}: image {src} did not load" for src in broken]
            problems += [f"{name}: console error: {e}" for e in errors]
            here = base + name
            for href in page.evaluate(
                "Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))"
            ):
                url = urlparse(urljoin(here, href))
                if not here.startswith(f"{url.scheme}://{url.netloc}/"):
                    continue  # external or mailto: not ours to check offline
                target = html / unquote(url.path).lstrip("/")
                if target.is_dir():
                    target = target / "index.html"
                if not target.exists():
                    problems.append(f"{name}: link {href} points to a missing file")
                elif url.fragment and target.suffix == ".html":
                    anchors_needed.append((name, href, target, url.fragment))
        browser.close()
    for name, href, target, fragment in anchors_needed:
        if f'id="{fragment}"' not in target.read_text(errors="replace"):
            problems.append(f"{name}: link {href} has no anchor #{fragment}")
    assert not problems, "\n".join(problems)
    assert len(pages) >= 6


def test_api_page_documents_every_listed_member(clone, built):
    """autodoc silently skips a listed member that is missing from its module's __all__."""
    source = (clone / "book" / "api.md").read_text()
    page = (clone / "_build" / "html" / "book" / "api.html").read_text()
    listed = re.findall(r"\.\. automodule:: (\S+)\n   :members: (.+?)(?:\n\n|\n```)", source, re.S)
    assert listed
    missing = [
        f"{module}.{name.strip()}"
        for module, names in listed
        for name in names.replace("\n", " ").split(",")
        if name.strip() and f'id="{module}.{name.strip()}"' not in page
    ]
    assert not missing, f"listed in book/api.md but not rendered: {missing}"


# ------------------------------------------------------------------------- ledger and figure index


def _published_records(clone: Path) -> dict:
    from nsf.book.build import chapter_names, records

    return records(clone / "book" / "chapters" / f"{c}.ipynb" for c in chapter_names())


def test_a_changed_parameter_changes_the_affected_ledger_rows(clone, built, tmp_path):
    """Chapter 04 without p = 1/2 cannot test L26 (the p = 1/2 density insensitivity); the other
    rows of the chapter keep their verdicts."""
    from nsf import ledger

    before = {r.claim.id: r for r in ledger.ledger_rows(_published_records(clone))}
    out = tmp_path / "04.ipynb"
    _nsf(clone, "run", "04", "--profile", "ci", "-p", "p_values", "[0.0, -0.25]",
         "--output", str(out))  # fmt: skip
    from nsf.book.build import records

    changed = {**_published_records(clone), **records([out])}
    after = {r.claim.id: r for r in ledger.ledger_rows(changed)}
    assert before["L26"].verdict != "undecided" and after["L26"].verdict == "undecided"
    assert after["L27"].verdict == before["L27"].verdict
    assert all(after[k].verdict == before[k].verdict for k in before if k not in ("L26",)), {
        k: (before[k].verdict, after[k].verdict)
        for k in before
        if after[k].verdict != before[k].verdict
    }


def test_every_claims_checks_are_recorded_by_its_chapter(clone, built):
    """A pattern of data/ledger.toml that matches no recorded check is a typo, unless the claim
    is about the paper's scale and the embedded stand-in has no case of its kind."""
    from nsf import ledger

    recs = _published_records(clone)
    unmatched = [
        r.claim.id for r in ledger.ledger_rows(recs)
        if not r.claim.not_testable and not r.checks and r.claim.scale != "paper"
    ]  # fmt: skip
    assert not unmatched, f"claims whose checks no chapter recorded: {unmatched}"
    no_figure = [r.claim.id for r in ledger.ledger_rows(recs) if r.claim.figure and not r.figure]
    assert not no_figure, f"claims whose figure label no chapter saved: {no_figure}"


def test_the_figure_index_links_every_figure_and_its_pdf(clone, built):
    from nsf.book.figure_index import figure_rows

    rows = figure_rows(_published_records(clone))
    published = sorted((clone / "_build" / "html" / "_static" / "figures").glob("*/*.pdf"))
    assert len(rows) == len(published) > 0
    page = (clone / "_build" / "html" / "book" / "figures.html").read_text()
    pdfs = set(re.findall(r'href="([^"]+\.pdf)"', page))
    assert len(pdfs) == len(rows)
    for href in pdfs:
        assert (clone / "_build" / "html" / "book" / href).resolve().exists(), href


def test_no_rendered_page_sends_the_reader_outside_the_book(clone, built):
    """The reconstruction the chapters rest on is part of the book: no page, the API reference
    included, points to the private notes it was written from."""
    html = clone / "_build" / "html"
    pages = [p for p in html.rglob("*.html") if "_static" not in p.parts]
    assert pages
    offending = [p.relative_to(html).as_posix() for p in pages
                 if re.search(r"\bSPEC\b", p.read_text(errors="replace"))]  # fmt: skip
    assert not offending, f"pages that cite the private notes: {offending}"
