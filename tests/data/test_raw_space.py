"""brainuad.data.preprocess.raw_space: pre-processed results mapped back onto the raw scan.

A phantom tumour subject (scanner frame: random head pose, 3 mm voxels) is pre-processed (affine
registration onto MNI152); its pre-processed lesion label, mapped back with the inverse of the stored
registration, must cover the phantom's own raw label (which the code under test never sees).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from brainuad.data import preprocess as pp
from brainuad.data.phantom import generate_cohort
from brainuad.data.preprocess.raw_space import to_raw_space
from brainuad.errors import InputDataError

OPTIONS = dict(spacing_mm=3.0, crop_pad=(64, 72, 60), downsample=1, slice_crop=2, n4=False,
               reg_iterations=(40, 20), reg_shrink_factors=(2, 1), reg_smoothing_sigmas=(1, 0))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    folder = tmp_path_factory.mktemp("phantom")
    table = generate_cohort("tumour", 1, folder, seed=3, voxel_mm=(3.0, 3.0, 3.0), contrasts=("t2",))
    row = table.iloc[0]
    out = folder / "out"
    files = {k: out / f"{k}.nii.gz" for k in ("image", "mask", "seg", "ignore")}
    qc = pp.preprocess_subject(folder / row["t2"], files["image"], files["mask"], files["seg"],
                               out_ignore=files["ignore"], seg_path=folder / row["seg"], threads=1,
                               tmpdir=folder, options=pp.PreprocessOptions(**OPTIONS))
    return {"image": folder / row["t2"], "seg": folder / row["seg"], "qc": qc, "files": files}


def test_transform_is_stored_as_json_affine(subject):
    records = subject["qc"]["registration_transform"]
    assert len(records) >= 1
    assert all(len(r["parameters"]) == 12 and len(r["fixed_parameters"]) == 3 for r in records)


def test_label_round_trip_lands_on_its_raw_voxels(subject):
    raw_seg = nib.load(str(subject["seg"]))
    back = to_raw_space(nib.load(str(subject["files"]["seg"])), subject["image"],
                        subject["qc"]["registration_transform"], interpolation="label")
    assert back.shape == raw_seg.shape
    np.testing.assert_allclose(back.affine, raw_seg.affine, atol=1e-4)
    assert set(np.unique(back.get_fdata())) <= {0.0, 1.0}
    assert dice(back.get_fdata(), raw_seg.get_fdata()) >= 0.9
    # without the registration (header placement only) the label lands elsewhere: the test can fail
    header_only = to_raw_space(nib.load(str(subject["files"]["seg"])), subject["image"], [], interpolation="label")
    assert dice(header_only.get_fdata(), raw_seg.get_fdata()) < 0.5


def test_continuous_map_keeps_its_values(subject):
    seg = nib.load(str(subject["files"]["seg"]))
    scaled = nib.Nifti1Image(seg.get_fdata().astype(np.float32) * 2.5, seg.affine)
    back = to_raw_space(scaled, subject["image"], subject["qc"]["registration_transform"]).get_fdata()
    raw = nib.load(str(subject["seg"])).get_fdata() > 0
    assert back.max() <= 2.5 + 1e-4 and back.min() >= -1e-4
    assert np.median(back[raw]) > 2.0  # lesion voxels get (almost) the lesion's value


def test_missing_or_nonlinear_transform_is_a_clear_error(subject, tmp_path):
    seg = nib.load(str(subject["files"]["seg"]))
    with pytest.raises(InputDataError, match="re-run the preprocess rule"):
        to_raw_space(seg, subject["image"], None, qc_path=tmp_path / "s_qc.json")
    with pytest.raises(InputDataError, match="not linear"):
        to_raw_space(seg, subject["image"], [{"type": "unsupported", "file": "reg_1Warp.nii.gz"}],
                     qc_path=tmp_path / "s_qc.json")
