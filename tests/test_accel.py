"""GPU fast paths (brainuad.accel, batched diffusion reconstruction, training-loop switches) on the CPU.

The CUDA-only checks at the end skip without a GPU.
"""

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from brainuad.accel import amp_enabled, autocast, compile_forward, prepare, to_device
from brainuad.inference import run_model
from brainuad.models import build
from brainuad.training import TrainSettings, fit, load_model

MODELS = ["anoddpm", "pddpm", "cddpm"]
TINY = dict(image_size=(32, 32), channels=[8, 16], res_blocks=1)
ENC = dict(context_dim=8, encoder_channels=(8, 16), encoder_blocks=(1, 1))
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def tiny(name, **kw):
    torch.manual_seed(0)
    extra = dict(ENC) if name == "cddpm" else {}
    extra.update(kw)
    return build(name, **TINY, **extra).eval()


def gen(seed):
    return torch.Generator().manual_seed(seed)


def brains(n=2, d=5, size=32, seed=0):
    """Smooth 'brains': an ellipse of low-frequency texture, (n, d, size, size) float32 in [0, 1], and masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    mask = (yy / 0.8) ** 2 + (xx / 0.65) ** 2 < 1
    from scipy.ndimage import gaussian_filter

    vols = np.stack([np.stack([gaussian_filter(rng.random((size, size)), 2) for _ in range(d)]) for _ in range(n)])
    vols = (vols - vols.min()) / (vols.max() - vols.min())
    return (0.3 + 0.6 * vols) * mask, np.broadcast_to(mask, vols.shape).astype(np.uint8)


@torch.no_grad()
def looped_reference(m, x, levels, samples, generator):
    """The per-sample loop the batched path replaces, written out: for each sample, for each level, draw a
    noise field and make one single-step reconstruction; average the levels; (S, B, 1, H, W)."""
    x0s, ctx = m.scale(x), m.context(x)
    outs = []
    for _ in range(samples):
        acc = None
        for t in levels:
            noise = m.draw_noise(x.shape, generator, x.device, x.dtype)
            rec = m.reconstruct_once(x0s, t - 1, noise, ctx)
            acc = rec if acc is None else acc + rec
        outs.append(m.unscale(acc / len(levels)))
    return torch.stack(outs)


# ------------------------------------------------------------------------------------- batched reconstruction


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("max_images", [None, 7])
def test_batched_samples_and_ens_equal_the_per_sample_loop(name, max_images):
    m = tiny(name)
    x = torch.rand(4, 1, 32, 32, generator=gen(1))
    levels = [250, 500, 750]
    batched = m.reconstruct(x, None, noise_level=levels, samples=3, generator=gen(7), max_images=max_images)
    reference = looped_reference(m, x, levels, 3, gen(7))
    assert batched.shape == (3, 4, 1, 32, 32)
    assert torch.allclose(batched, reference, atol=1e-5, rtol=0)
    assert not torch.allclose(batched[0], batched[1])  # fresh noise per sample


@pytest.mark.parametrize("name", MODELS)
def test_batched_reconstruction_calls_the_network_in_budget_sized_chunks(name, monkeypatch):
    m = tiny(name)
    sizes = []
    denoise = m.denoise

    def counting(x_in, t, context=None):
        sizes.append(x_in.shape[0])
        return denoise(x_in, t, context)

    monkeypatch.setattr(m, "denoise", counting)
    x = torch.rand(5, 1, 32, 32, generator=gen(2))
    m.reconstruct(x, None, noise_level=[250, 500], samples=4, generator=gen(3), max_images=64)
    positions = 4 if name == "pddpm" else 1  # 2 x 2 grid of 16 px patches on 32 x 32
    total = 4 * 2 * positions * 5
    assert sum(sizes) == total and max(sizes) <= 64
    assert len(sizes) == -(-total // 64)  # no call per sample or level: only the budget splits the work


def test_images_per_call_follows_the_memory_budget():
    m = tiny("anoddpm")
    per_image = m.activation_bytes(4)
    # hand count for 32 x 32, channels [8, 16], 1 res block: skips 8*1024 (input) + 8*1024*(1+1) + 16*256*1
    # = 28672 elements; widest decoder input 2 * 8 * 1024 = 16384 -> (28672 + 8 * 16384) * 4 bytes
    assert per_image == (28672 + 8 * 16384) * 4
    assert m.activation_bytes(2) * 2 == per_image
    assert m.images_per_call(per_image * 10 / 2**20) == 10
    assert m.images_per_call(1e-9) == 1


def test_run_model_memory_budget_changes_no_number_and_batch_size_no_noise():
    vols, masks = brains(2, 6)
    m = tiny("cddpm")
    a = run_model(m, vols, masks, samples=3, noise_level=[250, 750], batch_size=2, seed=4)
    b = run_model(m, vols, masks, samples=3, noise_level=[250, 750], batch_size=64, seed=4)
    c = run_model(m, vols, masks, samples=3, noise_level=[250, 750], memory_mb=0.5, seed=4)
    assert a.shape == (3, 2, 6, 32, 32)
    assert np.allclose(a, b, atol=1e-3) and np.allclose(a, c, atol=1e-3)  # float16 storage
    # and every volume equals the loop over samples on its whole slice stack
    g = torch.Generator().manual_seed(4)
    for i in range(2):
        x = torch.from_numpy(vols[i].astype(np.float32))[:, None]
        ref = looped_reference(m, x, [250, 750], 3, g)
        assert np.allclose(a[:, i], ref[:, :, 0].numpy(), atol=1e-3)


# ------------------------------------------------------------------------------------------------ bf16


def test_amp_setting_values():
    assert amp_enabled(True, "cuda") and not amp_enabled(True, "cpu")
    assert amp_enabled("always", "cpu") and not amp_enabled(False, "cuda")
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="amp must be"):
            amp_enabled(bad, "cpu")
    with autocast("cpu", True):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast("cpu", False):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32


@pytest.mark.parametrize("name", MODELS)
def test_bf16_reconstruction_keeps_the_anomaly_maps(name):
    """The metric check of performance.reconstruct_amp: bf16 autocast (CPU) vs fp32 reconstructions of the
    same volumes and noise: within 0.03 everywhere on the [0, 1] scale, and l1 anomaly maps correlated > 0.99."""
    vols, masks = brains(2, 4, seed=3)
    m = tiny(name)
    fp32 = run_model(m, vols, masks, samples=2, noise_level=[250, 500, 750], seed=5).astype(np.float32)
    bf16 = run_model(m, vols, masks, samples=2, noise_level=[250, 500, 750], seed=5, amp="always").astype(np.float32)
    assert not np.array_equal(fp32, bf16)  # the switch reached the network
    assert np.abs(fp32 - bf16).max() < 0.03
    brain = masks.astype(bool)
    maps32, maps16 = np.abs(vols - fp32)[:, brain], np.abs(vols - bf16)[:, brain]
    for s in range(2):
        assert np.corrcoef(maps32[s], maps16[s])[0, 1] > 0.99


def test_bf16_training_switch_reaches_the_loop(tmp_path):
    vols, _ = brains(4, 3)
    kw = dict(out_log=tmp_path / "l.tsv", progress=False, device="cpu")
    hp = {**TINY}
    runs = {}
    for amp in (False, "always"):
        s = TrainSettings(max_steps=3, batch_size=4, val_every=3, amp=amp, seed=1)
        fit("anoddpm", hp, vols[:3].astype(np.float16), vols[3:].astype(np.float16), s,
            out_model=tmp_path / f"{amp}.pt", workdir=tmp_path / f"w{amp}", **kw)
        runs[amp] = torch.load(tmp_path / f"{amp}.pt", weights_only=False)["state_dict"]
    assert any(not torch.equal(runs[False][k], runs["always"][k]) for k in runs[False])


# ---------------------------------------------------------------------------------- layout and compilation


@pytest.mark.parametrize("name", ["anoddpm", "cddpm"])
def test_channels_last_gives_the_same_reconstructions(name):
    vols, masks = brains(1, 4)
    ref = run_model(tiny(name), vols, masks, samples=2, seed=2)
    m = prepare(tiny(name), channels_last=True)
    assert m.unet.inp.weight.is_contiguous(memory_format=torch.channels_last)
    assert np.allclose(run_model(m, vols, masks, samples=2, seed=2), ref, atol=1e-3)


def test_compile_failure_falls_back_to_eager_with_a_warning(monkeypatch):
    m = tiny("anoddpm")
    x, t = torch.rand(2, 1, 32, 32), torch.tensor([3, 400])
    expected = m.unet(x, t)
    keys = list(m.state_dict())

    def broken_compile(fn, **kw):
        def run(*a, **k):
            raise RuntimeError("no C++ compiler")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    compile_forward(m.unet, True)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        out = m.unet(x, t)
    assert torch.equal(out, expected) and m.unet.compiled_forward == {"compiled": False}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, then eager silently
        assert torch.equal(m.unet(x, t), expected)
    assert list(m.state_dict()) == keys  # checkpoints keep their keys


def test_compile_uses_the_compiled_forward_when_it_works(monkeypatch):
    m = tiny("anoddpm")
    seen = {}

    def fake_compile(fn, mode=None, dynamic=None):
        seen["mode"] = mode

        def run(*a, **k):
            seen["called"] = True
            return fn(*a, **k)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    compile_forward(m.unet, "max-autotune")
    m.unet(torch.rand(1, 1, 32, 32), torch.tensor([5]))
    assert seen == {"mode": "max-autotune", "called": True} and m.unet.compiled_forward == {"compiled": True}
    assert compile_forward(tiny("anoddpm").unet, False).forward.__name__ == "forward"  # off: untouched


# ------------------------------------------------------------------------------------------- training loop


def _train(tmp_path, name, arch="anoddpm", **settings):
    vols, _ = brains(4, 3, seed=1)
    vols = vols.astype(np.float16)
    s = TrainSettings(**{"max_steps": 9, "batch_size": 4, "val_every": 4, "seed": 2, **settings})
    fit(arch, {**TINY}, vols[:3], vols[3:], s, out_model=tmp_path / f"{name}.pt", out_log=tmp_path / f"{name}.tsv",
        workdir=tmp_path / f"w-{name}", progress=False, device="cpu")
    return pd.read_csv(tmp_path / f"{name}.tsv", sep="\t"), torch.load(tmp_path / f"{name}.pt", weights_only=False)


def test_data_on_device_and_log_every_change_no_number(tmp_path):
    base_log, base = _train(tmp_path, "base", data_on_device=False, log_every=1)
    for name, kw in {"dev": {"data_on_device": True, "log_every": 1}, "k4": {"log_every": 4},
                     "k50": {"log_every": 50}}.items():
        log, ckpt = _train(tmp_path, name, **kw)
        assert log[["step", "loss", "val_loss"]].equals(base_log[["step", "loss", "val_loss"]])
        assert all(torch.equal(ckpt["state_dict"][k], base["state_dict"][k]) for k in base["state_dict"])


def test_resume_with_sparse_read_back_is_bit_identical(tmp_path):
    vols, _ = brains(4, 3, seed=1)
    vols = vols.astype(np.float16)
    s = TrainSettings(max_steps=10, batch_size=4, val_every=4, seed=2, log_every=3)
    kw = dict(progress=False, device="cpu")
    fit("anoddpm", {**TINY}, vols[:3], vols[3:], s, out_model=tmp_path / "a.pt", out_log=tmp_path / "a.tsv",
        workdir=tmp_path / "wa", **kw)
    r = fit("anoddpm", {**TINY}, vols[:3], vols[3:], s, out_model=tmp_path / "b.pt", out_log=tmp_path / "b.tsv",
            workdir=tmp_path / "wb", stop_after_steps=5, **kw)
    assert r["status"] == "interrupted"
    # resuming with another read-back interval (a runtime-only setting) still resumes
    s2 = dataclasses.replace(s, log_every=7)
    fit("anoddpm", {**TINY}, vols[:3], vols[3:], s2, out_model=tmp_path / "b.pt", out_log=tmp_path / "b.tsv",
        workdir=tmp_path / "wb", **kw)
    la, lb = pd.read_csv(tmp_path / "a.tsv", sep="\t"), pd.read_csv(tmp_path / "b.tsv", sep="\t")
    assert la[["step", "loss", "val_loss"]].equals(lb[["step", "loss", "val_loss"]])
    a, b = torch.load(tmp_path / "a.pt", weights_only=False), torch.load(tmp_path / "b.pt", weights_only=False)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_non_finite_loss_is_reported_at_the_read_back(tmp_path, monkeypatch):
    from brainuad.models.diffusion import AnoDDPM

    real = AnoDDPM.loss
    calls = []

    def loss(self, batch, generator=None):
        calls.append(1)
        value = real(self, batch, generator)
        return value * float("nan") if len(calls) == 3 else value

    monkeypatch.setattr(AnoDDPM, "loss", loss)
    with pytest.raises(FloatingPointError, match="nan at step 2"):
        _train(tmp_path, "nan", log_every=5, val_every=100, max_steps=20)
    assert len(calls) == 5  # training ran on to the read-back at step 5 (no per-step host sync)


def test_channels_last_training_runs_and_keeps_the_checkpoint_loadable(tmp_path):
    log, ckpt = _train(tmp_path, "cl", channels_last=True)
    _, ref = _train(tmp_path, "ref")
    assert np.allclose(log["loss"], _train(tmp_path, "ref2")[0]["loss"], atol=1e-4)
    assert set(ckpt["state_dict"]) == set(ref["state_dict"])
    load_model(tmp_path / "cl.pt", "cpu")


# --------------------------------------------------------------------------------------------------- CUDA


@CUDA
def test_cuda_data_on_device_equals_cpu_gather_and_pinned_copy(tmp_path):
    x = torch.rand(3, 4)
    assert torch.equal(to_device(x, "cuda").cpu(), x)
    vols, _ = brains(4, 3, seed=1)
    vols = vols.astype(np.float16)
    logs = []
    for on in (True, False):
        s = TrainSettings(max_steps=6, batch_size=4, val_every=3, seed=2, data_on_device=on, amp=False)
        fit("anoddpm", {**TINY}, vols[:3], vols[3:], s, out_model=tmp_path / f"{on}.pt", out_log=tmp_path / f"{on}.tsv",
            workdir=tmp_path / f"w{on}", progress=False, device="cuda")
        logs.append(pd.read_csv(tmp_path / f"{on}.tsv", sep="\t")[["step", "loss", "val_loss"]])
    assert np.allclose(logs[0]["loss"], logs[1]["loss"], atol=1e-5)


@CUDA
@pytest.mark.parametrize("name", MODELS)
def test_cuda_batched_reconstruction_and_bf16(name):
    vols, masks = brains(2, 4)
    m = tiny(name).cuda()
    a = run_model(m, vols, masks, samples=3, noise_level=[250, 500], seed=1, device="cuda")
    b = run_model(m, vols, masks, samples=3, noise_level=[250, 500], seed=1, device="cuda", memory_mb=1)
    c = run_model(m, vols, masks, samples=3, noise_level=[250, 500], seed=1, device="cuda", amp=True)
    assert np.allclose(a, b, atol=2e-3) and np.abs(a.astype(np.float32) - c).max() < 0.03
