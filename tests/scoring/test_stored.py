import numpy as np
import pytest

from brainuad.scoring import available, register, score, uses_model_maps
from brainuad.scoring.stored import score_stored


def _pack(tmp_path):
    images = np.array([[[[1.0, 0.5]]], [[[0.2, 0.0]]]], dtype=np.float16)  # (N=2, D=1, H=1, W=2)
    masks = np.array([[[[1, 1]]], [[[1, 0]]]], dtype=np.uint8)
    np.savez(tmp_path / "volumes.npz", images=images, masks=masks, subjects=np.array(["b", "a"]))
    return tmp_path / "volumes.npz"


def _recon(tmp_path, **arrays):
    np.savez(tmp_path / "recon.npz", subjects=np.array(["a", "b"]), split=np.array(["val", "test"]), **arrays)
    return tmp_path / "recon.npz"


def test_score_stored_l1_by_subject_and_samples(tmp_path):
    # stored subject order (a, b) differs from the pack's (b, a); 2 samples per subject
    recons = np.array([[[[[0.0, 0.5]]], [[[0.5, 0.5]]]],
                       [[[[0.4, 0.5]]], [[[0.1, 0.1]]]]], dtype=np.float16)  # (S=2, N=2, 1, 1, 2)
    vol, rec = _pack(tmp_path), _recon(tmp_path, recons=recons)
    out = score_stored({"name": "l1"}, rec, vol)
    # a: image (0.2, 0), mask (1, 0), mean recon (0.2, 0.5) -> (0, 0); b: image (1, 0.5), mean (0.3, 0.3) -> (0.7, 0.2)
    np.testing.assert_allclose(out["maps"][:, 0, 0], [[0.0, 0.0], [0.7, 0.2]], atol=1e-3)
    assert out["maps"].dtype == np.float16 and out["subjects"].tolist() == ["a", "b"]
    assert out["split"].tolist() == ["val", "test"]
    first = score_stored({"name": "l1", "samples": 1}, rec, vol)  # a: |0.2 - 0| = 0.2; b: |1 - .5|, |.5 - .5|
    np.testing.assert_allclose(first["maps"][:, 0, 0], [[0.2, 0.0], [0.5, 0.0]], atol=1e-3)
    with pytest.raises(ValueError, match="samples=3"):
        score_stored({"name": "l1", "samples": 3}, rec, vol)


def test_native_takes_the_model_maps(tmp_path):
    maps = np.array([[[[0.25, 0.5]]], [[[1.0, 0.0]]]], dtype=np.float32)
    rec = _recon(tmp_path, maps=maps)
    out = score_stored({"name": "native"}, rec, tmp_path / "no_pack_needed.npz")
    np.testing.assert_array_equal(out["maps"], maps.astype(np.float16))
    with pytest.raises(ValueError, match="needs reconstructions"):
        score_stored({"name": "l1"}, rec, tmp_path / "no_pack_needed.npz")
    with pytest.raises(ValueError, match="needs a model that produces anomaly maps"):
        score_stored({"name": "native"}, _recon(tmp_path, recons=maps[None]), tmp_path / "x.npz")


def test_registry_declares_what_a_scoring_uses():
    assert "native" in available()
    assert uses_model_maps("native") and not uses_model_maps("l1")
    x = np.zeros((1, 1, 2, 2))
    with pytest.raises(ValueError, match="model's own anomaly maps"):
        score("native", x, x[None], x)
    with pytest.raises(KeyError, match="unknown scoring"):
        uses_model_maps("nope")
    with pytest.raises(ValueError, match="uses must be one of"):
        register("other", uses="images")


def test_ssim_convention_keywords_match_the_registered_functions():
    """brainuad.conventions.SSIM_KWARGS (torch-free, read at parse time) names real keywords of every scoring
    that computes an SSIM, and no other registered scoring takes them."""
    import inspect

    from brainuad.conventions import SSIM_KWARGS
    from brainuad.scoring import scoring_fn

    for name in available():
        params = inspect.signature(scoring_fn(name)).parameters
        takes = {p for p in params if p in ("covariance", "padding", "ssim_covariance", "ssim_padding")}
        assert takes == set(SSIM_KWARGS.get(name, {}).values()), name


def test_score_stored_jobs_writes_what_each_job_writes_alone(tmp_path):
    """config jobs.score: per_model -- several (fold, dataset, scoring) jobs in one call write exactly the arrays
    that each job writes in a call of its own (the per-scoring rule), whatever ran before it in the process."""
    from brainuad.scoring.stored import score_stored_jobs

    rng = np.random.default_rng(0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for ds in ("healthy", "tumour"):
        images = rng.random((3, 4, 16, 16)).astype(np.float16)  # (N, D, H, W)
        masks = (rng.random((3, 4, 16, 16)) > 0.2).astype(np.uint8)
        np.savez(inputs / f"{ds}_volumes.npz", images=images, masks=masks, subjects=np.array(["s2", "s0", "s1"]))
        for fold in (0, 1):
            recons = rng.random((3, 3, 4, 16, 16)).astype(np.float16)  # (S=3 samples, N, D, H, W)
            np.savez(inputs / f"{ds}_fold{fold}.npz", recons=recons, subjects=np.array(["s0", "s1", "s2"]),
                     split=np.array(["val", "test", "test"]))
    scorings = [{"name": "l1", "samples": 1}, {"name": "l1"}, {"name": "ssim", "sigma": 1.0, "samples": 2},
                {"name": "mhd_diag"}]
    jobs = [{"scoring": scoring, "recon": str(inputs / f"{ds}_fold{fold}.npz"),
             "volumes": str(inputs / f"{ds}_volumes.npz"), "output": f"fold-{fold}/{ds}/{i}.npz"}
            for fold in (0, 1) for ds in ("healthy", "tumour") for i, scoring in enumerate(scorings)]
    together, alone = tmp_path / "together", tmp_path / "alone"
    score_stored_jobs([{**j, "output": str(together / j["output"])} for j in jobs])
    for job in reversed(jobs):  # another order: no state carried from one job to the next
        score_stored_jobs([{**job, "output": str(alone / job["output"])}])
    assert len(list(together.rglob("*.npz"))) == len(jobs) == 16
    for job in jobs:
        with np.load(together / job["output"]) as a, np.load(alone / job["output"]) as b:
            assert a.files == b.files
            for key in a.files:
                assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), (job["output"], key)
    with np.load(together / "fold-0/tumour/0.npz") as one, np.load(together / "fold-1/tumour/0.npz") as other:
        assert not np.array_equal(one["maps"], other["maps"])  # the folds' inputs differ: a real comparison
