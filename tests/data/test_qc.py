"""Tests for brainuad.data.qc: QC table flags on a constructed cohort, figures, exclusions table."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from brainuad.data.qc import (
    dataset_exclusions,
    exclusion_summary,
    exclusions_table,
    flatten_qc,
    qc_figure,
    qc_table,
    robust_z,
    write_dataset_qc,
)


def record(subject: str, *, volume=1400.0, r=0.85, p99=900.0, lesion=0, outside=0, removed=0) -> dict:
    """A QC record shaped like the one preprocess_subject returns (plus the subject id)."""
    return {
        "subject": subject, "image": f"/raw/{subject}.nii.gz", "seg": None,
        "registration_correlation_before": 0.3, "registration_correlation_after": r - 0.02,
        "registration_correlation_after_n4": r, "brain_volume_ml": volume, "brain_volume_template_ml": 1800.0,
        "intensity_percentiles": {"p1": 20.0, "p99": p99}, "lesion_voxels_input": lesion,
        "lesion_voxels_template": lesion, "lesion_voxels_outside_mask": outside,
        "lesion_voxels_output": lesion - outside, "brain_voxels_removed_by_crop": removed,
        "output_shape": [64, 64, 32], "output_spacing_mm": [3.0, 3.0, 3.0], "antspyx_version": "0.6.3",
        "seconds": {"register": 2.0, "n4": 0.5, "total": 3.0},
    }


@pytest.fixture
def cohort():
    rng = np.random.default_rng(0)
    records = [record(f"s{i:02d}", volume=float(1400 + rng.normal(0, 40)), p99=float(900 + rng.normal(0, 20)),
                      r=float(0.85 + rng.normal(0, 0.01)), lesion=100, outside=2) for i in range(12)]
    records.append(record("s90", volume=2300.0, lesion=100, outside=2))  # brain volume outlier
    records.append(record("s91", r=-0.2, lesion=100, outside=2))  # failed registration (|r| small)
    records.append(record("s92", lesion=100, outside=40))  # label outside the brain
    records.append(record("s93", removed=120, lesion=100, outside=2))  # crop cut the brain
    records.append(record("s94", r=-0.85, lesion=100, outside=2))  # T2-like contrast: negative r is fine
    records.append(record("s95", r=0.99, lesion=100, outside=2))  # unusually good registration: fine
    return records


def test_flatten_qc():
    flat = flatten_qc(record("a", lesion=10, outside=1))
    assert flat["intensity_p1"] == 20.0 and flat["intensity_p99"] == 900.0
    assert (flat["intensity_low"], flat["intensity_high"]) == (20.0, 900.0)
    assert flat["seconds_total"] == 3.0 and flat["output_shape"] == "64x64x32"
    assert flat["registration_similarity"] == pytest.approx(0.85)
    assert flat["lesion_outside_fraction"] == pytest.approx(0.1)
    assert flat["lesion_volume_ml"] == pytest.approx(9 * 27 / 1000)
    assert np.isnan(flatten_qc(record("b"))["lesion_outside_fraction"])


def test_robust_z():
    z = robust_z([10, 11, 9, 10, 12, 8, 10, 50])
    assert abs(z[-1]) > 3.5 and np.all(np.abs(z[:-1]) < 3.5)
    # MAD = 0 (most values equal): the mean absolute deviation still exposes the odd one
    z = robust_z([5, 5, 5, 5, 5, 5, 9])
    assert z[-1] > 3.5 and np.all(z[:-1] == 0)
    assert np.isnan(robust_z([1, 2, 3])).all()  # too few subjects
    assert np.isnan(robust_z([4, 4, 4, 4, 4])).all()  # no spread at all


def test_qc_table_flags_constructed_outliers(cohort, tmp_path):
    # records may also be the JSON files written by the preprocess rule
    path = tmp_path / "s00_qc.json"
    path.write_text(json.dumps(cohort[0]))
    table = qc_table([path, *cohort[1:]])
    assert list(table["subject"]) == sorted(r["subject"] for r in cohort)
    flagged = table.set_index("subject")
    assert set(flagged.index[flagged["flagged"]]) == {"s90", "s91", "s92", "s93"}
    assert flagged.loc["s90", "outlier_brain_volume_ml"] and flagged.loc["s90", "n_flags"] == 1
    assert "brain_volume_ml 2300" in flagged.loc["s90", "reasons"]
    assert flagged.loc["s91", "flag_registration"] and "registration |r| 0.200" in flagged.loc["s91", "reasons"]
    assert flagged.loc["s92", "flag_lesion_outside"] and "40.0% of the lesion" in flagged.loc["s92", "reasons"]
    assert flagged.loc["s93", "flag_crop"] and "120 brain voxels" in flagged.loc["s93", "reasons"]
    assert not flagged.loc["s94", "flagged"] and flagged.loc["s94", "reasons"] == ""
    assert flagged.loc["s95", "z_registration_similarity"] > 3.5 and not flagged.loc["s95", "flagged"]
    assert flagged.loc["s90", "z_brain_volume_ml"] > 3.5
    # stricter registration threshold flags the T2-like subject too; a looser MAD cut-off unflags s90
    assert qc_table(cohort, min_registration_correlation=0.86).set_index("subject").loc["s94", "flag_registration"]
    assert not qc_table(cohort, mad_threshold=1e6).set_index("subject").loc["s90", "flagged"]


def test_qc_table_empty_and_small():
    assert qc_table([]).empty
    small = qc_table([record("a"), record("b", volume=5000.0)])
    assert not small["outlier_brain_volume_ml"].any()  # too few subjects for robust statistics


def test_qc_figure_pages(tmp_path):
    rng = np.random.default_rng(1)
    volumes = rng.uniform(0, 1, size=(5, 10, 12, 14)).astype(np.float32)
    overlays = np.zeros(volumes.shape, dtype=np.uint8)
    overlays[:, 3:7, 4:8, 5:9] = 1
    subjects = [f"sub-{i}" for i in range(5)]
    written = qc_figure(volumes, subjects, tmp_path / "qc" / "mid.png", max_per_page=3, overlays=overlays,
                        highlight=["sub-1"])
    assert written == [tmp_path / "qc" / "mid.png", tmp_path / "qc" / "mid_p2.png"]
    image = mpimg.imread(written[0])
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 200
    assert image[..., :3].std() > 0.05  # not a blank page
    pdf = qc_figure(list(volumes), subjects, tmp_path / "mid.pdf", max_per_page=2)
    assert pdf == [tmp_path / "mid.pdf"] and (tmp_path / "mid.pdf").read_bytes()[:4] == b"%PDF"
    with pytest.raises(ValueError, match="subject ids"):
        qc_figure(volumes, subjects[:2], tmp_path / "x.png")


def test_exclusions_table():
    table = exclusions_table([
        {"source": "wmh", "subject": "Utrecht_0", "file": "/d/wmh.nii.gz", "reason": "/d/wmh.nii.gz: empty"},
        {"source": "brats", "subject": "B1", "file": "/b/t2.nii.gz", "reason": "/b/t2.nii.gz: 4D"},
    ])
    assert list(table.columns) == ["source", "subject", "file", "reason"]
    assert list(table["source"]) == ["brats", "wmh"]
    empty = exclusions_table([])
    assert empty.empty and list(empty.columns) == ["source", "subject", "file", "reason"]
    assert isinstance(empty, pd.DataFrame)


def _scan(tmp_path):
    pd.DataFrame({"source": ["ixi", "ixi"], "subject": ["z1", "a1"], "file": ["/raw/z1.nii.gz", ""],
                  "reason": ["unreadable", "no T1"]}).to_csv(tmp_path / "scan.tsv", sep="\t", index=False)
    return tmp_path / "scan.tsv"


def test_dataset_exclusions_adds_the_stage(tmp_path):
    late = {"subject": "b2", "source": "ixi", "file": "/raw/b2.nii.gz", "reason": "registration failed", "stage": "preprocess",
            "excluded": True}
    table = dataset_exclusions(_scan(tmp_path), [record("k"), late], "ixi_t1")
    assert table.columns.tolist() == ["dataset", "source", "subject", "file", "reason", "stage"]
    assert table["subject"].tolist() == ["a1", "z1", "b2"] and table["stage"].tolist() == ["manifest"] * 2 + ["preprocess"]
    assert set(table["dataset"]) == {"ixi_t1"} and table.iloc[2]["reason"] == "registration failed"


def test_write_dataset_qc(cohort, tmp_path):
    paths = []
    for rec in cohort[:13]:  # s00 .. s11 and the brain-volume outlier s90
        paths.append(tmp_path / f"{rec['subject']}_qc.json")
        paths[-1].write_text(json.dumps(rec))
    subjects = [rec["subject"] for rec in cohort[:13]]
    np.savez(tmp_path / "volumes.npz", images=np.random.default_rng(0).random((13, 6, 8, 8)).astype(np.float16),
             segs=np.zeros((13, 6, 8, 8), np.uint8), subjects=np.array(subjects))
    table, flagged, excluded, written = write_dataset_qc(
        "ixi_t1", "IXI", records=paths, scan_exclusions=_scan(tmp_path), volumes=tmp_path / "volumes.npz",
        table=tmp_path / "qc.tsv", exclusions=tmp_path / "excl.tsv", figure=tmp_path / "qc.png")
    assert flagged == ["s90"] and len(table) == 13 and table["dataset"].eq("ixi_t1").all()
    assert pd.read_csv(tmp_path / "qc.tsv", sep="\t")["subject"].tolist() == table["subject"].tolist()
    assert len(excluded) == 2 and pd.read_csv(tmp_path / "excl.tsv", sep="\t")["subject"].tolist() == ["a1", "z1"]
    assert written and all(p.exists() for p in written)


def _tsv(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")


def test_exclusion_summary_counts_kept_and_excluded_per_dataset(tmp_path):
    subjects = [f"s{i}" for i in range(12)]
    _tsv(tmp_path / "results/data/a/manifest.tsv", "subject\timage", [f"{s}\t{s}.nii.gz" for s in subjects])
    _tsv(tmp_path / "results/data/a/exclusions.tsv", "source\tsubject\tfile\treason",
         [f"src\tm{i}\tm{i}.nii.gz\ttruncated" for i in range(3)])
    # the QC table: the 3 manifest exclusions and 2 subjects of the manifest excluded by pre-processing
    _tsv(tmp_path / "results/qc/a/exclusions.tsv", "dataset\tsource\tsubject\tfile\treason\tstage",
         [f"a\tsrc\tm{i}\tm{i}.nii.gz\ttruncated\tmanifest" for i in range(3)]
         + ["a\tsrc\ts0\ts0.nii.gz\tconstant\tpreprocess", "a\tsrc\ts1\ts1.nii.gz\talmost empty\tpreprocess"])
    _tsv(tmp_path / "results/data/b/manifest.tsv", "subject\timage", ["x\tx.nii.gz", "y\ty.nii.gz"])
    _tsv(tmp_path / "results/data/b/exclusions.tsv", "source\tsubject\tfile\treason", ["src\tz\tz.nii.gz\t4D"])
    (tmp_path / "results/data/c").mkdir(parents=True)
    (tmp_path / "results/data/c/manifest.tsv").write_text("subject\timage\nc1\tc1.nii.gz\n")
    (tmp_path / "results/data/c/exclusions.tsv").write_text("")
    summary = exclusion_summary(["a", "b", "c", "not_built"], tmp_path)
    assert summary.splitlines() == [
        "Data: 6 of 19 subjects excluded",
        "  a: 10 of 15 subjects kept, 5 excluded (reasons: results/qc/a/exclusions.tsv)",
        "  b: 2 of 3 subjects kept, 1 excluded (reasons: results/data/b/exclusions.tsv)",
        "  c: 1 of 1 subjects kept, 0 excluded",
    ]
    assert exclusion_summary(["not_built"], tmp_path) == ""


def test_exclusion_summary_ignores_a_qc_table_older_than_the_manifest(tmp_path):
    _tsv(tmp_path / "results/qc/a/exclusions.tsv", "dataset\tsource\tsubject\tfile\treason\tstage",
         ["a\tsrc\told\told.nii.gz\tconstant\tpreprocess"])
    os.utime(tmp_path / "results/qc/a/exclusions.tsv", (1, 1))
    _tsv(tmp_path / "results/data/a/manifest.tsv", "subject\timage", ["x\tx.nii.gz"])
    _tsv(tmp_path / "results/data/a/exclusions.tsv", "source\tsubject\tfile\treason", [])
    assert exclusion_summary(["a"], tmp_path).splitlines()[1] == "  a: 1 of 1 subjects kept, 0 excluded"


def test_crop_flag_needs_a_fraction_of_the_brain():
    """Records with ``brain_voxels_before_crop``: 50 of 10000 removed (0.5 %) passes the 1 % default, 300 (3 %)
    is flagged; 0 flags any removed voxel; the transform parameters never become a QC column."""
    records = [{**record("a", removed=50), "brain_voxels_before_crop": 10000},
               {**record("b", removed=300), "brain_voxels_before_crop": 10000},
               {**record("c", removed=0), "brain_voxels_before_crop": 10000,
                "registration_transform": [{"type": "AffineTransform_float_3_3", "parameters": [1.0] * 12,
                                            "fixed_parameters": [0.0] * 3}]}]
    table = qc_table(records).set_index("subject")
    assert list(table["flag_crop"]) == [False, True, False]
    assert table.loc["a", "crop_removed_fraction"] == pytest.approx(0.005)
    assert "3.0% of the brain > 1.0%" in table.loc["b", "reasons"]
    assert not any(c.startswith("registration_transform") for c in table.columns)
    strict = qc_table(records, max_crop_removed_fraction=0.0).set_index("subject")
    assert list(strict["flag_crop"]) == [True, True, False]
