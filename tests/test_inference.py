"""Running models over volumes: test-time switches, subjects, timing and the npz a reconstruct job writes."""

import numpy as np
import pytest
import torch

from brainuad import inference
from brainuad.inference import (evaluation_subjects, hardware_name, inference_model, run_model, save_outputs,
                                set_attributes, timed_run_model)
from brainuad.models import build

AE_HP = {"image_size": [8, 8], "channels": [4], "latent_dim": 2}


def test_set_attributes_changes_known_attributes_and_rejects_unknown_ones():
    model = torch.nn.Linear(2, 2)
    model.encoder_crop = 1.0
    assert set_attributes(model, {"encoder_crop": 0.5}) is model and model.encoder_crop == 0.5
    assert set_attributes(model, None) is model and model.encoder_crop == 0.5
    with pytest.raises(ValueError, match=r"reconstruct\.attributes\.encoder_crp: model 'cddpm' has no attribute"):
        set_attributes(model, {"encoder_crp": 0.5}, "model 'cddpm'")
    assert not hasattr(model, "encoder_crp")


def test_evaluation_subjects_by_role():
    splits = {"folds": [{"val": ["h1"]}, {"val": ["h2", "h3"]}], "val": ["u1"], "test": ["t1", "t2"]}
    assert evaluation_subjects(splits, "healthy", 1) == (["h2", "h3"], ["t1", "t2"])
    assert evaluation_subjects(splits, "unhealthy", 1) == (["u1"], ["t1", "t2"])


def test_timed_run_model_times_and_labels_the_output(tmp_path, monkeypatch):
    clock = iter([10.0, 13.0])  # run_model takes 3 s for 2 volumes
    monkeypatch.setattr(inference.time, "perf_counter", lambda: next(clock))
    images = np.random.default_rng(0).random((2, 3, 8, 8)).astype(np.float32)
    masks = np.ones_like(images, dtype=bool)
    model = build("thresh")
    run = timed_run_model(model, images, masks, batch_size=2)
    assert run.key == "maps" and run.output.shape == (2, 3, 8, 8) and run.seconds_per_volume == 1.5
    assert run.hardware == hardware_name("cpu") and run.hardware.startswith("CPU (")
    assert run.hardware.endswith(f"{torch.get_num_threads()} thread(s))")
    np.testing.assert_array_equal(run.output, run_model(model, images, masks))
    save_outputs(tmp_path / "r.npz", run, ["v"], ["t"], samples=1)
    with np.load(tmp_path / "r.npz") as f:
        assert sorted(f.files) == ["hardware", "maps", "samples", "seconds_per_volume", "split", "subjects"]
        assert list(f["subjects"]) == ["v", "t"] and list(f["split"]) == ["val", "test"]
        assert f["seconds_per_volume"] == 1.5 and f["samples"] == 1 and str(f["hardware"]) == run.hardware


def test_timed_run_model_of_a_reconstruction_model():
    torch.manual_seed(0)
    model = build("ae", **AE_HP).eval()
    images = np.random.default_rng(1).random((1, 3, 8, 8)).astype(np.float32)
    run = timed_run_model(model, images, np.ones_like(images, dtype=bool), samples=2, batch_size=2)
    assert run.key == "recons" and run.output.shape == (2, 1, 3, 8, 8) and run.seconds_per_volume > 0


def test_inference_model_builds_learning_free_models_or_loads_checkpoints(tmp_path):
    model = inference_model(None, "thresh", {"nbins": 16}, torch.device("cpu"))
    assert model.nbins == 16 and not model.training
    torch.manual_seed(0)
    ae = build("ae", **AE_HP)
    torch.save({"arch": "ae", "hparams": AE_HP, "state_dict": ae.state_dict()}, tmp_path / "m.pt")
    loaded = inference_model(tmp_path / "m.pt", "ignored", {}, torch.device("cpu"))
    assert not loaded.training and all(torch.equal(v, ae.state_dict()[k]) for k, v in loaded.state_dict().items())


def _pack(path, subjects, seed):
    rng = np.random.default_rng(seed)
    images = rng.random((len(subjects), 3, 8, 8)).astype(np.float16)
    np.savez(path, images=images, masks=(images > 0.2).astype(np.uint8), subjects=np.asarray(subjects))
    return str(path)


def test_reconstruct_jobs_in_one_process_equal_one_job_each(tmp_path):
    """config jobs.reconstruct per_model: one call for two folds x two datasets writes the same files as one
    call per (fold, dataset) -- each fold's own weights, each dataset's own subjects, the fold's seed."""
    import json

    from brainuad.inference import reconstruct_jobs

    weights = {}
    for fold in (0, 1):
        torch.manual_seed(fold)
        ae = build("vae", **AE_HP)  # a VAE: its posterior samples depend on the seed
        weights[fold] = tmp_path / f"m{fold}.pt"
        torch.save({"arch": "vae", "hparams": AE_HP, "state_dict": ae.state_dict()}, weights[fold])
    healthy = _pack(tmp_path / "h.npz", ["a", "b", "c", "d"], 0)
    tumour = _pack(tmp_path / "t.npz", ["x", "y", "z"], 1)
    (tmp_path / "hs.json").write_text(json.dumps({"folds": [{"val": ["a"]}, {"val": ["b"]}], "test": ["c", "d"]}))
    (tmp_path / "ts.json").write_text(json.dumps({"val": ["x"], "test": ["y", "z"]}))
    pairs = [(fold, ds) for fold in (0, 1) for ds in ("h", "t")]

    def job(fold, ds, out):
        return {"fold": fold, "role": "healthy" if ds == "h" else "pathology", "model_file": str(weights[fold]),
                "volumes": healthy if ds == "h" else tumour, "splits": str(tmp_path / f"{ds}s.json"),
                "output": str(tmp_path / out)}

    kwargs = dict(arch="vae", hparams=AE_HP, settings={"samples": 3, "batch_size": 2}, seed=5, device="cpu")
    reconstruct_jobs([job(f, ds, f"all-{f}-{ds}.npz") for f, ds in pairs], **kwargs)
    for fold, ds in reversed(pairs):  # alone, in another order
        reconstruct_jobs([job(fold, ds, f"one-{fold}-{ds}.npz")], **kwargs)
    for fold, ds in pairs:
        with np.load(tmp_path / f"all-{fold}-{ds}.npz") as a, np.load(tmp_path / f"one-{fold}-{ds}.npz") as b:
            assert a["recons"].shape[0] == 3  # subjects (val + test)
            np.testing.assert_array_equal(a["recons"], b["recons"])
            assert a["subjects"].tolist() == ({0: ["a"], 1: ["b"]}[fold] + ["c", "d"] if ds == "h" else ["x", "y", "z"])
    with np.load(tmp_path / "all-0-h.npz") as a, np.load(tmp_path / "all-1-h.npz") as b:
        assert not np.array_equal(a["recons"][1:], b["recons"][1:])  # the test subjects through other weights
