"""The one figure helper: theme, stable files, captions with provenance, and myst-nb glue.

Every chapter starts with ::

    ch = Chapter("03_spectral_decay", globals())   # after the parameters cell
    ch.parameter_table()                           # the parameters with their tags

and saves every figure through ``ch.savefig(fig, "label", caption)``. That writes
``<figures>/<chapter>/<label>.png`` and ``.pdf`` (under ``book/_static/figures``, hence at a stable
URL of the built site, ``_static/figures/<chapter>/<label>.png``), and displays a numbered MyST
figure named ``fig-<chapter>-<label>`` whose caption ends with the provenance line: commit,
chapter, profile and a hash of the parameters. Key numbers go through ``ch.glue`` so book pages
can quote them. What the ledger and the figure index need is kept in the chapter's *record*
(``record.json`` beside its store; :func:`nsf.book.execute_chapter` copies it into the executed
notebook's metadata): every figure saved, every check passed to ``ch.record``, every scalar glued.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from nsf.book.profiles import chapter_parameters
from nsf.book.provenance import RECORD_FILE, git_commit, repo_root
from nsf.runstore import atomic_write_json, config_hash
from nsf.verdicts import Check

__all__ = ["PALETTE", "Chapter", "set_theme"]

#: The Okabe-Ito colours, distinguishable under the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


def set_theme() -> None:
    """Seaborn's ticks theme with the colour-blind-safe palette and print-ready sizes."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 160,
            "savefig.bbox": "tight",
            "axes.titleweight": "bold",
            "legend.frameon": False,
        }
    )


def figure_dir() -> Path:
    """Where figures are written: ``NSF_FIGURE_DIR`` (set by :func:`nsf.book.execute_chapter`,
    which publishes them to ``book/_static/figures``), else ``book/_static/figures`` itself."""
    if "NSF_FIGURE_DIR" in os.environ:
        return Path(os.environ["NSF_FIGURE_DIR"])
    return repo_root() / "book" / "_static" / "figures"


class Chapter:
    """A chapter's parameters, provenance and output helpers.

    Args:
        name: the chapter's notebook name, e.g. ``"01_unified_rule"``.
        namespace: the notebook's ``globals()``; the chapter's declared parameters (see
            ``nsf/book/profiles.toml``) and ``profile`` are read from it.
    """

    def __init__(self, name: str, namespace: Mapping[str, Any]) -> None:
        self.name = name
        self.spec = chapter_parameters(name)
        missing = [k for k in self.spec if k not in namespace]
        if missing:
            raise NameError(f"chapter {name} declares parameters {missing} that are not defined")
        self.params = {k: namespace[k] for k in self.spec}
        self.profile = str(namespace.get("profile", "default"))
        self.param_hash = config_hash(self.params, length=8)
        commit, dirty = git_commit()
        self.commit = commit + ("+dirty" if dirty else "")
        set_theme()
        pd.set_option("display.max_colwidth", None)  # parameter sources are read in full
        self._record: dict[str, dict[str, Any]] = {"checks": {}, "figures": {}, "glue": {}}
        self._write_record()  # a fresh record: nothing of an earlier execution survives

    @property
    def provenance(self) -> str:
        """The provenance line of every caption (commit, chapter, profile, parameter hash)."""
        return (
            f"nsf-book {self.commit} · chapter {self.name} · profile {self.profile} · "
            f"params {self.param_hash}"
        )

    def parameter_table(self) -> pd.DataFrame:
        """Every parameter with its value, its tag (stated, reconstructed, assumed or companion,
        the tags of the book pages "How the paper was reconstructed") and its source."""
        rows = [
            {
                "parameter": k,
                "value": repr(self.params[k]),
                "tag": s["tag"],
                "source": s.get("note", ""),
            }
            for k, s in self.spec.items()
        ]
        return pd.DataFrame(rows).set_index("parameter")

    def savefig(self, fig: plt.Figure, label: str, caption: str) -> None:
        """Write ``fig`` as PNG and PDF, display it as a numbered figure, close it.

        The caption should say what to look at; the provenance line and a link to the PDF are
        appended.
        """
        if not label.replace("_", "").isalnum():
            raise ValueError(f"figure label {label!r} must be letters, digits and underscores")
        out = figure_dir() / self.name
        out.mkdir(parents=True, exist_ok=True)
        png, pdf = out / f"{label}.png", out / f"{label}.pdf"
        fig.savefig(png)
        fig.savefig(pdf)
        self.glue(label, fig)  # so other pages can paste it: {glue:figure} <chapter>_<label>
        plt.close(fig)
        src = f"/book/_static/figures/{self.name}/{label}.png"  # where `nsf book` publishes it
        self._keep("figures", label, {
            "label": label, "name": f"fig-{self.name}-{label}", "caption": caption,
            "png": src, "pdf": src[:-4] + ".pdf", "params": self.param_hash,
            "commit": self.commit, "profile": self.profile,
        })  # fmt: skip
        display(
            Markdown(
                f"```{{figure}} {src}\n:name: fig-{self.name}-{label}\n:width: 100%\n\n"
                f"{caption}\n\n"
                f"*{self.provenance} · {{download}}`PDF <{src[:-4]}.pdf>`*\n```"
            )
        )

    def store(self, name: str = "runs") -> Path:
        """A directory for what the chapter computes and keeps (a sweep's run store): inside the
        chapter's own cache entry when ``nsf run``/``nsf book`` execute it (``NSF_CHAPTER_DIR``),
        so an edit to the package or the notebook starts from an empty store; else under
        ``.cache/chapter-stores/<chapter>/<parameter hash>``."""
        if "NSF_CHAPTER_DIR" in os.environ:
            return Path(os.environ["NSF_CHAPTER_DIR"]) / name
        return repo_root() / ".cache" / "chapter-stores" / self.name / self.param_hash / name

    def glue(self, key: str, value: Any, display: bool = False) -> None:
        """Glue ``value`` under ``<chapter>_<key>`` for ``{glue:}`` references in the book; a
        number or a string is also kept in the record."""
        from myst_nb import glue

        glue(f"{self.name}_{key}", value, display=display)
        if isinstance(value, (numbers.Number, str)) and not isinstance(value, complex):
            self._keep("glue", key, value.item() if hasattr(value, "item") else value)

    def record(self, checks: Sequence[Check], scope: str = "") -> list[Check]:
        """Keep ``checks`` in the chapter's record, the ledger's input; returns them.

        ``scope`` prefixes each name (``"panel a · B-1"``) where one check runs on several
        setups. A check recorded again under the same name replaces the earlier one.
        """
        checks = list(checks)
        for c in checks:
            name = f"{scope} · {c.name}" if scope else c.name
            self._keep("checks", name, {**dataclasses.asdict(c), "name": name,
                                        "verdict": c.verdict})  # fmt: skip
        return checks

    def _keep(self, kind: str, key: str, value: Any) -> None:
        self._record[kind][key] = value
        self._write_record()

    def _write_record(self) -> None:
        record = {kind: list(entries.values()) if kind != "glue" else entries
                  for kind, entries in self._record.items()}  # fmt: skip
        path = self.store(RECORD_FILE)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"chapter": self.name, "profile": self.profile,
                                 "params": self.param_hash, **record})  # fmt: skip

    def note(self, markdown: str) -> None:
        """Display computed prose (MyST markdown), for text that depends on results."""
        display(Markdown(markdown))
