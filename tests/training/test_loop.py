import numpy as np
import pytest
import pandas as pd
import torch

from brainuad.training import TrainSettings, fit, load_model
from brainuad.training.loop import sample_batch, validation_batches


def _data(seed=0):
    rng = np.random.default_rng(seed)
    base = np.zeros((6, 4, 16, 16), np.float32)
    base[:, :, 4:12, 4:12] = 0.8
    return (base + 0.05 * rng.random(base.shape)).astype(np.float16)


HP = {"image_size": [16, 16], "channels": [4, 8], "latent_dim": 8}


def test_resume_after_interruption_gives_identical_weights(tmp_path):
    vols = _data()
    settings = TrainSettings(max_steps=12, batch_size=4, lr=1e-3, val_every=4, seed=5, checkpoint_every_s=1e9)
    ref = fit("vae", HP, vols[:4], vols[4:], settings, out_model=tmp_path / "a/model.pt",
              out_log=tmp_path / "a/log.tsv", workdir=tmp_path / "a/work", progress=False, device="cpu")
    assert ref["status"] == "done"
    part = fit("vae", HP, vols[:4], vols[4:], settings, out_model=tmp_path / "b/model.pt",
               out_log=tmp_path / "b/log.tsv", workdir=tmp_path / "b/work", progress=False, stop_after_steps=5, device="cpu")
    assert part["status"] == "interrupted" and part["step"] == 5
    assert not (tmp_path / "b/model.pt").exists()
    done = fit("vae", HP, vols[:4], vols[4:], settings, out_model=tmp_path / "b/model.pt",
               out_log=tmp_path / "b/log.tsv", workdir=tmp_path / "b/work", progress=False, device="cpu")
    assert done == ref
    a = torch.load(tmp_path / "a/model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "b/model.pt", weights_only=False)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la, lb = pd.read_csv(tmp_path / "a/log.tsv", sep="\t"), pd.read_csv(tmp_path / "b/log.tsv", sep="\t")
    pd.testing.assert_frame_equal(la.drop(columns="seconds"), lb.drop(columns="seconds"))


def test_training_reduces_loss_and_keeps_best_checkpoint(tmp_path):
    vols = _data(1)
    settings = TrainSettings(max_steps=60, batch_size=8, lr=3e-3, val_every=10, seed=0)
    res = fit("ae", HP, vols[:4], vols[4:], settings, out_model=tmp_path / "m.pt", out_log=tmp_path / "l.tsv",
              workdir=tmp_path / "w", progress=False, device="cpu")
    log = pd.read_csv(tmp_path / "l.tsv", sep="\t")
    assert list(log.columns) == ["step", "loss", "val_loss", "seconds"] and len(log) == 60
    val = log.dropna(subset=["val_loss"])
    assert list(val["step"]) == [10, 20, 30, 40, 50, 60]
    assert val["val_loss"].iloc[-1] < val["val_loss"].iloc[0]
    assert res["best_val_loss"] == pytest.approx(val["val_loss"].min(), rel=1e-12)
    assert res["best_step"] == int(val.loc[val["val_loss"].idxmin(), "step"])
    # the stored weights reproduce the best validation loss
    model = load_model(tmp_path / "m.pt", "cpu")
    with torch.no_grad():
        batches = list(validation_batches(vols[4:], 2, 8, 512))
        loss = sum(float(model.loss(b)) * len(b) for b in batches) / sum(len(b) for b in batches)
    assert abs(loss - res["best_val_loss"]) < 1e-5


def test_sampling_covers_volumes_and_slices_uniformly():
    vols = np.arange(3 * 5, dtype=np.float16).reshape(3, 5, 1, 1) * np.ones((1, 1, 2, 2), np.float16)
    gen = torch.Generator().manual_seed(0)
    batch = sample_batch(vols, 2, 3000, gen)
    assert batch.shape == (3000, 1, 2, 2)
    counts = np.bincount(batch[:, 0, 0, 0].numpy().astype(int), minlength=15)
    assert counts.min() > 140 and counts.max() < 260  # 200 expected per (volume, slice)
    three_d = sample_batch(vols, 3, 4, gen)
    assert three_d.shape == (4, 1, 5, 2, 2)


@pytest.mark.parametrize("signame", ["SIGUSR1", "SIGTERM"])
def test_slurm_signal_saves_state_and_the_rerun_resumes_bit_identically(tmp_path, monkeypatch, signame):
    """SLURM's warning signal (profile: --signal=USR1@300) or the SIGTERM at the time limit, delivered to the
    process mid-training: the loop saves its state and stops; a rerun resumes and ends like an uninterrupted run."""
    import os
    import signal

    from brainuad.training import loop

    vols = _data(1)
    settings = TrainSettings(max_steps=12, batch_size=4, lr=1e-3, val_every=4, seed=3, checkpoint_every_s=1e9)
    kw = dict(progress=False, device="cpu")
    ref = fit("vae", HP, vols[:4], vols[4:], settings, out_model=tmp_path / "a/model.pt",
              out_log=tmp_path / "a/log.tsv", workdir=tmp_path / "a/work", **kw)
    calls = {"n": 0}
    real = loop.sample_batch

    def sample_then_signal(*args, **kwargs):  # the signal arrives while step 7 is being computed
        calls["n"] += 1
        if calls["n"] == 7:
            os.kill(os.getpid(), getattr(signal, signame))
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "sample_batch", sample_then_signal)
    part = fit("vae", HP, vols[:4], vols[4:], settings, out_model=tmp_path / "b/model.pt",
               out_log=tmp_path / "b/log.tsv", workdir=tmp_path / "b/work", **kw)
    assert part["status"] == "interrupted" and part["step"] == 7
    assert (tmp_path / "b/work").exists() and not (tmp_path / "b/model.pt").exists()
    assert signal.getsignal(getattr(signal, signame)) is not None  # handler restored, process alive
    monkeypatch.setattr(loop, "sample_batch", real)
    done = fit("vae", HP, vols[:4], vols[4:], settings, out_model=tmp_path / "b/model.pt",
               out_log=tmp_path / "b/log.tsv", workdir=tmp_path / "b/work", **kw)
    assert done == ref
    a = torch.load(tmp_path / "a/model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "b/model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_state_saved_on_other_data_of_the_same_shape_is_not_resumed(tmp_path):
    """A rerun after the data changed (e.g. a new split with the same subject counts) trains from scratch on the new
    data instead of resuming -- or, when the first run had finished, returning -- the state of the old data."""
    from brainuad.training.loop import data_digest

    old, new = _data(0), _data(1)
    assert old.shape == new.shape and data_digest(old[:4], old[4:]) != data_digest(new[:4], new[4:])
    assert data_digest(old[:4], old[4:]) == data_digest(old[:4].copy(), old[4:].copy())
    assert data_digest(old[:4], old[4:]) != data_digest(old[:4].astype(np.float32), old[4:])
    settings = TrainSettings(max_steps=6, batch_size=4, lr=1e-3, val_every=3, seed=5, checkpoint_every_s=1e9)
    kw = dict(progress=False, device="cpu")
    fit("vae", HP, old[:4], old[4:], settings, out_model=tmp_path / "a/model.pt", out_log=tmp_path / "a/log.tsv",
        workdir=tmp_path / "a/work", **kw)  # finished on the old data
    rerun = fit("vae", HP, new[:4], new[4:], settings, out_model=tmp_path / "a/model.pt", out_log=tmp_path / "a/log.tsv",
                workdir=tmp_path / "a/work", **kw)
    fresh = fit("vae", HP, new[:4], new[4:], settings, out_model=tmp_path / "b/model.pt", out_log=tmp_path / "b/log.tsv",
                workdir=tmp_path / "b/work", **kw)
    assert rerun == fresh
    a = torch.load(tmp_path / "a/model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "b/model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
