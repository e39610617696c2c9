"""Tests for the steps of brainuad.data.preprocess.steps on small arrays with hand-computed results."""

from __future__ import annotations

from pathlib import Path

import ants
import nibabel as nib
import numpy as np
import pytest

from brainuad.data.preprocess import PreprocessOptions, ants_to_nifti, load_registration_template, nifti_to_ants
from brainuad.data.preprocess import steps
from brainuad.errors import InputDataError

SHAPE = (6, 6, 6)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def save(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    """A 6^3 image (10 in the cube [1:5]^3, 0 around), a label with values 1, 2 and 4, a box mask."""
    image = np.zeros(SHAPE, np.float32)
    image[1:5, 1:5, 1:5] = 10.0
    label = np.zeros(SHAPE, np.uint8)
    label[2, 2, 2], label[3, 3, 3], label[4, 4, 4] = 1, 2, 4
    box = np.zeros(SHAPE, np.uint8)
    box[0:3, 0:6, 0:6] = 1
    return {"image": save(tmp_path / "image.nii.gz", image), "seg": save(tmp_path / "seg.nii.gz", label),
            "box": save(tmp_path / "box.nii.gz", box), "folder": tmp_path}


def volumes_on(shape) -> dict[str, np.ndarray]:
    return {"image": np.zeros(shape, np.float32), "mask": np.zeros(shape, np.uint8),
            "seg": np.zeros(shape, np.uint8), "ignore": np.zeros(shape, np.uint8)}


# --------------------------------------------------------------------------- load, grid


def test_load_subject_splits_the_label(files):
    subject, qc = steps.load_subject(files["image"], PreprocessOptions(), seg_path=files["seg"],
                                     lesion_values="1,4", ignore_values="2")
    assert qc == {"lesion_voxels_input": 2, "ignore_voxels_input": 1, "brain_mask_source": "template"}
    expected = np.zeros(SHAPE, np.uint8)
    expected[2, 2, 2], expected[3, 3, 3], expected[4, 4, 4] = 1, 2, 1
    np.testing.assert_array_equal(subject.label, expected)
    assert subject.brain_mask is None and subject.label_path == files["seg"]
    np.testing.assert_array_equal(subject.label_image().numpy(), expected.astype(np.float32))


@pytest.mark.parametrize(("kwargs", "source"), [
    ({"brain_mask_path": "box"}, "file"),
    ({"skull_stripped": True}, "nonzero"),
    ({"options": PreprocessOptions(skull_strip="none")}, "nonzero"),
    ({}, "template"),
])
def test_load_subject_brain_mask_sources(files, kwargs, source):
    if "brain_mask_path" in kwargs:
        kwargs = {"brain_mask_path": files["box"]}
    options = kwargs.pop("options", PreprocessOptions())
    subject, qc = steps.load_subject(files["image"], options, **kwargs)
    assert qc["brain_mask_source"] == source
    assert qc["lesion_voxels_input"] == qc["ignore_voxels_input"] == 0 and subject.label is None
    image = np.asarray(nib.load(str(files["image"])).dataobj)
    expected = {"file": np.asarray(nib.load(str(files["box"])).dataobj) > 0, "nonzero": image != 0,
                "template": None}[source]
    if expected is None:
        assert subject.brain_mask is None and subject.brain_mask_image() is None
    else:
        np.testing.assert_array_equal(subject.brain_mask, expected)


def test_load_subject_label_on_another_grid_is_an_input_error(files):
    wrong = save(files["folder"] / "wrong.nii.gz", np.ones((5, 5, 5), np.uint8))
    with pytest.raises(InputDataError) as error:
        steps.load_subject(files["image"], PreprocessOptions(), seg_path=wrong)
    assert error.value.path == str(wrong)


def test_to_grid_resamples_to_the_working_spacing(files):
    subject, _ = steps.load_subject(files["image"], PreprocessOptions())
    coarse = steps.to_grid(subject, PreprocessOptions(spacing_mm=4.0))
    assert coarse.shape == (3, 3, 3) and coarse.spacing == pytest.approx((4.0, 4.0, 4.0))
    same = steps.to_grid(subject, PreprocessOptions(spacing_mm=2.0))
    np.testing.assert_array_equal(same.numpy(), np.asarray(subject.image.dataobj))


def test_stay_in_input_space_with_a_native_mask(files):
    subject, _ = steps.load_subject(files["image"], PreprocessOptions(), seg_path=files["seg"], skull_stripped=True)
    image = steps.to_grid(subject, PreprocessOptions(spacing_mm=2.0))
    working, qc = steps.stay_in_input_space(subject, image)
    np.testing.assert_array_equal(working.brain_mask, subject.brain_mask)
    np.testing.assert_array_equal(working.label, subject.label)
    assert working.template is None and working.template_correlation(working.image) is None
    brain_ml = 4 ** 3 * 8.0 / 1000.0  # the 4^3 cube of 2 mm voxels
    assert qc == {"registration_correlation_before": None, "registration_correlation_after": None,
                  "brain_volume_template_ml": pytest.approx(brain_ml), "brain_volume_ml": pytest.approx(brain_ml),
                  "registration_transform": []}  # identity: raw-space results are resampled by world coordinates


def test_stay_in_input_space_needs_a_template_without_a_native_mask(files):
    subject, _ = steps.load_subject(files["image"], PreprocessOptions())
    with pytest.raises(ValueError, match="template"):
        steps.stay_in_input_space(subject, steps.to_grid(subject, PreprocessOptions()))


def test_register_recovers_a_header_shift(tmp_path):
    """The 4 mm template moved by (8, -8, 4) mm in its header registers back onto the template."""
    fixed, fixed_mask = load_registration_template("mni152", spacing_mm=4.0)
    template = nib.as_closest_canonical(ants_to_nifti(fixed))
    shifted = template.affine.copy()
    shifted[:3, 3] += (8.0, -8.0, 4.0)
    raw = nib.Nifti1Image(np.asarray(template.dataobj, np.float32), shifted)
    subject = steps.RawSubject(raw, "shifted.nii.gz", None, None, None)
    options = PreprocessOptions(spacing_mm=4.0, reg_iterations=(50, 20), reg_shrink_factors=(2, 1),
                                reg_smoothing_sigmas=(1, 0))
    image = steps.to_grid(subject, options)
    working, qc = steps.register(subject, image, (fixed, fixed_mask), options, tmpdir=tmp_path)
    template_ml = float((fixed_mask.numpy() > 0).sum() * 64 / 1000)
    assert qc["brain_volume_template_ml"] == pytest.approx(template_ml)
    assert qc["brain_volume_ml"] == pytest.approx(template_ml, rel=0.03)  # a shift keeps the volume
    np.testing.assert_array_equal(working.brain_mask, fixed_mask.numpy() > 0)
    assert working.label is None and working.image.shape == fixed.shape
    correlations = steps.registration_qc(image, working)
    assert correlations["registration_correlation_after"] > 0.98
    assert correlations["registration_correlation_before"] < correlations["registration_correlation_after"] - 0.1
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- brain mask, N4, RAS


def test_apply_brain_mask_clips_masks_and_counts_labels():
    image = np.full((4, 4, 4), 2.0, np.float32)
    image[0, 0, 0] = -1.0
    mask = np.zeros((4, 4, 4), bool)
    mask[:2] = True
    label = np.zeros((4, 4, 4), np.float32)
    label[0, :, 0] = 1.0  # 4 lesion voxels in the brain
    label[1, 3, 3] = 1.0001  # interpolated: rounds to lesion
    label[3, 0, 0] = 1.0  # lesion outside the brain
    label[1, 1, 1], label[3, 3, 3] = 2.0, 2.0  # ignore, inside / outside
    working = steps.WorkingGrid(ants.from_numpy(image), image, label, mask)
    volumes, qc = steps.apply_brain_mask(working, "subject.nii.gz")
    assert qc == {"lesion_voxels_template": 6, "lesion_voxels_outside_mask": 1}
    expected_image = np.where(mask, 2.0, 0.0)
    expected_image[0, 0, 0] = 0.0
    np.testing.assert_array_equal(volumes["image"], expected_image)
    np.testing.assert_array_equal(volumes["mask"], mask)
    assert int(volumes["seg"].sum()) == 5 and volumes["seg"][1, 3, 3] == 1 and volumes["seg"][3, 0, 0] == 0
    assert int(volumes["ignore"].sum()) == 1 and volumes["ignore"][1, 1, 1] == 1
    assert volumes["image"].dtype == np.float32
    assert {volumes[k].dtype for k in ("mask", "seg", "ignore")} == {np.dtype(np.uint8)}
    with pytest.raises(InputDataError, match="subject.nii.gz"):
        steps.apply_brain_mask(steps.WorkingGrid(working.reference, image, None, np.zeros_like(mask)),
                               "subject.nii.gz")


def test_bias_correct_flattens_a_ramp_inside_the_mask():
    shape = (32, 32, 32)
    volumes = volumes_on(shape)
    volumes["mask"][4:28, 4:28, 4:28] = 1
    ramp = np.exp(0.4 * np.arange(32) / 31.0)[:, None, None] * np.ones(shape)
    volumes["image"] = (100.0 * ramp * volumes["mask"]).astype(np.float32)
    reference = ants.from_numpy(np.zeros(shape, np.float32), spacing=(2.0, 2.0, 2.0))
    unchanged = steps.bias_correct(volumes, reference, PreprocessOptions(n4=False))
    assert unchanged is not volumes and unchanged["image"] is volumes["image"]
    corrected = steps.bias_correct(volumes, reference, PreprocessOptions())["image"]
    inside = volumes["mask"] > 0
    cv = lambda x: x[inside].std() / x[inside].mean()  # noqa: E731
    assert cv(corrected) < 0.3 * cv(volumes["image"])
    assert corrected.dtype == np.float32 and not corrected[~inside].any() and corrected.min() >= 0


def test_to_ras_flips_a_las_grid():
    las = np.diag([-2.0, 2.0, 2.0, 1.0])
    las[:3, 3] = (50.0, -20.0, -10.0)
    reference = nifti_to_ants(nib.Nifti1Image(np.zeros((5, 3, 2), np.float32), las))
    volumes = volumes_on((5, 3, 2))
    volumes["image"] = np.arange(30, dtype=np.float32).reshape(5, 3, 2)
    volumes["mask"][0] = 1
    out, affine = steps.to_ras(volumes, reference)
    np.testing.assert_array_equal(out["image"], volumes["image"][::-1])
    np.testing.assert_array_equal(out["mask"], volumes["mask"][::-1])
    expected = np.diag([2.0, 2.0, 2.0, 1.0])
    expected[:3, 3] = (50.0 - 2.0 * 4, -20.0, -10.0)  # voxel 0 is the old voxel 4
    np.testing.assert_allclose(affine, expected, atol=1e-5)
    assert out["mask"].dtype == np.uint8 and out["image"].dtype == np.float32


# --------------------------------------------------------------------------- array steps


def test_crop_to_brain_centres_the_box_on_the_mask():
    volumes = volumes_on((10, 10, 10))
    volumes["mask"][2:6, 3:5, 0:10] = 1  # 80 voxels; bounding-box centre (3.5, 3.5, 4.5)
    volumes["seg"][2, 3, 0] = 1
    out, affine, qc = steps.crop_to_brain(volumes, np.eye(4), PreprocessOptions(crop_pad=(4, 4, 6)))
    # start = floor(centre - (size - 1) / 2 + 0.5) = (2, 2, 2): z keeps slices 2..7 of 0..9
    assert {array.shape for array in out.values()} == {(4, 4, 6)}
    assert qc == {"brain_voxels_removed_by_crop": 80 - 4 * 2 * 6, "brain_voxels_before_crop": 80}
    np.testing.assert_allclose(affine[:3, 3], (2.0, 2.0, 2.0))
    assert not out["seg"].any()  # the lesion voxel lay in slice 0


def test_normalise_intensities_names_the_percentiles():
    volumes = volumes_on((101, 2, 1))
    volumes["image"][:, 0, 0] = np.arange(101)
    volumes["image"][:, 1, 0] = 1000.0
    volumes["mask"][:, 0, 0] = 1
    out, qc = steps.normalise_intensities(volumes, PreprocessOptions(percentiles=(5, 95)), path="x.nii.gz")
    assert qc == {"intensity_percentiles": {"p5": pytest.approx(5.0), "p95": pytest.approx(95.0)}}
    np.testing.assert_allclose(out["image"][:, 0, 0], np.clip((np.arange(101) - 5) / 90, 0, 1), atol=1e-6)
    assert not out["image"][:, 1, 0].any() and out["mask"] is volumes["mask"]


def test_downsample_volumes_keeps_labels_inside_the_mask():
    volumes = volumes_on((8, 8, 8))
    volumes["image"][:] = 0.5
    volumes["mask"][:6] = 1  # output voxels 0-2 in x map to input 0.5, 2.5, 4.5: brain; voxel 3 (6.5) not
    volumes["seg"][:4, :4, :4] = 1  # output voxels 0-1 per axis
    volumes["ignore"][:] = 1
    out, affine = steps.downsample_volumes(volumes, np.eye(4), PreprocessOptions(downsample=2))
    assert {array.shape for array in out.values()} == {(4, 4, 4)}
    expected_mask = np.zeros((4, 4, 4), np.uint8)
    expected_mask[:3] = 1
    np.testing.assert_array_equal(out["mask"], expected_mask)
    expected_seg = np.zeros((4, 4, 4), np.uint8)
    expected_seg[:2, :2, :2] = 1
    np.testing.assert_array_equal(out["seg"], expected_seg)
    np.testing.assert_array_equal(out["ignore"], expected_mask)
    assert out["image"].dtype == np.float32 and 0 <= out["image"].min() and out["image"].max() <= 1
    assert not out["image"][3].any()
    np.testing.assert_allclose(affine, [[2, 0, 0, 0.5], [0, 2, 0, 0.5], [0, 0, 2, 0.5], [0, 0, 0, 1]])


def test_crop_axial_slices():
    volumes = volumes_on((2, 2, 10))
    volumes["image"] = np.arange(40, dtype=np.float32).reshape(2, 2, 10)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    out, new_affine = steps.crop_axial_slices(volumes, affine, PreprocessOptions(slice_crop=3))
    np.testing.assert_array_equal(out["image"], volumes["image"][:, :, 3:7])
    assert {array.shape for array in out.values()} == {(2, 2, 4)}
    np.testing.assert_allclose(new_affine[:3, 3], (0.0, 0.0, 9.0))
    with pytest.raises(ValueError, match="slice_crop=5"):
        steps.crop_axial_slices(volumes, affine, PreprocessOptions(slice_crop=5))


def test_write_outputs(tmp_path):
    volumes = volumes_on((3, 4, 5))
    volumes["image"][0] = 0.25
    volumes["mask"][0] = 1
    volumes["seg"][0, 0, :2] = 1
    volumes["ignore"][0, 1, 0] = 1
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    files = {name: tmp_path / f"{name}.nii.gz" for name in ("image", "mask", "seg")}
    qc = steps.write_outputs(volumes, affine, {**files, "ignore": None})
    assert qc == {"lesion_voxels_output": 2, "ignore_voxels_output": 1, "output_shape": [3, 4, 5],
                  "output_spacing_mm": [3.0, 3.0, 3.0]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.nii.gz", "mask.nii.gz", "seg.nii.gz"]
    for name, path in files.items():
        written = nib.load(str(path))
        assert written.get_data_dtype() == (np.float32 if name == "image" else np.uint8)
        np.testing.assert_array_equal(np.asarray(written.dataobj), volumes[name])
        np.testing.assert_allclose(written.affine, affine)


def test_antspy_without_plotting_is_the_full_package():
    """brainuad's ``ants`` (brainuad.data.preprocess.antspy) exports the same objects as ``import ants``,
    without importing matplotlib, scikit-learn or statsmodels until a name of those parts is used."""
    import json
    import subprocess
    import sys

    listing = ("import json, sys\n{load}\n"
               "before = sorted(m for m in ('matplotlib', 'sklearn', 'statsmodels') if m in sys.modules)\n"
               "ants.plot  # a deferred name: loads the rest\n"
               "names = sorted(n for n in dir(ants) if not n.startswith('_'))\n"
               "objs = {{n: getattr(getattr(ants, n), '__module__', type(getattr(ants, n)).__name__) + '.' + "
               "getattr(getattr(ants, n), '__qualname__', '') for n in names}}\n"
               "print(json.dumps([before, objs]))")
    runs = [subprocess.run([sys.executable, "-c", listing.format(load=load)], capture_output=True, text=True,
                           check=True)
            for load in ("import ants", "from brainuad.data.preprocess.antspy import ants")]
    (full_before, full), (lite_before, lite) = (json.loads(r.stdout) for r in runs)
    assert full_before == ["matplotlib", "sklearn", "statsmodels"] and lite_before == []
    assert lite == full
