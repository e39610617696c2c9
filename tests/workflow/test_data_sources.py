"""Real-data sources end to end up to the packed volumes and the QC outputs, on tiny fake distributions.

* IXI layout (``IXI-T1/``, ``IXI-T2/``, ``IXI.csv``): 4 phantom heads (3 mm, random pose, skull) renamed to
  IXI file names, plus ``IXI099-HH-9999`` whose T2 file is truncated (the adapter excludes it).
* BraTS 2021 layout: 2 subjects made of the MNI152 template (3 mm, skull-stripped, stored LPS like
  BraTS) with a tumour labelled 1 / 2 / 4, plus ``BraTS2021_00009`` whose image is constant inside the
  brain (passes the adapter, fails normalisation: excluded by the preprocess rule).

The pipeline runs ``manifest -> preprocess -> pack -> qc / splits`` for both datasets (not the model
DAG); the raw folders must be byte-identical afterwards, with unchanged mtimes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "tests" / "smoke" / "config.yaml"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

pytestmark = pytest.mark.workflow

_spec = importlib.util.spec_from_file_location("source_builders", ROOT / "tests" / "data" / "test_sources.py")
builders = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(builders)

IXI_GOOD = ["IXI012-HH-1211", "IXI013-HH-1212", "IXI014-HH-1236", "IXI016-Guys-0697"]
IXI_BAD = "IXI099-HH-9999"
BRATS_GOOD = ["BraTS2021_00000", "BraTS2021_00002"]
BRATS_BAD = "BraTS2021_00009"
OUT_SHAPE = (32, 32, 16)  # crop_pad (64, 64, 48) / 2, minus 2 x 4 axial slices
OUT_SPACING = 6.0  # 3 mm x 2


# ------------------------------------------------------------------------------------------- fake data
def make_ixi(root: Path, tmp: Path) -> None:
    from brainuad.data.phantom import generate_cohort

    table = generate_cohort("healthy", len(IXI_GOOD), tmp / "phantom", seed=3, voxel_mm=(3.0, 3.0, 3.0),
                            template_resolution=2)
    for name, rec in zip(IXI_GOOD, table.to_dict("records")):
        for seq in ("t1", "t2"):
            target = root / f"IXI-{seq.upper()}" / f"{name}-{seq.upper()}.nii.gz"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tmp / "phantom" / rec[seq], target)
    for seq in ("T1", "T2"):
        shutil.copyfile(root / f"IXI-{seq}" / f"{IXI_GOOD[0]}-{seq}.nii.gz", root / f"IXI-{seq}" / f"{IXI_BAD}-{seq}.nii.gz")
    builders.truncate(root / "IXI-T2" / f"{IXI_BAD}-T2.nii.gz")
    ages = ["25.5", "41", "", "70", "30"]
    pd.DataFrame({"IXI_ID": [12, 13, 14, 16, 99], "SEX_ID": [1, 2, 1, 1, 2], "AGE": ages}).to_csv(
        root / "IXI.csv", index=False)


def make_brats(root: Path) -> None:
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    template = load_mni152_template(resolution=1).slicer[::3, ::3, ::3]
    brain = load_mni152_brain_mask(resolution=1).slicer[::3, ::3, ::3].get_fdata() > 0
    affine = template.affine
    lps = nib.affines.from_matvec(np.diag([-1.0, -1.0, 1.0]), [brain.shape[0] - 1, brain.shape[1] - 1, 0])
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in brain.shape], indexing="ij"), axis=-1)
    world = nib.affines.apply_affine(affine, grid)
    rng = np.random.default_rng(0)
    centres = {BRATS_GOOD[0]: (25.0, -10.0, 20.0), BRATS_GOOD[1]: (-30.0, 5.0, 10.0)}
    for sid in [*BRATS_GOOD, BRATS_BAD]:
        folder = root / sid
        folder.mkdir(parents=True)
        distance = np.linalg.norm(world - np.asarray(centres.get(sid, (0.0, 0.0, 10.0))), axis=-1)
        label = np.select([distance <= 5, distance <= 9, distance <= 14], [4, 1, 2], 0).astype(np.uint8) * brain
        image = template.get_fdata() * (1.0 + 0.6 * (distance <= 14)) * 1000.0
        image = (image + rng.normal(0, 10.0, image.shape)).clip(1.0, None) * brain
        if sid == BRATS_BAD:
            image = 500.0 * brain  # constant inside the brain: normalisation must fail
        for suffix, data, dtype in (("t2", image, np.float32), ("t1", image, np.float32), ("seg", label, np.uint8)):
            array = np.ascontiguousarray(data[::-1, ::-1, :]).astype(dtype)  # stored LPS, like BraTS
            nib.save(nib.Nifti1Image(array, affine @ lps), str(folder / f"{sid}_{suffix}.nii.gz"))


def overlay(ixi_root: Path, brats_root: Path, *, strict: bool = False, change=None) -> dict:
    """A self-contained tiny configuration (the smoke test's pre-processing; one learning-free model)."""
    smoke = yaml.safe_load(SMOKE.read_text())
    cfg = {
        "seed": 11,
        "device": "cpu",
        "sources": {
            "ixi": {"kind": "ixi", "root": str(ixi_root), "strict": strict},
            "brats": {"kind": "brats", "root": str(brats_root), "preprocess": {"n4": False}},
        },
        "preprocess": {
            "spacing_mm": 3.0, "template": "mni152", "template_mask": None, "registration": "Affine",
            "reg_iterations": [20, 10], "reg_shrink_factors": [2, 1], "reg_smoothing_sigmas": [1, 0], "n4": False,
            "crop_pad": [64, 64, 48], "percentiles": [1, 99], "downsample": 2, "slice_crop": 4,
        },
        "datasets": {
            "ixi_t2": {"source": "ixi", "cohort": "all", "sequence": "t2", "role": "healthy", "label": "IXI (T2)"},
            "brats_t2": {"source": "brats", "cohort": "all", "sequence": "t2", "role": "pathology",
                         "trainset": "ixi_t2", "val": 1, "label": "BraTS (T2)"},
        },
        "splits": {"folds": 2, "healthy_test": 1, "val_fraction": None, "age_bins": 1},
        "models": {"thresh": {"arch": "thresh", "label": "Thresh"}},
        "reconstruct": {"samples": 1, "batch_size": 16},
        "scorings": {"native": {"name": "native"}},
        "evaluation": smoke["evaluation"],
        "tables": {"segmentation": {"title": "seg", "kind": "segmentation", "rows": [{"model": "thresh",
                   "scoring": "native"}], "datasets": ["brats_t2"], "metrics": ["dice"]}},
        "report": {"title": "data sources", "qualitative": {"table": "segmentation", "fold": 0}},
    }
    if change:
        change(cfg)
    return cfg


def snakemake(workdir: Path, cfg: dict, *targets: str, check: bool = True, extra=()) -> subprocess.CompletedProcess:
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--configfile", str(config),
           "--replace-workflow-config", "--cores", "2", *extra, *targets]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def fingerprint(root: Path) -> dict:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns,
                                       p.stat().st_size) for p in sorted(root.rglob("*")) if p.is_file()}


TARGETS = ["results/data/ixi_t2/volumes.npz", "results/qc/ixi_t2/qc.tsv", "results/splits/ixi_t2.json",
           "results/data/brats_t2/volumes.npz", "results/qc/brats_t2/qc.tsv", "results/splits/brats_t2.json"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    base = tmp_path_factory.mktemp("raw")
    ixi, brats = base / "IXI", base / "BraTS2021_Training_Data"
    make_ixi(ixi, tmp_path_factory.mktemp("phantom"))
    make_brats(brats)
    return {"ixi": ixi, "brats": brats, "before": {"ixi": fingerprint(ixi), "brats": fingerprint(brats)}}


@pytest.fixture(scope="module")
def run(raw, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("work")
    proc = snakemake(workdir, overlay(raw["ixi"], raw["brats"]), *TARGETS)
    return {"workdir": workdir, "results": workdir / "results", "log": proc.stdout + proc.stderr}


# ------------------------------------------------------------------------------------------- tests
def test_manifest_rows_reference_raw_files_in_place(run, raw):
    results = run["results"]
    ixi = pd.read_csv(results / "data/ixi_t2/manifest.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert ixi["subject"].tolist() == IXI_GOOD
    row = ixi.iloc[0]
    assert row["image"] == str(raw["ixi"] / "IXI-T2" / f"{IXI_GOOD[0]}-T2.nii.gz")
    assert row["sha256"] == hashlib.sha256(Path(row["image"]).read_bytes()).hexdigest()
    assert (row["seg"], row["sequence"], row["age"], row["sex"], row["registered"]) == ("", "t2", "25.5", "M", "False")
    brats = pd.read_csv(results / "data/brats_t2/manifest.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert brats["subject"].tolist() == [*BRATS_GOOD, BRATS_BAD]
    assert set(brats["registered"]) == {"True"} and set(brats["skull_stripped"]) == {"True"}
    assert all(s == hashlib.sha256(Path(p).read_bytes()).hexdigest() for p, s in zip(brats["seg"], brats["seg_sha256"]))
    assert not (results / "raw").exists()  # nothing copied


def test_exclusions_name_the_file_and_the_reason(run, raw):
    results = run["results"]
    bad_file = str(raw["ixi"] / "IXI-T2" / f"{IXI_BAD}-T2.nii.gz")
    scan = pd.read_csv(results / "data/ixi_t2/exclusions.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert scan[["source", "subject", "file"]].values.tolist() == [["ixi", IXI_BAD, bad_file]]
    assert bad_file in scan["reason"].iloc[0] and "truncated" in scan["reason"].iloc[0]
    table = pd.read_csv(results / "qc/ixi_t2/exclusions.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert table[["dataset", "subject", "stage", "file"]].values.tolist() == [["ixi_t2", IXI_BAD, "manifest", bad_file]]
    # BraTS: the constant image passes the adapter and is excluded by the preprocess rule
    table = pd.read_csv(results / "qc/brats_t2/exclusions.tsv", sep="\t", dtype=str, keep_default_na=False)
    bad_image = str(raw["brats"] / BRATS_BAD / f"{BRATS_BAD}_t2.nii.gz")
    assert table[["subject", "stage", "source", "file"]].values.tolist() == [[BRATS_BAD, "preprocess", "brats", bad_image]]
    assert "constant" in table["reason"].iloc[0]
    marker = json.loads((results / f"data/brats_t2/nifti/{BRATS_BAD}_qc.json").read_text())
    assert marker["excluded"] is True and marker["file"] == bad_image


def test_pack_and_splits_leave_excluded_subjects_out(run):
    results = run["results"]
    with np.load(results / "data/brats_t2/volumes.npz") as z:
        assert z["subjects"].tolist() == BRATS_GOOD
        assert z["images"].shape == (2, OUT_SHAPE[2], OUT_SHAPE[1], OUT_SHAPE[0]) and "ignore" not in z.files
        assert z["segs"].sum() > 0
    with np.load(results / "data/ixi_t2/volumes.npz") as z:
        assert z["subjects"].tolist() == IXI_GOOD
        np.testing.assert_array_equal(z["ages"][[0, 2]], [25.5, np.nan])
    healthy = json.loads((results / "splits/ixi_t2.json").read_text())
    folds = healthy["folds"]
    assert len(folds) == 2 and len(healthy["test"]) == 1
    assert sorted(healthy["test"] + folds[0]["train"] + folds[0]["val"]) == IXI_GOOD
    pathology = json.loads((results / "splits/brats_t2.json").read_text())
    assert sorted(pathology["val"] + pathology["test"]) == BRATS_GOOD and len(pathology["val"]) == 1


def _outputs(results: Path, dataset: str, subject: str) -> dict:
    return {k: nib.load(str(results / f"data/{dataset}/nifti/{subject}_{k}.nii.gz")) for k in
            ("image", "mask", "seg", "ignore")}


@pytest.mark.parametrize("dataset,subjects", [("ixi_t2", IXI_GOOD), ("brats_t2", BRATS_GOOD)])
def test_preprocessed_outputs(run, dataset, subjects):
    for subject in subjects:
        out = _outputs(run["results"], dataset, subject)
        for image in out.values():
            assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
            assert image.shape == OUT_SHAPE
            np.testing.assert_allclose(nib.affines.voxel_sizes(image.affine), OUT_SPACING)
            np.testing.assert_allclose(image.affine, out["image"].affine)
        data = np.asarray(out["image"].dataobj)
        mask, seg = np.asarray(out["mask"].dataobj), np.asarray(out["seg"].dataobj)
        assert data.min() >= 0.0 and data.max() <= 1.0 and data.max() > 0.9
        assert set(np.unique(mask)) == {0, 1} and set(np.unique(seg)) <= {0, 1}
        assert not (seg & ~mask.astype(bool)).any()  # label inside the brain mask
        assert not data[mask == 0].any()
        assert not np.asarray(out["ignore"].dataobj).any()  # no ignore values in these data sets
        qc = json.loads((run["results"] / f"data/{dataset}/nifti/{subject}_qc.json").read_text())
        assert {"antspyx", "nibabel", "numpy", "brainuad"} <= set(qc["tool_versions"])
        if dataset == "brats_t2":
            assert seg.sum() > 0 and qc["registered"] is True and qc["brain_mask_source"] == "nonzero"
        else:
            assert seg.sum() == 0 and qc["registered"] is False and qc["brain_mask_source"] == "template"


def test_brats_stays_in_its_own_space(run, raw):
    """Not registered: every output voxel shows the raw voxel at the same world position."""
    for subject in BRATS_GOOD:
        out = _outputs(run["results"], "brats_t2", subject)
        src = nib.load(str(raw["brats"] / subject / f"{subject}_seg.nii.gz"))
        src_mask = np.asarray(nib.load(str(raw["brats"] / subject / f"{subject}_t2.nii.gz")).dataobj) != 0
        grid = np.stack(np.meshgrid(*[np.arange(n) for n in OUT_SHAPE], indexing="ij"), axis=-1)
        index = np.rint(nib.affines.apply_affine(np.linalg.inv(src.affine) @ out["mask"].affine, grid)).astype(int)
        inside = np.all((index >= 0) & (index < np.array(src.shape)), axis=-1)
        expected_mask = np.zeros(OUT_SHAPE, bool)
        expected_mask[inside] = src_mask[tuple(index[inside].T)]
        mask = np.asarray(out["mask"].dataobj) > 0
        assert 2 * (mask & expected_mask).sum() / (mask.sum() + expected_mask.sum()) > 0.9
        seg = np.asarray(out["seg"].dataobj) > 0
        label = np.asarray(src.dataobj) > 0
        centre_out = nib.affines.apply_affine(out["seg"].affine, np.argwhere(seg).mean(0))
        centre_in = nib.affines.apply_affine(src.affine, np.argwhere(label).mean(0))
        assert np.linalg.norm(centre_out - centre_in) < 3.0  # mm; output voxels are 6 mm


def test_qc_table_and_figure(run):
    for dataset, subjects in (("ixi_t2", IXI_GOOD), ("brats_t2", BRATS_GOOD)):
        qc = pd.read_csv(run["results"] / f"qc/{dataset}/qc.tsv", sep="\t")
        assert qc["subject"].tolist() == subjects
        assert {"dataset", "registration_similarity", "brain_volume_ml", "intensity_low", "intensity_high",
                "lesion_volume_ml", "lesion_voxels_outside_mask", "n_flags", "flagged", "reasons",
                "tool_versions_antspyx", "registered", "brain_mask_source"} <= set(qc.columns)
        assert (run["results"] / f"qc/{dataset}/qc.png").stat().st_size > 5_000
    ixi = pd.read_csv(run["results"] / "qc/ixi_t2/qc.tsv", sep="\t")
    assert (ixi["registration_similarity"] > 0.5).all()  # every phantom head registered


def test_raw_data_untouched(run, raw):
    assert fingerprint(raw["ixi"]) == raw["before"]["ixi"]
    assert fingerprint(raw["brats"]) == raw["before"]["brats"]


def test_strict_source_stops_at_the_bad_subject(raw, tmp_path):
    cfg = overlay(raw["ixi"], raw["brats"], strict=True)
    proc = snakemake(tmp_path, cfg, "results/data/ixi_t2/manifest.tsv", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"{raw['ixi'] / 'IXI-T2' / (IXI_BAD + '-T2.nii.gz')}" in out and "truncated" in out
    assert not (tmp_path / "results/data/ixi_t2/manifest.tsv").exists()


def test_planning_never_opens_raw_data_and_config_errors_are_clear(tmp_path):
    # a root that does not exist: the dry run plans the manifest job without touching it
    cfg = overlay(tmp_path / "nowhere", tmp_path / "nowhere_either")
    proc = snakemake(tmp_path, cfg, "results/data/brats_t2/volumes.npz", extra=("-n",))
    assert "manifest" in proc.stdout

    def bad_cohort(c):
        c["datasets"]["ixi_t2"]["cohort"] = "guys"

    proc = snakemake(tmp_path, overlay(tmp_path, tmp_path, change=bad_cohort), "results/data/ixi_t2/volumes.npz",
                     extra=("-n",), check=False)
    assert proc.returncode != 0 and "datasets.ixi_t2.cohort 'guys': use 'all'" in proc.stdout + proc.stderr

    def bad_grid(c):
        c["sources"]["brats"]["preprocess"]["downsample"] = 1

    proc = snakemake(tmp_path, overlay(tmp_path, tmp_path, change=bad_grid), "results/data/ixi_t2/volumes.npz",
                     extra=("-n",), check=False)
    assert proc.returncode != 0 and "preprocess downsample 1 differs" in proc.stdout + proc.stderr

    def hd_bet_without_command(c):
        c["preprocess"]["skull_strip"] = {"method": "hd-bet"}

    proc = snakemake(tmp_path, overlay(tmp_path, tmp_path, change=hd_bet_without_command),
                     "results/data/ixi_t2/volumes.npz", extra=("-n",), check=False)
    assert proc.returncode != 0 and "'command' is a required property" in proc.stdout + proc.stderr
