"""Tests for brainuad.data.preprocess on a synthetic subject with a known transform.

The subject is nilearn's 2 mm MNI152 template moved by a known affine (8 deg
rotation, 8 % scaling, 10 mm shift), with a spherical lesion placed at a known
MNI coordinate, a smooth multiplicative bias field and Rician-like noise, on a
110 x 120 x 100 grid at 2 mm stored in LAS orientation. Expected values are
computed from that construction, not from the code under test.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import ants
import nibabel as nib
import numpy as np
import pytest
from nibabel.processing import resample_from_to
from nilearn.datasets import load_mni152_brain_mask, load_mni152_template
from scipy import ndimage
from scipy.spatial.transform import Rotation

from brainuad.data import preprocess as pp
from brainuad.errors import InputDataError

LESION_CENTRE_MNI = np.array([26.0, -8.0, 22.0])  # right frontal white matter
LESION_RADIUS_MM = 7.0
OUTSIDE_CENTRE_MNI = np.array([60.0, 40.0, 50.0])  # label-only blob outside the brain mask
OUTSIDE_RADIUS_MM = 6.0
SUBJECT_SHAPE = (110, 120, 100)
SUBJECT_SPACING = 2.0


def known_transform() -> np.ndarray:
    """World (RAS mm) affine mapping template anatomy to subject anatomy.

    8 deg about an oblique axis, scale 1.08 / 0.96 / 1.04 (up to 8 %), 10 mm shift,
    applied about the template brain's centre so the head stays in the field of view.
    """
    rotation = Rotation.from_rotvec(np.deg2rad(8.0) * np.array([0.6, 0.3, 0.74]) / np.linalg.norm([0.6, 0.3, 0.74]))
    linear = rotation.as_matrix() @ np.diag([1.08, 0.96, 1.04])
    centre = np.array([0.0, -20.0, 10.0])
    shift = np.array([6.0, -5.0, 6.0])  # |shift| ~ 9.9 mm
    return nib.affines.from_matvec(linear, centre + shift - linear @ centre)


def subject_affine() -> np.ndarray:
    """LAS grid (x flipped) centred on the moved brain."""
    centre = known_transform() @ np.array([0.0, -20.0, 10.0, 1.0])
    affine = np.diag([-SUBJECT_SPACING, SUBJECT_SPACING, SUBJECT_SPACING, 1.0])
    half = (np.array(SUBJECT_SHAPE) - 1) / 2.0
    affine[:3, 3] = centre[:3] - affine[:3, :3] @ half
    return affine


def lesion_sphere(shape, affine, centre=LESION_CENTRE_MNI, radius=LESION_RADIUS_MM) -> np.ndarray:
    """Boolean ball of ``radius`` mm around ``centre`` (world mm) on the grid (shape, affine)."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    world = nib.affines.apply_affine(affine, grid)
    return np.linalg.norm(world - centre, axis=-1) <= radius


def bias_field(shape, affine) -> np.ndarray:
    """Smooth multiplicative field, about 0.8 to 1.22 over the brain (left-right and up-down ramps)."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    world = nib.affines.apply_affine(affine, grid)
    log_field = 0.165 * world[..., 0] / 70.0 + 0.09 * (world[..., 2] - 10.0) / 70.0 - 0.04 * (world[..., 1] / 90.0) ** 2
    return np.exp(log_field)


def make_subject(folder: Path, *, t2_like: bool = False, seed: int = 0) -> dict[str, Path]:
    """Write a synthetic raw scan and its lesion label; return their paths.

    The image is the template moved by :func:`known_transform` with a
    hypointense lesion, bias and noise. The label marks the lesion plus a
    blob outside the brain (a labelling error the pipeline must drop).
    ``t2_like`` inverts the contrast (dark white matter, bright CSF).
    """
    rng = np.random.default_rng(seed)
    template = load_mni152_template(resolution=2)
    data = template.get_fdata(dtype=np.float32)
    lesion = lesion_sphere(data.shape, template.affine)
    data = np.where(lesion, 0.35, data)
    if t2_like:
        data = np.where(data > 0.05, 1.1 - data, 0.0)
    moved_affine = known_transform() @ template.affine  # template voxel v now lies at T(A v)
    target = (SUBJECT_SHAPE, subject_affine())
    clean = resample_from_to(nib.Nifti1Image(data.astype(np.float32), moved_affine), target, order=3).get_fdata()
    clean = np.clip(clean, 0, None) * bias_field(SUBJECT_SHAPE, subject_affine())
    noise = rng.normal(0.0, 0.02, size=(2,) + SUBJECT_SHAPE)
    noisy = np.sqrt((clean + noise[0]) ** 2 + noise[1] ** 2)  # Rician-like, positive background
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"image": folder / "sub_T1w.nii.gz", "seg": folder / "sub_seg.nii.gz"}
    nib.save(nib.Nifti1Image((1000.0 * noisy).astype(np.float32), subject_affine()), paths["image"])
    outside = lesion_sphere(data.shape, template.affine, OUTSIDE_CENTRE_MNI, OUTSIDE_RADIUS_MM)
    label = nib.Nifti1Image((lesion | outside).astype(np.float32), moved_affine)
    label = resample_from_to(label, target, order=0).get_fdata()
    nib.save(nib.Nifti1Image(label.astype(np.uint8), subject_affine()), paths["seg"])
    return paths


def fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest(), Path(path).stat().st_mtime_ns


def ants_like_entries(folder: Path) -> set[str]:
    """Names in ``folder`` that look like files or folders left by ANTs or by this pipeline."""
    patterns = ("GenericAffine", "Warp.nii", "brainuad-preprocess-", "reg_")
    return {p.name for p in Path(folder).iterdir() if any(key in p.name for key in patterns)}


def template_on_grid(image: nib.Nifti1Image, which: str) -> np.ndarray:
    """nilearn's 2 mm MNI template or mask resampled (independently of the code) onto ``image``'s grid."""
    source = load_mni152_template(resolution=2) if which == "template" else load_mni152_brain_mask(resolution=2)
    order = 1 if which == "template" else 0
    return resample_from_to(source, (image.shape, image.affine), order=order).get_fdata()


def white_matter_on_grid(image: nib.Nifti1Image) -> np.ndarray:
    """Template white matter (bright T1, eroded), away from the lesion, on ``image``'s grid."""
    template = load_mni152_template(resolution=2)
    t1 = template.get_fdata()
    mask = load_mni152_brain_mask(resolution=2).get_fdata() > 0
    wm = ndimage.binary_erosion((t1 > 0.8) & mask, iterations=1)
    wm &= ~lesion_sphere(t1.shape, template.affine, radius=LESION_RADIUS_MM + 6.0)
    wm_image = nib.Nifti1Image(wm.astype(np.float32), template.affine)
    return resample_from_to(wm_image, (image.shape, image.affine), order=0).get_fdata() > 0.5


def coefficient_of_variation(values: np.ndarray) -> float:
    return float(values.std() / values.mean())


# --------------------------------------------------------------------------- fixtures


EXPECTED_SHAPE = (64, 64, 32)  # round((96, 96, 72) / 1.5) = (64, 64, 48), minus 2 * 8 axial slices
EXPECTED_SPACING = (3.0, 3.0, 3.0)  # 2 mm * 1.5


@pytest.fixture(scope="module")
def subject(tmp_path_factory) -> dict[str, Path]:
    return make_subject(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="module")
def with_n4(subject, tmp_path_factory) -> dict:
    """Default pipeline with label and an explicit tmpdir."""
    out = tmp_path_factory.mktemp("out_n4")
    work = tmp_path_factory.mktemp("work")
    raw_before = {key: fingerprint(path) for key, path in subject.items()}
    qc = pp.preprocess_subject(
        subject["image"], out / "image.nii.gz", out / "mask.nii.gz", out / "seg.nii.gz",
        seg_path=subject["seg"], tmpdir=work, threads=1,
    )
    return {
        "qc": qc,
        "out": out,
        "work_left": sorted(p.name for p in work.iterdir()),
        "raw_before": raw_before,
        "raw_after": {key: fingerprint(path) for key, path in subject.items()},
        "threads_env": os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"),
    }


@pytest.fixture(scope="module")
def without_n4(subject, tmp_path_factory) -> dict:
    """No N4, no label, default (system) temporary folder."""
    out = tmp_path_factory.mktemp("out_raw")
    system_tmp = Path(tempfile.gettempdir())
    before = ants_like_entries(system_tmp)
    qc = pp.preprocess_subject(
        subject["image"], out / "image.nii.gz", out / "mask.nii.gz", out / "seg.nii.gz",
        options=pp.PreprocessOptions(n4=False), tmpdir=None
    )
    return {"qc": qc, "out": out, "tmp_new": ants_like_entries(system_tmp) - before}


def _outputs(run: dict) -> tuple[nib.Nifti1Image, nib.Nifti1Image, nib.Nifti1Image]:
    return tuple(nib.load(str(run["out"] / f"{name}.nii.gz")) for name in ("image", "mask", "seg"))


# --------------------------------------------------------------------------- geometry and values


def test_outputs_are_canonical_ras_on_expected_grid(with_n4):
    for output in _outputs(with_n4):
        assert nib.aff2axcodes(output.affine) == ("R", "A", "S")
        assert output.shape == EXPECTED_SHAPE
        np.testing.assert_allclose(output.header.get_zooms(), EXPECTED_SPACING)
        np.testing.assert_allclose(output.affine[:3, :3], np.diag(EXPECTED_SPACING), atol=1e-6)
    qc = with_n4["qc"]
    assert qc["output_shape"] == list(EXPECTED_SHAPE)
    assert qc["output_spacing_mm"] == pytest.approx(EXPECTED_SPACING)


def test_output_dtypes_and_value_ranges(with_n4):
    image, mask, seg = _outputs(with_n4)
    assert image.get_data_dtype() == np.float32
    assert mask.get_data_dtype() == np.uint8 and seg.get_data_dtype() == np.uint8
    x = np.asarray(image.dataobj)
    m = np.asarray(mask.dataobj)
    s = np.asarray(seg.dataobj)
    assert set(np.unique(m)) == {0, 1}
    assert set(np.unique(s)) == {0, 1}
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert x.max() > 0.99  # the upper percentile maps to 1
    assert np.all(x[m == 0] == 0)
    assert np.all(m[s == 1] == 1)  # lesion only inside the brain


def test_mask_is_template_brain_mask_on_output_grid(with_n4):
    _, mask, _ = _outputs(with_n4)
    expected = template_on_grid(mask, "mask") > 0.5
    got = np.asarray(mask.dataobj) > 0
    dice = 2 * (expected & got).sum() / (expected.sum() + got.sum())
    assert dice > 0.97


def test_image_matches_template_anatomy(with_n4):
    image, mask, _ = _outputs(with_n4)
    inside = np.asarray(mask.dataobj) > 0
    template = template_on_grid(image, "template")
    r = np.corrcoef(np.asarray(image.dataobj)[inside], template[inside])[0, 1]
    assert r > 0.9


def test_lesion_ends_up_at_known_template_location(with_n4):
    _, _, seg = _outputs(with_n4)
    lesion = np.asarray(seg.dataobj) > 0
    centroid = nib.affines.apply_affine(seg.affine, np.argwhere(lesion).mean(axis=0))
    assert np.linalg.norm(centroid - LESION_CENTRE_MNI) < 1.5  # mm; output voxels are 3 mm
    expected = lesion_sphere(seg.shape, seg.affine)
    dice = 2 * (expected & lesion).sum() / (expected.sum() + lesion.sum())
    assert dice > 0.7


def test_lesion_outside_brain_is_dropped_and_counted(with_n4, subject):
    qc = with_n4["qc"]
    template = load_mni152_template(resolution=2)
    blob = lesion_sphere(template.shape, template.affine, OUTSIDE_CENTRE_MNI, OUTSIDE_RADIUS_MM)
    lesion = lesion_sphere(template.shape, template.affine)
    assert not load_mni152_brain_mask(resolution=2).get_fdata()[blob].any()  # really outside the brain
    assert qc["lesion_voxels_outside_mask"] == pytest.approx(blob.sum(), rel=0.35)
    assert qc["lesion_voxels_template"] - qc["lesion_voxels_outside_mask"] == pytest.approx(lesion.sum(), rel=0.25)
    raw = nib.load(str(subject["seg"])).get_fdata()
    assert qc["lesion_voxels_input"] == int((raw > 0).sum())
    _, _, seg = _outputs(with_n4)
    assert qc["lesion_voxels_output"] == int(np.asarray(seg.dataobj).sum())
    # only the in-brain lesion survives: its volume in ml matches the ball's
    lesion_ml = qc["lesion_voxels_output"] * np.prod(EXPECTED_SPACING) / 1000
    assert lesion_ml == pytest.approx(4 / 3 * np.pi * LESION_RADIUS_MM**3 / 1000, rel=0.3)


# --------------------------------------------------------------------------- registration and QC


def test_registration_improves_correlation(with_n4):
    qc = with_n4["qc"]
    assert qc["registration_correlation_before"] < 0.6
    assert qc["registration_correlation_after"] > qc["registration_correlation_before"] + 0.3
    assert qc["registration_correlation_after"] > 0.85  # capped by the +-20 % bias field
    assert qc["registration_correlation_after_n4"] > 0.93


def test_brain_volume_follows_known_scaling(with_n4):
    mask = load_mni152_brain_mask(resolution=2)
    template_ml = (mask.get_fdata() > 0).sum() * 8.0 / 1000.0
    scale = abs(np.linalg.det(known_transform()[:3, :3]))
    assert with_n4["qc"]["brain_volume_template_ml"] == pytest.approx(template_ml, rel=1e-6)
    assert with_n4["qc"]["brain_volume_ml"] == pytest.approx(template_ml * scale, rel=0.02)


def test_qc_record_is_complete_and_json_serialisable(with_n4):
    qc = json.loads(json.dumps(with_n4["qc"]))
    assert qc["antspyx_version"] == "0.6.3"
    assert set(qc["intensity_percentiles"]) == {"p1", "p99"}
    p1, p99 = qc["intensity_percentiles"]["p1"], qc["intensity_percentiles"]["p99"]
    assert 0 < p1 < p99 < 1000 * 1.3  # raw scale: template [0, 1] * 1000 * bias
    steps = {"load", "resample", "template", "register", "registration_qc", "mask", "n4", "crop",
             "normalise", "downsample", "slice_crop", "write", "total"}
    assert steps <= set(qc["seconds"])
    assert qc["seconds"]["total"] == pytest.approx(sum(v for k, v in qc["seconds"].items() if k != "total"), abs=1e-3)
    assert with_n4["threads_env"] == "1"


def test_t2_like_contrast_registers_with_mutual_information(tmp_path):
    paths = make_subject(tmp_path / "t2", t2_like=True, seed=3)
    moving = pp.nifti_to_ants(nib.load(str(paths["image"])))
    fixed, fixed_mask = pp.load_registration_template("mni152", spacing_mm=2.0)
    work = tmp_path / "work"
    work.mkdir()
    transforms = pp.register_affine(fixed, moving, work, fixed_mask=fixed_mask)
    transform = ants.read_transform(transforms[0])
    # fixed (template) points -> moving (subject) points, ITK LPS coordinates
    to_lps = np.diag([-1.0, -1.0, 1.0])
    brain = np.argwhere(fixed_mask.numpy() > 0)[::50]
    template_ras = nib.affines.apply_affine(pp.ants_to_nifti(fixed).affine, brain)
    expected = nib.affines.apply_affine(known_transform(), template_ras) @ to_lps
    got = np.array([transform.apply_to_point(tuple(p)) for p in template_ras @ to_lps])
    assert np.linalg.norm(got - expected, axis=1).mean() < 1.0  # mm


@pytest.mark.parametrize("cohort,index", [("healthy", 4), ("ms", 5)])
def test_whole_head_t2_registers_to_the_skull_stripped_template(tmp_path, cohort, index):
    """Demo phantom T2 heads that the one-stage affine fit shrank into the template brain (|r| 0.001-0.05).

    The phantom knows where every subject voxel came from in MNI space (``template_mm``, pose plus a
    smooth deformation of about 2 mm); the registration's template -> subject map must send those MNI
    points back to the voxel centres. The one-stage affine registration missed them by 15 mm (healthy-004).
    """
    from brainuad.data.phantom import PhantomConfig, simulate_subject

    phantom = simulate_subject(cohort, index, 7, PhantomConfig(voxel_mm=(2.0, 2.0, 2.0), anisotropic_fraction=0.2,
                                                               template_resolution=2))
    moving = pp.resample_isotropic(pp.nifti_to_ants(nib.Nifti1Image(phantom.images["t2"].astype(np.float32),
                                                                    phantom.affine)), 2.0)
    fixed, fixed_mask = pp.load_registration_template("mni152", spacing_mm=2.0)
    metric_mask = ants.iMath(fixed_mask, "MD", 2)
    transforms = pp.register_affine(fixed, moving, tmp_path, fixed_mask=metric_mask)
    transform = ants.read_transform(transforms[0])
    brain = np.argwhere(phantom.brain > 0)[::40]
    subject_ras = nib.affines.apply_affine(phantom.affine, brain)
    template_ras = phantom.template_mm[:, brain[:, 0], brain[:, 1], brain[:, 2]].T
    to_lps = np.diag([-1.0, -1.0, 1.0])
    got = np.array([transform.apply_to_point(tuple(p)) for p in template_ras @ to_lps]) @ to_lps
    assert np.linalg.norm(got - subject_ras, axis=1).mean() < 4.0  # mm
    moved = ants.apply_transforms(fixed, moving, transforms, interpolator="linear").numpy()
    assert abs(pp.correlation_in_mask(moved, fixed.numpy(), fixed_mask.numpy() > 0)) > 0.5


# --------------------------------------------------------------------------- N4, files, inputs


def test_n4_reduces_known_bias(with_n4, without_n4):
    image_n4 = _outputs(with_n4)[0]
    image_raw = _outputs(without_n4)[0]
    wm = white_matter_on_grid(image_n4) & (np.asarray(image_n4.dataobj) > 0)
    assert wm.sum() > 500
    cv_n4 = coefficient_of_variation(np.asarray(image_n4.dataobj)[wm])
    cv_raw = coefficient_of_variation(np.asarray(image_raw.dataobj)[wm])
    assert cv_n4 < 0.7 * cv_raw


def test_correct_bias_recovers_unbiased_white_matter():
    fixed, mask = pp.load_registration_template("mni152", spacing_mm=2.0)
    template = fixed.numpy()
    affine = pp.ants_to_nifti(fixed).affine
    brain = mask.numpy() > 0
    biased = template * bias_field(template.shape, affine) * brain
    wm = ndimage.binary_erosion((template > 0.8) & brain)
    corrected = pp.correct_bias(ants.from_numpy(biased.astype(np.float32), origin=fixed.origin,
                                                   spacing=fixed.spacing, direction=fixed.direction), mask).numpy()
    cv_true = coefficient_of_variation(template[wm])
    cv_biased = coefficient_of_variation(biased[wm])
    cv_corrected = coefficient_of_variation(corrected[wm])
    assert cv_biased > 2 * cv_true  # the bias is large enough to matter
    assert cv_corrected < 1.4 * cv_true


def test_without_seg_writes_all_zero_seg(without_n4):
    _, mask, seg = _outputs(without_n4)
    assert seg.get_data_dtype() == np.uint8
    assert not np.asarray(seg.dataobj).any()
    assert np.asarray(mask.dataobj).any()
    qc = without_n4["qc"]
    assert qc["lesion_voxels_input"] == qc["lesion_voxels_output"] == qc["lesion_voxels_outside_mask"] == 0
    assert qc["registration_correlation_after_n4"] == qc["registration_correlation_after"]


def test_no_temporary_files_left(with_n4, without_n4):
    assert with_n4["work_left"] == []
    assert without_n4["tmp_new"] == set()
    assert sorted(p.name for p in with_n4["out"].iterdir()) == ["image.nii.gz", "mask.nii.gz", "seg.nii.gz"]


def test_raw_inputs_unchanged(with_n4):
    assert with_n4["raw_after"] == with_n4["raw_before"]


def test_invalid_input_raises_and_writes_nothing(tmp_path):
    bad = tmp_path / "bold.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8, 4), np.float32), np.eye(4)), str(bad))
    out = tmp_path / "out"
    with pytest.raises(InputDataError) as error:
        pp.preprocess_subject(bad, out / "i.nii.gz", out / "m.nii.gz", out / "s.nii.gz", tmpdir=tmp_path)
    assert str(bad) in str(error.value)
    assert not out.exists()


# --------------------------------------------------------------------------- array helpers


def test_crop_or_pad_keeps_world_positions_and_centres_the_box():
    array = np.zeros((20, 15, 10), np.float32)
    array[4:9, 2:12, 3:8] = 1.0  # bounding box centre (6, 6.5, 5)
    array[6, 7, 5] = 5.0
    affine = nib.affines.from_matvec(np.diag([2.0, 2.0, 3.0]), [-10.0, 5.0, 7.0])
    box, box_affine = pp.crop_or_pad(array, affine, pp.bounding_box_centre(array), (8, 24, 3))
    assert box.shape == (8, 24, 3)
    assert box.sum() == array[4:9, 2:12, 4:7].sum()  # z is cut to the 3 slices around 5, y is padded
    peak = np.argwhere(box == 5.0)[0]
    np.testing.assert_allclose(nib.affines.apply_affine(box_affine, peak),
                               nib.affines.apply_affine(affine, [6, 7, 5]))
    np.testing.assert_allclose(pp.bounding_box_centre(box > 0), (np.array(box.shape) - 1) / 2, atol=0.5)


def test_downsample_volume_grid_and_world_position():
    array = np.zeros((97, 64, 50), np.float32)
    array[40:52, 20:30, 10:16] = 1.0
    affine = nib.affines.from_matvec(np.diag([2.0, 2.0, 2.0]), [-96.0, -60.0, -40.0])
    small, small_affine = pp.downsample_volume(array, affine, 1.5, order=0)
    assert small.shape == (65, 43, 33)  # round(shape / 1.5)
    np.testing.assert_allclose(nib.affines.voxel_sizes(small_affine), 2.0 * np.array([97 / 65, 64 / 43, 50 / 33]))
    before = nib.affines.apply_affine(affine, np.argwhere(array > 0).mean(axis=0))
    after = nib.affines.apply_affine(small_affine, np.argwhere(small > 0).mean(axis=0))
    np.testing.assert_allclose(after, before, atol=1.5)
    # field of view (outer voxel edges) is unchanged
    edge = lambda a, shape: nib.affines.apply_affine(a, np.array(shape) - 0.5)  # noqa: E731
    np.testing.assert_allclose(edge(small_affine, small.shape), edge(affine, array.shape), atol=1e-6)
    smooth, _ = pp.downsample_volume(array, affine, 2.0, order=3)
    assert smooth.shape == (48, 32, 25) and smooth.dtype == np.float32


def test_remove_axial_slices():
    array = np.arange(4 * 3 * 10, dtype=np.float32).reshape(4, 3, 10)
    affine = nib.affines.from_matvec(np.diag([3.0, 3.0, 3.0]), [0.0, 0.0, -30.0])
    kept, kept_affine = pp.remove_axial_slices(array, affine, 2)
    np.testing.assert_array_equal(kept, array[:, :, 2:8])
    np.testing.assert_allclose(kept_affine[:3, 3], [0.0, 0.0, -24.0])
    with pytest.raises(ValueError):
        pp.remove_axial_slices(array, affine, 5)


def test_normalise_percentiles_against_known_distribution():
    values = np.arange(101, dtype=np.float32)  # percentiles p1 = 1, p99 = 99
    image = np.full((101, 2, 1), 1000.0, np.float32)  # bright outside the mask
    image[:, 0, 0] = values
    mask = np.zeros(image.shape, bool)
    mask[:, 0, 0] = True
    out, (low, high) = pp.normalise_percentiles(image, mask, (1, 99))
    assert (low, high) == pytest.approx((1.0, 99.0))
    np.testing.assert_allclose(out[:, 0, 0], np.clip((values - 1) / 98, 0, 1), atol=1e-6)
    assert np.all(out[:, 1, 0] == 0)
    assert out.dtype == np.float32
    with pytest.raises(InputDataError, match="constant"):
        pp.normalise_percentiles(np.ones((4, 4, 4)), np.ones((4, 4, 4), bool), (1, 99), path="flat.nii.gz")


def write_las_template(folder: Path) -> tuple[Path, Path]:
    """nilearn's 2 mm template and mask stored with a flipped x axis (LAS)."""
    template = load_mni152_template(resolution=2)
    mask = load_mni152_brain_mask(resolution=2)
    flip = nib.affines.from_matvec(np.diag([-1.0, 1.0, 1.0]), [template.shape[0] - 1, 0, 0])
    paths = (folder / "tpl.nii.gz", folder / "tpl_mask.nii.gz")
    for path, image in zip(paths, (template, mask)):
        data = np.asarray(image.dataobj)[::-1].astype(np.float32)
        nib.save(nib.Nifti1Image(data, image.affine @ flip), str(path))
    assert nib.aff2axcodes(nib.load(str(paths[0])).affine) == ("L", "A", "S")
    return paths


def test_user_template_path(tmp_path):
    mask = load_mni152_brain_mask(resolution=2)
    template_path, mask_path = write_las_template(tmp_path)
    fixed, fixed_mask = pp.load_registration_template(template_path, mask_path, spacing_mm=4.0)
    assert fixed.spacing == pytest.approx((4.0, 4.0, 4.0))
    assert fixed.shape == fixed_mask.shape
    assert set(np.unique(fixed_mask.numpy())) == {0.0, 1.0}
    volume_ml = fixed_mask.numpy().sum() * 64 / 1000
    assert volume_ml == pytest.approx((mask.get_fdata() > 0).sum() * 8 / 1000, rel=0.05)
    with pytest.raises(ValueError, match="template_mask"):
        pp.load_registration_template(template_path, None)


def test_non_ras_user_template_gives_ras_outputs(subject, tmp_path):
    template_path, mask_path = write_las_template(tmp_path)
    out = tmp_path / "out"
    qc = pp.preprocess_subject(
        subject["image"], out / "image.nii.gz", out / "mask.nii.gz", out / "seg.nii.gz", seg_path=subject["seg"],
        options=pp.PreprocessOptions(template=template_path, template_mask=mask_path, spacing_mm=4.0,
                                     crop_pad=(48, 48, 40), downsample=1, slice_crop=2),
        tmpdir=tmp_path,
    )
    image, mask, seg = (nib.load(str(out / f"{name}.nii.gz")) for name in ("image", "mask", "seg"))
    assert nib.aff2axcodes(seg.affine) == ("R", "A", "S")
    assert seg.shape == (48, 48, 36) and qc["output_spacing_mm"] == pytest.approx((4.0, 4.0, 4.0))
    lesion = np.asarray(seg.dataobj) > 0
    centroid = nib.affines.apply_affine(seg.affine, np.argwhere(lesion).mean(axis=0))
    assert np.linalg.norm(centroid - LESION_CENTRE_MNI) < 3.0  # 4 mm voxels
    expected_mask = template_on_grid(mask, "mask") > 0.5
    got = np.asarray(mask.dataobj) > 0
    assert 2 * (expected_mask & got).sum() / (expected_mask.sum() + got.sum()) > 0.95
