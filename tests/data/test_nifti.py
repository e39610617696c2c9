"""Tests for brainuad.data.nifti: every bad input raises InputDataError naming the file."""

from __future__ import annotations

import gzip
import hashlib
import struct
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainuad.data import nifti
from brainuad.data.nifti import check_brain_mask, load_image, load_label, save_nifti
from brainuad.errors import InputDataError

AFFINE = np.array([[-2.0, 0, 0, 90], [0, 2.0, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]])
PIXDIM_OFFSET = 76  # byte offset of pixdim[0] in a NIfTI-1 header (8 float32)
SROW_X_OFFSET = 280  # byte offset of srow_x (4 float32)


def _volume(shape=(12, 10, 8), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1.0, 100.0, size=shape).astype(np.float32)


def _write(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def _patch_header(path: Path, offset: int, value: float) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 4] = struct.pack("<f", value)
    path.write_bytes(bytes(raw))


def _assert_names(error: pytest.ExceptionInfo, *paths: Path) -> None:
    for path in paths:
        assert str(path) in str(error.value)
    assert error.value.path == str(paths[0])


# --------------------------------------------------------------------------- load_image


def test_load_image_returns_detached_float32_copy(tmp_path):
    data = _volume()
    path = _write(tmp_path / "t1.nii.gz", data)
    image = load_image(path)
    assert isinstance(image, nib.Nifti1Image)
    assert image.get_filename() is None  # not backed by the raw file
    np.testing.assert_array_equal(image.get_fdata(dtype=np.float32), data)
    np.testing.assert_allclose(image.affine, AFFINE)
    assert np.asarray(image.dataobj).dtype == np.float32


def test_load_image_applies_scaling_of_integer_files(tmp_path):
    data = np.arange(12 * 10 * 8, dtype=np.int16).reshape(12, 10, 8)
    image = nib.Nifti1Image(data, AFFINE)
    image.header.set_slope_inter(0.5, 10.0)
    path = tmp_path / "scaled.nii"
    nib.save(image, str(path))
    np.testing.assert_allclose(load_image(path).get_fdata(), data * 0.5 + 10.0)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.nii.gz"
    with pytest.raises(InputDataError, match="does not exist") as error:
        load_image(path)
    _assert_names(error, path)


def test_truncated_gzip(tmp_path):
    good = _write(tmp_path / "good.nii.gz", _volume((40, 40, 40)))
    raw = good.read_bytes()
    path = tmp_path / "truncated.nii.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputDataError, match="truncated or corrupt") as error:
        load_image(path)
    _assert_names(error, path)


def test_gzip_of_garbage(tmp_path):
    path = tmp_path / "garbage.nii.gz"
    path.write_bytes(gzip.compress(np.random.default_rng(1).bytes(4000)))
    with pytest.raises(InputDataError) as error:
        load_image(path)
    _assert_names(error, path)


@pytest.mark.parametrize("name", ["random.nii", "random.nii.gz"])
def test_random_bytes(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(2).bytes(5000))
    with pytest.raises(InputDataError, match="cannot be read as NIfTI") as error:
        load_image(path)
    _assert_names(error, path)


def test_uncompressed_file_cut_in_data(tmp_path):
    good = _write(tmp_path / "good.nii", _volume())
    path = tmp_path / "cut.nii"
    path.write_bytes(good.read_bytes()[:600])  # header complete, data missing
    with pytest.raises(InputDataError) as error:
        load_image(path)
    _assert_names(error, path)


def test_other_image_format_is_rejected(tmp_path):
    path = tmp_path / "analyze.img"
    nib.save(nib.AnalyzeImage(_volume(), AFFINE), str(path))
    with pytest.raises(InputDataError, match="not a NIfTI") as error:
        load_image(path)
    _assert_names(error, path)


def test_4d_image_is_rejected(tmp_path):
    path = _write(tmp_path / "bold.nii.gz", _volume((6, 6, 6, 3)))
    with pytest.raises(InputDataError, match="4D") as error:
        load_image(path)
    _assert_names(error, path)


def test_2d_image_is_rejected(tmp_path):
    path = _write(tmp_path / "slice.nii.gz", _volume((6, 6)))
    with pytest.raises(InputDataError, match="2D") as error:
        load_image(path)
    _assert_names(error, path)


def test_4d_singleton_is_squeezed(tmp_path):
    data = _volume((6, 7, 5, 1))
    path = _write(tmp_path / "single.nii.gz", data)
    image = load_image(path)
    assert image.shape == (6, 7, 5)
    np.testing.assert_array_equal(image.get_fdata(dtype=np.float32), data[..., 0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels(tmp_path, bad):
    data = _volume()
    data[3, 4, 5] = bad
    path = _write(tmp_path / "nan.nii.gz", data)
    with pytest.raises(InputDataError, match="1 NaN/Inf") as error:
        load_image(path)
    _assert_names(error, path)


def test_zero_voxel_size_in_header(tmp_path):
    # nibabel silently replaces pixdim 0 by 1 when loading; the loader must not.
    path = _write(tmp_path / "zero_pixdim.nii", _volume())
    _patch_header(path, PIXDIM_OFFSET + 4, 0.0)  # pixdim[1]
    with pytest.raises(InputDataError, match="voxel size") as error:
        load_image(path)
    _assert_names(error, path)


def test_zero_voxel_size_in_sform(tmp_path):
    path = _write(tmp_path / "zero_sform.nii", _volume())
    _patch_header(path, SROW_X_OFFSET, 0.0)  # srow_x[0]: x axis collapses
    with pytest.raises(InputDataError, match="voxel size") as error:
        load_image(path)
    _assert_names(error, path)


@pytest.mark.parametrize("size", [25.0, 1000.0])
def test_absurd_voxel_size(tmp_path, size):
    path = _write(tmp_path / "huge.nii.gz", _volume(), np.diag([size, 1.0, 1.0, 1.0]))
    with pytest.raises(InputDataError, match="not a plausible MRI voxel") as error:
        load_image(path)
    _assert_names(error, path)


@pytest.mark.parametrize("size", [0.001, 0.05])
def test_tiny_voxel_size_names_the_minimum(tmp_path, size):
    path = _write(tmp_path / "tiny.nii.gz", _volume(), np.diag([size, size, size, 1.0]))
    with pytest.raises(InputDataError, match=f"voxel size {size:g} mm is below the minimum 0.1 mm") as error:
        load_image(path)
    _assert_names(error, path)
    assert "singular" not in str(error.value)


def test_smallest_plausible_voxel_size_is_accepted(tmp_path):
    path = _write(tmp_path / "fine.nii.gz", _volume(), np.diag([nifti.MIN_VOXEL_SIZE_MM] * 3 + [1.0]))
    assert load_image(path).header.get_zooms()[0] == pytest.approx(nifti.MIN_VOXEL_SIZE_MM)


def test_overflowing_scale_factor_is_named(tmp_path):
    image = nib.Nifti1Image(np.full((6, 6, 6), 1000, np.int16), AFFINE)
    image.header.set_slope_inter(1e36, 0.0)
    path = tmp_path / "scaled.nii.gz"
    nib.save(image, str(path))
    with pytest.raises(InputDataError, match=r"scale factor 1e\+36 overflows float32") as error:
        load_image(path)
    _assert_names(error, path)
    assert "1e+39" in str(error.value) and "NaN/Inf" not in str(error.value)  # 1000 * 1e36


def test_largest_plausible_voxel_size_is_accepted(tmp_path):
    path = _write(tmp_path / "thick.nii.gz", _volume(), np.diag([1.0, 1.0, nifti.MAX_VOXEL_SIZE_MM, 1.0]))
    assert load_image(path).header.get_zooms()[2] == pytest.approx(nifti.MAX_VOXEL_SIZE_MM)


def test_empty_image(tmp_path):
    path = _write(tmp_path / "empty.nii.gz", np.zeros((5, 5, 5), np.float32))
    with pytest.raises(InputDataError, match="empty") as error:
        load_image(path)
    _assert_names(error, path)


def test_loading_never_modifies_raw_files(tmp_path):
    image_path = _write(tmp_path / "t1.nii.gz", _volume())
    label = np.zeros((12, 10, 8), np.uint8)
    label[2:4, 2:4, 2:4] = 4
    label_path = _write(tmp_path / "seg.nii", label)
    before = [_fingerprint(p) for p in (image_path, label_path)]
    image = load_image(image_path)
    with pytest.warns(UserWarning):
        load_label(label_path, image_path)
    np.asarray(image.dataobj)[:] = 0  # writing the returned array must not reach the file
    assert [_fingerprint(p) for p in (image_path, label_path)] == before


# --------------------------------------------------------------------------- load_label


def test_binary_label_loads_without_warning(tmp_path):
    image_path = _write(tmp_path / "t1.nii.gz", _volume())
    label = np.zeros((12, 10, 8), np.uint8)
    label[1:5, 2:6, 3:7] = 1
    label_path = _write(tmp_path / "seg.nii.gz", label)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_label(label_path, image_path)
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, label)


def test_multiclass_label_warns_and_is_fused(tmp_path):
    image_path = _write(tmp_path / "t1.nii.gz", _volume())
    label = np.zeros((12, 10, 8), np.int16)
    label[1:3, 1:3, 1:3] = 1
    label[4:6, 4:6, 4:6] = 2
    label[7:9, 1:3, 5:7] = 4  # BraTS-style classes
    label_path = _write(tmp_path / "brats_seg.nii.gz", label)
    with pytest.warns(UserWarning, match="not binary") as record:
        loaded = load_label(label_path, image_path)
    assert str(label_path) in str(record[0].message)
    assert set(np.unique(loaded)) == {0, 1}
    assert loaded.sum() == 3 * 8
    np.testing.assert_array_equal(loaded, (label > 0).astype(np.uint8))


def test_label_accepts_loaded_reference_image(tmp_path):
    image_path = _write(tmp_path / "t1.nii.gz", _volume())
    label = np.zeros((12, 10, 8), np.uint8)
    label[0, 0, 0] = 1
    label_path = _write(tmp_path / "seg.nii.gz", label)
    assert load_label(label_path, load_image(image_path)).sum() == 1


def test_empty_label_is_allowed_unless_forbidden(tmp_path):
    image_path = _write(tmp_path / "t1.nii.gz", _volume())
    label_path = _write(tmp_path / "healthy_seg.nii.gz", np.zeros((12, 10, 8), np.uint8))
    assert load_label(label_path, image_path).sum() == 0
    with pytest.raises(InputDataError, match="empty") as error:
        load_label(label_path, image_path, allow_empty=False)
    _assert_names(error, label_path)


def test_label_shape_mismatch_names_both_files(tmp_path):
    image_path = _write(tmp_path / "t1.nii.gz", _volume())
    label_path = _write(tmp_path / "seg.nii.gz", np.zeros((12, 10, 9), np.uint8))
    with pytest.raises(InputDataError, match="shape") as error:
        load_label(label_path, image_path)
    _assert_names(error, label_path, image_path)


def test_label_affine_mismatch_names_both_files(tmp_path):
    image_path = _write(tmp_path / "t1.nii.gz", _volume())
    shifted = AFFINE.copy()
    shifted[0, 3] += 2.0  # one voxel off
    label_path = _write(tmp_path / "seg.nii.gz", np.zeros((12, 10, 8), np.uint8), shifted)
    with pytest.raises(InputDataError, match="affine") as error:
        load_label(label_path, image_path)
    _assert_names(error, label_path, image_path)


def test_label_affine_within_tolerance_is_accepted(tmp_path):
    image_path = _write(tmp_path / "t1.nii.gz", _volume())
    nudged = AFFINE.copy()
    nudged[1, 3] += 1e-4  # float rounding between tools
    label_path = _write(tmp_path / "seg.nii.gz", np.zeros((12, 10, 8), np.uint8), nudged)
    assert load_label(label_path, image_path).shape == (12, 10, 8)


def test_label_flipped_orientation_is_a_mismatch(tmp_path):
    image_path = _write(tmp_path / "t1.nii.gz", _volume())
    label_path = _write(tmp_path / "seg.nii.gz", np.zeros((12, 10, 8), np.uint8), np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(InputDataError) as error:
        load_label(label_path, image_path)
    _assert_names(error, label_path, image_path)


def test_label_with_nan_or_negative_values(tmp_path):
    image_path = _write(tmp_path / "t1.nii.gz", _volume())
    for name, value, reason in (("nan_seg.nii.gz", np.nan, "NaN"), ("neg_seg.nii.gz", -1.0, "negative")):
        label = np.zeros((12, 10, 8), np.float32)
        label[1, 1, 1] = value
        label_path = _write(tmp_path / name, label)
        with pytest.raises(InputDataError, match=reason) as error:
            load_label(label_path, image_path)
        _assert_names(error, label_path)


def test_label_problem_in_reference_is_reported_for_the_reference(tmp_path):
    image_path = tmp_path / "missing_t1.nii.gz"
    label_path = _write(tmp_path / "seg.nii.gz", np.zeros((12, 10, 8), np.uint8))
    with pytest.raises(InputDataError) as error:
        load_label(label_path, image_path)
    assert error.value.path == str(image_path)


# --------------------------------------------------------------------------- brain mask


def test_empty_brain_mask_raises_naming_file(tmp_path):
    path = tmp_path / "sub-01_T1w.nii.gz"
    with pytest.raises(InputDataError, match="brain mask is empty") as error:
        check_brain_mask(np.zeros((4, 4, 4), bool), path)
    _assert_names(error, path)


def test_brain_mask_minimum_size(tmp_path):
    mask = np.zeros((4, 4, 4), bool)
    mask[0, 0, :3] = True
    check_brain_mask(mask, "x.nii.gz")
    with pytest.raises(InputDataError):
        check_brain_mask(mask, "x.nii.gz", min_voxels=4)


# --------------------------------------------------------------------------- save_nifti


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_save_round_trip_creates_parents(tmp_path, suffix):
    data = _volume()
    path = tmp_path / "a" / "b" / f"out{suffix}"
    assert save_nifti(data, AFFINE, path, np.float32) == path
    loaded = nib.load(str(path))
    np.testing.assert_array_equal(loaded.get_fdata(dtype=np.float32), data)
    np.testing.assert_allclose(loaded.affine, AFFINE)
    assert loaded.get_data_dtype() == np.float32
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".nii.gz")
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_save_uint8_rounds_and_casts(tmp_path):
    path = tmp_path / "mask.nii.gz"
    save_nifti(np.array([[[0.0, 0.9], [1.2, 0.2]]]), np.eye(4), path, np.uint8)
    loaded = nib.load(str(path))
    assert loaded.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(loaded.dataobj), [[[0, 1], [1, 0]]])


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "out.nii.gz"
    save_nifti(_volume(), AFFINE, path)
    before = path.read_bytes()

    def broken_save(image, filename):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nifti.nib, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_nifti(np.zeros((3, 3, 3)), AFFINE, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]


def test_save_rejects_other_extensions(tmp_path):
    with pytest.raises(ValueError, match=".nii"):
        save_nifti(_volume(), AFFINE, tmp_path / "out.mgz")
