"""brainuad.training.jobs (config jobs.train): several folds trained in one call write exactly the files that
one call per fold writes -- the weights bit for bit and the loss logs -- for train, pretrain_encoder and
SADM Stage II; an interrupted fold ends the call."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from brainuad.training import jobs as training_jobs
from brainuad.training.jobs import pretrain_jobs, stopped, train_jobs, train_stage2_jobs

SUBJECTS = [f"s{i}" for i in range(8)]
# two folds with different training and validation subjects
SPLITS = {"folds": [{"train": SUBJECTS[:5], "val": SUBJECTS[5:6]}, {"train": SUBJECTS[2:7], "val": SUBJECTS[7:]}],
          "test": []}
VAE = {"channels": [4, 8], "latent_dim": 4}  # image_size is filled in from the pack (as the train rule does)
CDDPM = {"image_size": [16, 16], "channels": [4, 8], "res_blocks": 1, "context_dim": 4, "encoder_channels": [4, 8],
         "encoder_blocks": [1, 1]}
SADM = {"channels": [4, 8], "groups": 4, "residual": True}


@pytest.fixture
def data(tmp_path):
    """A healthy pack (8 subjects of 3 slices of 16 x 16, brain masks) and its two-fold splits."""
    rng = np.random.default_rng(0)
    images = np.zeros((8, 3, 16, 16), np.float32)
    images[:, :, 3:13, 3:13] = 0.6
    images = (images + 0.1 * rng.random(images.shape)).astype(np.float16)
    np.savez(tmp_path / "volumes.npz", images=images, masks=(images > 0.3).astype(np.uint8),
             subjects=np.asarray(SUBJECTS))
    (tmp_path / "splits.json").write_text(json.dumps(SPLITS))
    return {"volumes": str(tmp_path / "volumes.npz"), "splits": str(tmp_path / "splits.json")}


def _job(root, fold, data, seed, out="model", **extra):
    """The per-fold job dict of Study.train_groups (outputs under ``root``; the seed as train_settings: seed + fold)."""
    d = root / f"fold-{fold}"
    return {"fold": fold, out: str(d / f"{out}.pt"), "log": str(d / "log.tsv"), "workdir": str(d / "work"),
            "settings": {"seed": seed + fold, **extra.pop("settings")}, **data, **extra}


def _assert_same_fold(a_dir, b_dir, name="model.pt", key="state_dict"):
    a = torch.load(a_dir / name, weights_only=False)
    b = torch.load(b_dir / name, weights_only=False)
    assert a[key].keys() == b[key].keys() and all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    la, lb = pd.read_csv(a_dir / "log.tsv", sep="\t"), pd.read_csv(b_dir / "log.tsv", sep="\t")
    assert len(la) > 1
    pd.testing.assert_frame_equal(la.drop(columns="seconds"), lb.drop(columns="seconds"))
    return a


def test_train_jobs_in_one_process_equal_one_job_each(tmp_path, data):
    """config jobs.train per_model: one call trains both folds as the per-fold jobs do (the fold's subjects, its
    seeded subject subset, its seed); the folds differ from each other."""
    settings = {"max_steps": 6, "batch_size": 4, "lr": 1e-3, "val_every": 3, "fraction": 0.8}
    kw = dict(arch="vae", hparams=VAE, device="cpu")
    results = train_jobs([_job(tmp_path / "all", f, data, 5, settings=settings) for f in (0, 1)], **kw)
    assert [r["status"] for r in results] == ["done", "done"] and stopped(results) is None
    for fold in (1, 0):  # alone, in the other order (the per-fold rule's call)
        train_jobs([_job(tmp_path / "one", fold, data, 5, settings=settings)], **kw)
    ckpts = [_assert_same_fold(tmp_path / "all" / f"fold-{f}", tmp_path / "one" / f"fold-{f}") for f in (0, 1)]
    assert ckpts[0]["hparams"]["image_size"] == [16, 16] and ckpts[0]["settings"]["seed"] == 5
    assert ckpts[1]["settings"]["seed"] == 6 and "fraction" not in ckpts[1]["settings"]
    w0, w1 = (c["state_dict"] for c in ckpts)
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)


def test_pretrain_train_and_stage2_jobs_in_one_process_equal_one_job_each(tmp_path, data):
    """The cDDPM chain of the demo: SSL encoder pre-training, cDDPM training on each fold's own encoder and SADM
    Stage II on each fold's own cDDPM, each as one call for both folds and as one call per fold."""
    pre = {"max_steps": 2, "batch_size": 4, "lr": 1e-3, "patch": 4, "decoder_dim": 8, "val_max_slices": 8}
    train = {"max_steps": 3, "batch_size": 4, "lr": 1e-3, "val_every": 3, "val_max_slices": 8}
    stage1 = {"noise_level": None}
    for mode, calls in (("all", [(0, 1)]), ("one", [(1,), (0,)])):
        root = tmp_path / mode
        for folds in calls:
            pretrain_jobs([_job(root / "enc", f, data, 7, out="encoder", settings=pre) for f in folds],
                          arch="cddpm", hparams=CDDPM, device="cpu")
            train_jobs([_job(root / "cddpm", f, data, 7, settings=train,
                             encoder=str(root / "enc" / f"fold-{f}" / "encoder.pt")) for f in folds],
                       arch="cddpm", hparams=CDDPM, device="cpu")
            train_stage2_jobs([_job(root / "sadm", f, data, 7, settings=train,
                                    stage1=str(root / "cddpm" / f"fold-{f}" / "model.pt")) for f in folds],
                              arch="sadm", hparams=SADM, stage1=stage1, data={"kind": "synthetic", "dataset": None},
                              device="cpu")
    for fold in (0, 1):
        _assert_same_fold(tmp_path / "all/enc" / f"fold-{fold}", tmp_path / "one/enc" / f"fold-{fold}",
                          "encoder.pt", "encoder_state_dict")
        cddpm = _assert_same_fold(tmp_path / "all/cddpm" / f"fold-{fold}", tmp_path / "one/cddpm" / f"fold-{fold}")
        assert cddpm["hparams"]["pretrained_encoder"].endswith(f"all/enc/fold-{fold}/encoder.pt")
        sadm = _assert_same_fold(tmp_path / "all/sadm" / f"fold-{fold}", tmp_path / "one/sadm" / f"fold-{fold}")
        assert sadm["hparams"]["stage1_checkpoint"].endswith(f"all/cddpm/fold-{fold}/model.pt")
    e0, e1 = (torch.load(tmp_path / f"all/enc/fold-{f}/encoder.pt", weights_only=False)["encoder_state_dict"]
              for f in (0, 1))
    assert any(not torch.equal(e0[k], e1[k]) for k in e0)  # each fold its own seed and subjects


def test_an_interrupted_fold_ends_the_call(tmp_path, data, monkeypatch):
    """A fold stopped by a signal (state saved under its workdir) ends the call: the folds after it are not
    started, and the script exits with the message naming the workdir to resume from."""
    calls = []

    def fake_fit(arch, hparams, train, val, settings, *, out_model, out_log, workdir, device):
        calls.append(workdir)
        return {"status": "interrupted", "step": 2, "best_val_loss": 1.0, "best_step": 2}

    monkeypatch.setattr(training_jobs, "fit", fake_fit)
    jobs = [_job(tmp_path, f, data, 5, settings={"max_steps": 6}) for f in (0, 1)]
    results = train_jobs(jobs, arch="vae", hparams=VAE, device="cpu")
    assert calls == [jobs[0]["workdir"]] and len(results) == 1
    assert stopped(results) == f"training stopped at step 2 (signal); rerun to resume from {jobs[0]['workdir']}"
