"""Report layout: nothing runs off its page (tables split by width and height, titles and text wrapped), and
sweep figures with fewer than three points say so instead of drawing a line."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402

from brainuad.reporting import figures as figures_mod  # noqa: E402
from brainuad.reporting import pdf as pdf_mod  # noqa: E402


@pytest.fixture
def page_problems(monkeypatch):
    """Every page :func:`build_report` saves is checked with :func:`page_overflow`; returns (problems, pages)."""
    problems, pages = [], []
    original = PdfPages.savefig

    def checked(self, figure=None, **kwargs):
        pages.append(figure)
        problems.extend(pdf_mod.page_overflow(figure))
        return original(self, figure, **kwargs)

    monkeypatch.setattr(PdfPages, "savefig", checked)
    return problems, pages


def wide_long_table() -> pd.DataFrame:
    """30 rows x 16 columns with long headers and 12-character cells: too wide and too tall for one page."""
    columns = [f"Dataset number {j} with a long name · DICE" for j in range(16)]
    data = [[f"{10 * i + j:.2f} ± 10.00" for j in range(16)] for i in range(30)]
    return pd.DataFrame(data, columns=columns, index=pd.Index([f"model-{i:02d}" for i in range(30)], name="Model"))


def test_page_overflow_detects_what_runs_off():
    fig = plt.figure(figsize=(11.69, 8.27))
    fig.text(0.9, 0.5, "a text that starts near the right edge and runs far beyond it " * 3)
    ax = fig.add_axes([0.03, 0.1, 0.94, 0.78])
    ax.axis("off")
    ax.table(cellText=[["x" * 5] * 3 for _ in range(60)], colLabels=["a", "b", "c"], loc="upper center")
    problems = pdf_mod.page_overflow(fig)
    plt.close(fig)
    assert any("runs off the page" in p and p.startswith("text") for p in problems)
    assert any(p.startswith("table runs off") for p in problems)  # 60 rows do not fit one page


def test_old_single_page_layout_of_a_wide_table_overflows():
    """The check fails the layout this module replaced: one page, equal column widths."""
    table = wide_long_table().iloc[:10]
    fig = plt.figure(figsize=(11.69, 8.27))
    ax = fig.add_axes([0.03, 0.1, 0.94, 0.78])
    ax.axis("off")
    tab = ax.table(cellText=table.to_numpy().tolist(), colLabels=list(table.columns), loc="upper center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(7)
    problems = pdf_mod.page_overflow(fig)
    plt.close(fig)
    assert any("wider than its cell" in p for p in problems)


def test_table_chunks_cover_every_cell_once():
    table = wide_long_table()
    chunks = pdf_mod.table_chunks(table)
    covered = np.zeros(table.shape, int)
    for rows, cols in chunks:
        covered[np.ix_(rows, cols)] += 1
    assert (covered == 1).all()
    assert len({tuple(c) for _, c in chunks}) > 1 and len({tuple(r) for r, _ in chunks}) > 1
    small = pd.DataFrame({"a": [1, 2]}, index=pd.Index(["x", "y"], name="m"))
    assert pdf_mod.table_chunks(small) == [([0, 1], [0])]


def test_report_pages_stay_inside_the_page(tmp_path, page_problems):
    problems, pages = page_problems
    long_title = "Data quality: a dataset with a rather long display label -- flagged subjects and " * 3
    claims_like = pd.DataFrame({"claim": ["line one\nline two\nline three"] * 12, "verdict": ["holds"] * 12},
                               index=pd.Index([f"C{i}" for i in range(12)], name="id"))
    image = tmp_path / "wide.png"
    plt.imsave(image, np.random.default_rng(0).random((100, 400)))
    pdf_mod.build_report(tmp_path / "r.pdf", title="t", tables=[(long_title, wide_long_table(), "note " * 60),
                                                                 ("Claims", claims_like, "")],
                         figures=[(long_title, image, "caption " * 120)],
                         config_text="key: " + "a-very-long-value " * 30 + "\n" + "x: 1\n" * 200,
                         benchmark_dir=tmp_path)
    assert problems == []
    titles = [t.get_text() for fig in pages for t in fig.texts[:1]]
    assert any("(columns 1-" in t for t in titles) and any("cont." in t for t in titles)


def sweep_texts(monkeypatch, values):
    saved = []
    monkeypatch.setattr(plt.Figure, "savefig", lambda self, *a, **k: saved.append(self))
    long = pd.DataFrame({"series": "D", "metric": "dice", "value": values, "mean": np.linspace(10, 20, len(values)),
                         "std": 1.0})
    figures_mod.sweep_figure(long, "unused.png", param="sigma", metric_labels={"dice": "DICE"})
    ax = saved[0].axes[0]
    return [t.get_text() for t in ax.texts], [line.get_linestyle() for line in ax.lines]


def test_sweep_with_two_points_says_so_and_draws_no_line(monkeypatch):
    texts, styles = sweep_texts(monkeypatch, [0.5, 2.0])
    assert any("only 2 swept values" in t for t in texts)
    assert "-" not in styles  # the error-bar data line is invisible ("None")


def test_sweep_with_three_points_draws_its_line(monkeypatch):
    texts, styles = sweep_texts(monkeypatch, [0.5, 1.0, 2.0])
    assert not texts and "-" in styles


def test_tall_figure_is_split_at_blank_rows():
    """Twelve 100 px grey panels separated by 20 px white gaps, 300 px wide: cuts fall into the gaps."""
    rows = []
    for k in range(12):
        rows += [np.full((100, 300, 3), 0.2 + 0.05 * k), np.ones((20, 300, 3))]
    img = np.concatenate(rows)
    parts = pdf_mod.split_tall_image(img, 1.3)  # at most 390 px per part
    assert len(parts) > 1 and sum(p.shape[0] for p in parts) == img.shape[0]
    for part in parts:
        assert part.shape[0] <= 390
        # every part ends in a gap: no panel is cut in two
        assert (part[-1] == 1.0).all()
    assert pdf_mod.split_tall_image(img[:200], 1.3)[0] is not None and len(pdf_mod.split_tall_image(img[:200], 1.3)) == 1


def test_tall_figure_gets_several_pages(tmp_path, page_problems):
    problems, pages = page_problems
    rows = []
    for k in range(20):
        rows += [np.full((100, 300, 3), 0.3), np.ones((20, 300, 3))]
    image = tmp_path / "tall.png"
    plt.imsave(image, np.concatenate(rows))
    pdf_mod.build_report(tmp_path / "r.pdf", title="t", tables=[], figures=[("Qualitative", image, "c")],
                         config_text="a: 1", benchmark_dir=tmp_path)
    titles = [fig.texts[0].get_text() for fig in pages]
    assert sum("Qualitative (part" in t for t in titles) >= 2 and problems == []
