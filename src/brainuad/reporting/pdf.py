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


def _text_page(pdf: PdfPages, title: str, lines: list[str], fontsize: float = 8.0) -> None:
    per_page = int(70 * 8.0 / fontsize)
    for start in range(0, max(len(lines), 1), per_page):
        fig = plt.figure(figsize=A4)
        fig.text(0.06, 0.96, title + (" (cont.)" if start else ""), fontsize=13, weight="bold", va="top")
        fig.text(0.06, 0.93, "\n".join(lines[start : start + per_page]), fontsize=fontsize, family="monospace",
                 va="top")
        pdf.savefig(fig)
        plt.close(fig)


def _table_page(pdf: PdfPages, title: str, table: pd.DataFrame, note: str = "") -> None:
    fig = plt.figure(figsize=(A4[1], A4[0]))  # landscape
    fig.text(0.04, 0.95, title, fontsize=12, weight="bold", va="top")
    ax = fig.add_axes([0.03, 0.1, 0.94, 0.78])
    ax.axis("off")
    # the row label is the first column (matplotlib's rowLabels would fall outside the axes)
    def plain(v):
        return str(v).replace("**", "").replace("<u>", "").replace("</u>", "")

    cells = [[str(label)] + [plain(v) for v in row] for label, row in zip(table.index, table.to_numpy())]
    cols = [table.index.name or ""] + [textwrap.fill(str(c), 18) for c in table.columns]
    tab = ax.table(cellText=cells, colLabels=cols, loc="upper center", cellLoc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(7)
    tab.scale(1, 1.6)
    underlined = []
    for (r, c), cell in tab.get_celld().items():
        if r == 0:
            cell.set_height(cell.get_height() * 2.2)
            cell.set_text_props(weight="bold")
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
        fig.text(0.04, 0.04, note, fontsize=7, va="bottom")
    pdf.savefig(fig)
    plt.close(fig)


def _image_page(pdf: PdfPages, title: str, image: str | Path, caption: str = "") -> None:
    img = plt.imread(image)
    h, w = img.shape[:2]
    fig = plt.figure(figsize=A4 if h >= w else (A4[1], A4[0]))
    fig.text(0.05, 0.97, title, fontsize=12, weight="bold", va="top")
    ax = fig.add_axes([0.03, 0.06, 0.94, 0.88])
    ax.imshow(img)
    ax.axis("off")
    if caption:
        fig.text(0.05, 0.02, textwrap.fill(caption, 150), fontsize=7, va="bottom")
    pdf.savefig(fig)
    plt.close(fig)


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
