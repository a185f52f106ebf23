"""The figure helper (nsf.book.figures): files at stable paths, a numbered figure whose caption
ends with the provenance line, glue under the chapter's name, and bad labels refused."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

from nsf.book import figures
from nsf.book.parameters import notebook_defaults
from nsf.book.provenance import git_commit
from nsf.runstore import config_hash

CHAPTER = "04_demo_1d"


@pytest.fixture
def shown(monkeypatch, tmp_path):
    """What the helper displays and glues, and where it writes figures."""
    import myst_nb

    out = {"display": [], "glue": []}
    monkeypatch.setattr(figures, "display", lambda obj: out["display"].append(obj.data))
    monkeypatch.setattr(myst_nb, "glue", lambda *a, **k: out["glue"].append((a, k)))
    monkeypatch.setenv("NSF_FIGURE_DIR", str(tmp_path))
    return out


def _chapter(**changes) -> figures.Chapter:
    namespace = {**notebook_defaults(CHAPTER), **changes}
    return figures.Chapter(CHAPTER, namespace)


def test_provenance_names_commit_chapter_profile_and_parameters():
    ch = _chapter(profile="ci")
    commit, dirty = git_commit()
    params = {k: v for k, v in notebook_defaults(CHAPTER).items() if k != "profile"}
    assert ch.provenance == (
        f"nsf-book {commit}{'+dirty' if dirty else ''} · chapter {CHAPTER} · profile ci · "
        f"params {config_hash(params, length=8)}"
    )


def test_the_parameter_hash_follows_every_parameter():
    base = _chapter().param_hash
    assert _chapter(eta=0.03).param_hash != base
    assert _chapter(checkpoints=[10, 50]).param_hash != base
    assert _chapter(profile="ci").param_hash == base  # the profile is named, not hashed


def test_savefig_writes_png_and_pdf_and_shows_a_numbered_captioned_figure(shown, tmp_path):
    ch = _chapter()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    ch.savefig(fig, "decay_curve", "Look at the slope.")
    png, pdf = tmp_path / CHAPTER / "decay_curve.png", tmp_path / CHAPTER / "decay_curve.pdf"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
    (markdown,) = shown["display"]
    src = f"/book/_static/figures/{CHAPTER}/decay_curve.png"
    assert markdown.startswith(f"```{{figure}} {src}\n:name: fig-{CHAPTER}-decay_curve\n")
    caption = markdown.split("\n\n", 1)[1]
    assert caption.startswith("Look at the slope.\n\n")
    assert f"*{ch.provenance} · {{download}}`PDF <{src[:-4]}.pdf>`*" in caption
    (((name, value), _),) = shown["glue"]
    assert name == f"{CHAPTER}_decay_curve" and value is fig
    assert not plt.fignum_exists(fig.number), "the figure is closed after saving"


@pytest.mark.parametrize("label", ["with space", "dash-ed", "", "../escape"])
def test_a_label_that_is_not_a_name_is_refused(shown, tmp_path, label):
    fig = plt.figure()
    with pytest.raises(ValueError, match="letters, digits and underscores"):
        _chapter().savefig(fig, label, "caption")
    plt.close(fig)
    assert not any(tmp_path.rglob("*.png"))


def test_a_chapter_missing_a_declared_parameter_is_refused():
    namespace = notebook_defaults(CHAPTER)
    del namespace["eta"]
    with pytest.raises(NameError, match="eta"):
        figures.Chapter(CHAPTER, namespace)


def test_the_parameter_table_lists_each_parameter_with_its_tag():
    table = _chapter().parameter_table()
    assert list(table.index) == [k for k in notebook_defaults(CHAPTER) if k != "profile"]
    assert set(table["tag"]) <= {"stated", "reconstructed", "assumed", "companion"}
    assert table.loc["eta", "value"] == repr(notebook_defaults(CHAPTER)["eta"])
