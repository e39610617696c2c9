import nibabel as nib
import numpy as np
import pytest

from brainuad.data.pack import load_pack, pack_dataset, ras_to_dhw, subject_index


def test_ras_to_dhw_orientation():
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4)  # x, y, z: arr[x, y, z] = 12 x + 4 y + z
    # (D=z, H=y from anterior (y=2) to posterior (y=0), W=x), written out by hand
    expected = np.array([
        [[8, 20], [4, 16], [0, 12]],
        [[9, 21], [5, 17], [1, 13]],
        [[10, 22], [6, 18], [2, 14]],
        [[11, 23], [7, 19], [3, 15]],
    ])
    dhw = ras_to_dhw(arr)
    assert dhw.shape == (4, 3, 2) and dhw.flags.c_contiguous
    np.testing.assert_array_equal(dhw, expected)
    assert dhw[1, 0, 1] == arr[1, 2, 1]  # first row = most anterior y


def test_pack_dataset(tmp_path):
    aff = np.diag([3.0, 3.0, 3.0, 1.0])
    rng = np.random.default_rng(0)
    for s in ("b", "a"):
        img = rng.random((4, 5, 6)).astype(np.float32)
        nib.save(nib.Nifti1Image(img, aff), tmp_path / f"{s}_image.nii.gz")
        nib.save(nib.Nifti1Image((img > 0.5).astype(np.uint8), aff), tmp_path / f"{s}_mask.nii.gz")
        nib.save(nib.Nifti1Image((img > 0.9).astype(np.uint8) * 2, aff), tmp_path / f"{s}_seg.nii.gz")
    info = pack_dataset(["b", "a"], tmp_path, tmp_path / "v.npz", ages=[30, ""])
    assert info == {"subjects": 2, "shape": (2, 6, 5, 4)}
    p = load_pack(tmp_path / "v.npz")
    assert p["images"].dtype == np.float16 and p["segs"].max() == 1
    ref = ras_to_dhw(np.asarray(nib.load(tmp_path / "a_image.nii.gz").dataobj))
    np.testing.assert_allclose(p["images"][1], ref, atol=1e-3)
    assert np.isnan(p["ages"][1]) and p["ages"][0] == 30
    np.testing.assert_allclose(p["spacing"], [3, 3, 3])
    assert subject_index(p, ["a", "b"]).tolist() == [1, 0]


def test_fold_volumes_selects_the_folds_subjects(tmp_path):
    import json

    from brainuad.data.pack import fold_volumes

    images = np.arange(4, dtype=np.float16)[:, None, None, None] * np.ones((4, 2, 3, 3), np.float16)
    np.savez(tmp_path / "v.npz", images=images, subjects=np.asarray(["a", "b", "c", "d"]))
    (tmp_path / "s.json").write_text(json.dumps({"folds": [{"train": ["d", "a"], "val": ["c"]},
                                                           {"train": ["b"], "val": ["a", "d"]}]}))
    train, val = fold_volumes(tmp_path / "v.npz", tmp_path / "s.json", "1")
    assert train[:, 0, 0, 0].tolist() == [1.0] and val[:, 0, 0, 0].tolist() == [0.0, 3.0]


def test_training_subset_is_seeded_nested_and_sized():
    """train.fraction (P8.1-Fig5): round(f * N) subjects, the same for the same seed whatever the input
    order, nested across fractions (10 % in 20 % in 60 % in 100 %), another subset for another seed."""
    from brainuad.data.pack import training_subset

    subjects = [f"s{i:03d}" for i in range(50)]
    subsets = {f: training_subset(subjects, f, seed=3) for f in (0.1, 0.2, 0.6, 1.0)}
    assert {f: len(s) for f, s in subsets.items()} == {0.1: 5, 0.2: 10, 0.6: 30, 1.0: 50}
    assert subsets[1.0] == subjects
    assert set(subsets[0.1]) < set(subsets[0.2]) < set(subsets[0.6]) < set(subsets[1.0])
    assert all(s == sorted(s) for s in subsets.values())  # kept in the given order
    assert training_subset(subjects, 0.2, seed=3) == subsets[0.2]  # deterministic
    assert sorted(training_subset(subjects[::-1], 0.2, seed=3)) == subsets[0.2]  # order-free
    assert training_subset(subjects, 0.2, seed=4) != subsets[0.2]
    assert training_subset(subjects, 0.001, seed=3) and len(training_subset(subjects, 0.001, seed=3)) == 1
    with pytest.raises(ValueError, match="train.fraction"):
        training_subset(subjects, 0.0, seed=3)


def test_fold_volumes_with_a_fraction_keeps_the_whole_validation_set(tmp_path):
    import json

    from brainuad.data.pack import fold_volumes, training_subset

    images = np.arange(10, dtype=np.float16)[:, None, None, None] * np.ones((10, 2, 3, 3), np.float16)
    names = [f"x{i}" for i in range(10)]
    np.savez(tmp_path / "v.npz", images=images, subjects=np.asarray(names))
    (tmp_path / "s.json").write_text(json.dumps({"folds": [{"train": names[:8], "val": names[8:]}]}))
    train, val = fold_volumes(tmp_path / "v.npz", tmp_path / "s.json", 0, fraction=0.5, seed=1)
    kept = training_subset(names[:8], 0.5, seed=1)
    assert train[:, 0, 0, 0].tolist() == [float(names.index(s)) for s in kept] and len(kept) == 4
    assert val[:, 0, 0, 0].tolist() == [8.0, 9.0]
