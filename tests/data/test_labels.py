"""Tests for brainuad.data.labels: a raw label split into lesion / ignore masks by the manifest's values."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from brainuad.data.labels import label_arrays
from brainuad.errors import InputDataError


@pytest.fixture
def label(tmp_path):
    """4 x 3 x 2 voxels: values 0 (18 voxels), 1 (3), 2 (2), 4 (1)."""
    data = np.zeros((4, 3, 2), dtype=np.uint8)
    data[0, 0, :] = 1
    data[1, 0, 0] = 1
    data[2, 1, :] = 2
    data[3, 2, 1] = 4
    path = tmp_path / "seg.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path, data


def test_empty_lesion_values_fuse_every_positive_value(label):
    path, data = label
    lesion, ignore = label_arrays(path)
    assert lesion.dtype == np.uint8 and lesion.shape == (4, 3, 2) and ignore is None
    assert np.array_equal(lesion, (data > 0).astype(np.uint8)) and int(lesion.sum()) == 6


def test_lesion_and_ignore_values_as_text_or_sequence(label):
    path, data = label
    lesion, ignore = label_arrays(path, "1", "2")
    assert int(lesion.sum()) == 3 and int(ignore.sum()) == 2
    assert ignore[2, 1, 0] == 1 and lesion[3, 2, 1] == 0  # 4 is neither lesion nor ignored
    lesion, ignore = label_arrays(path, [1, 4], ())
    assert int(lesion.sum()) == 4 and ignore is None
    lesion, ignore = label_arrays(path, "1;4", "4")  # an ignored value is never lesion
    assert int(lesion.sum()) == 3 and int(ignore.sum()) == 1 and not (lesion & ignore).any()
    lesion, ignore = label_arrays(path, "", "2")
    assert int(lesion.sum()) == 4 and int(ignore.sum()) == 2


def test_unreadable_label_names_the_file(tmp_path):
    with pytest.raises(InputDataError, match="does not exist"):
        label_arrays(tmp_path / "missing.nii.gz")
