"""The book: execute chapters with papermill, check their parameters first, build the site.

- :mod:`nsf.book.profiles`: every chapter's parameters, tags and ``ci``/``paper`` overrides
  (``profiles.toml``).
- :mod:`nsf.book.parameters`: a chapter's parameters checked before any kernel starts.
- ``nsf.book.build``: execution through the run store (cached) and the Jupyter Book build.
- :mod:`nsf.book.figures`: the figure helper every chapter uses (theme, files, captions, glue).
- ``nsf.book.provenance``: commit, device and the repository root.
"""

from nsf.book.build import (
    ChapterExecutionError,
    build_book,
    chapter_names,
    chapter_run,
    execute_chapter,
    is_cached,
    resolve_chapter,
    source_hash,
)
from nsf.book.parameters import ParameterError, check_parameters, parse_value

__all__ = [
    "ChapterExecutionError",
    "ParameterError",
    "build_book",
    "chapter_names",
    "chapter_run",
    "check_parameters",
    "execute_chapter",
    "is_cached",
    "parse_value",
    "resolve_chapter",
    "source_hash",
]
