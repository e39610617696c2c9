"""evaluate_stored: the evaluation of the files one (model, fold, dataset, scoring) left behind."""

import numpy as np
import pytest

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


def test_evaluate_stored_jobs_writes_what_each_job_writes_alone(tmp_path):
    """config jobs.evaluate: per_model -- healthy and pathology evaluations (two folds, two protocols) and the
    healthy-FPR evaluations that read the thresholds written in the same call give byte-identical files to one
    call per job (the per-scoring rules evaluate, evaluate_protocol, evaluate_fpr)."""
    from brainuad.evaluation.protocol import evaluate_stored_jobs

    rng = np.random.default_rng(1)
    inputs = tmp_path / "in"
    inputs.mkdir()
    subjects = np.array(["s0", "s1", "s2", "s3"])
    split = np.array(["val", "val", "test", "test"])
    for ds in ("healthy", "tumour"):
        mask = np.zeros((4, 8, 12, 12), np.uint8)
        mask[:, 1:7, 2:10, 2:10] = 1
        seg = np.zeros_like(mask)
        if ds == "tumour":
            seg[:, 2:5, 4:8, 4:8] = 1
        images = (rng.random(mask.shape) * mask).astype(np.float16)
        np.savez(inputs / f"{ds}_volumes.npz", images=images, masks=mask, segs=seg, subjects=subjects[::-1])
        for fold in (0, 1):
            maps = (rng.random(mask.shape) * 0.3 + 0.6 * seg).astype(np.float16)
            np.savez(inputs / f"{ds}_{fold}_scores.npz", maps=maps, subjects=subjects, split=split)
            np.savez(inputs / f"{ds}_{fold}_recon.npz", recons=rng.random((2, *mask.shape)).astype(np.float16),
                     subjects=subjects, split=split)
    protocols = {"default": {**OPTIONS, "healthy_fpr": [0.05, 0.2]},
                 "p1": {**OPTIONS, "median": 3, "min_component": 3, "healthy_fpr": [0.05, 0.2]}}
    jobs = []
    for fold in (0, 1):
        for ds in ("healthy", "tumour"):
            for pid, options in protocols.items():
                jobs.append({"kind": "evaluate", "role": ds if ds == "healthy" else "pathology", "options": options,
                             "samples": 1 if pid == "p1" else None, "conventions": {},
                             "scores": str(inputs / f"{ds}_{fold}_scores.npz"),
                             "recon": str(inputs / f"{ds}_{fold}_recon.npz"),
                             "volumes": str(inputs / f"{ds}_volumes.npz"),
                             "threshold": f"{fold}/{ds}/{pid}/threshold.json", "metrics": f"{fold}/{ds}/{pid}/metrics.tsv"})
    fprs = [{"kind": "fpr", "options": options, "conventions": {}, "scores": str(inputs / f"tumour_{fold}_scores.npz"),
             "volumes": str(inputs / "tumour_volumes.npz"), "healthy": f"{fold}/healthy/{pid}/threshold.json",
             "output": f"{fold}/tumour/{pid}/fpr.tsv"} for fold in (0, 1) for pid, options in protocols.items()]

    def under(job, root):
        outs = ("threshold", "metrics", "healthy", "output")
        return {**job, **{k: str(root / job[k]) for k in outs if k in job}}

    together, alone = tmp_path / "together", tmp_path / "alone"
    evaluate_stored_jobs([under(j, together) for j in fprs + jobs])  # FPR jobs listed first: still run last
    for job in reversed(jobs):  # one call per job, in another order
        evaluate_stored_jobs([under(job, alone)])
    for job in fprs:  # after the healthy evaluations whose threshold.json they read, as Snakemake orders them
        evaluate_stored_jobs([under(job, alone)])
    written = sorted(p.relative_to(together) for p in together.rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(alone) for p in alone.rglob("*") if p.is_file())
    assert len(written) == 2 * len(jobs) + len(fprs) == 20
    for rel in written:
        assert (together / rel).read_bytes() == (alone / rel).read_bytes(), rel
    fpr = (together / "0/tumour/p1/fpr.tsv").read_text()
    assert fpr != (together / "0/tumour/default/fpr.tsv").read_text() and len(fpr.splitlines()) == 1 + 4 * 2  # subjects x target FPRs
    with pytest.raises(ValueError, match="kind 'score'"):
        evaluate_stored_jobs([{"kind": "score"}])
