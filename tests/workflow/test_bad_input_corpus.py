"""A corpus of bad input, as a researcher's messy data folder holds it, through the workflow's data stage.

The corpus is generated here: 4 good phantom heads (3 mm, random pose, skull) and ~30 broken files and
tables made from them (truncated, zero-byte, 4D, 2D, NaN/Inf, constant, int16 spikes, absurd and
anisotropic voxels, shear, bad labels and brain masks, duplicate and colliding ids, missing files and
columns, ...), plus config mistakes. Three kinds of run:

* **corpus**: one ``csv`` source whose table lists every file-level case, target ``all_data``. Every bad
  case must end as an exclusion (manifest or pre-processing stage) naming its file and the reason; the
  good subjects are packed and split; the run succeeds and prints the end-of-run summary.
* **stops**: one source per table-level mistake (colliding ids, missing columns, no table, nothing
  usable, ``strict``), run with ``--keep-going``: each dataset's manifest job stops with a message naming
  the file and the reason.
* **config mistakes**: each config stops at parse time with one ``config error:`` line naming the key.

In every run no Python traceback reaches the terminal, and afterwards the sha256 of every raw file is
unchanged. The table case -> outcome is printed (``pytest -s``) and written to ``outcomes.tsv`` in the
test's temporary folder.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

pytestmark = pytest.mark.workflow

GOOD = ["good-1", "good-2", "good-3"]  # plus the first "dup" row: 4 subjects kept
DATASET = "corpus_t1"


@dataclass
class Case:
    """One bad input and what must become of it."""

    name: str
    subject: str  # id in the table ("" for table-level cases)
    file: Path | None  # the file the message must name
    expect: str  # text the reason must contain
    outcome: str = "not run"


# ------------------------------------------------------------------------------------------- corpus
def _save(data, affine, path: Path, dtype=None, slope=None) -> Path:
    image = nib.Nifti1Image(np.asarray(data) if dtype is None else np.asarray(data).astype(dtype), affine)
    if slope is not None:
        image.header.set_slope_inter(slope, 0.0)
    nib.save(image, str(path))
    return path


def make_corpus(root: Path, phantom_dir: Path) -> tuple[list[Case], pd.DataFrame]:
    """Write the good heads and the file-level cases below ``root``; return the cases and the table."""
    from brainuad.data.phantom import generate_cohort

    table = generate_cohort("healthy", len(GOOD) + 1, phantom_dir, seed=3, voxel_mm=(3.0, 3.0, 3.0),
                            template_resolution=2, contrasts=("t1",))
    heads = [phantom_dir / name for name in table["t1"]]
    for name, head in zip(GOOD, heads):
        shutil.copyfile(head, root / f"{name}.nii.gz")
    shutil.copyfile(heads[-1], root / "dup_a.nii.gz")
    good = nib.load(str(heads[0]))
    data, affine = np.asarray(good.dataobj).astype(np.float32), good.affine
    rng = np.random.default_rng(0)
    rows = [{"subject": name, "image": f"{name}.nii.gz"} for name in GOOD]
    rows.append({"subject": "dup", "image": "dup_a.nii.gz"})
    cases: list[Case] = []

    def add(name, expect, *, image=None, seg=None, mask=None, subject=None, names=None):
        subject = subject or name
        row = {"subject": subject, "image": image or "", "seg": seg or "", "mask": mask or ""}
        rows.append(row)
        named = names if names is not None else (seg or mask or image)
        cases.append(Case(name, subject, None if named is None else root / named, expect))

    def image(name, array, aff=affine, **kw):
        _save(array, aff, root / f"{name}.nii.gz", **kw)
        return f"{name}.nii.gz"

    # unreadable files
    shutil.copyfile(heads[0], root / "truncated.nii.gz")
    raw = (root / "truncated.nii.gz").read_bytes()
    (root / "truncated.nii.gz").write_bytes(raw[: len(raw) * 2 // 3])
    add("truncated", "truncated", image="truncated.nii.gz")
    (root / "zero_byte.nii.gz").write_bytes(b"")
    add("zero_byte", "cannot be read as NIfTI", image="zero_byte.nii.gz")
    (root / "not_nifti.nii.gz").write_bytes(gzip.compress(b"subject,age\nx,1\n" * 50))
    add("not_nifti", "cannot be read as NIfTI", image="not_nifti.nii.gz")
    (root / "a_folder.nii.gz").mkdir()
    add("folder_not_file", "not a regular file", image="a_folder.nii.gz")
    add("missing_file", "file does not exist", image="no_such_scan.nii.gz")
    add("empty_cell", "missing T1 image", image=None, names="corpus.csv")
    # wrong dimensions
    add("four_d", "4D", image=image("four_d", np.stack([data, data], axis=-1)))
    add("two_d", "2D", image=image("two_d", data[:, :, data.shape[2] // 2]))
    # non-finite and degenerate intensities
    with_nan = data.copy()
    with_nan[10:12, 10:12, 10:12] = np.nan
    add("nan_voxels", "NaN/Inf voxel", image=image("nan_voxels", with_nan))
    with_inf = data.copy()
    with_inf[5, 5, 5] = np.inf
    add("inf_voxels", "NaN/Inf voxel", image=image("inf_voxels", with_inf))
    add("all_zero", "all voxels are zero", image=image("all_zero", np.zeros_like(data)))
    add("constant", "constant", image=image("constant", np.full_like(data, 500.0)))
    single = np.zeros_like(data)
    single[30, 30, 30] = 1000.0
    add("single_voxel", "almost empty", image=image("single_voxel", single))
    add("noise_only", "registration to the template failed",
        image=image("noise_only", rng.rayleigh(100.0, data.shape).astype(np.float32)))
    spikes = np.clip(data, 0, 32767).astype(np.int16)
    index = rng.choice(spikes.size, spikes.size // 50, replace=False)
    spikes.flat[index] = 32767
    add("int16_spikes", "registration to the template failed", image=image("int16_spikes", spikes))
    add("scale_overflow", "overflows float32",
        image=image("scale_overflow", np.clip(data, 1, 30000), dtype=np.int16, slope=1e36))
    # geometry
    add("voxel_0.001mm", "below the minimum", image=image("tiny_voxels", data, np.diag([0.001] * 3 + [1.0])))
    add("voxel_50mm", "not a plausible MRI voxel", image=image("huge_voxels", data, np.diag([50.0] * 3 + [1.0])))
    thick = data[:, :, ::6][:, :, :6]
    thick_affine = np.diag([0.5, 0.5, 19.0, 1.0])
    add("slices_19mm", "too anisotropic", image=image("slices_19mm", np.repeat(np.repeat(thick, 6, 0), 6, 1),
                                                          thick_affine))
    add("field_of_view_15mm", "field of view", image=image("small_fov", data[30:35, 30:35, 30:35]))
    nan_affine = affine.copy()
    nan_affine[0, 3] = np.nan
    add("nan_affine", "affine (voxel-to-world transform) contains NaN", image=image("nan_affine", data, nan_affine))
    shear = affine.copy()
    shear[0, 1] = 3.0
    add("shear", "cannot be represented as an ITK image", image=image("shear", data, shear))
    # labels and brain masks (same grid unless said otherwise)
    head = image("labelled", data)
    label = np.zeros(data.shape, np.uint8)
    label[30:34, 30:34, 30:34] = 1
    add("label_value_7", "label values", image=head, seg=image("seg_value_7", label * 7, dtype=np.uint8))
    add("label_negative", "negative", image=head, seg=image("seg_negative", -label.astype(np.int16)))
    add("label_fractional", "non-integer", image=head, seg=image("seg_fraction", label * 0.5, dtype=np.float32))
    add("label_other_grid", "grid", image=head, seg=image("seg_other_grid", label[::2, ::2, ::2], affine @ np.diag([2, 2, 2, 1])))
    add("label_missing_file", "file does not exist", image=head, seg="no_such_seg.nii.gz")
    add("mask_not_binary", "not binary", image=head, mask=image("mask_values", label * 3, dtype=np.uint8))
    add("mask_empty", "brain mask is empty", image=head, mask=image("mask_empty", label * 0, dtype=np.uint8))
    # ids
    shutil.copyfile(heads[1], root / "dup_b.nii.gz")
    add("duplicate_id", "occurs twice", subject="dup", image="dup_b.nii.gz", names="corpus.csv")
    # a pathology data set (two good heads with a lesion label) for the config's segmentation table
    for name in GOOD[:2]:
        _save(label, affine, root / f"{name}_seg.nii.gz", dtype=np.uint8)
    pd.DataFrame({"subject": GOOD[:2], "image": [f"{n}.nii.gz" for n in GOOD[:2]],
                  "seg": [f"{n}_seg.nii.gz" for n in GOOD[:2]]}).to_csv(root / "lesions.csv", index=False)
    frame = pd.DataFrame(rows, columns=["subject", "image", "seg", "mask"]).fillna("")
    frame.to_csv(root / "corpus.csv", index=False)
    return cases, frame


def make_stops(root: Path, corpus: Path) -> dict[str, tuple[Case, dict]]:
    """One source per table-level mistake: name -> (case, source config)."""
    root.mkdir()
    head = str(corpus / "good-1.nii.gz")
    stops = {}

    def table(name, text, expect, **source):
        path = root / f"{name}.csv"
        if text is not None:
            path.write_text(text)
        stops[name] = (Case(name, "", path, expect), {"kind": "csv", "root": str(path), **source})

    table("colliding_ids", f"subject,image\na b,{head}\na_b,{head}\n", "both become a_b")
    table("no_image_column", f"subject,scan\ns1,{head}\n", "has no image column")
    table("no_subject_column", f"name,image\ns1,{head}\n", "has no subject column")
    table("no_table", None, "csv data folder or table does not exist")
    table("empty_table", "", "cannot be read as a table")
    table("nothing_usable", f"subject,image\ns1,{corpus / 'truncated.nii.gz'}\ns2,{corpus / 'all_zero.nii.gz'}\n",
          "no usable subject")
    table("strict_lists_all", f"subject,image\ns1,{head}\ns2,{corpus / 'truncated.nii.gz'}\n"
                              f"s3,{corpus / 'two_d.nii.gz'}\n", "2 subject(s)", strict=True)
    bids = root / "bids_without_subjects"
    bids.mkdir()
    (bids / "dataset_description.json").write_text('{"Name": "empty", "BIDSVersion": "1.8.0"}')
    stops["bids_no_subjects"] = (Case("bids_no_subjects", "", bids, "no bids subjects"),
                                 {"kind": "bids", "root": str(bids)})
    return stops


def base_config(corpus: Path, sources: dict, datasets: dict) -> dict:
    """The smoke test's pre-processing, the given data sets and a pathology set for the segmentation table."""
    smoke = yaml.safe_load((ROOT / "tests" / "smoke" / "config.yaml").read_text())
    sources = {**sources, "lesions": {"kind": "csv", "root": str(corpus / "lesions.csv")}}
    trainset = next(iter(datasets))
    datasets = {**datasets, "lesions_t1": {"source": "lesions", "cohort": "all", "sequence": "t1",
                                           "role": "pathology", "trainset": trainset, "val": 1}}
    return {
        "seed": 11,
        "device": "cpu",
        "sources": sources,
        "preprocess": {
            "spacing_mm": 3.0, "template": "mni152", "template_mask": None, "registration": "Affine",
            "reg_iterations": [20, 10], "reg_shrink_factors": [2, 1], "reg_smoothing_sigmas": [1, 0], "n4": False,
            "crop_pad": [64, 64, 48], "percentiles": [1, 99], "downsample": 2, "slice_crop": 4,
        },
        "datasets": datasets,
        "splits": {"folds": 2, "healthy_test": 1, "val_fraction": None, "age_bins": 1},
        "models": {"thresh": {"arch": "thresh", "label": "Thresh"}},
        "reconstruct": {"samples": 1, "batch_size": 16},
        "scorings": {"native": {"name": "native"}},
        "evaluation": smoke["evaluation"],
        "tables": {"t": {"title": "t", "kind": "segmentation", "rows": [{"model": "thresh", "scoring": "native"}],
                         "datasets": ["lesions_t1"], "metrics": ["dice"]}},
        "report": {"title": "bad input", "qualitative": {"table": "t", "fold": 0}},
    }


def corpus_config(corpus: Path) -> dict:
    return base_config(corpus, {"messy": {"kind": "csv", "root": str(corpus / "corpus.csv")}},
                       {DATASET: {"source": "messy", "cohort": "all", "sequence": "t1", "role": "healthy"}})


def snakemake(workdir: Path, cfg: dict, *targets: str, extra=()) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--configfile", str(config),
           "--replace-workflow-config", "--cores", "2", *extra, *targets]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def sha256_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# config mistakes: (name, change of the corpus config, text the one-line error must contain)
def _set(path: str, value):
    def change(cfg):
        *parents, key = path.split(".")
        node = cfg
        for part in parents:
            node = node[part]
        node[key] = value
    return change


def _drop(path: str):
    def change(cfg):
        *parents, key = path.split(".")
        node = cfg
        for part in parents:
            node = node[part]
        del node[key]
    return change


CONFIG_MISTAKES = [
    ("misspelled_source_option", _set("sources.messy.options", {"label_value": [0, 1]}),
     "sources.messy.options.label_value: unknown option for kind 'csv'"),
    ("unknown_preprocess_key", _set("preprocess.spacing", 3.0), "preprocess.spacing: unknown key"),
    ("wrong_type", _set("evaluation.median", "five"), "evaluation.median"),
    ("unknown_source_kind", _set("sources.messy.kind", "cvs"), "sources.messy.kind"),
    ("dataset_unknown_source", _set(f"datasets.{DATASET}.source", "mesy"), "mesy"),
    ("floor_out_of_range", _set("preprocess.min_registration_similarity", 2), "min_registration_similarity"),
    ("missing_root", _drop("sources.messy.root"), "root"),
    ("negative_anisotropy", _set("preprocess.max_voxel_anisotropy", -1), "max_voxel_anisotropy"),
]


# ------------------------------------------------------------------------------------------- the test
def _reason_of(results: Path, case: Case) -> tuple[str, str, str] | None:
    """(stage, file, reason) of the case's subject in the exclusion tables, or None when not excluded."""
    for table in (results / f"data/{DATASET}/exclusions.tsv", results / f"qc/{DATASET}/exclusions.tsv"):
        if not table.exists():
            continue
        frame = pd.read_csv(table, sep="\t", dtype=str, keep_default_na=False)
        for rec in frame.to_dict("records"):
            if rec["subject"] == case.subject and (case.subject != "dup" or "occurs twice" in rec["reason"]):
                return rec.get("stage", "manifest"), rec["file"], rec["reason"]
    return None


def test_bad_input_corpus(tmp_path):
    corpus = tmp_path / "messy_data"
    corpus.mkdir()
    cases, frame = make_corpus(corpus, tmp_path / "phantom")
    stops = make_stops(tmp_path / "tables", corpus)
    before = {"corpus": sha256_tree(corpus), "tables": sha256_tree(tmp_path / "tables")}
    assert len(cases) + len(stops) + len(CONFIG_MISTAKES) >= 25

    # config mistakes at parse time (dry runs, two at a time) while nothing else runs yet
    def mistake(item):
        name, change, expect = item
        cfg = corpus_config(corpus)
        change(cfg)
        return item, snakemake(tmp_path / "config_mistakes" / name, cfg, "all_data", extra=("-n",))

    with ThreadPoolExecutor(2) as pool:
        mistakes = list(pool.map(mistake, CONFIG_MISTAKES))

    corpus_run = snakemake(tmp_path / "corpus_run", corpus_config(corpus), "all_data")
    stop_sources = {name: source for name, (_, source) in stops.items()}
    stop_datasets = {f"stop_{name}": {"source": name, "cohort": "all", "sequence": "t1", "role": "healthy"}
                     for name in stops}
    stop_run = snakemake(tmp_path / "stop_run", base_config(corpus, stop_sources, stop_datasets),
                         *(f"results/data/stop_{name}/manifest.tsv" for name in stops), extra=("--keep-going",))

    corpus_text = corpus_run.stdout + corpus_run.stderr
    assert corpus_run.returncode == 0, corpus_text[-6000:]
    # outcomes
    results = tmp_path / "corpus_run" / "results"
    outcomes, problems = [], []
    for case in cases:
        found = _reason_of(results, case)
        if found is None:
            case.outcome = "NOT EXCLUDED"
            problems.append(f"{case.name}: not excluded")
        else:
            stage, file, reason = found
            case.outcome = f"excluded ({stage}): {reason}"
            if case.expect not in reason or str(case.file) not in reason or not file.startswith(str(case.file)):
                problems.append(f"{case.name}: expected {case.expect!r} naming {case.file}, got {file}: {reason}")
        outcomes.append(("file", case.name, case.outcome))
    stop_text = stop_run.stdout + stop_run.stderr
    for name, (case, _) in stops.items():
        lines = [line for line in stop_text.splitlines() if line.startswith("InputDataError:")
                 and f"dataset stop_{name}:" in line]
        case.outcome = f"stop: {lines[0].split(': ', 1)[1]}" if lines else "NO STOP MESSAGE"
        if not lines or str(case.file) not in lines[0] or case.expect not in lines[0]:
            problems.append(f"{name}: expected a stop naming {case.file} and {case.expect!r}, got {case.outcome}")
        if (tmp_path / f"stop_run/results/data/stop_{name}/manifest.tsv").exists():
            problems.append(f"{name}: a manifest was written")
        outcomes.append(("table", name, case.outcome))
    for (name, _, expect), proc in mistakes:
        text = proc.stdout + proc.stderr
        errors = [line for line in text.splitlines() if line.startswith("config error:")]
        outcome = f"stop: {errors[0]}" if errors else "NO CONFIG ERROR"
        if proc.returncode == 0 or not errors or expect not in errors[0] or len(text.splitlines()) > 40:
            problems.append(f"config {name}: expected one 'config error:' line with {expect!r}, got:\n{text[-1500:]}")
        if "Traceback" in text:
            problems.append(f"config {name}: a traceback reached the terminal")
        outcomes.append(("config", name, outcome))

    table = pd.DataFrame(outcomes, columns=["kind", "case", "outcome"])
    table.to_csv(tmp_path / "outcomes.tsv", sep="\t", index=False)
    listing = "\n".join(f"{kind:6} {case:24} {outcome}" for kind, case, outcome in outcomes)
    print(f"\n{len(table)} bad-input cases (table in {tmp_path / 'outcomes.tsv'}):\n{listing}")

    # the corpus run kept the good subjects and said how many it excluded
    with np.load(results / f"data/{DATASET}/volumes.npz") as packed:
        assert sorted(packed["subjects"].tolist()) == sorted([*GOOD, "dup"])
    excluded = len(cases)
    assert f"{DATASET}: {len(GOOD) + 1} of {excluded + len(GOOD) + 1} subjects kept, {excluded} excluded" in corpus_text
    assert stop_run.returncode != 0
    for name, text in (("corpus run", corpus_text), ("stop run", stop_text)):
        assert "Traceback" not in text, f"{name}: a traceback reached the terminal:\n{text[-4000:]}"
    assert not problems, "\n".join(problems)
    # no raw file was modified
    assert sha256_tree(corpus) == before["corpus"]
    assert sha256_tree(tmp_path / "tables") == before["tables"]
