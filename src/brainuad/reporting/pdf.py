"""The PDF report: tables, figures, training curves and provenance, with matplotlib only."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as _md
import subprocess
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402

PACKAGES = ["brainuad", "torch", "monai", "antspyx", "nibabel", "numpy", "scipy", "scikit-image", "scikit-learn",
            "pandas", "matplotlib", "snakemake", "nilearn", "torchio", "mlxtend"]
A4 = (8.27, 11.69)


def package_versions(names=PACKAGES) -> dict[str, str]:
    """Installed version of each package, or 'not installed'."""
    out = {}
    for name in names:
        try:
            out[name] = _md.version(name)
        except _md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(cwd: str | Path = ".") -> str:
    """Current git commit (with '+dirty' when the tree has changes), or 'unknown'."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def rule_times(benchmark_dir: str | Path) -> pd.DataFrame:
    """Wall time per rule from Snakemake ``benchmark:`` files (``{benchmark_dir}/{rule}/...tsv``)."""
    rows = []
    for f in sorted(Path(benchmark_dir).glob("*/**/*.tsv")):
        rule = f.relative_to(benchmark_dir).parts[0]
        try:
            df = pd.read_csv(f, sep="\t")
        except (pd.errors.EmptyDataError, OSError):
            continue
        rows.append({"rule": rule, "s": float(df["s"].iloc[0]), "max_rss_mb": float(df.get("max_rss", [0])[0] or 0)})
    if not rows:
        return pd.DataFrame(columns=["rule", "jobs", "total_s", "mean_s", "max_s", "max_rss_mb"])
    df = pd.DataFrame(rows)
    agg = df.groupby("rule").agg(jobs=("s", "size"), total_s=("s", "sum"), mean_s=("s", "mean"), max_s=("s", "max"),
                                 max_rss_mb=("max_rss_mb", "max"))
    return agg.reset_index().sort_values("total_s", ascending=False)


#: table cells' font size (pt), the padding added to a column's widest text (pt) and the height of a one-line
#: row in points (matplotlib's table row: 1.2 x its 10 pt class font, scaled by 1.6 below)
TABLE_FONT = 7.0
CELL_PAD_PT = 8.0
ROW_PT = 10.0 / 72.0 * 72.0 * 1.2 * 1.6
#: table area of a landscape page (figure fractions): left, bottom, width, height
TABLE_AREA = (0.03, 0.1, 0.94, 0.78)
HEADER_WRAP = 18


def _text_width_pt(text: str, fontsize: float, weight: str = "normal") -> float:
    """Width in points of the widest line of ``text`` in matplotlib's default font."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    renderer = _text_width_pt.renderer = getattr(_text_width_pt, "renderer", None) or RendererAgg(10, 10, 72)
    prop = FontProperties(size=fontsize, weight=weight)
    return max((renderer.get_text_width_height_descent(line or " ", prop, ismath=False)[0]
                for line in str(text).split("\n")), default=0.0)


def _wrap_title(title: str, width_in: float, fontsize: float = 12.0) -> str:
    """``title`` wrapped to the page width (bold characters about 0.62 em wide)."""
    chars = max(20, int((width_in * 72.0) / (0.62 * fontsize)))
    return textwrap.fill(title, chars)


def _wrap_lines(lines: list[str], fontsize: float, width_in: float) -> list[str]:
    """Monospace ``lines`` wrapped to ``width_in`` inches (continuations indented)."""
    chars = max(20, int(width_in * 72.0 / (0.6 * fontsize)))
    out = []
    for line in lines:
        if len(line) <= chars:
            out.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip()) + 4)
        out += textwrap.wrap(line, chars, subsequent_indent=indent, drop_whitespace=False) or [line]
    return out


def _text_page(pdf: PdfPages, title: str, lines: list[str], fontsize: float = 8.0) -> None:
    lines = _wrap_lines(lines, fontsize, A4[0] * 0.88)
    per_page = int(70 * 8.0 / fontsize)
    for start in range(0, max(len(lines), 1), per_page):
        fig = plt.figure(figsize=A4)
        fig.text(0.06, 0.96, _wrap_title(title + (" (cont.)" if start else ""), A4[0] * 0.88, 13), fontsize=13,
                 weight="bold", va="top")
        fig.text(0.06, 0.93, "\n".join(lines[start : start + per_page]), fontsize=fontsize, family="monospace",
                 va="top")
        pdf.savefig(fig)
        plt.close(fig)


def _plain(v) -> str:
    return str(v).replace("**", "").replace("<u>", "").replace("</u>", "")


def table_chunks(table: pd.DataFrame) -> list[tuple[list[int], list[int]]]:
    """How a display table is split over landscape pages so that none runs off its page.

    Columns are measured (widest cell or wrapped header at :data:`TABLE_FONT`, plus :data:`CELL_PAD_PT`)
    and packed, in order, into groups that fit the page width together with the row-label column (repeated
    on every page); rows are packed into groups whose heights (a one-line row = 1, each further line 0.75,
    the header 2.2) fit the page height.

    Returns
    -------
    list of (row positions, column positions): one entry per page, rows outer, columns inner.
    """
    cells = [[_plain(v) for v in row] for row in table.to_numpy()]
    labels = [str(label) for label in table.index]
    header = [textwrap.fill(str(c), HEADER_WRAP) for c in table.columns]
    available = TABLE_AREA[2] * A4[1] * 72.0
    label_w = max([_text_width_pt(table.index.name or "", TABLE_FONT, "bold")]
                  + [_text_width_pt(x, TABLE_FONT) for x in labels]) + CELL_PAD_PT
    widths = [max([_text_width_pt(header[j], TABLE_FONT, "bold")] + [_text_width_pt(r[j], TABLE_FONT) for r in cells])
              + CELL_PAD_PT for j in range(table.shape[1])]
    column_groups, group, used = [], [], label_w
    for j, w in enumerate(widths):
        if group and used + w > available:
            column_groups.append(group)
            group, used = [], label_w
        group.append(j)
        used += w
    column_groups.append(group)
    budget = TABLE_AREA[3] * A4[0] * 72.0 / ROW_PT - 2.2
    row_groups, group, used = [], [], 0.0
    for i, row in enumerate(cells):
        lines = max([str(v).count("\n") + 1 for v in row] + [labels[i].count("\n") + 1])
        height = 1 + 0.75 * (lines - 1)
        if group and used + height > budget:
            row_groups.append(group)
            group, used = [], 0.0
        group.append(i)
        used += height
    row_groups.append(group)
    return [(rows, cols) for rows in row_groups for cols in column_groups]


def _table_page(pdf: PdfPages, title: str, table: pd.DataFrame, note: str = "") -> None:
    """One or more landscape pages of ``table`` (split by :func:`table_chunks`), the note on each."""
    chunks = table_chunks(table)
    n_col_groups = len({tuple(c) for _, c in chunks})
    for k, (rows, cols) in enumerate(chunks):
        part = table.iloc[rows, cols]
        suffix = []
        if n_col_groups > 1:
            suffix.append(f"columns {cols[0] + 1}-{cols[-1] + 1} of {table.shape[1]}")
        if rows and rows[0] > 0:
            suffix.append("cont.")
        page_title = title + (f" ({', '.join(suffix)})" if suffix else "")
        _table_figure(pdf, page_title, part, note)


def _table_figure(pdf: PdfPages, title: str, table: pd.DataFrame, note: str = "") -> None:
    fig = plt.figure(figsize=(A4[1], A4[0]))  # landscape
    fig.text(0.04, 0.95, _wrap_title(title, A4[1] * 0.92), fontsize=12, weight="bold", va="top")
    ax = fig.add_axes(list(TABLE_AREA))
    ax.axis("off")
    # the row label is the first column (matplotlib's rowLabels would fall outside the axes)
    cells = [[str(label)] + [_plain(v) for v in row] for label, row in zip(table.index, table.to_numpy())]
    cols = [table.index.name or ""] + [textwrap.fill(str(c), HEADER_WRAP) for c in table.columns]
    widths = [max([_text_width_pt(cols[j], TABLE_FONT, "bold")] + [_text_width_pt(r[j], TABLE_FONT) for r in cells])
              + CELL_PAD_PT for j in range(len(cols))]
    total = TABLE_AREA[2] * A4[1] * 72.0
    scale = min(1.0, total / sum(widths)) if sum(widths) else 1.0
    tab = ax.table(cellText=cells or [[""] * len(cols)], colLabels=cols, loc="upper center", cellLoc="center",
                   colWidths=[w * scale / total for w in widths])
    tab.auto_set_font_size(False)
    tab.set_fontsize(TABLE_FONT)
    tab.scale(1, 1.6)
    underlined = []
    for (r, c), cell in tab.get_celld().items():
        if r == 0:
            cell.set_height(cell.get_height() * 2.2)
            cell.set_text_props(weight="bold")
            continue
        if not cells:
            continue
        lines = max(str(v).count("\n") + 1 for v in cells[r - 1])  # multi-line cells (e.g. the claims page)
        cell.set_height(cell.get_height() * (1 + 0.75 * (lines - 1)))
        if c >= 1 and str(table.iat[r - 1, c - 1]).startswith("**"):
            cell.set_text_props(weight="bold")
        if c >= 1 and "<u>" in str(table.iat[r - 1, c - 1]):
            underlined.append(cell)
    if underlined:  # matplotlib text has no underline: draw a line under the cell text
        fig.canvas.draw()
        inv = fig.transFigure.inverted()
        for cell in underlined:
            (x0, y0), (x1, _) = inv.transform(cell.get_text().get_window_extent().get_points())
            fig.add_artist(plt.Line2D([x0, x1], [y0 - 0.002, y0 - 0.002], color="black", linewidth=0.6))
    if note:
        chars = int(A4[1] * 0.92 * 72.0 / (0.52 * 7))
        note = "\n".join(textwrap.fill(line, chars) if line else "" for line in note.split("\n"))
        fig.text(0.04, 0.04, note, fontsize=7, va="bottom")
    pdf.savefig(fig)
    plt.close(fig)


#: image area of a portrait page (figure fractions, below the title and above a short caption)
IMAGE_AREA = (0.03, 0.06, 0.94, 0.88)


def split_tall_image(img, max_aspect: float) -> list:
    """Cut an image taller than ``max_aspect`` (height / width) into parts that are not, at blank rows.

    Each cut goes through the last all-white pixel row (every channel >= 0.97, e.g. the gap between two
    rows of subplots) that keeps the part within ``max_aspect``; where a part has no blank row, it is cut at
    the limit.

    Parameters
    ----------
    img : ndarray, (H, W) or (H, W, C), values in [0, 1]
    max_aspect : float

    Returns
    -------
    list of ndarray: the parts, top to bottom (the image itself when it fits).
    """
    h, w = img.shape[:2]
    limit = max(1, int(w * max_aspect))
    if h <= limit:
        return [img]
    rgb = img[..., :3] if img.ndim == 3 else img[..., None]
    blank = (rgb >= 0.97).all(axis=(1, 2))
    parts, top = [], 0
    while h - top > limit:
        window = blank[top + limit // 3: top + limit]  # not so early that a part is almost empty
        candidates = top + limit // 3 + np.flatnonzero(window)
        cut = int(candidates[-1]) + 1 if len(candidates) else top + limit
        parts.append(img[top:cut])
        top = cut
    parts.append(img[top:])
    return parts


def _image_page(pdf: PdfPages, title: str, image: str | Path, caption: str = "") -> None:
    """One page of a figure (landscape when wider than tall); a figure too tall to be read on one page is
    split over several at blank rows (:func:`split_tall_image`), "(part k of n)" in the title."""
    img = plt.imread(image)
    if np.issubdtype(img.dtype, np.integer):
        img = img / 255.0
    h, w = img.shape[:2]
    size = A4 if h >= w else (A4[1], A4[0])
    page_aspect = (IMAGE_AREA[3] * size[1]) / (IMAGE_AREA[2] * size[0])
    parts = split_tall_image(img, page_aspect * 1.05) if h >= w else [img]
    for k, part in enumerate(parts):
        page_title = title + (f" (part {k + 1} of {len(parts)})" if len(parts) > 1 else "")
        _image_figure(pdf, page_title, part, size, caption)


def _image_figure(pdf: PdfPages, title: str, img, size, caption: str = "") -> None:
    fig = plt.figure(figsize=size)
    title = _wrap_title(title, size[0] * 0.9)
    fig.text(0.05, 0.97, title, fontsize=12, weight="bold", va="top")
    top = 0.94 - 0.022 * title.count("\n") * A4[1] / size[1]
    caption = textwrap.fill(caption, int(size[0] * 0.9 * 72.0 / (0.5 * 7))) if caption else ""
    bottom = 0.03 + (0.012 * (caption.count("\n") + 1) * A4[1] / size[1] if caption else 0.0)
    ax = fig.add_axes([0.03, bottom, 0.94, top - bottom])
    ax.imshow(img)
    ax.axis("off")
    if caption:
        fig.text(0.05, 0.02, caption, fontsize=7, va="bottom")
    pdf.savefig(fig)
    plt.close(fig)


def page_overflow(fig) -> list[str]:
    """What runs off a report page: every text, table and table-cell text whose rendered extent leaves the
    figure, and every cell text wider than its cell (empty list: the page is fine).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        A page as :func:`build_report` draws it.
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    tol = 1.0  # pixels

    def outside(box) -> bool:
        return box.x0 < page.x0 - tol or box.y0 < page.y0 - tol or box.x1 > page.x1 + tol or box.y1 > page.y1 + tol

    problems = []
    for text in fig.texts:
        if text.get_text() and outside(text.get_window_extent(renderer)):
            problems.append(f"text {text.get_text()[:40]!r} runs off the page")
    for ax in fig.axes:
        for tab in ax.tables:
            if outside(tab.get_window_extent(renderer)):
                problems.append(f"table runs off the page ({tab.get_window_extent(renderer)} vs {page})")
            for (r, c), cell in tab.get_celld().items():
                text = cell.get_text()
                if not text.get_text():
                    continue
                tb, cb = text.get_window_extent(renderer), cell.get_window_extent(renderer)
                if tb.width > cb.width + tol:
                    problems.append(f"cell ({r}, {c}) text {text.get_text()[:30]!r} is wider than its cell")
                if outside(tb):
                    problems.append(f"cell ({r}, {c}) text {text.get_text()[:30]!r} runs off the page")
        for image in ax.images:
            if outside(image.get_window_extent(renderer)):
                problems.append("image runs off the page")
    return problems


def build_report(path: str | Path, *, title: str, tables: list[tuple[str, pd.DataFrame, str]],
                 figures: list[tuple[str, str | Path, str]], config_text: str, benchmark_dir: str | Path,
                 extra_provenance: dict | None = None, conventions_lines: list[str] | None = None) -> None:
    """Write the report.

    Parameters
    ----------
    path : output PDF
    title : str
    tables : list of (title, display table, note)
    figures : list of (title, image file, caption)
    config_text : the run's configuration as YAML text
    benchmark_dir : folder of Snakemake benchmark files (wall time per rule)
    extra_provenance : more key/value lines for the provenance page
    conventions_lines : the conventions in force (preset and every switch), printed on the provenance page
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    times = rule_times(benchmark_dir)
    with PdfPages(path) as pdf:
        now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        intro = [f"generated {now}", f"git commit {git_commit()}", "",
                 "Contents:"] + [f"  - {t}" for t, _, _ in tables] + [f"  - {t}" for t, _, _ in figures] + \
                ["  - Provenance: package versions, conventions in force, wall time per rule", "  - Configuration", "",
                 "Cells are mean ± std across cross-validation folds; values in % except PSNR (dB),",
                 "l1 (e-3) and l1-ratio. Bold = best in column; * or underline = best and significantly",
                 "better than every other row (permutation test, see each table's note)."]
        _text_page(pdf, title, intro, fontsize=10)
        for t, table, note in tables:
            _table_page(pdf, t, table, note)
        for t, image, caption in figures:
            _image_page(pdf, t, image, caption)
        prov = [f"{k:<16} {v}" for k, v in package_versions().items()]
        prov += ["", *(f"{k:<16} {v}" for k, v in (extra_provenance or {}).items()), ""]
        if conventions_lines:
            prov += [*conventions_lines, ""]
        prov += ["Wall time per rule (Snakemake benchmark files):",
                 f"{'rule':<16}{'jobs':>6}{'total s':>10}{'mean s':>9}{'max s':>9}{'max RSS MB':>12}"]
        for _, r in times.iterrows():
            prov.append(f"{r['rule']:<16}{int(r['jobs']):>6}{r['total_s']:>10.1f}{r['mean_s']:>9.2f}{r['max_s']:>9.2f}"
                        f"{r['max_rss_mb']:>12.0f}")
        if len(times):
            prov.append(f"{'all rules':<16}{int(times['jobs'].sum()):>6}{times['total_s'].sum():>10.1f}")
        _text_page(pdf, "Provenance", prov)
        _text_page(pdf, "Configuration", config_text.splitlines(), fontsize=6.5)
