"""Quality control of pre-processed data: a per-subject table with outlier flags, mid-slice figures,
and the table of subjects the source scans left out.

:func:`qc_table` flattens the QC records written by the ``preprocess`` rule (the dict
:func:`brainuad.data.preprocess.preprocess_subject` returns, plus ``subject``) into one row per
subject and flags

* robust outliers: for every column of ``outlier_columns`` (brain volume, intensity percentiles,
  registration similarity (low side only), lesion volume),
  ``|x - median| > mad_threshold * 1.4826 * MAD``
  (MAD = median absolute deviation; 1.4826 * MAD estimates the standard deviation of normal
  data; 3.5 is the usual cut-off of Iglewicz and Hoaglin). When MAD is 0 (more than half the
  values equal) the mean absolute deviation * 1.2533 is used instead; with fewer than
  ``min_subjects`` non-missing values a column is not flagged;
* failed registration: ``|registration_correlation_after_n4| < min_registration_correlation``
  (Pearson r with the template inside its brain mask; its sign is negative for T2-like contrasts
  registered to a T1 template, so the magnitude is compared);
* labels off the brain: ``lesion_voxels_outside_mask / lesion_voxels_template >
  max_lesion_outside_fraction``;
* brain cut by the crop: ``brain_voxels_removed_by_crop / brain_voxels_before_crop >
  max_crop_removed_fraction`` (default 1 %; records without ``brain_voxels_before_crop`` compare the count
  with 0). A tight crop_pad box clips the outermost brain-mask voxels of most subjects (a few tenths of a
  percent); a flag should mark a brain that actually lost tissue, not every subject.

:func:`qc_figure` draws axial / coronal / sagittal mid-slices of every subject (pages of
``max_per_page`` subjects). :func:`exclusions_table` turns the exclusion records of
:mod:`brainuad.data.sources` into a table. :func:`write_dataset_qc` writes all three for one dataset.
:func:`exclusion_summary` says, at the end of a run, how many subjects each dataset kept and excluded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from brainuad import paths
from brainuad.data.manifest import EXCLUSION_KEYS
from brainuad.utils import read_json

__all__ = [
    "DEFAULT_OUTLIER_COLUMNS",
    "MAD_TO_SD",
    "dataset_exclusions",
    "exclusion_summary",
    "exclusions_table",
    "flatten_qc",
    "qc_figure",
    "qc_table",
    "robust_z",
    "write_dataset_qc",
]

#: 1.4826 * MAD estimates the standard deviation of normally distributed data.
MAD_TO_SD = 1.4826
#: sqrt(pi / 2): mean absolute deviation -> standard deviation (normal data); fallback when MAD = 0.
MEAN_AD_TO_SD = 1.2533
#: Columns where only values below the median are outliers.
LOW_SIDE_ONLY = frozenset({"registration_similarity"})
#: Columns checked for robust outliers (when present).
DEFAULT_OUTLIER_COLUMNS = ("brain_volume_ml", "intensity_low", "intensity_high", "registration_similarity",
                           "lesion_volume_ml")

_LEADING = ["subject", "sequence", "registration_correlation_before", "registration_correlation_after",
            "registration_correlation_after_n4", "registration_similarity", "brain_volume_ml",
            "brain_volume_template_ml", "intensity_low", "intensity_high", "lesion_voxels_input",
            "lesion_voxels_template", "lesion_voxels_outside_mask", "lesion_outside_fraction",
            "lesion_voxels_output", "lesion_volume_ml", "brain_voxels_removed_by_crop", "seconds_total"]


def flatten_qc(record: Mapping) -> dict:
    """One QC record -> flat dict of scalars.

    ``intensity_percentiles`` ``{"p1": a, "p99": b}`` becomes ``intensity_p1`` / ``intensity_p99``
    and, for the lower / upper one, ``intensity_low`` / ``intensity_high``; ``seconds`` becomes
    ``seconds_<step>``; lists (``output_shape``, ...) become ``"x"``-joined text. Derived:
    ``registration_similarity`` = ``|registration_correlation_after_n4|`` (or ``_after``),
    ``lesion_outside_fraction`` = outside / template lesion voxels (NaN without lesion),
    ``lesion_volume_ml`` = output lesion voxels times the output voxel volume.
    """
    flat: dict = {}
    for key, value in record.items():
        if key == "registration_transform":  # transform parameters (brainuad.data.preprocess.raw_space), no QC value
            continue
        if key == "intensity_percentiles" and isinstance(value, Mapping):
            items = sorted(value.items(), key=lambda kv: _percentile_rank(kv[0]))
            for name, number in items:
                flat[f"intensity_{name}"] = _number(number)
            if items:
                flat["intensity_low"], flat["intensity_high"] = _number(items[0][1]), _number(items[-1][1])
        elif key == "seconds" and isinstance(value, Mapping):
            for name, number in value.items():
                flat[f"seconds_{name}"] = _number(number)
        elif isinstance(value, (list, tuple)):
            flat[key] = "x".join(f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in value)
        elif isinstance(value, Mapping):
            for name, number in value.items():
                flat[f"{key}_{name}"] = number
        else:
            flat[key] = value
    correlation = flat.get("registration_correlation_after_n4", flat.get("registration_correlation_after"))
    flat["registration_similarity"] = abs(_number(correlation)) if correlation is not None else math.nan
    template = _number(flat.get("lesion_voxels_template"))
    outside = _number(flat.get("lesion_voxels_outside_mask"))
    flat["lesion_outside_fraction"] = outside / template if template and template > 0 else math.nan
    spacing = record.get("output_spacing_mm")
    if spacing is not None and flat.get("lesion_voxels_output") is not None:
        flat["lesion_volume_ml"] = _number(flat["lesion_voxels_output"]) * float(np.prod(spacing)) / 1000.0
    return flat


def _percentile_rank(name: str) -> float:
    try:
        return float(str(name).lstrip("pP"))
    except ValueError:
        return math.inf


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def robust_z(values: Sequence[float], *, min_subjects: int = 5) -> np.ndarray:
    """(x - median) / (1.4826 * MAD) per value; NaN where undefined.

    Falls back to 1.2533 * mean absolute deviation when MAD is 0; all NaN when fewer than
    ``min_subjects`` finite values or no spread at all.
    """
    x = np.asarray(values, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    finite = np.isfinite(x)
    if finite.sum() < max(int(min_subjects), 1):
        return out
    median = np.median(x[finite])
    deviation = np.abs(x[finite] - median)
    scale = MAD_TO_SD * np.median(deviation)
    if scale == 0:
        scale = MEAN_AD_TO_SD * deviation.mean()
    if scale == 0:
        return out
    out[finite] = (x[finite] - median) / scale
    return out


def _load(record) -> Mapping:
    if isinstance(record, Mapping):
        return record
    path = Path(record)
    return json.loads(path.read_text())


def qc_table(
    records: Iterable[Mapping | str | Path],
    *,
    mad_threshold: float = 3.5,
    min_registration_correlation: float = 0.5,
    max_lesion_outside_fraction: float = 0.1,
    max_crop_removed_fraction: float = 0.01,
    outlier_columns: Sequence[str] = DEFAULT_OUTLIER_COLUMNS,
    min_subjects: int = 5,
) -> pd.DataFrame:
    """Per-subject QC table with outlier flags.

    Parameters
    ----------
    records : iterable of dict or path
        QC records (dicts, or paths of the ``*_qc.json`` files of the preprocess rule).
    mad_threshold : float
        Robust z-score beyond which a value is an outlier (default 3.5).
    min_registration_correlation : float
        Smallest accepted ``|r|`` of the registered, bias-corrected image with the template.
    max_lesion_outside_fraction : float
        Largest accepted fraction of the (template-space) lesion outside the brain mask.
    max_crop_removed_fraction : float
        Largest accepted fraction of the brain-mask voxels removed by crop/pad.
    outlier_columns : sequence of str
        Columns checked with the robust z-score (missing ones are skipped).
    min_subjects : int
        Fewest finite values needed to flag a column.

    Returns
    -------
    pandas.DataFrame
        One row per record, sorted by ``subject`` when present: the flattened QC values, then
        ``z_<column>`` (robust z-scores), ``outlier_<column>`` (bool), ``flag_registration``,
        ``flag_lesion_outside``, ``flag_crop``, ``n_flags``, ``flagged`` (any flag) and
        ``reasons`` (``"; "``-joined text naming every flag and its value).
    """
    flat = [flatten_qc(_load(r)) for r in records]
    table = pd.DataFrame(flat)
    if table.empty:
        return pd.DataFrame(columns=["subject", "n_flags", "flagged", "reasons"])
    leading = [c for c in _LEADING if c in table.columns]
    table = table[leading + [c for c in table.columns if c not in leading]]
    if "subject" in table.columns:
        table = table.sort_values("subject", kind="stable").reset_index(drop=True)
    reasons: list[list[str]] = [[] for _ in range(len(table))]
    flag_columns = []
    for column in outlier_columns:
        if column not in table.columns:
            continue
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
        z = robust_z(values, min_subjects=min_subjects)
        table[f"z_{column}"] = z
        z_checked = np.nan_to_num(z, nan=0.0)
        if column in LOW_SIDE_ONLY:  # an unusually good registration is not a problem
            z_checked = np.minimum(z_checked, 0.0)
        flags = np.abs(z_checked) > mad_threshold
        table[f"outlier_{column}"] = flags
        flag_columns.append(f"outlier_{column}")
        median = np.nanmedian(values) if np.isfinite(values).any() else math.nan
        for i in np.flatnonzero(flags):
            reasons[i].append(f"{column} {values[i]:.4g} is {z[i]:+.1f} robust SD from the median {median:.4g}")
    similarity = pd.to_numeric(table.get("registration_similarity"), errors="coerce")
    if similarity is not None:
        flags = (similarity < min_registration_correlation).to_numpy()
        table["flag_registration"] = flags
        flag_columns.append("flag_registration")
        for i in np.flatnonzero(flags):
            reasons[i].append(f"registration |r| {similarity.iloc[i]:.3f} < {min_registration_correlation:g}")
    if "lesion_outside_fraction" in table.columns:
        fraction = pd.to_numeric(table["lesion_outside_fraction"], errors="coerce")
        flags = (fraction > max_lesion_outside_fraction).to_numpy()
        table["flag_lesion_outside"] = flags
        flag_columns.append("flag_lesion_outside")
        for i in np.flatnonzero(flags):
            reasons[i].append(f"{fraction.iloc[i]:.1%} of the lesion lies outside the brain mask "
                              f"(> {max_lesion_outside_fraction:.0%})")
    if "brain_voxels_removed_by_crop" in table.columns:
        removed = pd.to_numeric(table["brain_voxels_removed_by_crop"], errors="coerce").fillna(0)
        before = pd.to_numeric(table.get("brain_voxels_before_crop", pd.Series(np.nan, index=table.index)),
                               errors="coerce")
        fraction = (removed / before.where(before > 0)).fillna(0.0)
        table["crop_removed_fraction"] = fraction.where(before > 0)
        known = before.gt(0).to_numpy()
        flags = np.where(known, fraction.to_numpy() > max_crop_removed_fraction, (removed > 0).to_numpy())
        table["flag_crop"] = flags
        flag_columns.append("flag_crop")
        for i in np.flatnonzero(flags):
            share = f" ({fraction.iloc[i]:.1%} of the brain > {max_crop_removed_fraction:.1%})" if known[i] else ""
            reasons[i].append(f"crop/pad removed {int(removed.iloc[i])} brain voxels{share} (crop_pad too small)")
    table["n_flags"] = table[flag_columns].sum(axis=1).astype(int) if flag_columns else 0
    table["flagged"] = table["n_flags"] > 0
    table["reasons"] = ["; ".join(r) for r in reasons]
    return table


def exclusions_table(exclusions: Iterable[Mapping]) -> pd.DataFrame:
    """Exclusion records ``{"source", "subject", "file", "reason"}`` -> DataFrame (sorted).

    Extra keys become extra columns; an empty list gives an empty table with the four columns.
    """

    table = pd.DataFrame(list(exclusions))
    for key in EXCLUSION_KEYS:
        if key not in table.columns:
            table[key] = pd.Series(dtype=str)
    table = table[list(EXCLUSION_KEYS) + [c for c in table.columns if c not in EXCLUSION_KEYS]]
    return table.sort_values(["source", "subject"], kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------------------ figure


def _mid_slices(volume: np.ndarray) -> list[tuple[str, np.ndarray, str]]:
    """(view, 2D array, imshow origin) for a (D, H, W) volume (D axial inferior -> superior,
    H anterior -> posterior, W the left-right axis)."""
    d, h, w = volume.shape
    return [("axial", volume[d // 2], "upper"),
            ("coronal", volume[:, h // 2, :], "lower"),
            ("sagittal", volume[:, :, w // 2], "lower")]


def qc_figure(
    volumes: np.ndarray | Sequence[np.ndarray],
    subjects: Sequence[str],
    out_png: str | Path,
    max_per_page: int = 24,
    *,
    overlays: np.ndarray | Sequence[np.ndarray] | None = None,
    highlight: Iterable[str] = (),
    subjects_per_row: int = 4,
    title: str | None = None,
) -> list[Path]:
    """Small multiples of the axial / coronal / sagittal mid-slices of every subject.

    Parameters
    ----------
    volumes : (N, D, H, W) array or sequence of (D, H, W) arrays
        Volumes in the pack convention (D axial slices inferior -> superior, H anterior ->
        posterior, W left-right); each is scaled to its own [0, 99.5th percentile].
    subjects : sequence of str
        N subject ids (panel titles).
    out_png : path
        Output file. ``.pdf``: one multi-page PDF. Otherwise the first page is written to
        ``out_png`` and page k > 1 to ``<stem>_p<k><suffix>`` next to it.
    max_per_page : int
        Subjects per page.
    overlays : (N, D, H, W) array, optional
        Binary masks (e.g. lesion labels) drawn as red contours.
    highlight : iterable of str
        Subjects whose titles are drawn in red (e.g. flagged by :func:`qc_table`).
    subjects_per_row : int
        Subjects side by side (3 panels each).
    title : str, optional
        Figure title (page numbers are appended).

    Returns
    -------
    list of Path
        The files written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    volumes = [np.asarray(v, dtype=np.float32) for v in volumes]
    subjects = [str(s) for s in subjects]
    if len(volumes) != len(subjects):
        raise ValueError(f"{len(volumes)} volumes but {len(subjects)} subject ids")
    if overlays is not None:
        overlays = [np.asarray(o) for o in overlays]
        if len(overlays) != len(volumes):
            raise ValueError(f"{len(overlays)} overlays for {len(volumes)} volumes")
    for subject, volume in zip(subjects, volumes):
        if volume.ndim != 3:
            raise ValueError(f"volume of {subject} has shape {volume.shape}; (D, H, W) expected")
    max_per_page = max(1, int(max_per_page))
    per_row = max(1, min(int(subjects_per_row), max_per_page, max(len(volumes), 1)))
    marked = set(highlight)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    pages = max(1, math.ceil(len(volumes) / max_per_page))
    written: list[Path] = []
    pdf = PdfPages(out) if out.suffix.lower() == ".pdf" else None
    try:
        for page in range(pages):
            chunk = range(page * max_per_page, min((page + 1) * max_per_page, len(volumes)))
            rows = max(1, math.ceil(len(chunk) / per_row))
            fig, axes = plt.subplots(rows, 3 * per_row, figsize=(3 * per_row * 1.25, rows * 1.45 + 0.4),
                                     squeeze=False)
            for ax in axes.ravel():
                ax.axis("off")
            for slot, index in enumerate(chunk):
                volume = volumes[index]
                finite = volume[np.isfinite(volume)]
                top = float(np.percentile(finite, 99.5)) if finite.size else 1.0
                top = top if top > 0 else 1.0
                r, c = divmod(slot, per_row)
                views = _mid_slices(volume)
                masks = _mid_slices(overlays[index]) if overlays is not None else [None] * 3
                for k, ((view, plane, origin), mask) in enumerate(zip(views, masks)):
                    ax = axes[r, 3 * c + k]
                    ax.imshow(plane, cmap="gray", vmin=0.0, vmax=top, origin=origin, interpolation="nearest",
                              aspect="equal")
                    if mask is not None and np.any(mask[1] > 0):
                        ax.contour(mask[1] > 0, levels=[0.5], colors="red", linewidths=0.6, origin=origin)
                    if k == 1:
                        ax.set_title(subjects[index], fontsize=7,
                                     color="red" if subjects[index] in marked else "black")
            head = title or "QC: axial / coronal / sagittal mid-slices"
            fig.suptitle(head + (f" (page {page + 1}/{pages})" if pages > 1 else ""), fontsize=9)
            fig.tight_layout(rect=(0, 0, 1, 0.97), pad=0.3)
            if pdf is not None:
                pdf.savefig(fig, dpi=110)
                if not written:
                    written.append(out)
            else:
                target = out if page == 0 else out.with_name(f"{out.stem}_p{page + 1}{out.suffix}")
                fig.savefig(target, dpi=110)
                written.append(target)
            plt.close(fig)
    finally:
        if pdf is not None:
            pdf.close()
    return written


# ------------------------------------------------------------------------------------ one dataset


def dataset_exclusions(scan_exclusions: str | Path, records: Sequence[Mapping], dataset: str) -> pd.DataFrame:
    """Every subject of a dataset left out, with the ``stage`` that left it out.

    Parameters
    ----------
    scan_exclusions : path
        The adapter's exclusions TSV (stage ``manifest``).
    records : QC records of the preprocess rule; those with ``excluded`` are stage ``preprocess``.
    dataset : str

    Returns
    -------
    DataFrame ``dataset, source, subject, file, reason, stage``, sorted by stage, source and subject.
    """

    columns = [*EXCLUSION_KEYS, "stage"]
    scan = pd.read_csv(scan_exclusions, sep="\t", dtype=str, keep_default_na=False)
    scan["stage"] = "manifest"
    late = pd.DataFrame([{k: rec.get(k, "") for k in columns} for rec in records if rec.get("excluded")],
                        columns=columns)
    excluded = pd.concat([scan, late], ignore_index=True)[columns]
    excluded.insert(0, "dataset", dataset)
    return excluded.sort_values(["stage", "source", "subject"], kind="stable")


def write_dataset_qc(dataset: str, label: str, *, records: Sequence[str | Path], scan_exclusions: str | Path,
                     volumes: str | Path, table: str | Path, exclusions: str | Path,
                     figure: str | Path, flags: Mapping | None = None) -> tuple[pd.DataFrame, list[str], pd.DataFrame, list[Path]]:
    """QC table, exclusions table and mid-slice figure of one dataset.

    Parameters
    ----------
    dataset, label : the dataset's name and display label
    records : the ``_qc.json`` files of the preprocess rule
    scan_exclusions : the adapter's exclusions TSV
    volumes : the dataset's pack (subjects the preprocess rule excluded are not in it)
    table, exclusions, figure : outputs (TSV, TSV, image; further figure pages next to it)
    flags : keyword arguments of :func:`qc_table` (config ``qc``: ``max_crop_removed_fraction``,
        ``mad_threshold``)

    Returns
    -------
    (QC table, flagged subjects, exclusions table, figure pages written)
    """
    from brainuad.data.pack import load_pack

    recs = [read_json(path) for path in records]
    qc = qc_table([rec for rec in recs if not rec.get("excluded")], **dict(flags or {}))
    qc.insert(0, "dataset", dataset)
    qc.to_csv(table, sep="\t", index=False)
    flagged = qc.loc[qc["flagged"].astype(bool), "subject"].tolist() if len(qc) else []
    excluded = dataset_exclusions(scan_exclusions, recs, dataset)
    excluded.to_csv(exclusions, sep="\t", index=False)
    pack = load_pack(volumes)
    subjects = pack["subjects"].tolist()
    order = sorted(range(len(subjects)), key=lambda i: (subjects[i] not in flagged, subjects[i]))  # flagged first
    written = qc_figure(pack["images"][order].astype(np.float32), [subjects[i] for i in order], figure,
                        overlays=pack["segs"][order] if pack["segs"].any() else None, highlight=flagged,
                        title=f"QC {label}: mid-slices (red titles: flagged; red contour: lesion label)")
    return qc, flagged, excluded, written


def _rows(path: Path) -> pd.DataFrame:
    if path.stat().st_size == 0:
        return pd.DataFrame(columns=["subject", "stage"])
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def exclusion_summary(datasets: Iterable[str], root: str | Path = ".") -> str:
    """Subjects kept and excluded per dataset, from the exclusion tables of a results folder.

    A dataset counts when its manifest exists. Its exclusions are those of the QC table
    (``results/qc/<dataset>/exclusions.tsv``, every stage) when it is at least as new as the
    manifest, else the manifest's (``results/data/<dataset>/exclusions.tsv``, before
    pre-processing). Kept = manifest subjects not excluded by pre-processing.

    Parameters
    ----------
    datasets : iterable of str
        Dataset names (the config's ``datasets``).
    root : str or Path
        The workflow's working directory (the one holding ``results``).

    Returns
    -------
    str
        ``"Data: <n> of <total> subjects excluded"`` followed by one line per dataset, ``"  <dataset>:
        <kept> of <total> subjects kept, <excluded> excluded (reasons: <exclusions.tsv>)"``; ``""`` when
        no manifest exists.
    """
    root = Path(root)
    lines, kept_total, excluded_total = [], 0, 0
    for dataset in datasets:
        manifest = root / paths.fill(paths.MANIFEST, dataset=dataset)
        if not manifest.is_file():
            continue
        listed = len(_rows(manifest))
        late = root / paths.fill(paths.QC_EXCLUSIONS, dataset=dataset)
        source = late if late.is_file() and late.stat().st_mtime >= manifest.stat().st_mtime else (
            root / paths.fill(paths.EXCLUSIONS, dataset=dataset))
        excluded = _rows(source) if source.is_file() else pd.DataFrame(columns=["subject", "stage"])
        kept = listed - int((excluded.get("stage", pd.Series(dtype=str)) == "preprocess").sum())
        total = kept + len(excluded)
        kept_total, excluded_total = kept_total + kept, excluded_total + len(excluded)
        shown = source.relative_to(root) if source.is_relative_to(root) else source
        lines.append(f"  {dataset}: {kept} of {total} subjects kept, {len(excluded)} excluded"
                     + (f" (reasons: {shown})" if len(excluded) else ""))
    if not lines:
        return ""
    header = f"Data: {excluded_total} of {kept_total + excluded_total} subjects excluded"
    return "\n".join([header, *lines])
