"""The synthetic-anomaly evaluation set (brainuad.data.synthetic_set): pack format, anomalies only inside
the brain and only where labelled, seeded per subject, errors naming the file."""

import numpy as np
import pytest

from brainuad.data.synthetic_set import make_synthetic_pack, subject_seed, synthesize_subject
from brainuad.errors import InputDataError


def _pack(path, n=3, shape=(6, 24, 24)):
    rng = np.random.default_rng(0)
    masks = np.zeros((n, *shape), np.uint8)
    masks[:, 1:-1, 3:-3, 4:-4] = 1
    images = (rng.uniform(0.2, 0.9, (n, *shape)) * masks).astype(np.float16)
    np.savez(path, images=images, masks=masks, segs=np.zeros_like(masks), subjects=np.array([f"s{i}" for i in range(n)]),
             ages=np.arange(n, dtype=float), affine=np.eye(4), spacing=np.ones(3))
    return images, masks


@pytest.mark.parametrize("mode", ["volume", "slices"])
def test_draem_set_has_the_pack_format_and_labels_every_change(tmp_path, mode):
    images, masks = _pack(tmp_path / "healthy.npz")
    out = tmp_path / "syn" / "volumes.npz"
    info = make_synthetic_pack(tmp_path / "healthy.npz", {"test": ["s2", "s0"]}, out, kind="draem", seed=4, mode=mode,
                               options={"gamma_range": [1.0, 1.0]})
    with np.load(out) as z:
        assert z["subjects"].tolist() == ["s2", "s0"]
        assert z["images"].dtype == np.float16 and z["segs"].dtype == np.uint8
        assert np.array_equal(z["masks"], masks[[2, 0]]) and np.array_equal(z["ages"], [2.0, 0.0])
        segs, imgs = z["segs"] > 0, z["images"]
    assert info["subjects"] == 2 and info["empty"] == [] and 0 < info["anomalous_fraction"] < 1
    assert segs.any(axis=(1, 2, 3)).all() and not (segs & (masks[[2, 0]] == 0)).any()
    # outside the anomaly the images are the healthy ones, bit for bit
    assert np.array_equal(imgs[~segs], images[[2, 0]][~segs])


def test_subject_anomalies_depend_on_seed_and_subject_only(tmp_path):
    _pack(tmp_path / "h.npz")
    make_synthetic_pack(tmp_path / "h.npz", {"test": ["s0", "s1"]}, tmp_path / "a.npz", seed=9)
    make_synthetic_pack(tmp_path / "h.npz", {"test": ["s1"]}, tmp_path / "b.npz", seed=9)
    make_synthetic_pack(tmp_path / "h.npz", {"test": ["s1"]}, tmp_path / "c.npz", seed=10)
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b, np.load(tmp_path / "c.npz") as c:
        assert np.array_equal(a["segs"][1], b["segs"][0]) and np.array_equal(a["images"][1], b["images"][0])
        assert not np.array_equal(b["segs"][0], c["segs"][0])
    assert subject_seed(9, "s1") != subject_seed(9, "s0")


@pytest.mark.parametrize("kind", ["pii", "fpi"])
def test_patch_sets_take_the_foreign_patch_from_the_next_subject(tmp_path, kind):
    images, masks = _pack(tmp_path / "h.npz")
    make_synthetic_pack(tmp_path / "h.npz", {"test": ["s0", "s1"]}, tmp_path / "o.npz", kind=kind, seed=1,
                        options={"alpha_range": [1.0, 1.0]})
    with np.load(tmp_path / "o.npz") as z:
        segs, imgs = z["segs"] > 0, z["images"].astype(np.float32)
    assert segs[0].any() and segs[1].any()
    if kind == "fpi":  # alpha = 1: the patch is the other subject's voxels
        assert np.allclose(imgs[0][segs[0]], images[1].astype(np.float32)[segs[0]], atol=1e-3)
    assert np.array_equal(imgs[0][~segs[0]], images[0].astype(np.float32)[~segs[0]])


def test_synthesize_subject_mode_error_and_missing_subjects(tmp_path):
    _pack(tmp_path / "h.npz")
    with pytest.raises(ValueError, match="mode"):
        synthesize_subject(np.zeros((2, 8, 8)), np.ones((2, 8, 8)), None, kind="draem", seed=0, mode="plane")
    with pytest.raises(InputDataError, match="h.npz.*not in the pack: \\['x9'\\]"):
        make_synthetic_pack(tmp_path / "h.npz", {"test": ["x9"]}, tmp_path / "o.npz")
    with pytest.raises(InputDataError, match="no subject"):
        make_synthetic_pack(tmp_path / "h.npz", {"folds": []}, tmp_path / "o.npz")
    with pytest.raises(ValueError, match="kind"):
        make_synthetic_pack(tmp_path / "h.npz", {"test": ["s0"]}, tmp_path / "o.npz", kind="cutpaste")
