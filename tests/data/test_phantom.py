"""Phantom cohort generator: files, determinism, anatomy, contrast, noise, bias, lesions.

Expected values are computed here independently of the generator wherever possible:
tissue maps are re-sampled from nilearn's own MNI152 maps at the template coordinates
the generator reports, volumes come from voxel counts and the NIfTI affine, and the
Rician background is compared with the Rayleigh distribution.
"""

from __future__ import annotations

import inspect
import math

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from brainuad.data import phantom as P

SEED = 7


# ----------------------------------------------------------------------------------------
# fixtures and independent helpers
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mni():
    """nilearn's 2 mm MNI152 maps (unpadded) and their affine, loaded here, not by phantom."""
    from nilearn import datasets

    gm_img = datasets.load_mni152_gm_template(resolution=2)
    brain = datasets.load_mni152_brain_mask(resolution=2).get_fdata() > 0.5
    gm = gm_img.get_fdata() * brain
    wm = datasets.load_mni152_wm_template(resolution=2).get_fdata() * brain
    csf = np.clip(brain - gm - wm, 0, 1)
    maps = {"gm": gm, "wm": wm, "csf": csf, "brain": brain}
    return gm_img.affine, {k: v.astype(np.float32) for k, v in maps.items()}


_RESAMPLED = {}


def in_subject(mni, phantom, name, order=1):
    """A nilearn map sampled at the subject's reported template coordinates, (X, Y, Z)."""
    key = (id(phantom), name, order)
    if key not in _RESAMPLED:
        affine, maps = mni
        inverse = np.linalg.inv(affine)
        points = phantom.template_mm.reshape(3, -1).astype(np.float64)
        index = inverse[:3, :3] @ points + inverse[:3, 3:]
        values = ndimage.map_coordinates(maps[name], index, order=order, mode="constant", cval=0.0)
        _RESAMPLED[key] = (phantom, values.reshape(phantom.brain.shape))  # keep phantom alive: stable id
    return _RESAMPLED[key][1]


@pytest.fixture(scope="module")
def subjects():
    """Subject 1 of every cohort at default settings (plus FLAIR), simulated once."""
    return {c: P.simulate_subject(c, 1, SEED, contrasts=("t1", "t2", "flair")) for c in P.COHORTS}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Two tumour subjects written to disk with default knobs."""
    out = tmp_path_factory.mktemp("tumour")
    return out, P.generate_cohort("tumour", 2, out, seed=3)


def voxel_volume_ml(affine):
    return abs(np.linalg.det(affine[:3, :3])) / 1000.0


# ----------------------------------------------------------------------------------------
# files, table, determinism
# ----------------------------------------------------------------------------------------


def test_files_and_participants_table(written):
    out, table = written
    on_disk = pd.read_csv(out / "participants.tsv", sep="\t", dtype={"seg": str})
    assert list(on_disk.columns) == ["subject", "cohort", "age", "sex", "t1", "t2", "seg"]
    assert list(on_disk["subject"]) == ["tumour-001", "tumour-002"]
    pd.testing.assert_frame_equal(on_disk, table, check_dtype=False)
    assert set(on_disk["sex"]) <= {"F", "M"}
    assert ((on_disk["age"] >= 20) & (on_disk["age"] <= 86)).all()
    for _, row in on_disk.iterrows():
        images = {k: nib.load(out / row[k]) for k in ("t1", "t2", "seg")}
        shapes = {img.shape for img in images.values()}
        assert len(shapes) == 1 and len(next(iter(shapes))) == 3
        for img in images.values():
            np.testing.assert_array_equal(img.affine, images["t1"].affine)
            assert img.header["sform_code"] == 1 and img.header["qform_code"] == 1
        np.testing.assert_allclose(images["t1"].header.get_zooms(), (2.0, 2.0, 2.0))
        assert images["t1"].get_data_dtype() == np.int16
        seg = np.asanyarray(images["seg"].dataobj)
        assert seg.dtype == np.uint8 and set(np.unique(seg)) == {0, 1}
        # scanner-like intensities: a few hundred to ~1000+, never negative
        t1 = np.asanyarray(images["t1"].dataobj)
        assert t1.min() >= 0 and 500 < np.percentile(t1, 99.9) < 3000


def test_healthy_cohort_has_no_segmentation(tmp_path):
    table = P.generate_cohort("healthy", 1, tmp_path, seed=1, contrasts=["t1"])
    assert list(table.columns) == ["subject", "cohort", "age", "sex", "t1", "seg"]
    assert table.loc[0, "seg"] == ""
    on_disk = pd.read_csv(tmp_path / "participants.tsv", sep="\t")
    assert on_disk["seg"].isna().all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["healthy-001_t1.nii.gz", "participants.tsv"]


def test_same_seed_is_byte_identical_and_prefix_stable(written, tmp_path):
    out, table = written
    again = P.generate_cohort("tumour", 1, tmp_path / "again", seed=3)  # fewer subjects, same seed
    pd.testing.assert_frame_equal(again, table.iloc[:1])
    for name in ("tumour-001_t1.nii.gz", "tumour-001_t2.nii.gz", "tumour-001_seg.nii.gz"):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes()
    other = P.generate_cohort("tumour", 1, tmp_path / "other", seed=4)
    first = nib.load(out / "tumour-001_t1.nii.gz")
    changed = nib.load(tmp_path / "other" / "tumour-001_t1.nii.gz")
    assert not (first.shape == changed.shape and np.array_equal(first.dataobj, changed.dataobj)
                and other.loc[0, "age"] == table.loc[0, "age"])
    # subjects differ from each other too
    second = nib.load(out / "tumour-002_t1.nii.gz")
    assert not np.array_equal(first.dataobj, second.dataobj)


def test_in_memory_determinism(subjects):
    again = P.simulate_subject("stroke", 1, SEED, contrasts=("t1", "t2", "flair"))
    first = subjects["stroke"]
    for contrast in ("t1", "t2", "flair"):
        np.testing.assert_array_equal(again.images[contrast], first.images[contrast])
    np.testing.assert_array_equal(again.seg, first.seg)
    np.testing.assert_array_equal(again.affine, first.affine)


def test_t1ce_is_t1_with_an_enhanced_tumour_core(subjects):
    """The derived t1ce contrast (P8.1-Tab2): the T1 class means except a tumour core brighter than white
    matter; its own bias and noise streams; asking for it changes none of the other contrasts' images."""
    with_ce = P.simulate_subject("tumour", 1, SEED, contrasts=("t1", "t2", "flair", "t1ce"))
    for contrast in ("t1", "t2", "flair"):
        np.testing.assert_array_equal(with_ce.images[contrast], subjects["tumour"].images[contrast])
    means = with_ce.class_means
    assert means["t1ce"]["tumour_core"] > means["t1ce"]["wm"] > means["t1"]["tumour_core"]
    assert means["t1ce"]["tumour_core"] / means["t1"]["tumour_core"] == pytest.approx(1.45 / 0.40)
    assert all(means["t1ce"][k] == means["t1"][k] for k in means["t1"] if k != "tumour_core")
    core = with_ce.seg.astype(bool)
    assert with_ce.images["t1ce"][core].mean() > with_ce.images["t1"][core].mean()
    assert not np.array_equal(with_ce.bias["t1ce"], with_ce.bias["t1"])


# ----------------------------------------------------------------------------------------
# geometry: world frame, pose, anisotropic voxels
# ----------------------------------------------------------------------------------------


def test_world_frame_and_pose(mni, subjects):
    phantom = subjects["healthy"]
    shape = np.array(phantom.brain.shape)
    np.testing.assert_allclose(shape, np.round(np.array([220, 240, 200]) / 2.0))
    # the field of view is centred on the isocentre
    centre = phantom.affine @ np.append((shape - 1) / 2.0, 1.0)
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-6)
    # the head pose is a proper misalignment: rotated, scaled, translated
    linear = phantom.scanner_from_template[:3, :3]
    scales = np.linalg.svd(linear, compute_uv=False)
    assert np.all(np.abs(scales - 1) <= 0.08 * 1.01 + 1e-9)
    rotation = linear / np.cbrt(np.linalg.det(linear))
    angle = math.degrees(math.acos(np.clip((np.trace(rotation) - 1) / 2, -1, 1)))
    assert 0.5 < angle < 18.0
    # brain centroid in scanner space = forward pose of the nilearn brain centroid (+- warp)
    affine, maps = mni
    mni_voxels = np.argwhere(maps["brain"] > 0)
    mni_centroid = (affine[:3, :3] @ mni_voxels.mean(axis=0)) + affine[:3, 3]
    expected = phantom.scanner_from_template[:3, :3] @ mni_centroid + phantom.scanner_from_template[:3, 3]
    brain = in_subject(mni, phantom, "brain", order=0) > 0.5
    observed = phantom.affine[:3, :3] @ np.argwhere(brain).mean(axis=0) + phantom.affine[:3, 3]
    assert np.linalg.norm(observed - expected) < 4.0
    assert np.all(np.abs(expected) < 10.0 + 20.0)  # translation +-10 mm plus rotation about the centre
    # brain volume scales with the determinant of the pose
    volume = brain.sum() * voxel_volume_ml(phantom.affine)
    template_volume = maps["brain"].sum() * voxel_volume_ml(affine)
    assert volume / template_volume == pytest.approx(np.linalg.det(linear), rel=0.05)


def test_anisotropic_subjects_get_the_requested_voxels():
    phantom = P.simulate_subject("healthy", 2, SEED, anisotropic_fraction=1.0, anisotropic_mm=(2.0, 2.0, 5.0),
                                 orientation="LAS", contrasts=("t1",))
    np.testing.assert_allclose(nib.affines.voxel_sizes(phantom.affine), (2.0, 2.0, 5.0))
    assert phantom.images["t1"].shape == (110, 120, 40)
    assert nib.aff2axcodes(phantom.affine) == ("L", "A", "S")
    assert phantom.voxel_mm == (2.0, 2.0, 5.0)
    # isotropic by default; the fraction draw does not depend on the voxel knobs
    iso = P.simulate_subject("healthy", 2, SEED, anisotropic_fraction=0.0, contrasts=("t1",))
    np.testing.assert_allclose(nib.affines.voxel_sizes(iso.affine), (2.0, 2.0, 2.0))
    assert iso.age == phantom.age and iso.sex == phantom.sex


def test_anisotropic_fraction_selects_some_subjects():
    chosen = [P._subject_streams(SEED, "ms", i)["acquisition"].random() < 0.5 for i in range(1, 41)]
    assert 8 < sum(chosen) < 32


# ----------------------------------------------------------------------------------------
# contrast, partial volume, ageing
# ----------------------------------------------------------------------------------------


def test_healthy_tissue_contrast_ordering(mni, subjects):
    phantom = subjects["healthy"]
    tissue = {k: in_subject(mni, phantom, k) for k in ("gm", "wm", "csf")}
    means = {}
    for contrast in ("t1", "t2", "flair"):
        image = phantom.images[contrast].astype(np.float64)
        means[contrast] = {k: image[p > 0.9].mean() for k, p in tissue.items()}
    t1, t2, flair = means["t1"], means["t2"], means["flair"]
    assert t1["wm"] > 1.2 * t1["gm"] and t1["gm"] > 1.5 * t1["csf"]
    assert t2["csf"] > 1.3 * t2["gm"] and t2["gm"] > 1.1 * t2["wm"]
    assert flair["gm"] > 1.1 * flair["wm"] and flair["wm"] > 2.0 * flair["csf"]
    # partial volume: half GM / half WM voxels lie between pure GM and pure WM
    mixed = (np.abs(tissue["gm"] - 0.5) < 0.15) & (np.abs(tissue["wm"] - 0.5) < 0.15)
    assert mixed.sum() > 100
    clean = phantom.clean["t1"] / phantom.bias["t1"]
    pure = {k: np.median(clean[p > 0.95]) for k, p in tissue.items()}
    assert pure["gm"] < np.median(clean[mixed]) < pure["wm"]


def test_age_atrophy_enlarges_csf():
    template = P.load_template(2)
    config = P.PhantomConfig()
    young = P._subject_anatomy(template, 20.0, config, np.random.default_rng(0))
    old = P._subject_anatomy(template, 80.0, config, np.random.default_rng(0))
    inside = template.brain > 0.5
    assert old["csf"][inside].sum() > 1.1 * young["csf"][inside].sum()
    assert old["gm"].sum() < young["gm"].sum()
    ventricles = ndimage.binary_dilation(template.ventricles, iterations=2)
    assert old["csf"][ventricles].mean() > young["csf"][ventricles].mean() + 0.05
    flat = P.PhantomConfig(age_atrophy=0.0)
    np.testing.assert_array_equal(P._subject_anatomy(template, 20.0, flat, np.random.default_rng(0))["gm"],
                                  P._subject_anatomy(template, 80.0, flat, np.random.default_rng(0))["gm"])


# ----------------------------------------------------------------------------------------
# noise and bias
# ----------------------------------------------------------------------------------------


def test_rician_background(subjects):
    phantom = subjects["healthy"]
    for contrast in ("t1", "t2"):
        background = phantom.images[contrast][phantom.clean[contrast] == 0].astype(np.float64)
        assert background.size > 100_000
        sigma = phantom.noise_sigma[contrast]
        # Rayleigh(sigma): mean sigma sqrt(pi/2), std sigma sqrt(2 - pi/2); int16 rounding is tiny
        assert background.mean() == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=0.02)
        assert background.std() == pytest.approx(sigma * math.sqrt(2 - math.pi / 2), rel=0.03)
        assert background.mean() > 5 and (background == 0).mean() < 0.01
        # noise level relative to the brightest tissue, as configured (0.02-0.04)
        brightest = max(phantom.class_means[contrast][k] for k in ("wm", "gm", "csf"))
        assert 0.02 <= sigma / brightest <= 0.04


def test_bias_field_is_smooth_and_changes_intensities(mni, subjects):
    phantom = subjects["healthy"]
    flat = P.simulate_subject("healthy", 1, SEED, contrasts=("t1",), bias_strength=0.0)
    np.testing.assert_array_equal(flat.bias["t1"], np.ones_like(flat.bias["t1"]))
    brain = phantom.brain > 0
    ratio = phantom.clean["t1"][brain] / flat.clean["t1"][brain]
    np.testing.assert_allclose(ratio, phantom.bias["t1"][brain], rtol=1e-5)
    assert ratio.max() / ratio.min() > 1.15
    assert ratio.min() >= 1 / 1.25 - 1e-6 and ratio.max() <= 1.25 + 1e-6
    # smooth: neighbouring voxels differ by well under 1 %
    log_bias = np.log(phantom.bias["t1"])
    for axis in range(3):
        assert np.abs(np.diff(log_bias, axis=axis)).max() < 0.01
    # the stored white matter really is brighter where the field is high
    wm = (in_subject(mni, phantom, "wm") > 0.9) & brain
    field = phantom.bias["t1"]
    low, high = np.quantile(field[wm], [0.2, 0.8])
    bright, dark = wm & (field >= high), wm & (field <= low)
    expected = field[bright].mean() / field[dark].mean()
    assert expected > 1.05
    image = phantom.images["t1"].astype(np.float64)
    assert image[bright].mean() / image[dark].mean() == pytest.approx(expected, rel=0.02)
    # different contrasts get different fields
    assert not np.allclose(phantom.bias["t1"], phantom.bias["t2"])


# ----------------------------------------------------------------------------------------
# lesions
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cohort", ["tumour", "ms", "stroke", "wmh"])
def test_labels_binary_nonempty_inside_brain(mni, subjects, cohort):
    phantom = subjects[cohort]
    seg = phantom.seg
    assert seg.dtype == np.uint8 and set(np.unique(seg)) == {0, 1}
    assert seg.shape == phantom.images["t1"].shape
    assert np.all(phantom.brain[seg > 0] == 1)
    independent_brain = in_subject(mni, phantom, "brain", order=0)
    assert (independent_brain[seg > 0] > 0.5).mean() > 0.999
    tissue = in_subject(mni, phantom, "gm") + in_subject(mni, phantom, "wm")
    assert np.median(tissue[seg > 0]) > 0.5  # lesions sit in brain tissue, not in CSF / outside
    assert subjects["healthy"].seg is None


@pytest.mark.parametrize("cohort", ["tumour", "ms", "wmh"])
def test_lesions_are_t2_hyperintense(mni, subjects, cohort):
    phantom = subjects[cohort]
    lesion = phantom.seg > 0
    far = ~ndimage.binary_dilation(lesion, iterations=3)
    nawm = (in_subject(mni, phantom, "wm") > 0.9) & far
    t2 = phantom.images["t2"].astype(np.float64)
    assert t2[lesion].mean() > 1.2 * t2[nawm].mean()
    flair = phantom.images["flair"].astype(np.float64)
    assert flair[lesion].mean() > 1.2 * flair[nawm].mean()
    t1 = phantom.images["t1"].astype(np.float64)
    assert t1[lesion].mean() < t1[nawm].mean()  # T1 hypointense (subtly for WMH)


def test_stroke_is_t1_dark_csf_like_in_one_hemisphere(mni, subjects):
    phantom = subjects["stroke"]
    lesion = phantom.seg > 0
    nawm = (in_subject(mni, phantom, "wm") > 0.9) & ~ndimage.binary_dilation(lesion, iterations=3)
    gm = (in_subject(mni, phantom, "gm") > 0.9) & ~lesion
    t1 = phantom.images["t1"].astype(np.float64)
    t2 = phantom.images["t2"].astype(np.float64)
    assert t1[lesion].mean() < 0.6 * t1[nawm].mean()
    assert t1[lesion].mean() < t1[gm].mean()
    assert t2[lesion].mean() > 1.2 * t2[gm].mean()
    x = phantom.template_mm[0][lesion]
    assert np.all(x > 0) or np.all(x < 0)
    # near the cortex: some lesion voxels are within 6 mm of the brain surface (template space)
    depth = ndimage.distance_transform_edt(mni[1]["brain"] > 0.5, sampling=2.0)
    affine = mni[0]
    index = np.linalg.inv(affine)[:3, :3] @ phantom.template_mm[:, lesion] + np.linalg.inv(affine)[:3, 3:]
    assert ndimage.map_coordinates(depth, index, order=1).min() < 6.0


def test_lesion_sizes_and_locations(mni, subjects):
    ml = {c: voxel_volume_ml(subjects[c].affine) for c in ("tumour", "ms", "wmh")}
    tumour_ml = subjects["tumour"].seg.sum() * ml["tumour"]
    assert 4.0 < tumour_ml < 270.0  # radius ~15-30 mm
    labels, count = ndimage.label(subjects["ms"].seg)
    sizes = ndimage.sum_labels(subjects["ms"].seg, labels, np.arange(1, count + 1)) * ml["ms"]
    assert count >= 2 and sizes.max() < 3.0
    assert tumour_ml > 10 * np.median(sizes) and tumour_ml > sizes.sum()
    # MS and WMH are periventricular: within ~15 mm of the lateral ventricles (template space)
    template = P.load_template(2)
    for cohort in ("ms", "wmh"):
        phantom = subjects[cohort]
        index = (phantom.template_mm[:, phantom.seg > 0] - template.affine[:3, 3:]) / template.resolution
        distance = ndimage.map_coordinates(template.ventricle_mm, index, order=1)
        assert np.percentile(distance, 95) < 15.0


def test_tumour_mass_effect_pushes_tissue():
    kwargs = dict(contrasts=("t2",))
    with_push = P.simulate_subject("tumour", 1, SEED, **kwargs)
    without = P.simulate_subject("tumour", 1, SEED, tumour_mass_effect=0.0, **kwargs)
    assert with_push.seg.sum() > 1.1 * without.seg.sum()
    centre = np.array(with_push.lesions[0]["centre_mm"])
    # tissue near the tumour is sampled from closer to its centre (pushed outwards)
    lesion = with_push.seg > 0
    ring = ndimage.binary_dilation(lesion, iterations=3) & ~lesion
    pushed = np.linalg.norm(with_push.template_mm[:, ring] - centre[:, None], axis=0)
    unpushed = np.linalg.norm(without.template_mm[:, ring] - centre[:, None], axis=0)
    assert np.mean(pushed < unpushed) > 0.95


# ----------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------


def test_generate_cohort_defaults_match_config():
    config_defaults = {f.name: f.default for f in P.PhantomConfig.__dataclass_fields__.values()}
    keywords = [p for p in inspect.signature(P.generate_cohort).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert len(keywords) == 7
    for parameter in keywords:
        assert parameter.default == config_defaults[parameter.name], parameter.name


def test_config_validation(tmp_path):
    assert P.PhantomConfig(voxel_mm=[2, 2, 2], contrasts=["t1"]) == P.PhantomConfig(voxel_mm=(2, 2, 2),
                                                                                    contrasts=("t1",))
    with pytest.raises(ValueError, match="contrasts"):
        P.PhantomConfig(contrasts=("t1", "dwi"))
    with pytest.raises(ValueError, match="range"):
        P.PhantomConfig(tumour_radius_mm=(30, 15))
    with pytest.raises(ValueError, match="orientation"):
        P.PhantomConfig(orientation="XYZ")
    with pytest.raises(TypeError):
        P.generate_cohort("ms", 1, tmp_path, seed=0, not_a_knob=1)
    with pytest.raises(ValueError, match="cohort"):
        P.generate_cohort("glioma", 1, tmp_path, seed=0)
    assert not any(tmp_path.iterdir())
