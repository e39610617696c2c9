"""evaluate_stored: the evaluation of the files one (model, fold, dataset, scoring) left behind."""

import numpy as np

from brainuad.evaluation.protocol import evaluate_pathology, evaluate_stored

OPTIONS = {"median": 0, "erode": 0, "min_component": 1, "threshold": {"protocol": "greedy"}, "healthy_fpr": [0.1]}


def _files(tmp_path, recons):
    mask = np.zeros((2, 8, 8, 8), np.uint8)
    mask[:, :, 1:7, 1:7] = 1
    seg = np.zeros_like(mask)
    seg[:, 2:5, 3:6, 3:6] = 1
    images = np.where(mask > 0, 0.5, 0).astype(np.float16)
    # the pack lists the subjects in another order than the scores
    np.savez(tmp_path / "volumes.npz", images=images, masks=mask, segs=seg, subjects=np.array(["b", "a"]))
    maps = np.where(seg > 0, 0.9, 0.05 * mask).astype(np.float16)
    np.savez(tmp_path / "scores.npz", maps=maps, subjects=np.array(["a", "b"]), split=np.array(["val", "test"]))
    np.savez(tmp_path / "recon.npz", recons=recons, subjects=np.array(["a", "b"]), split=np.array(["val", "test"]))
    return tmp_path / "scores.npz", tmp_path / "recon.npz", tmp_path / "volumes.npz", (maps, seg, mask, images)


def test_healthy_l1_from_the_first_samples(tmp_path):
    # image 0.5 in the brain; samples 0.4, 0.2, 0.0 -> mean of the first two 0.3 (l1 0.2), of all three 0.2 (l1 0.3)
    recons = np.stack([np.full((2, 8, 8, 8), v, np.float16) for v in (0.4, 0.2, 0.0)])
    paths = _files(tmp_path, recons)[:3]
    summary, rows = evaluate_stored("healthy", OPTIONS, *paths, samples=2)
    assert [r["subject"] for r in rows] == ["a", "b"]
    np.testing.assert_allclose([r["l1"] for r in rows], [0.2, 0.2], atol=1e-3)
    _, rows = evaluate_stored("healthy", OPTIONS, *paths)
    np.testing.assert_allclose([r["l1"] for r in rows], [0.3, 0.3], atol=1e-3)
    assert summary["lpips"] == "not configured" and set(summary["fpr_thresholds"]) == {"0.1"}


def test_pathology_equals_evaluate_pathology(tmp_path):
    recons = np.full((1, 2, 8, 8, 8), 0.4, np.float16)
    *paths, (maps, seg, mask, images) = _files(tmp_path, recons)
    summary, rows = evaluate_stored("pathology", OPTIONS, *paths)
    order = [1, 0]  # pack rows of subjects a, b
    ref_summary, ref_rows = evaluate_pathology(
        maps, seg[order], mask[order], ["val", "test"], ["a", "b"], images=images[order].astype(np.float32),
        recons=recons.astype(np.float32).mean(0), median=0, erode=0, min_component=1)
    np.testing.assert_equal(summary, ref_summary)  # NaN-aware (lesion strata without lesions are NaN)
    np.testing.assert_equal(rows, ref_rows)
    assert rows[1]["dice"] == 1.0
