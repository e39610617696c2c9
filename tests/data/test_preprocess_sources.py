"""Pre-processing of data that arrive registered / skull-stripped / with a brain mask or ignore labels.

The subject is nilearn's MNI152 template sampled every 2nd voxel (4 mm), skull-stripped by the
template mask and stored with a flipped x axis (LAS), with a label whose values 1, 2 and 4 lie in
known boxes. With ``spacing_mm`` equal to the raw voxel size and ``downsample=1`` every output voxel
is one raw voxel, so expected outputs are the raw arrays read at the output voxels' world positions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

from brainuad.data import preprocess as pp
from brainuad.data.preprocess.exclusion import preprocess_or_exclude
from brainuad.errors import InputDataError

SPACING = 4.0
OPTIONS = dict(spacing_mm=SPACING, crop_pad=(40, 48, 40), downsample=1, slice_crop=2, n4=False)
OUT_SHAPE = (40, 48, 36)
LESION_BOX = (slice(14, 18), slice(25, 29), slice(25, 28))  # template voxels (4 mm grid, RAS)
IGNORE_BOX = (slice(30, 32), slice(25, 27), slice(25, 27))
OUTSIDE_BOX = (slice(0, 2), slice(0, 2), slice(0, 2))  # corner: background, outside every brain mask


def las(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Same image with the x axis stored reversed."""
    flip = nib.affines.from_matvec(np.diag([-1.0, 1.0, 1.0]), [array.shape[0] - 1, 0, 0])
    return np.ascontiguousarray(array[::-1]), affine @ flip


def save(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("raw")
    template = load_mni152_template(resolution=2).slicer[::2, ::2, ::2]
    brain = load_mni152_brain_mask(resolution=2).slicer[::2, ::2, ::2].get_fdata() > 0
    head = template.get_fdata().astype(np.float32) * 1000.0
    stripped = (head * brain).astype(np.float32)
    label = np.zeros(head.shape, np.uint8)
    label[LESION_BOX] = 1
    label[LESION_BOX[0], LESION_BOX[1], 25] = 4  # BraTS-like values 1 / 4 fused
    label[IGNORE_BOX] = 2
    label[OUTSIDE_BOX] = 1
    box = np.zeros(head.shape, np.uint8)
    box[8:40, 10:50, 8:40] = 1
    paths = {
        "stripped": save(folder / "stripped.nii.gz", *las(stripped, template.affine)),
        "head": save(folder / "head.nii.gz", *las(head + 5.0, template.affine)),  # not stripped, no zeros
        "seg": save(folder / "seg.nii.gz", *las(label, template.affine)),
        "box": save(folder / "box_mask.nii.gz", *las(box, template.affine)),
    }
    before = {k: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for k, p in paths.items()}
    return {"paths": paths, "affine": template.affine, "brain": brain, "label": label, "box": box.astype(bool),
            "stripped": stripped, "before": before, "folder": folder}


def run(raw, tmp_path, name="out", options=None, **kwargs) -> tuple[dict, dict]:
    """Pre-process with ``OPTIONS`` updated by ``options``; ``kwargs`` go to ``preprocess_subject``."""
    out = tmp_path / name
    files = {k: out / f"{k}.nii.gz" for k in ("image", "mask", "seg", "ignore")}
    kwargs.setdefault("tmpdir", tmp_path)
    qc = pp.preprocess_subject(kwargs.pop("image", raw["paths"]["stripped"]), files["image"], files["mask"],
                               files["seg"], out_ignore=files["ignore"], threads=1,
                               options=pp.PreprocessOptions(**{**OPTIONS, **(options or {})}), **kwargs)
    return qc, {k: nib.load(str(p)) for k, p in files.items()}


def at_output_voxels(array_ras: np.ndarray, raw_affine: np.ndarray, output: nib.Nifti1Image) -> np.ndarray:
    """The RAS raw array read at the world position of every output voxel (0 outside its grid)."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in output.shape], indexing="ij"), axis=-1)
    index = nib.affines.apply_affine(np.linalg.inv(raw_affine) @ output.affine, grid)
    rounded = np.rint(index).astype(int)
    assert np.allclose(index, rounded, atol=1e-3)  # one raw voxel per output voxel
    inside = np.all((rounded >= 0) & (rounded < np.array(array_ras.shape)), axis=-1)
    values = np.zeros(output.shape, dtype=array_ras.dtype)
    values[inside] = array_ras[tuple(rounded[inside].T)]
    return values


def test_registered_and_skull_stripped_stays_in_input_space(raw, tmp_path):
    qc, out = run(raw, tmp_path, seg_path=raw["paths"]["seg"], registered=True, skull_stripped=True)
    for image in out.values():
        assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
        assert image.shape == OUT_SHAPE
        np.testing.assert_allclose(nib.affines.voxel_sizes(image.affine), SPACING)
    # no registration: every output voxel is the raw voxel at the same world position
    mask = np.asarray(out["mask"].dataobj)
    np.testing.assert_array_equal(mask, at_output_voxels(raw["stripped"] != 0, raw["affine"], out["mask"]))
    lesion = raw["label"] > 0
    expected_seg = at_output_voxels(lesion, raw["affine"], out["seg"]) & (mask > 0)
    np.testing.assert_array_equal(np.asarray(out["seg"].dataobj) > 0, expected_seg)
    # BraTS-style label: values 1 and 4 fused, value 2 counts as lesion too when no values are given
    assert int(expected_seg.sum()) == 4 * 4 * 3 + 2 * 2 * 2
    image = np.asarray(out["image"].dataobj)
    assert image.dtype == np.float32 and image.min() >= 0.0 and image.max() <= 1.0
    assert not image[mask == 0].any() and image[mask > 0].max() == pytest.approx(1.0)
    assert set(np.unique(np.asarray(out["seg"].dataobj))) <= {0, 1}
    assert qc["registered"] is True and qc["skull_stripped"] is True and qc["brain_mask_source"] == "nonzero"
    assert qc["registration_correlation_before"] is None and qc["registration_correlation_after_n4"] is None
    assert qc["brain_volume_ml"] == pytest.approx(raw["brain"].sum() * SPACING ** 3 / 1000.0)
    assert qc["lesion_voxels_outside_mask"] == 8  # the corner box lies in the background
    assert qc["ignore_voxels_output"] == 0 and not np.asarray(out["ignore"].dataobj).any()
    assert {"antspyx", "nibabel", "numpy", "brainuad"} <= set(qc["tool_versions"])
    assert "template" not in qc["seconds"] and "registration_qc" not in qc["seconds"]
    json.dumps(qc)


def test_ignore_values_give_an_ignore_mask(raw, tmp_path):
    qc, out = run(raw, tmp_path, seg_path=raw["paths"]["seg"], registered=True, skull_stripped=True,
                  lesion_values="1,4", ignore_values="2")
    mask = np.asarray(out["mask"].dataobj) > 0
    seg, ignore = np.asarray(out["seg"].dataobj) > 0, np.asarray(out["ignore"].dataobj) > 0
    np.testing.assert_array_equal(ignore, at_output_voxels(raw["label"] == 2, raw["affine"], out["ignore"]) & mask)
    assert int(ignore.sum()) == 2 * 2 * 2 == qc["ignore_voxels_output"] == qc["ignore_voxels_input"]
    assert int(seg.sum()) == 4 * 4 * 3 and not (seg & ignore).any()
    assert out["ignore"].get_data_dtype() == np.uint8


def test_registration_none_equals_registered(raw, tmp_path):
    qc_a, a = run(raw, tmp_path, "a", registered=True, skull_stripped=True)
    qc_b, b = run(raw, tmp_path, "b", options={"registration": "none"}, skull_stripped=True)
    assert qc_b["registered"] is True
    for key in ("image", "mask"):
        np.testing.assert_array_equal(np.asarray(a[key].dataobj), np.asarray(b[key].dataobj))
        np.testing.assert_allclose(a[key].affine, b[key].affine)


def test_shipped_brain_mask_wins(raw, tmp_path):
    qc, out = run(raw, tmp_path, image=raw["paths"]["head"], brain_mask_path=raw["paths"]["box"], registered=True)
    assert qc["brain_mask_source"] == "file"
    mask = np.asarray(out["mask"].dataobj) > 0
    np.testing.assert_array_equal(mask, at_output_voxels(raw["box"], raw["affine"], out["mask"]))
    assert not np.asarray(out["image"].dataobj)[~mask].any()


def test_registered_with_template_mask(raw, tmp_path):
    """Data in template space but not skull-stripped: the template's mask is taken over by world position."""
    qc, out = run(raw, tmp_path, image=raw["paths"]["head"], registered=True)
    assert qc["brain_mask_source"] == "template"
    mask = np.asarray(out["mask"].dataobj) > 0
    np.testing.assert_array_equal(mask, at_output_voxels(raw["brain"], raw["affine"], out["mask"]))
    assert qc["registration_correlation_after"] > 0.99  # the image is the template


def test_skull_strip_none_keeps_the_head(raw, tmp_path):
    qc, out = run(raw, tmp_path, image=raw["paths"]["head"], registered=True,
                  options={"skull_strip": {"method": "none"}})
    assert qc["brain_mask_source"] == "nonzero"
    head = np.ones(raw["brain"].shape, bool)
    np.testing.assert_array_equal(np.asarray(out["mask"].dataobj) > 0,
                                  at_output_voxels(head, raw["affine"], out["mask"]))


FAKE_TOOL = """
import sys
import nibabel as nib
import numpy as np
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
image = nib.load(args["-i"])
data = np.asarray(image.dataobj)
mask = np.zeros(data.shape, np.uint8)
mask[8:40, 10:50, 8:40] = 1  # the same box in the (LAS) file's own voxel order
nib.save(nib.Nifti1Image(data * mask, image.affine), args["-o"])
print("stripped", args["-i"], file=sys.stderr)
"""


def test_external_skull_strip_command(raw, tmp_path):
    tool = tmp_path / "fake_hd_bet.py"
    tool.write_text(FAKE_TOOL)
    command = [sys.executable, str(tool), "-i", "{input}", "-o", "{output}"]
    qc, out = run(raw, tmp_path, image=raw["paths"]["head"], registered=True,
                  options={"skull_strip": {"method": "hd-bet", "command": command}})
    assert qc["brain_mask_source"] == "hd-bet" and qc["skull_strip"]["method"] == "hd-bet"
    box_las = np.zeros(raw["box"].shape, bool)
    box_las[8:40, 10:50, 8:40] = True
    box_ras = box_las[::-1]  # the tool marked the box in stored (LAS) order
    np.testing.assert_array_equal(np.asarray(out["mask"].dataobj) > 0,
                                  at_output_voxels(box_ras, raw["affine"], out["mask"]))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("brainuad-skullstrip-")]


def test_skull_strip_command_errors(raw, tmp_path):
    with pytest.raises(ValueError, match="skull_strip.command"):
        run(raw, tmp_path, image=raw["paths"]["head"], options={"skull_strip": "hd-bet"})
    with pytest.raises(ValueError, match="one of"):
        pp.skull_strip_settings({"method": "bet2"})
    with pytest.raises(ValueError, match="only used with method 'hd-bet'"):
        pp.skull_strip_settings({"method": "template", "command": "hd-bet -i {input}"})
    with pytest.raises(RuntimeError, match="not installed"):
        run(raw, tmp_path, image=raw["paths"]["head"], registered=True,
            options={"skull_strip": {"method": "hd-bet",
                                     "command": "hd-bet-not-installed-xyz -i {input} -o {output}"}})
    failing = [sys.executable, "-c", "import sys; sys.exit('GPU out of memory')", "{input}"]
    with pytest.raises(RuntimeError, match="GPU out of memory"):
        run(raw, tmp_path, image=raw["paths"]["head"], registered=True,
            options={"skull_strip": {"method": "hd-bet", "command": failing}})
    with pytest.raises(ValueError, match="placeholder"):
        run(raw, tmp_path, image=raw["paths"]["head"], registered=True,
            options={"skull_strip": {"method": "hd-bet", "command": "hd-bet -i {inputs}"}})


def test_bad_brain_mask_or_label_grid_is_an_input_error(raw, tmp_path):
    wrong = save(tmp_path / "wrong_grid.nii.gz", np.ones((5, 5, 5), np.uint8), np.eye(4))
    with pytest.raises(InputDataError) as error:
        run(raw, tmp_path, brain_mask_path=wrong, registered=True)
    assert error.value.path == str(wrong)
    with pytest.raises(InputDataError) as error:
        run(raw, tmp_path, seg_path=wrong, registered=True, skull_stripped=True)
    assert error.value.path == str(wrong)


def test_raw_files_untouched(raw, tmp_path):
    run(raw, tmp_path, seg_path=raw["paths"]["seg"], registered=True, skull_stripped=True)
    after = {k: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for k, p in raw["paths"].items()}
    assert after == raw["before"]


def test_skull_stripped_but_not_registered_carries_its_mask_through_registration(raw, tmp_path):
    qc, out = run(raw, tmp_path, seg_path=raw["paths"]["seg"], skull_stripped=True,
                  options={"reg_iterations": (20, 10), "reg_shrink_factors": (2, 1), "reg_smoothing_sigmas": (1, 0)})
    assert qc["registered"] is False and qc["brain_mask_source"] == "nonzero"
    assert qc["brain_volume_ml"] == pytest.approx(raw["brain"].sum() * SPACING ** 3 / 1000.0)
    assert qc["registration_correlation_after"] > 0.95  # the image is the template itself
    mask = np.asarray(out["mask"].dataobj) > 0
    expected = at_output_voxels(raw["brain"], raw["affine"], out["mask"])  # template space = input space here
    assert 2 * (mask & expected).sum() / (mask.sum() + expected.sum()) > 0.95
    assert np.asarray(out["seg"].dataobj).sum() > 0


def exclusion_job(image, tmp_path, strict, **flags) -> tuple[dict, dict]:
    outputs = {k: tmp_path / "nifti" / f"sub_{k}.nii.gz" for k in ("image", "mask", "seg", "ignore")}
    outputs["qc"] = tmp_path / "nifti" / "sub_qc.json"
    outputs["image"].parent.mkdir(parents=True, exist_ok=True)
    record = preprocess_or_exclude(str(image), outputs, pp.PreprocessOptions(**OPTIONS), dataset="ds",
                                   subject_id="sub", source="src", strict=strict, tmpdir=tmp_path, threads=1,
                                   log=logging.getLogger("test"), **flags)
    return record, outputs


def test_job_writes_the_qc_record(raw, tmp_path):
    record, outputs = exclusion_job(raw["paths"]["stripped"], tmp_path, strict=True, registered=True,
                                    skull_stripped=True)
    assert json.loads(outputs["qc"].read_text()) == json.loads(json.dumps(record))
    assert record["subject"] == "sub" and record["raw_image"] == str(raw["paths"]["stripped"])
    assert record["registered"] is True and "excluded" not in record
    assert nib.load(str(outputs["ignore"])).shape == OUT_SHAPE
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("brainuad-ants-")]


def test_job_excludes_an_unusable_subject_unless_strict(tmp_path):
    bad = save(tmp_path / "bold.nii.gz", np.ones((8, 8, 8, 4), np.float32), np.eye(4))
    record, outputs = exclusion_job(bad, tmp_path, strict=False)
    assert json.loads(outputs["qc"].read_text()) == record
    assert record.pop("reason") and record == {"excluded": True, "stage": "preprocess", "source": "src",
                                               "file": str(bad), "subject": "sub", "raw_image": str(bad)}
    assert all(outputs[k].read_bytes() == b"" for k in ("image", "mask", "seg", "ignore"))
    with pytest.raises(InputDataError):
        exclusion_job(bad, tmp_path / "strict", strict=True)
    assert not (tmp_path / "strict" / "nifti" / "sub_qc.json").exists()


def test_dataset_job_equals_one_job_per_subject(raw, tmp_path):
    """config jobs.preprocess: per_dataset -- one call for two subjects of a manifest writes exactly what each
    subject's own job writes (raw files and flags from its manifest row); a planned subject missing from the
    manifest is an error naming the manifest."""
    from brainuad.data.manifest import manifest_frame, write_manifest
    from brainuad.data.preprocess.exclusion import preprocess_dataset

    p = raw["paths"]
    row = dict(sequence="t1", sha256="0", age="", sex="", seg_sha256="", brain_mask="", split="",
               registered="True", skull_stripped="True", seg_lesion_values="1,4", seg_ignore_values="2")
    rows = [dict(row, subject="s1", image=str(p["stripped"]), seg=str(p["seg"])),
            dict(row, subject="s2", image=str(p["head"]), seg="", skull_stripped="False", brain_mask=str(p["box"]),
                 seg_lesion_values="", seg_ignore_values="")]
    manifest = tmp_path / "manifest.tsv"
    write_manifest(manifest_frame(rows), manifest)

    def outputs(folder, subject):
        out = {k: folder / f"{subject}_{k}.nii.gz" for k in ("image", "mask", "seg", "ignore")}
        out["qc"] = folder / f"{subject}_qc.json"
        folder.mkdir(parents=True, exist_ok=True)
        return out

    log, options = logging.getLogger("test"), pp.PreprocessOptions(**OPTIONS)
    together = {s: outputs(tmp_path / "together", s) for s in ("s1", "s2")}
    records = preprocess_dataset(manifest, together, options, dataset="ds", source="src", strict=True,
                                 tmpdir=tmp_path, log=log)
    flags = {"s1": dict(registered=True, skull_stripped=True, lesion_values="1,4", ignore_values="2"),
             "s2": dict(registered=True, skull_stripped=False, lesion_values="", ignore_values="")}
    for record, r in zip(records, rows):
        s = r["subject"]
        alone = outputs(tmp_path / "alone", s)
        expected = preprocess_or_exclude(r["image"], alone, options, dataset="ds", subject_id=s, source="src",
                                         strict=True, seg_path=r["seg"] or None, brain_mask_path=r["brain_mask"] or None,
                                         tmpdir=tmp_path, log=log, **flags[s])
        timing = lambda rec: {k: v for k, v in rec.items() if k != "seconds"}  # noqa: E731 - step timings differ
        assert timing(record) == timing(expected)
        assert json.loads(together[s]["qc"].read_text()) == json.loads(json.dumps(record))
        for kind in ("image", "mask", "seg", "ignore"):
            a, b = nib.load(str(together[s][kind])), nib.load(str(alone[kind]))
            assert np.array_equal(a.get_fdata(), b.get_fdata()) and np.array_equal(a.affine, b.affine), (s, kind)
    assert records[0]["subject"] == "s1" and records[1]["subject"] == "s2"
    assert not np.array_equal(nib.load(str(together["s1"]["seg"])).get_fdata(), 0)  # s1's label went through

    with pytest.raises(InputDataError, match="s3") as err:
        preprocess_dataset(manifest, {"s3": outputs(tmp_path / "missing", "s3")}, options, dataset="ds",
                           source="src", strict=True, log=log)
    assert str(manifest) in str(err.value)
