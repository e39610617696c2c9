"""Tests for brainuad.data.preprocess.acceptance: unusable subjects are excluded with the cause named."""

from __future__ import annotations

import json
import logging

import nibabel as nib
import numpy as np
import pytest

from brainuad.data.preprocess import PreprocessOptions
from brainuad.data.preprocess.acceptance import MIN_FIELD_OF_VIEW_MM, check_acquisition, check_registration
from brainuad.data.preprocess.exclusion import preprocess_or_exclude
from brainuad.errors import InputDataError

SHAPE = (40, 40, 30)


def image(zooms=(2.0, 2.0, 2.0), nonzero: int | None = None) -> nib.Nifti1Image:
    """A (40, 40, 30) image, every voxel 100 or only the first ``nonzero`` voxels (C order)."""
    data = np.full(SHAPE, 100.0, np.float32)
    if nonzero is not None:
        data.ravel()[nonzero:] = 0.0
    return nib.Nifti1Image(data, np.diag([*zooms, 1.0]))


def test_good_image_passes():
    check_acquisition(image(), "good.nii.gz", PreprocessOptions())
    check_acquisition(image((2.0, 2.0, 8.0), nonzero=SHAPE[0] * SHAPE[1] * 3), "thick.nii.gz", PreprocessOptions())


def test_almost_empty_image():
    with pytest.raises(InputDataError, match=r"almost empty: 1 of 48000 voxels \(2.1e-05\) are non-zero") as error:
        check_acquisition(image(nonzero=1), "one.nii.gz", PreprocessOptions())
    assert error.value.path == "one.nii.gz"
    check_acquisition(image(nonzero=1), "one.nii.gz", PreprocessOptions(min_nonzero_fraction=0))


def test_anisotropic_voxels():
    with pytest.raises(InputDataError, match=r"0.5 x 0.5 x 19 mm is too anisotropic .* 38 > max_voxel_anisotropy 8"):
        check_acquisition(image((0.5, 0.5, 19.0)), "slices.nii.gz", PreprocessOptions())
    check_acquisition(image((2.0, 2.0, 16.0)), "slices.nii.gz", PreprocessOptions(max_voxel_anisotropy=8))


def test_field_of_view_too_small_for_a_brain():
    assert 40 * 0.2 < MIN_FIELD_OF_VIEW_MM
    with pytest.raises(InputDataError, match=r"field of view 8 x 8 x 6 mm \(40 x 40 x 30 voxels of 0.2 x 0.2 x 0.2"):
        check_acquisition(image((0.2, 0.2, 0.2)), "small.nii.gz", PreprocessOptions())


def test_registration_similarity_floor():
    options = PreprocessOptions(min_registration_similarity=0.15)
    check_registration(0.28, "ok.nii.gz", options)
    check_registration(None, "no_template.nii.gz", options)
    with pytest.raises(InputDataError, match="registration to the template failed: .* 0.050, below "
                                             "min_registration_similarity 0.15") as error:
        check_registration(0.05, "bad.nii.gz", options)
    assert error.value.path == "bad.nii.gz"
    check_registration(0.0, "bad.nii.gz", PreprocessOptions(min_registration_similarity=0))
    # on by default, between the lowest registered phantom scan (0.50) and the highest failure (spikes, 0.19)
    check_registration(0.50, "lowest_phantom.nii.gz", PreprocessOptions())
    with pytest.raises(InputDataError, match="0.190, below min_registration_similarity 0.3"):
        check_registration(0.19, "spikes.nii.gz", PreprocessOptions())


def job(tmp_path, strict):
    raw = tmp_path / "one_voxel.nii.gz"
    nib.save(image(nonzero=1), str(raw))
    outputs = {k: tmp_path / f"sub_{k}.nii.gz" for k in ("image", "mask", "seg", "ignore")}
    outputs["qc"] = tmp_path / "sub_qc.json"
    return raw, outputs, lambda: preprocess_or_exclude(
        raw, outputs, PreprocessOptions(), dataset="ds", subject_id="sub", source="src", strict=strict,
        tmpdir=tmp_path, log=logging.getLogger("test"))


def test_job_excludes_an_almost_empty_image_unless_strict(tmp_path):
    raw, outputs, run = job(tmp_path, strict=False)
    record = run()
    assert json.loads(outputs["qc"].read_text()) == record
    assert record["excluded"] is True and record["file"] == str(raw) and "almost empty" in record["reason"]
    (tmp_path / "strict").mkdir()
    _, _, run = job(tmp_path / "strict", strict=True)
    with pytest.raises(InputDataError, match="almost empty"):
        run()
