import numpy as np
import pytest
import torch

from brainuad.models import available, build
from brainuad.models.diffusion import (ConditionedDDPM, DiffusionSchedule, cosine_betas, grid_starts, linear_betas,
                                       patch_masks, stitch_patches)
from brainuad.models.diffusion.unet import DenoisingUnet, FiLMResBlock
from brainuad.models.encoder import ResNetEncoder
from brainuad.noise import make_noise

MODELS = ["anoddpm", "pddpm", "cddpm"]
TINY = dict(image_size=(32, 32), channels=[8, 16], res_blocks=1)
ENC = dict(context_dim=8, encoder_channels=(8, 16), encoder_blocks=(1, 1))


def tiny(name, **kw):
    torch.manual_seed(0)
    extra = dict(ENC) if name == "cddpm" else {}
    extra.update(kw)
    return build(name, **TINY, **extra)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def images(b=3, seed=0):
    return torch.rand(b, 1, 32, 32, generator=gen(100 + seed))


def reference_abar(T=1000):
    return torch.cumprod(1 - torch.linspace(1e-4, 2e-2, T, dtype=torch.float64), 0)


# ---------------------------------------------------------------------------------------------- schedule


def test_linear_schedule_endpoints_and_cosine_monotone():
    b = linear_betas(1000)
    assert b.shape == (1000,)
    assert b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(2e-2)
    c = cosine_betas(1000)
    abar = torch.cumprod(1 - c, 0)
    assert (abar[1:] < abar[:-1]).all() and abar[0] < 1 and abar[-1] >= 0
    assert (c >= 0).all() and (c <= 0.999).all()
    # the public code's numbers (peers §1.0): t = 499 -> sqrt(abar) = 0.703
    assert abar[499].sqrt().item() == pytest.approx(0.703, abs=2e-3)
    with pytest.raises(ValueError, match="linear' or 'cosine"):
        DiffusionSchedule("quadratic")


def test_q_sample_closed_form():
    s = DiffusionSchedule("linear", 1000)
    g = gen(0)
    x0, noise = torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)
    t = torch.tensor([0, 10, 499, 999])
    abar = reference_abar()[t].float().view(-1, 1, 1, 1)
    assert torch.allclose(s.q_sample(x0, t, noise), abar.sqrt() * x0 + (1 - abar).sqrt() * noise, atol=1e-5)
    assert "betas" not in s.state_dict()  # schedule buffers are not checkpointed


# ---------------------------------------------------------------------------------------------- Unet / FiLM


def test_film_block_conditioning_and_zero_modulation():
    torch.manual_seed(0)
    block = FiLMResBlock(8, 16, emb_dim=12)
    x = torch.randn(2, 8, 8, 8)
    e1, e2 = torch.randn(2, 12), torch.randn(2, 12)
    assert block(x, e1).shape == (2, 16, 8, 8)
    assert not torch.allclose(block(x, e1), block(x, e2))
    gamma, beta = block.film_params(e1)
    assert gamma.shape == beta.shape == (2, 16, 1, 1)
    with torch.no_grad():  # gamma = beta = 0 -> exactly the unconditioned path
        block.emb[1].weight.zero_()
        block.emb[1].bias.zero_()
    assert torch.equal(block(x, e1), block(x, None))


def test_unet_shapes_and_context_changes_output():
    torch.manual_seed(0)
    net = DenoisingUnet(channels=[8, 16], res_blocks=1, cond_dim=4)
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([3, 700])
    c1, c2 = torch.randn(2, 4), torch.randn(2, 4)
    assert net(x, t, c1).shape == (2, 1, 16, 16)
    assert not torch.allclose(net(x, t, c1), net(x, t, c2))
    assert not torch.allclose(net(x, t, c1), net(x, torch.tensor([4, 10]), c1))  # time conditioning
    with pytest.raises(ValueError, match="context of shape"):
        net(x, t)
    with pytest.raises(ValueError, match="divisible by 2"):
        net(torch.randn(1, 1, 15, 16), t[:1], c1[:1])
    attn = DenoisingUnet(channels=[8, 16], res_blocks=1, attention=True)
    assert attn(x, t).shape == (2, 1, 16, 16)


# ---------------------------------------------------------------------------------------------- models


def test_registered_with_interface():
    assert set(MODELS) <= set(available())
    for name in MODELS:
        m = tiny(name)
        assert (m.input_dims, m.trainable, m.produces) == (2, True, "recon")


@pytest.mark.parametrize("name", MODELS)
def test_loss_and_reconstruct_shapes_and_determinism(name):
    m = tiny(name)
    x = images()
    l1, l2, l3 = m.loss(x, generator=gen(1)), m.loss(x, generator=gen(1)), m.loss(x, generator=gen(2))
    assert l1.dim() == 0 and l1 > 0 and torch.isfinite(l1)
    assert torch.equal(l1, l2) and not torch.equal(l1, l3)
    l1.backward()
    assert all(p.grad is not None for p in m.unet.parameters())
    if name == "cddpm":  # the encoder is trained jointly
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.encoder.parameters())
    m.eval()
    mask = torch.ones_like(x, dtype=torch.bool)
    r1 = m.reconstruct(x, mask, samples=2, generator=gen(5))
    r2 = m.reconstruct(x, mask, samples=2, generator=gen(5))
    r3 = m.reconstruct(x, mask, samples=2, generator=gen(6))
    assert r1.shape == (2, 3, 1, 32, 32)
    assert torch.equal(r1, r2) and not torch.allclose(r1, r3)
    assert not torch.allclose(r1[0], r1[1])  # fresh noise per sample
    with pytest.raises(ValueError, match="expected slices"):
        m.reconstruct(torch.rand(2, 1, 16, 16))


@pytest.mark.parametrize("name", MODELS)
def test_single_step_reconstruction_is_one_call_from_closed_form_x_t(name, monkeypatch):
    """With the x0-predictor patched to return its input, a reconstruction IS x_t (mapped to [0, 1])."""
    m = tiny(name, t_test=300).eval()
    calls = []

    def identity(x_t, t, context=None):
        calls.append(t.clone())
        return x_t

    monkeypatch.setattr(m, "denoise", identity)
    x = images(4)
    rec = m.reconstruct(x, None, noise_level=500, generator=gen(9))
    assert rec.shape == (1, 4, 1, 32, 32)
    noise = make_noise("simplex", (1, 1, 32, 32), gen(9)).expand(4, 1, 32, 32)  # one shared field
    abar = reference_abar()[499].float()
    x_t = abar.sqrt() * (2 * x - 1) + (1 - abar).sqrt() * noise
    assert torch.allclose(rec[0], (x_t + 1) / 2, atol=1e-5)
    assert all((t == 499).all() for t in calls)  # thesis t = 500 -> 0-based step 499
    n_calls = len(calls)
    assert n_calls == 1 or name == "pddpm"  # one network call (pDDPM: one per chunk of patches)
    # default noise level from the t_test hyper-parameter
    calls.clear()
    m.reconstruct(x, None, generator=gen(9))
    assert all((t == 299).all() for t in calls)


@pytest.mark.parametrize("name", MODELS)
def test_ens_is_mean_of_single_level_reconstructions(name):
    m = tiny(name).eval()
    x = images()
    ens = m.reconstruct(x, None, noise_level=[250, 500, 750], generator=gen(3))
    g = gen(3)  # same generator stream: the ensemble draws one field per level, in order
    singles = [m.reconstruct(x, None, noise_level=t, generator=g) for t in (250, 500, 750)]
    assert torch.allclose(ens, sum(singles) / 3, atol=1e-5)
    assert not torch.allclose(singles[0], singles[2])
    with pytest.raises(ValueError, match="1..T"):
        m.reconstruct(x, None, noise_level=0)


def test_noise_shared_and_per_slice():
    m = tiny("anoddpm", noise_shared=True)
    e = m.draw_noise((3, 1, 32, 32), gen(0), "cpu", torch.float32)
    assert torch.equal(e[0], e[2])
    m = tiny("anoddpm", noise_shared=False, noise="gaussian")
    e = m.draw_noise((3, 1, 32, 32), gen(0), "cpu", torch.float32)
    assert not torch.allclose(e[0], e[2])
    assert torch.equal(e, torch.randn(3, 1, 32, 32, generator=gen(0)))


# ---------------------------------------------------------------------------------------------- pDDPM


def test_grid_starts_cover_the_image():
    assert grid_starts((96, 96), 48, 48).tolist() == [[0, 0], [0, 48], [48, 0], [48, 48]]
    assert grid_starts((64, 64), 48, 48).tolist() == [[0, 0], [0, 16], [16, 0], [16, 16]]
    starts = grid_starts((32, 32), 16, 8)
    assert len(starts) == 9
    assert (patch_masks(starts, 16, (32, 32)).sum(0) > 0).all()


def test_stitch_patches_identity_and_overlap_average():
    starts = grid_starts((12, 12), 6, 3)  # 3 x 3 overlapping grid
    masks = patch_masks(starts, 6, (12, 12))
    x = torch.rand(2, 1, 12, 12)
    k = len(starts)
    # identity: every position predicts the image itself -> the stitched image is the image
    assert torch.allclose(stitch_patches(x.expand(k, *x.shape), masks), x, atol=1e-6)
    # distinct constants per position -> every pixel is the mean over the patches covering it
    preds = torch.arange(k, dtype=torch.float32).view(k, 1, 1, 1, 1).expand(k, 2, 1, 12, 12)
    out = stitch_patches(preds, masks)
    expected = torch.zeros(12, 12)
    for i in range(12):
        for j in range(12):
            cover = [n for n, (r, c) in enumerate(starts.tolist()) if r <= i < r + 6 and c <= j < c + 6]
            expected[i, j] = sum(cover) / len(cover)
    assert torch.allclose(out[0, 0], expected) and torch.allclose(out[1, 0], expected)
    # non-overlapping grid: each pixel keeps its own patch's value
    starts2 = grid_starts((12, 12), 6, 6)
    preds2 = torch.arange(4.0).view(4, 1, 1, 1, 1).expand(4, 1, 1, 12, 12)
    out2 = stitch_patches(preds2, patch_masks(starts2, 6, (12, 12)))
    assert out2[0, 0, 0, 0] == 0 and out2[0, 0, 0, 11] == 1 and out2[0, 0, 11, 0] == 2 and out2[0, 0, 11, 11] == 3


@pytest.mark.parametrize("stride", [None, 8])
def test_pddpm_sliding_window_with_identity_denoiser_returns_x_t(stride, monkeypatch):
    """Each position keeps its patch of x_t (same field for all positions), so the stitch is x_t."""
    m = tiny("pddpm", patch_size=16, patch_stride=stride, chunk_size=5).eval()
    seen = []

    def identity(x_in, t, context=None):
        seen.append(x_in.shape[0])
        return x_in

    monkeypatch.setattr(m, "denoise", identity)
    x = images(2)
    rec = m.reconstruct(x, None, noise_level=400, generator=gen(4))
    noise = make_noise("simplex", (1, 1, 32, 32), gen(4)).expand(2, 1, 32, 32)
    abar = reference_abar()[399].float()
    x_t = abar.sqrt() * (2 * x - 1) + (1 - abar).sqrt() * noise
    assert torch.allclose(rec[0], (x_t + 1) / 2, atol=1e-5)
    k = 4 if stride is None else 9
    assert sum(seen) == k * 2 and max(seen) <= 5  # all (position, slice) pairs, chunked


def test_pddpm_training_noises_only_the_patch(monkeypatch):
    for sampling in ("grid", "random"):
        losses = {}
        for kind in ("patch", "full"):
            m = tiny("pddpm", patch_size=16, patch_sampling=sampling, patch_loss=kind)
            inputs = []

            def plus_one(x_in, t, context=None):
                inputs.append(x_in)
                return x_in + 1.0  # error = |x_in + 1 - x0|: exactly 1 outside the patch (x_in = x0 there)

            monkeypatch.setattr(m, "denoise", plus_one)
            x = images(4)
            losses[kind] = m.loss(x, generator=gen(0)).item()
            changed = (inputs[0] != 2 * x - 1).flatten(1).sum(1)
            assert (changed <= 16 * 16).all() and (changed > 200).all()  # only one 16 x 16 patch is noised
        # L_rec - L_p = the share of pixels outside the patch (error 1 there)
        assert losses["full"] - losses["patch"] == pytest.approx(1 - 16 * 16 / (32 * 32), abs=1e-5)


def test_pddpm_patch_size_fraction_and_validation():
    assert tiny("pddpm").patch_size == 16  # default 0.5 of the side (thesis 48 of 96)
    assert tiny("pddpm", patch_size=12).patch_size == 12
    with pytest.raises(ValueError, match="patch_size"):
        tiny("pddpm", patch_size=40)


# ---------------------------------------------------------------------------------------------- cDDPM


def test_cddpm_context_crop_and_pretrained_encoder(tmp_path):
    m = tiny("cddpm", encoder_crop=0.25)
    x = images(2)
    cropped = m.crop_for_encoder(x)
    assert torch.equal(cropped[..., 8:24, 8:24], x[..., 8:24, 8:24])
    assert cropped[..., :8, :].abs().sum() == 0 and cropped[..., :, 24:].abs().sum() == 0
    assert m.context(x).shape == (2, 8)
    assert torch.equal(tiny("cddpm").crop_for_encoder(x), x)

    torch.manual_seed(123)
    enc = ResNetEncoder(1, channels=(8, 16), blocks=(1, 1), context_dim=8)
    path = tmp_path / "pretrain.pt"
    torch.save({"encoder_state_dict": enc.state_dict(), "step": 1}, path)
    m = tiny("cddpm", pretrained_encoder=str(path))
    for k, v in enc.state_dict().items():
        assert torch.equal(m.encoder.state_dict()[k], v)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        tiny("cddpm", pretrained_encoder=str(tmp_path / "missing.pt"))


def test_cddpm_encoder_hparams_are_those_of_the_encoder_it_builds():
    hp = dict(TINY, **ENC)
    kwargs = ConditionedDDPM.encoder_hparams(hp)
    assert kwargs == {"in_channels": 1, "channels": [8, 16], "blocks": [1, 1], "context_dim": 8, "norm": "batch"}
    torch.manual_seed(0)
    enc = ResNetEncoder(**kwargs)
    assert enc.state_dict().keys() == tiny("cddpm").encoder.state_dict().keys()
    assert ConditionedDDPM.encoder_hparams({}) == {"in_channels": 1, "channels": [32, 64, 128, 256],
                                                   "blocks": [2, 2, 2, 2], "context_dim": 128, "norm": "batch"}


@pytest.mark.parametrize("name", MODELS)
def test_unknown_hyper_parameter_is_named(name):
    with pytest.raises(TypeError, match=f"model '{name}'.*bogus"):
        build(name, image_size=(32, 32), channels=[8, 16], res_blocks=1, bogus=1)


# ---------------------------------------------------------------------------------------------- training


@pytest.mark.parametrize("name", MODELS)
def test_trains_with_the_loop(name, tmp_path):
    from brainuad.training.loop import TrainSettings, fit, load_model

    rng = np.random.default_rng(0)
    train = rng.random((2, 4, 32, 32), dtype=np.float32)
    val = rng.random((1, 4, 32, 32), dtype=np.float32)
    hp = dict(TINY, **(ENC if name == "cddpm" else {}))
    settings = TrainSettings(max_steps=2, batch_size=4, val_every=2, val_max_slices=4, amp=False, seed=1)
    res = fit(name, hp, train, val, settings, out_model=tmp_path / "m.pt", out_log=tmp_path / "log.tsv",
              workdir=tmp_path / "w", device="cpu", progress=False)
    assert res["status"] == "done" and np.isfinite(res["best_val_loss"])
    model = load_model(tmp_path / "m.pt", device="cpu")
    rec = model.reconstruct(torch.from_numpy(val[0][:, None]), None, samples=2, generator=gen(0))
    assert rec.shape == (2, 4, 1, 32, 32) and torch.isfinite(rec).all()


def test_timestep_embedding_and_grid_starts_equal_monai():
    """Written out to keep MONAI's import out of the jobs; the values are MONAI's."""
    from monai.data.utils import dense_patch_slices
    from monai.networks.nets.diffusion_model_unet import get_timestep_embedding

    from brainuad.models.diffusion.unet import timestep_embedding

    t = torch.tensor([0, 1, 17, 250, 999])
    for dim in (8, 16, 33):
        torch.testing.assert_close(timestep_embedding(t, dim), get_timestep_embedding(t, dim), rtol=0, atol=0)
    for size, patch, stride in [((96, 96), 48, 48), ((64, 64), 48, 48), ((32, 40), 16, 8), ((12, 12), 6, 3),
                                ((64, 64), 32, 24), ((10, 10), 16, 4), ((30, 30), 7, 0)]:
        ref = [[sl[0].start, sl[1].start] for sl in dense_patch_slices(size, (patch, patch), (stride, stride))]
        assert grid_starts(size, patch, stride).tolist() == ref, (size, patch, stride)


def test_models_build_and_run_without_importing_monai():
    """Training and reconstruct jobs of every model (attention off, the default) never import MONAI."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from brainuad.models import available, build\n"
            "m = build('pddpm', channels=[8, 16], res_blocks=1, image_size=(32, 32), patch_size=0.5)\n"
            "m.eval(); x = torch.rand(2, 1, 32, 32)\n"
            "with torch.no_grad(): m.reconstruct(x)\n"
            "build('cddpm', channels=[8, 16], res_blocks=1, image_size=(32, 32))\n"
            "assert 'pddpm' in available()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'monai'))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
