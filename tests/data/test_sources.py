"""Tests for brainuad.data.sources on tiny fake copies of every distribution layout, and its registry.

Volumes are 8 x 8 x 6 voxels; expected rows and exclusions follow from how each fake layout is
built, not from the code under test.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from brainuad.data.labels import label_arrays
from brainuad.data.manifest import MANIFEST_COLUMNS, SOURCE_COLUMNS, manifest_frame, read_manifest, write_manifest
from brainuad.data.sources import check_options, scan, source_kinds, source_options
from brainuad.data.splits import splits_from_manifest
from brainuad.errors import InputDataError

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (8, 8, 6)
AFFINE = np.diag([1.0, 1.0, 1.2, 1.0])
OTHER_AFFINE = np.diag([2.0, 2.0, 2.4, 1.0])


# --------------------------------------------------------------------------------- helpers


def write_image(path: Path, seed: int = 0, shape=SHAPE, affine=AFFINE, data=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = np.random.default_rng(seed).uniform(10.0, 100.0, size=shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def write_label(path: Path, values=(1,), shape=SHAPE, affine=AFFINE, data=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = np.zeros(shape, dtype=np.uint8)
        for i, value in enumerate(values):
            data[2 + i, 3:5, 2:4] = value
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return path


def truncate(path: Path) -> Path:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) * 2 // 3])
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fingerprint(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(root)): (sha(p), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


def by_subject(rows):
    return {r["subject"]: r for r in rows}


def excluded(exclusions):
    return {e["subject"]: e for e in exclusions}


# --------------------------------------------------------------------------------- IXI


@pytest.fixture
def ixi(tmp_path):
    root = tmp_path / "ixi"
    for name, seed in (("IXI002-Guys-0828", 1), ("IXI012-HH-1211", 2), ("IXI013-HH-1212", 3)):
        write_image(root / "IXI-T1" / f"{name}-T1.nii.gz", seed)
    for name, seed in (("IXI002-Guys-0828", 4), ("IXI012-HH-1211", 5)):
        write_image(root / "IXI-T2" / f"{name}-T2.nii.gz", seed)
    write_image(root / "IXI-PD" / "IXI002-Guys-0828-PD.nii.gz", 6)
    pd.DataFrame({"IXI_ID": [2, 12, 12, 13], "SEX_ID": [1, 2, 2, 1], "HEIGHT": [180, 165, 165, 170],
                  "AGE": ["35.8", "", "61.2", ""]}).to_csv(root / "IXI.csv", index=False)
    return root


def test_ixi_rows_demographics_and_checksums(ixi):
    rows, exclusions = scan("ixi", ixi, sequence="t1")
    assert exclusions == []
    rows = by_subject(rows)
    assert sorted(rows) == ["IXI002-Guys-0828", "IXI012-HH-1211", "IXI013-HH-1212"]
    row = rows["IXI002-Guys-0828"]
    assert set(row) == set(SOURCE_COLUMNS)
    assert row["image"] == str(ixi / "IXI-T1" / "IXI002-Guys-0828-T1.nii.gz")
    assert Path(row["image"]).is_absolute()
    assert row["sha256"] == sha(row["image"])
    assert (row["seg"], row["seg_sha256"], row["sequence"]) == ("", "", "t1")
    assert (row["age"], row["sex"]) == (35.8, "M")
    # IXI.xls repeats ids: the row with an age wins; unknown age stays empty
    assert (rows["IXI012-HH-1211"]["age"], rows["IXI012-HH-1211"]["sex"]) == (61.2, "F")
    assert (rows["IXI013-HH-1212"]["age"], rows["IXI013-HH-1212"]["sex"]) == ("", "M")
    assert not row["registered"] and not row["skull_stripped"] and row["split"] == ""


def test_ixi_t2_missing_sequence_and_require_all(ixi):
    rows, exclusions = scan("ixi", ixi, sequence="t2")
    assert sorted(by_subject(rows)) == ["IXI002-Guys-0828", "IXI012-HH-1211"]
    bad = excluded(exclusions)["IXI013-HH-1212"]
    assert bad["source"] == "ixi"
    assert "IXI013-HH-1212-T2.nii.gz" in bad["reason"] and "missing T2" in bad["reason"]
    rows, exclusions = scan("ixi", ixi, sequence="t1", require_all_sequences=True, source="IXI")
    assert sorted(by_subject(rows)) == ["IXI002-Guys-0828", "IXI012-HH-1211"]
    assert [(e["source"], e["subject"]) for e in exclusions] == [("IXI", "IXI013-HH-1212")]
    with pytest.raises(InputDataError, match="IXI013-HH-1212-T2"):
        scan("ixi", ixi, sequence="t1", require_all_sequences=True, strict=True)


def test_ixi_xls_without_reader_names_the_file(ixi, tmp_path):
    pytest.importorskip("pandas")
    try:
        import xlrd  # noqa: F401
    except ImportError:
        (ixi / "IXI.xls").write_bytes(b"not really a spreadsheet")
        with pytest.raises(InputDataError, match=r"IXI\.xls.*CSV"):
            scan("ixi", ixi, sequence="t1", demographics="IXI.xls")
    else:  # pragma: no cover - depends on the environment
        pytest.skip("xlrd installed")


# --------------------------------------------------------------------------------- exclusions


BAD_CASES = ["truncated", "4d", "nan", "label_grid", "label_shape", "empty_label", "nonbinary_label",
             "missing_sequence", "missing_label", "voxel_size", "fractional_label"]


def make_mslub(root: Path, case: str | None = None, name: str = "patient01") -> Path:
    """One MSLUB patient folder, broken as ``case`` says; returns the file the reason must name."""
    folder = root / name
    t1 = write_image(folder / "T1W.nii.gz", 1)
    t2 = write_image(folder / "T2W.nii.gz", 2)
    write_image(folder / "FLAIR.nii.gz", 3)
    write_image(folder / "T1WKS.nii.gz", 4)
    seg = write_label(folder / "consensus_gt.nii.gz")
    if case == "truncated":
        return truncate(t2)
    if case == "4d":
        return write_image(t2, data=np.ones(SHAPE + (3,), dtype=np.float32))
    if case == "nan":
        data = np.random.default_rng(0).uniform(1, 2, SHAPE).astype(np.float32)
        data[1, 1, 1] = np.nan
        return write_image(t2, data=data)
    if case == "label_grid":
        return write_label(seg, affine=OTHER_AFFINE)
    if case == "label_shape":
        return write_label(seg, shape=(8, 8, 5))
    if case == "empty_label":
        return write_label(seg, values=())
    if case == "nonbinary_label":
        return write_label(seg, values=(1, 2))
    if case == "fractional_label":
        return write_label(seg, data=np.where(np.arange(384).reshape(SHAPE) % 7 == 0, 0.5, 0.0).astype(np.float32))
    if case == "missing_sequence":
        t2.unlink()
        return folder / "*T2W.nii.gz"
    if case == "missing_label":
        seg.unlink()
        return folder / "*consensus_gt.nii.gz"
    if case == "voxel_size":
        return write_image(t2, affine=np.diag([1.0, 1.0, 40.0, 1.0]))
    assert case is None
    return t1


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_subject_is_excluded_naming_the_file(tmp_path, case):
    root = tmp_path / "mslub"
    make_mslub(root, name="patient01")
    bad_file = make_mslub(root, case, name="patient02")
    before = fingerprint(root)
    rows, exclusions = scan("mslub", root, sequence="t2")
    assert [r["subject"] for r in rows] == ["patient01"]
    assert len(exclusions) == 1
    bad = exclusions[0]
    assert bad["subject"] == "patient02" and bad["source"] == "mslub"
    assert str(bad_file) in bad["reason"] and bad["file"] == str(bad_file)
    with pytest.raises(InputDataError) as error:
        scan("mslub", root, sequence="t2", strict=True)
    assert error.value.path == str(root) and "1 subject(s) of this mslub data set cannot be used" in str(error.value)
    assert f"patient02: {bad_file}: " in str(error.value)
    assert fingerprint(root) == before  # raw files untouched: bytes and mtime


def test_strict_lists_every_bad_subject_in_one_error(tmp_path):
    root = tmp_path / "mslub"
    make_mslub(root, name="patient01")
    bad = [make_mslub(root, case, name=name) for case, name in (("truncated", "patient02"), ("nan", "patient03"))]
    with pytest.raises(InputDataError) as error:
        scan("mslub", root, sequence="t2", strict=True)
    message = str(error.value)
    assert "2 subject(s) of this mslub data set cannot be used (1 can)" in message
    assert f"\n  - patient02: {bad[0]}: " in message and f"\n  - patient03: {bad[1]}: " in message


def test_reasons_say_what_is_wrong(tmp_path):
    expected = {"truncated": "truncated", "4d": "4D", "nan": "NaN", "label_grid": "affine does not match",
                "label_shape": "shape", "empty_label": "empty", "nonbinary_label": "not binary",
                "missing_sequence": "missing T2", "missing_label": "missing lesion label",
                "voxel_size": "voxel size", "fractional_label": "non-integer"}
    for case, words in expected.items():
        root = tmp_path / case
        make_mslub(root, case)
        _, exclusions = scan("mslub", root, sequence="t2")
        assert words in exclusions[0]["reason"], (case, exclusions[0]["reason"])


def test_header_check_is_cheap_but_catches_geometry(tmp_path):
    root = tmp_path / "mslub"
    make_mslub(root, "truncated", name="patient01")  # voxels unreadable, header fine
    make_mslub(root, "label_grid", name="patient02")
    make_mslub(root, "4d", name="patient03")
    rows, exclusions = scan("mslub", root, sequence="t2", check="header")
    assert [r["subject"] for r in rows] == ["patient01"]
    assert sorted(excluded(exclusions)) == ["patient02", "patient03"]
    rows, exclusions = scan("mslub", root, sequence="t2", check="full", workers=2)
    assert rows == [] and sorted(excluded(exclusions)) == ["patient01", "patient02", "patient03"]


def test_mslub_rows_globs_and_brain_mask(tmp_path):
    root = tmp_path / "coregistered"
    make_mslub(root, name="patient01")
    make_mslub(root, name="patient02")
    write_label(root / "patient01" / "brainmask.nii.gz", data=np.ones(SHAPE, dtype=np.uint8))
    write_label(root / "patient02" / "brainmask.nii.gz", data=np.ones(SHAPE, dtype=np.uint8))
    rows, exclusions = scan("mslub", root, sequence="flair", brain_mask_glob="brainmask.nii.gz")
    assert exclusions == []
    row = by_subject(rows)["patient01"]
    assert row["image"].endswith("patient01/FLAIR.nii.gz")
    assert row["seg"].endswith("patient01/consensus_gt.nii.gz") and row["seg_sha256"] == sha(row["seg"])
    assert row["brain_mask"].endswith("patient01/brainmask.nii.gz")
    assert row["seg_lesion_values"] == "" and row["seg_ignore_values"] == ""
    # T1W must not match T1WKS; a custom glob per sequence
    assert by_subject(scan("mslub", root, sequence="t1")[0])["patient01"]["image"].endswith("/T1W.nii.gz")
    (root / "patient01" / "T2W.nii.gz").rename(root / "patient01" / "patient01_T2_weighted.nii.gz")
    rows, exclusions = scan("mslub", root, sequence="t2", globs={"t2": "*T2*.nii.gz"})
    assert exclusions == [] and by_subject(rows)["patient01"]["image"].endswith("patient01_T2_weighted.nii.gz")


# --------------------------------------------------------------------------------- BraTS


def test_brats_2021_and_2019_layouts(tmp_path):
    root = tmp_path / "brats21"
    for i in range(2):
        sid = f"BraTS2021_0000{i}"
        for j, seq in enumerate(("t1", "t1ce", "t2", "flair")):
            write_image(root / sid / f"{sid}_{seq}.nii.gz", 10 * i + j)
        write_label(root / sid / f"{sid}_seg.nii.gz", values=(1, 2, 4))
    (root / "BraTS2021_00001" / "BraTS2021_00001_flair.nii.gz").unlink()
    before = fingerprint(root)
    rows, exclusions = scan("brats", root, sequence="t2")
    assert sorted(by_subject(rows)) == ["BraTS2021_00000", "BraTS2021_00001"] and exclusions == []
    row = by_subject(rows)["BraTS2021_00000"]
    assert row["image"].endswith("BraTS2021_00000/BraTS2021_00000_t2.nii.gz")
    assert row["seg"].endswith("BraTS2021_00000_seg.nii.gz")
    assert row["registered"] is True and row["skull_stripped"] is True
    assert row["seg_lesion_values"] == ""  # every value > 0 is tumour (fused)
    lesion, ignore = label_arrays(row["seg"], row["seg_lesion_values"], row["seg_ignore_values"])
    assert ignore is None and lesion.dtype == np.uint8 and int(lesion.sum()) == 3 * 4
    rows, exclusions = scan("brats", root, sequence="t2", require_all_sequences=True)
    assert [r["subject"] for r in rows] == ["BraTS2021_00000"]
    assert "BraTS2021_00001_flair.nii.gz" in exclusions[0]["reason"]
    assert fingerprint(root) == before

    root19 = tmp_path / "MICCAI_BraTS_2019_Data_Training"
    for grade, sid in (("HGG", "BraTS19_2013_10_1"), ("LGG", "BraTS19_TCIA09_141_1")):
        for seq in ("t1", "t2"):
            write_image(root19 / grade / sid / f"{sid}_{seq}.nii.gz", 1)
        write_label(root19 / grade / sid / f"{sid}_seg.nii.gz", values=(4,))
    pd.DataFrame({"BraTS19ID": ["BraTS19_2013_10_1"], "Age": ["60.5"]}).to_csv(root19 / "survival_data.csv",
                                                                              index=False)
    rows, _ = scan("brats", root19, sequence="t1", participants="survival_data.csv")
    assert sorted(by_subject(rows)) == ["BraTS19_2013_10_1", "BraTS19_TCIA09_141_1"]
    assert by_subject(rows)["BraTS19_2013_10_1"]["age"] == 60.5
    rows, _ = scan("brats", root19, sequence="t1", grades=["LGG"])
    assert [r["subject"] for r in rows] == ["BraTS19_TCIA09_141_1"]


def test_brats_label_values_and_override(tmp_path):
    root = tmp_path / "brats"
    sid = "BraTS2021_00007"
    write_image(root / sid / f"{sid}_t2.nii.gz")
    write_label(root / sid / f"{sid}_seg.nii.gz", values=(1, 9))
    _, exclusions = scan("brats", root, sequence="t2")
    assert "unexpected [9]" in exclusions[0]["reason"] and f"{sid}_seg.nii.gz" in exclusions[0]["reason"]
    rows, _ = scan("brats", root, sequence="t2", label_values=None, registered=False)
    assert rows[0]["registered"] is False and rows[0]["skull_stripped"] is True


# --------------------------------------------------------------------------------- ATLAS / BIDS


def test_atlas_bids_layout(tmp_path):
    root = tmp_path / "ATLAS_2" / "Training"
    for sub in ("r001s001", "r001s002"):
        anat = root / "R001" / f"sub-{sub}" / "ses-1" / "anat"
        stem = f"sub-{sub}_ses-1_space-MNI152NLin2009aSym"
        write_image(anat / f"{stem}_T1w.nii.gz", 1)
        write_label(anat / f"{stem}_label-L_desc-T1lesion_mask.nii.gz")
    (root / "R001" / "sub-r001s002" / "ses-1" / "anat" /
     "sub-r001s002_ses-1_space-MNI152NLin2009aSym_label-L_desc-T1lesion_mask.nii.gz").unlink()
    rows, exclusions = scan("atlas", root)
    assert [r["subject"] for r in rows] == ["sub-r001s001"]
    assert rows[0]["image"].endswith("sub-r001s001_ses-1_space-MNI152NLin2009aSym_T1w.nii.gz")
    assert rows[0]["seg"].endswith("_label-L_desc-T1lesion_mask.nii.gz") and rows[0]["sequence"] == "t1"
    assert excluded(exclusions)["sub-r001s002"]["reason"].find("missing lesion label") >= 0
    with pytest.raises(ValueError, match="T1"):
        scan("atlas", root, sequence="t2")


def test_generic_bids_with_participants_and_sessions(tmp_path):
    root = tmp_path / "bids"
    write_image(root / "sub-01" / "ses-a" / "anat" / "sub-01_ses-a_T2w.nii.gz", 1)
    write_image(root / "sub-01" / "ses-b" / "anat" / "sub-01_ses-b_T2w.nii.gz", 2)
    write_image(root / "sub-02" / "anat" / "sub-02_T2w.nii.gz", 3)
    write_image(root / "sub-02" / "anat" / "sub-02_T1w.nii.gz", 4)
    deriv = root / "derivatives" / "lesions" / "sub-02" / "anat"
    write_label(deriv / "sub-02_desc-lesion_mask.nii.gz")
    write_label(deriv / "sub-02_desc-brain_mask.nii.gz", data=np.ones(SHAPE, dtype=np.uint8))
    (root / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t44\tF\nsub-02\t51.5\tmale\n")
    rows, exclusions = scan("bids", root, sequence="t2", brain_mask_entities={"desc": "brain"})
    assert exclusions == []
    rows = by_subject(rows)
    assert sorted(rows) == ["sub-01_ses-a", "sub-01_ses-b", "sub-02"]
    assert (rows["sub-01_ses-a"]["age"], rows["sub-01_ses-a"]["sex"], rows["sub-01_ses-a"]["seg"]) == (44.0, "F", "")
    assert (rows["sub-02"]["age"], rows["sub-02"]["sex"]) == (51.5, "M")
    assert rows["sub-02"]["seg"].endswith("sub-02_desc-lesion_mask.nii.gz")
    assert rows["sub-02"]["brain_mask"].endswith("sub-02_desc-brain_mask.nii.gz")
    rows, exclusions = scan("bids", root, sequence="t2", require_sequences=["t1"])
    assert sorted(by_subject(rows)) == ["sub-02"] and len(exclusions) == 2


# --------------------------------------------------------------------------------- WMH


@pytest.fixture
def wmh(tmp_path):
    root = tmp_path / "wmh"
    data = np.zeros(SHAPE, dtype=np.float32)
    data[2:4, 2:4, 2] = 1
    data[5, 5, 3:5] = 2
    for site, sid in (("Utrecht", "0"), ("Singapore", "50"), ("Amsterdam/GE3T", "100")):
        folder = root / site / sid
        write_image(folder / "pre" / "T1.nii.gz", 1)
        write_image(folder / "pre" / "FLAIR.nii.gz", 2)
        write_image(folder / "orig" / "T1.nii.gz", 3, shape=(10, 10, 10))
        write_label(folder / "wmh.nii.gz", data=data)
    only_other = np.zeros(SHAPE, dtype=np.float32)
    only_other[1, 1, 1] = 2
    write_label(root / "Singapore" / "50" / "wmh.nii.gz", data=only_other)
    return root


def test_wmh_other_pathology_modes(wmh):
    before = fingerprint(wmh)
    rows, exclusions = scan("wmh", wmh, sequence="t1")  # ignore = label 2 is background
    assert sorted(by_subject(rows)) == ["Amsterdam_GE3T_100", "Utrecht_0"]
    assert "Singapore_50" in excluded(exclusions) and "lesion value(s) [1]" in exclusions[0]["reason"]
    row = by_subject(rows)["Utrecht_0"]
    assert row["image"].endswith("Utrecht/0/pre/T1.nii.gz") and row["seg"].endswith("Utrecht/0/wmh.nii.gz")
    assert (row["seg_lesion_values"], row["seg_ignore_values"]) == ("1", "")
    lesion, ignore = label_arrays(row["seg"], row["seg_lesion_values"], row["seg_ignore_values"])
    assert int(lesion.sum()) == 4 and ignore is None

    rows, _ = scan("wmh", wmh, sequence="flair", other_pathology="exclude")
    row = by_subject(rows)["Utrecht_0"]
    assert row["image"].endswith("pre/FLAIR.nii.gz")
    assert (row["seg_lesion_values"], row["seg_ignore_values"]) == ("1", "2")
    lesion, ignore = label_arrays(row["seg"], row["seg_lesion_values"], row["seg_ignore_values"])
    assert int(lesion.sum()) == 4 and int(ignore.sum()) == 2 and not (lesion & ignore).any()
    assert ignore[5, 5, 3] == 1 and lesion[5, 5, 3] == 0

    rows, exclusions = scan("wmh", wmh, sequence="t1", other_pathology="lesion")
    assert len(rows) == 3 and exclusions == []
    row = by_subject(rows)["Utrecht_0"]
    assert row["seg_lesion_values"] == ""
    assert int(label_arrays(row["seg"], "", "")[0].sum()) == 6
    with pytest.raises(ValueError, match="other_pathology"):
        scan("wmh", wmh, other_pathology="drop")
    assert fingerprint(wmh) == before


def test_wmh_label_value_3_is_rejected(wmh):
    data = np.zeros(SHAPE, dtype=np.float32)
    data[2, 2, 2], data[3, 3, 3] = 1, 3
    write_label(wmh / "Utrecht" / "0" / "wmh.nii.gz", data=data)
    _, exclusions = scan("wmh", wmh, sequence="t1")
    assert "Utrecht/0/wmh.nii.gz" in excluded(exclusions)["Utrecht_0"]["reason"]


# --------------------------------------------------------------------------------- CSV


def test_csv_relative_paths(tmp_path):
    root = tmp_path / "study"
    write_image(root / "img" / "a_t1.nii.gz", 1)
    write_image(root / "img" / "b_t1.nii.gz", 2)
    write_image(root / "img" / "b_t2.nii.gz", 3)
    write_label(root / "lab" / "b_seg.nii.gz")
    write_label(root / "lab" / "b_brain.nii.gz", data=np.ones(SHAPE, dtype=np.uint8))
    table = pd.DataFrame({"subject": ["a", "b", "c"], "image_t1": ["img/a_t1.nii.gz", "img/b_t1.nii.gz", ""],
                          "image_t2": ["", "img/b_t2.nii.gz", ""], "seg": ["", "lab/b_seg.nii.gz", ""],
                          "mask": ["", "lab/b_brain.nii.gz", ""], "age": ["30", "", "20"], "sex": ["F", "m", ""],
                          "registered": ["", "true", ""]})
    table.to_csv(root / "subjects.csv", index=False)
    rows, exclusions = scan("csv", root / "subjects.csv", sequence="t1")
    rows = by_subject(rows)
    assert sorted(rows) == ["a", "b"] and [e["subject"] for e in exclusions] == ["c"]
    assert "column image_t1" in exclusions[0]["reason"]
    assert rows["a"]["image"] == str(root / "img" / "a_t1.nii.gz") and rows["a"]["seg"] == ""
    assert (rows["a"]["age"], rows["a"]["sex"], rows["b"]["sex"]) == (30.0, "F", "M")
    assert rows["b"]["brain_mask"] == str(root / "lab" / "b_brain.nii.gz")
    assert rows["b"]["registered"] is True and rows["a"]["registered"] is False
    rows, _ = scan("csv", root, table="subjects.csv", sequence="t2")
    assert [r["subject"] for r in rows] == ["b"]



def test_csv_duplicate_id_names_both_lines(tmp_path):
    write_image(tmp_path / "a.nii.gz", 1)
    write_image(tmp_path / "b.nii.gz", 2)
    pd.DataFrame({"subject": ["s1", "s1"], "image": ["a.nii.gz", "b.nii.gz"]}).to_csv(tmp_path / "t.csv", index=False)
    rows, exclusions = scan("csv", tmp_path / "t.csv")
    assert [r["subject"] for r in rows] == ["s1"] and rows[0]["image"] == str(tmp_path / "a.nii.gz")
    reason = exclusions[0]["reason"]
    assert f"subject id 's1' occurs twice: {tmp_path / 't.csv'} line 2 and {tmp_path / 't.csv'} line 3" in reason
    assert "point root" not in reason
    with pytest.raises(InputDataError, match="line 2 and .* line 3"):
        scan("csv", tmp_path / "t.csv", strict=True)


def test_csv_ids_that_collide_once_sanitised_are_an_error(tmp_path):
    write_image(tmp_path / "a.nii.gz", 1)
    write_image(tmp_path / "b.nii.gz", 2)
    pd.DataFrame({"subject": ["a b", "a_b"], "image": ["a.nii.gz", "b.nii.gz"]}).to_csv(tmp_path / "t.csv",
                                                                                       index=False)
    with pytest.raises(InputDataError) as error:
        scan("csv", tmp_path / "t.csv")  # not strict: still an error, a subject would be lost silently
    message = str(error.value)
    assert "'a b'" in message and "'a_b'" in message and "both become a_b" in message
    assert "line 2" in message and "line 3" in message


def test_folder_duplicate_names_both_paths(tmp_path):
    make_mslub(tmp_path / "raw")
    make_mslub(tmp_path / "coregistered")
    _, exclusions = scan("mslub", tmp_path, sequence="t2")
    reason = exclusions[0]["reason"]
    assert "occurs twice" in reason and "point root at one copy" in reason
    assert str(tmp_path / "raw") in reason and str(tmp_path / "coregistered") in reason

# --------------------------------------------------------------------------------- author split


@pytest.fixture
def author(tmp_path):
    data = tmp_path / "DATA" / "Data"
    ixi = ["IXI002-Guys-0828", "IXI012-HH-1211", "IXI013-HH-1212", "IXI014-HH-1236", "IXI015-HH-1258"]
    for i, name in enumerate(ixi):
        for seq in ("t1", "t2"):
            write_image(data / "Train" / "ixi" / seq / f"{name}_{seq}.nii.gz", i)
        write_label(data / "Train" / "ixi" / "mask" / f"{name}_mask.nii.gz", data=np.ones(SHAPE, dtype=np.uint8))
    splits = data / "splits"
    splits.mkdir(parents=True)

    def csv(names, file, label=0, seg=False, prefix="/Train/ixi", seq_dir="t1"):
        frame = pd.DataFrame({
            "img_name": [f"{n}_t1.nii.gz" for n in names], "age": [40 + k for k in range(len(names))],
            "SEX_ID": [1 + k % 2 for k in range(len(names))], "label": [label] * len(names),
            "img_path": [f"{prefix}/{seq_dir}/{n}_t1.nii.gz" for n in names],
            "mask_path": [f"{prefix}/mask/{n}_mask.nii.gz" for n in names],
            "seg_path": [f"{prefix}/seg/{n}_seg.nii.gz" if seg else "" for n in names]})
        frame.to_csv(splits / file)  # with the pandas index column, as the author's files

    csv(ixi[:1], "IXI_test.csv")
    csv([ixi[1], ixi[2], ixi[4]], "IXI_train_fold0.csv")
    csv([ixi[3]], "IXI_val_fold0.csv")
    csv([ixi[1], ixi[3], ixi[4]], "IXI_train_fold1.csv")
    csv([ixi[2]], "IXI_val_fold1.csv")
    pd.DataFrame({"0": [f"{n}-T2.nii.gz" for n in ixi[:4]]}).to_csv(splits / "avail_t2.csv")  # no IXI015
    brats = ["BraTS2021_00000", "BraTS2021_00002", "BraTS2021_00003"]
    for i, name in enumerate(brats):
        folder = data / "Test" / "Brats21"
        write_image(folder / "t2" / f"{name}_t2.nii.gz", i)
        write_image(folder / "t1" / f"{name}_t1.nii.gz", i)
        write_label(folder / "mask" / f"{name}_mask.nii.gz", data=np.ones(SHAPE, dtype=np.uint8))
        write_label(folder / "seg" / f"{name}_seg.nii.gz", values=(1, 2, 4))
    csv(brats[:1], "Brats21_val.csv", label=1, seg=True, prefix="/Test/Brats21")
    csv(brats[1:], "Brats21_test.csv", label=1, seg=True, prefix="/Test/Brats21")
    return data


def test_author_split_ids_that_collide_once_sanitised_name_both_lines(tmp_path):
    (tmp_path / "splits").mkdir()
    for name in ("s_1", "s 1"):
        write_image(tmp_path / "Train" / "ixi" / "t1" / f"{name}_t1.nii.gz", 1)
    pd.DataFrame({"img_path": ["/Train/ixi/t1/s_1_t1.nii.gz", "/Train/ixi/t1/s 1_t1.nii.gz"]}).to_csv(
        tmp_path / "splits" / "IXI_test.csv", index=False)
    with pytest.raises(InputDataError) as error:
        scan("author_split", tmp_path, dataset="IXI")
    message, csv = str(error.value), tmp_path / "splits" / "IXI_test.csv"
    assert f"'s_1' ({csv} line 2) and 's 1' ({csv} line 3) both become s_1" in message


def test_author_split_rebases_paths_and_keeps_membership(author):
    before = fingerprint(author)
    rows, exclusions = scan("author_split", author, dataset="IXI", sequence="t1")
    rows = by_subject(rows)
    assert sorted(rows) == ["IXI002-Guys-0828", "IXI012-HH-1211", "IXI013-HH-1212", "IXI014-HH-1236"]
    assert excluded(exclusions)["IXI015-HH-1258"]["reason"].find("avail_t2.csv") >= 0
    row = rows["IXI012-HH-1211"]
    assert row["image"] == str(author / "Train" / "ixi" / "t1" / "IXI012-HH-1211_t1.nii.gz")
    assert row["brain_mask"] == str(author / "Train" / "ixi" / "mask" / "IXI012-HH-1211_mask.nii.gz")
    assert (row["age"], row["sex"], row["seg"]) == (40.0, "M", "")
    assert row["registered"] is True and row["skull_stripped"] is True
    assert row["split"] == "train/0,train/1"
    assert rows["IXI013-HH-1212"]["split"] == "train/0,val/1"
    assert rows["IXI002-Guys-0828"]["split"] == "test"
    splits = splits_from_manifest(list(rows.values()))
    assert splits["test"] == ["IXI002-Guys-0828"]
    assert splits["folds"] == [{"train": ["IXI012-HH-1211", "IXI013-HH-1212"], "val": ["IXI014-HH-1236"]},
                               {"train": ["IXI012-HH-1211", "IXI014-HH-1236"], "val": ["IXI013-HH-1212"]}]
    # T2: folder and file-name suffix are rewritten like the author's loader does
    rows_t2, _ = scan("author_split", author, dataset="IXI", sequence="t2")
    t2 = by_subject(rows_t2)["IXI012-HH-1211"]
    assert t2["image"] == str(author / "Train" / "ixi" / "t2" / "IXI012-HH-1211_t2.nii.gz")
    assert t2["sequence"] == "t2" and t2["split"] == "train/0,train/1"
    # without the availability filter IXI015 comes back
    rows_all, _ = scan("author_split", author, dataset="IXI", available_list=None)
    assert "IXI015-HH-1258" in by_subject(rows_all)
    assert fingerprint(author) == before


def test_author_split_pathology_and_strip_prefix(author, tmp_path):
    rows, exclusions = scan("author_split", author, dataset="Brats21", sequence="t2")
    assert exclusions == []
    rows = by_subject(rows)
    assert rows["BraTS2021_00000"]["split"] == "val"
    assert rows["BraTS2021_00000"]["seg"] == str(author / "Test" / "Brats21" / "seg" / "BraTS2021_00000_seg.nii.gz")
    assert rows["BraTS2021_00000"]["image"].endswith("Test/Brats21/t2/BraTS2021_00000_t2.nii.gz")
    assert splits_from_manifest(manifest_frame(list(rows.values()))) == {
        "val": ["BraTS2021_00000"], "test": ["BraTS2021_00002", "BraTS2021_00003"], "origin": "author_split"}
    # absolute paths of the author's machine, rebased after stripping their prefix
    splits = tmp_path / "other_splits"
    splits.mkdir()
    frame = pd.read_csv(author / "splits" / "Brats21_test.csv", index_col=0)
    for col in ("img_path", "mask_path", "seg_path"):
        frame[col] = "/home/finn/data/Data" + frame[col]
    frame.to_csv(splits / "Brats21_test.csv")
    rows, _ = scan("author_split", author, dataset="Brats21", splits_dir=splits, strip_prefix="/home/finn/data/Data")
    assert rows[0]["image"] == str(author / "Test" / "Brats21" / "t1" / "BraTS2021_00002_t1.nii.gz")
    # a lesion row (label 1) without a label file is excluded
    (author / "Test" / "Brats21" / "seg" / "BraTS2021_00003_seg.nii.gz").unlink()
    rows, exclusions = scan("author_split", author, dataset="Brats21")
    assert [e["subject"] for e in exclusions] == ["BraTS2021_00003"]
    assert "BraTS2021_00003_seg.nii.gz" in exclusions[0]["reason"]


# --------------------------------------------------------------------------------- registry, manifest


def test_registry_errors_and_duplicates(tmp_path):
    with pytest.raises(ValueError, match="unknown data source kind"):
        scan("oasis", tmp_path)
    with pytest.raises(InputDataError, match="does not exist"):
        scan("brats", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputDataError, match="no brats subjects"):
        scan("brats", tmp_path / "empty")
    with pytest.raises(TypeError, match="unknown option"):
        scan("ixi", tmp_path / "empty", flavour="x")
    root = tmp_path / "twice"
    make_mslub(root / "raw")
    make_mslub(root / "coregistered")
    rows, exclusions = scan("mslub", root, sequence="t2")
    assert len(rows) == 1 and "occurs twice" in exclusions[0]["reason"]


def test_rows_write_a_valid_manifest(tmp_path, wmh):
    rows, _ = scan("wmh", wmh, sequence="t1", other_pathology="exclude")
    frame = manifest_frame(rows)
    assert list(frame.columns[: len(MANIFEST_COLUMNS)]) == MANIFEST_COLUMNS
    write_manifest(frame, tmp_path / "manifest.tsv")
    back = read_manifest(tmp_path / "manifest.tsv")
    assert list(back["subject"]) == ["Amsterdam_GE3T_100", "Utrecht_0"]
    assert back["registered"].tolist() == [False, False]
    assert back["seg_ignore_values"].astype(str).tolist() == ["2", "2"]


def test_phantom_kind(tmp_path):
    root = tmp_path / "ph"
    write_image(root / "healthy-001_t1.nii.gz", 1)
    write_image(root / "healthy-002_t1.nii.gz", 2)
    (root / "participants.tsv").write_text("subject\tcohort\tage\tsex\tt1\tseg\n"
                                           "healthy-001\thealthy\t33.1\tF\thealthy-001_t1.nii.gz\t\n"
                                           "healthy-002\thealthy\t50\tM\thealthy-002_t1.nii.gz\t\n")
    rows, exclusions = scan("phantom", root, sequence="t1")
    assert exclusions == []
    assert [list(r) for r in rows] == [MANIFEST_COLUMNS] * 2
    assert [(r["subject"], r["age"], r["sex"], r["seg"], r["sequence"]) for r in rows] == [
        ("healthy-001", 33.1, "F", "", "t1"), ("healthy-002", 50.0, "M", "", "t1")]
    assert rows[0]["image"] == str((root / "healthy-001_t1.nii.gz").resolve())
    assert rows[1]["sha256"] == sha(root / "healthy-002_t1.nii.gz")
    with pytest.raises(InputDataError, match="has no column 't2'"):
        scan("phantom", root, sequence="t2")
    with pytest.raises(InputDataError, match="participants table of the phantom cohort is missing"):
        scan("phantom", tmp_path, sequence="t1")


def test_module_never_opens_for_writing(monkeypatch, ixi):
    import builtins

    real_open = builtins.open
    modes = []

    def spy(file, mode="r", *args, **kwargs):
        modes.append(mode)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(os, "replace", lambda *a: pytest.fail("adapter moved a file"))
    scan("ixi", ixi, sequence="t1")
    assert modes and all(set(m) <= set("rbt") for m in modes), modes


# --------------------------------------------------------------------------------- registry and options


def test_schema_kind_enum_is_the_registry():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    enum = schema["properties"]["sources"]["additionalProperties"]["properties"]["kind"]["enum"]
    assert sorted(enum) == source_kinds() and len(enum) == len(set(enum))


def test_every_kind_lists_its_options():
    for kind in source_kinds():
        accepted = source_options(kind)
        assert accepted and list(accepted) == sorted(set(accepted)), kind
        assert "sequence" not in accepted and "strict" not in accepted, kind
    # scan keywords of the layout plus the common options (``source`` is set by the workflow)
    assert source_options("wmh") == ("allow_empty_label", "check", "image_dir", "image_names", "label_name",
                                     "label_values", "other_pathology", "participants", "registered",
                                     "require_all_sequences", "require_label", "require_sequences",
                                     "skull_stripped", "source", "workers")
    assert {"sequence_suffixes", "brain_mask_entities"} <= set(source_options("atlas"))
    assert "suffix" not in source_options("atlas")  # fixed to T1w by the layout
    assert {"voxel_mm", "anisotropic_fraction", "template_resolution", "noise_fraction"} <= set(
        source_options("phantom"))  # generator settings
    with pytest.raises(ValueError, match="unknown data source kind 'oasis'"):
        source_options("oasis")


def test_check_options_names_the_key_and_the_accepted_ones():
    check_options("wmh", {"other_pathology": "exclude", "source": "wmh", "label_values": [0, 1, 2]},
                  "sources.wmh.options")
    with pytest.raises(ValueError) as error:
        check_options("wmh", {"other_pathology": "lesion", "label_value": [0, 1]}, "sources.wmh.options")
    assert str(error.value) == ("config error: sources.wmh.options.label_value: unknown option for kind 'wmh'; "
                                "accepted: " + ", ".join(source_options("wmh")))
    with pytest.raises(ValueError, match=r"^config error: sources\.b\.cohorts\.hgg\.grade: unknown option "
                                         r"for kind 'brats'; accepted: allow_empty_label, check, grades, "):
        check_options("brats", {"grade": ["HGG"]}, "sources.b.cohorts.hgg")
    with pytest.raises(ValueError, match=r"sources\.x\.options\.sequence: .*datasets\.<name>\.sequence"):
        check_options("ixi", {"sequence": "t1"}, "sources.x.options")
    with pytest.raises(ValueError, match=r"sources\.x\.options\.strict: .*sources\.<name>\.strict"):
        check_options("ixi", {"strict": True}, "sources.x.options")
    with pytest.raises(ValueError, match="unknown option for kind 'phantom'"):
        check_options("phantom", {"voxels": 2}, "sources.phantom.options")


def test_options_of_the_shipped_configs_are_accepted():
    for config in (ROOT / "config" / "config.yaml", ROOT / "config" / "thesis.yaml", ROOT / "config" / "p81.yaml",
                   ROOT / "tests" / "smoke" / "config.yaml"):
        for name, src in yaml.safe_load(config.read_text())["sources"].items():
            check_options(src["kind"], src.get("options", {}), f"sources.{name}.options")
            if src["kind"] != "phantom":
                for cohort, options in src.get("cohorts", {}).items():
                    check_options(src["kind"], options, f"sources.{name}.cohorts.{cohort}")


def test_register_source_rejects_a_kind_twice():
    from brainuad.data.sources import register_source

    with pytest.raises(ValueError, match="'ixi' is registered twice"):
        register_source("ixi")(lambda root, **options: ([], []))
