"""Execute the chapters with papermill and build the Jupyter Book, re-executing only what changed.

Data flow (see the README): ``notebooks/NN_name.ipynb`` (tracked, no outputs) is executed by
papermill with the parameters of a profile into a run directory of the run store (keyed by a hash
of the notebook, its parameters, the profile, the ``nsf`` source and ``data/``), copied to
``book/chapters/`` together with its figures, and the book is built from those copies with
execution off and warnings as errors. Tracked files are never written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

from nsf.book.parameters import check_parameters, notebook_defaults, parse_value
from nsf.book.profiles import PROFILES
from nsf.book.provenance import RECORD_FILE, device_description, git_commit, repo_root
from nsf.runstore import Run, RunStore, atomic_write_bytes

__all__ = [
    "GENERATED_PAGES",
    "ChapterExecutionError",
    "build_book",
    "chapter_names",
    "chapter_run",
    "execute_chapter",
    "is_cached",
    "published_records",
    "records",
    "rerun_command",
    "resolve_chapter",
    "source_hash",
    "tree_hash",
]


class ChapterExecutionError(RuntimeError):
    """A chapter raised while executing; the message names the chapter and the failing cell."""


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def chapter_names() -> list[str]:
    """Every chapter, in paper order (the notebooks' NN prefixes)."""
    return sorted(p.stem for p in notebooks_dir().glob("[0-9][0-9]_*.ipynb"))


def resolve_chapter(chapter: str) -> str:
    """``"03"`` or ``"03_spectral_decay"`` -> ``"03_spectral_decay"``; a clear error otherwise."""
    names = chapter_names()
    matches = [n for n in names if n == chapter or n.split("_", 1)[0] == chapter]
    if len(matches) != 1:
        raise ValueError(f"no chapter {chapter!r}; the chapters are: {', '.join(names)}")
    return matches[0]


#: The kernel's own log shows errors only: its start-up warning that the local kernel talks over
#: unencrypted TCP on the loopback says nothing about the chapter. Cell outputs are unaffected.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]

#: The ``nsf`` package whose source is part of every chapter's cache key.
PACKAGE = Path(__file__).resolve().parents[1]


def source_hash(package: Path | None = None) -> str:
    """SHA-256 over the ``.py`` and ``.toml`` files of the ``nsf`` package (default
    ``PACKAGE``): an edit anywhere in it, the profile table included, re-executes chapters."""
    return tree_hash(package or PACKAGE, suffixes={".py", ".toml"})


def tree_hash(root: Path, suffixes: set[str] | None = None) -> str:
    """SHA-256 over the relative paths and bytes of the files under ``root`` (those ending in
    ``suffixes``, or all); a missing ``root`` hashes as empty."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        wanted = suffixes is None or path.suffix in suffixes
        if wanted and path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def chapter_run(
    chapter: str, profile: str = "default", overrides: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any], Run]:
    """(chapter name, papermill parameters, run-store entry) of one execution.

    The entry's key is everything an executed chapter depends on: the notebook's bytes, the
    checked parameters, the ``nsf`` source (with the profile table) and the ``data/`` files the
    chapters read. The parameters are checked first (:func:`nsf.book.check_parameters`).
    """
    chapter = resolve_chapter(chapter)
    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r} is not one of {PROFILES}")
    params = check_parameters(chapter, profile, overrides)
    key = {
        "chapter": chapter,
        "notebook": _sha256(notebooks_dir() / f"{chapter}.ipynb"),
        "parameters": params,
        "nsf_source": source_hash(),
        "data": tree_hash(repo_root() / "data"),
    }
    return chapter, params, RunStore(repo_root() / ".cache" / "chapters").run(key, prefix=chapter)


def rerun_command(
    chapter: str, profile: str = "default", overrides: Mapping[str, Any] | None = None
) -> str:
    """The ``nsf run`` command line that executes ``chapter`` with this profile and these
    overrides (each value written so that ``nsf run`` reads it back as the same value)."""
    parts = ["nsf", "run", resolve_chapter(chapter).split("_", 1)[0], "--profile", profile]
    for name, value in sorted((overrides or {}).items()):
        text = value if isinstance(value, str) and parse_value(value) == value else repr(value)
        parts += ["-p", name, text]
    return shlex.join(parts)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def is_cached(
    chapter: str, profile: str = "default", overrides: Mapping[str, Any] | None = None
) -> bool:
    """Whether this chapter, profile and parameters were executed with the current sources."""
    return chapter_run(chapter, profile, overrides)[2].is_finished


def execute_chapter(
    chapter: str,
    profile: str = "default",
    overrides: Mapping[str, Any] | None = None,
    output: str | os.PathLike | None = None,
    *,
    progress: bool = True,
) -> Path:
    """Execute one chapter with papermill; returns the executed notebook's path.

    The result is cached in the run store under ``.cache/chapters``: the same notebook, profile,
    parameters and ``nsf`` source are never executed twice. ``output`` receives a copy.
    The executed notebook's metadata gains ``nsf``: version, commit, dirty, profile,
    parameters, seed, wall time, device, and the chapter's record (its checks, figures and glued
    numbers; :class:`nsf.book.figures.Chapter`), which the ledger and the figure index read.
    """
    import nbformat
    import papermill

    import nsf

    chapter, params, run = chapter_run(chapter, profile, overrides or {})
    executed = run.path("executed.ipynb")
    if not run.is_finished:
        figures = run.path("figures")
        shutil.rmtree(figures, ignore_errors=True)
        start = time.perf_counter()
        # The kernel writes its figures, and keeps any run store it needs, in this run's directory
        # (nsf.book.figures.Chapter reads these): an execution never sees another's files.
        where = {"NSF_FIGURE_DIR": str(figures), "NSF_CHAPTER_DIR": str(run.dir)}
        try:
            with mock.patch.dict(os.environ, where):
                nb = papermill.execute_notebook(
                    str(notebooks_dir() / f"{chapter}.ipynb"), None, parameters=params,
                    cwd=str(repo_root()), progress_bar=progress, kernel_name="python3",
                    extra_arguments=KERNEL_ARGUMENTS,
                )  # fmt: skip
        except papermill.PapermillExecutionError as error:
            raise ChapterExecutionError(
                f"chapter {chapter} ({profile}) failed in cell {error.exec_count}: "
                f"{error.ename}: {error.evalue}"
            ) from error
        _tag_for_reading(nb)
        command = rerun_command(chapter, profile, overrides)
        nb.cells.append(_rerun_cell(chapter, command))
        record = run.path(RECORD_FILE)
        commit, dirty = git_commit()
        seed = params.get("seed", notebook_defaults(chapter).get("seed"))
        nb.metadata["nsf"] = {
            "version": nsf.__version__, "commit": commit, "dirty": dirty, "chapter": chapter,
            "profile": profile, "parameters": params, "seed": seed,
            "wall_time_s": round(time.perf_counter() - start, 2), "device": device_description(),
            "command": command,
            "record": json.loads(record.read_text()) if record.exists() else None,
        }  # fmt: skip
        atomic_write_bytes(executed, nbformat.writes(nb).encode())
        run.finish({"wall_time_s": nb.metadata["nsf"]["wall_time_s"]})
    if output is not None:
        output = Path(output)
        atomic_write_bytes(output, executed.read_bytes())
        return output
    return executed


def _tag_for_reading(nb: Any) -> None:
    """Book-only cell tags: papermill's injected cell is removed (the chapter prints its parameter
    table), and plotting code is folded behind a toggle so the page reads as figures and prose."""
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
        elif cell.cell_type == "code" and ".savefig(" in cell.source:
            cell.metadata["tags"] = [*tags, "hide-input"]


def records(notebooks: Iterable[str | Path]) -> dict[str, dict[str, Any]]:
    """Chapter name -> its record, read from executed notebooks (their ``nsf`` metadata: the
    record plus the profile, parameters and commit of the execution). A notebook without a
    record (executed outside ``nsf run``/``nsf book``) is left out."""
    out = {}
    for path in notebooks:
        meta = json.loads(Path(path).read_text())["metadata"].get("nsf", {})
        if meta.get("record"):
            keys = ("profile", "parameters", "commit", "dirty", "command")
            out[meta["chapter"]] = {**meta["record"], **{k: meta.get(k) for k in keys}}
    return out


def published_records() -> dict[str, dict[str, Any]]:
    """The records of the chapters ``nsf book`` last published to ``book/chapters``."""
    chapters = repo_root() / "book" / "chapters"
    return records(p for c in chapter_names() if (p := chapters / f"{c}.ipynb").exists())


def _rerun_cell(chapter: str, command: str) -> Any:
    """The box that ends every chapter page: the command that re-runs it with the parameters
    shown, and the executed notebook to download."""
    import nbformat

    return nbformat.v4.new_markdown_cell(
        ":::{admonition} Re-run this chapter\n:class: tip\n\n"
        "From a clone of the repository, once `make book` has set it up and "
        "`source .venv/bin/activate` has put `nsf` on the path:\n\n"
        f"```bash\n{command}\n```\n\n"
        "It executes the chapter with exactly the parameters shown on this page (the table at "
        "its top) and writes the executed notebook; add `--output my_run.ipynb` to keep a copy, "
        "and `-p NAME VALUE` to change a parameter. "
        f"{{download}}`Download this executed notebook <{chapter}.ipynb>`.\n:::"
    )


def _publish(chapter: str, executed: Path) -> None:
    """Copy an executed chapter and its figures where the book reads them (only if changed)."""
    root = repo_root()
    target = root / "book" / "chapters" / f"{chapter}.ipynb"
    if not target.exists() or target.read_bytes() != executed.read_bytes():
        atomic_write_bytes(target, executed.read_bytes())
    figures = root / "book" / "_static" / "figures" / chapter
    source = executed.parent / "figures" / chapter
    shutil.rmtree(figures, ignore_errors=True)
    if source.is_dir():
        shutil.copytree(source, figures)


#: The pages ``nsf book`` writes into ``book/`` from the chapters' records (not tracked).
GENERATED_PAGES = ("ledger", "figures")


def write_generated_pages(recs: Mapping[str, Mapping[str, Any]]) -> None:
    """Write the pages made from the chapters' records: ``book/ledger.md`` (the claims ledger,
    :mod:`nsf.ledger`) and ``book/figures.md`` (:mod:`nsf.book.figure_index`); a page is
    rewritten only when its text changes."""
    from nsf import ledger
    from nsf.book import figure_index

    pages = {"ledger": ledger.ledger_page, "figures": figure_index.figure_index_page}
    for name in GENERATED_PAGES:
        path, text = repo_root() / "book" / f"{name}.md", pages[name](recs)
        if not path.exists() or path.read_text() != text:
            atomic_write_bytes(path, text.encode())


def build_book(profile: str = "default", *, progress: bool = True) -> Path:
    """Execute every chapter (cached), then build ``_build/html`` strictly; returns its index."""
    chapters = chapter_names()
    for i, chapter in enumerate(chapters, 1):
        cached = is_cached(chapter, profile)
        print(f"[{i}/{len(chapters)}] {chapter} ({profile}): "
              + ("unchanged, not re-executed" if cached else "executing"), flush=True)  # fmt: skip
        start = time.perf_counter()
        _publish(chapter, execute_chapter(chapter, profile, progress=progress))
        if not cached:
            print(f"      executed in {time.perf_counter() - start:.1f} s", flush=True)
    root = repo_root()
    write_generated_pages(published_records())
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [
        str(jupyter_book),
        "build",
        str(root),
        "--warningiserror",
        "--nitpick",
        "--keep-going",
    ]
    subprocess.run(command, cwd=root, check=True)
    index = root / "_build" / "html" / "index.html"
    print(f"\nThe book is built: open {index}")
    return index
