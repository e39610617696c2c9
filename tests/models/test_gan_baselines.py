"""RA, PHANES and f-AnoGAN: shapes, staged / alternating updates, loss decrease, maps, determinism."""

import math

import numpy as np
import pytest
import torch

from brainuad.models import build
from brainuad.models.adversarial import frozen, gradient_penalty

SMALL = {
    "ra": dict(image_size=(16, 16), channels=[8, 16], latent_dim=8),
    "phanes": dict(image_size=(16, 16), channels=[8, 16], latent_dim=8, ra_steps=2, inpaint_channels=[4, 8]),
    "fanogan": dict(image_size=(16, 16), channels=[8, 16], latent_dim=8, gan_steps=6, n_critic=2),
}


def _batch(n=8, seed=0):
    """Smooth blobs in [0, 1] (B, 1, 16, 16)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    c = torch.rand((n, 2), generator=g) - 0.5
    r = 0.3 + 0.3 * torch.rand((n, 1, 1), generator=g)
    img = torch.exp(-((xx - c[:, :1, None]) ** 2 + (yy - c[:, 1:, None]) ** 2) / r ** 2)
    return img.unsqueeze(1)


def _step(model, opt, x, gen):
    loss = model.loss(x, generator=gen)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_shapes_and_reconstruction_range(name):
    torch.manual_seed(0)
    model = build(name, **SMALL[name]).eval()
    x = _batch(3)
    rec = model.reconstruct(x, torch.ones_like(x, dtype=torch.bool), samples=2, generator=torch.Generator().manual_seed(1))
    assert rec.shape == (2, 3, 1, 16, 16)
    assert rec.min() >= 0 and rec.max() <= 1
    with pytest.raises(ValueError, match="expected slices of shape"):
        model.reconstruct(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="divisible"):
        build(name, **{**SMALL[name], "image_size": (18, 16)})


@pytest.mark.parametrize("name", sorted(SMALL))
def test_determinism_under_a_seed(name):
    def run():
        torch.manual_seed(3)
        model = build(name, **SMALL[name])
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        gen = torch.Generator().manual_seed(4)
        losses = [_step(model, opt, _batch(), gen) for _ in range(6)]
        model.eval()
        return losses, model.reconstruct(_batch(2, seed=9), samples=2, generator=torch.Generator().manual_seed(5))

    (la, ra), (lb, rb) = run(), run()
    assert la == lb and torch.equal(ra, rb)


def test_fanogan_alternates_critic_and_generator_then_trains_only_the_encoder():
    torch.manual_seed(0)
    model = build("fanogan", **SMALL["fanogan"])  # gan_steps 6, n_critic 2: C C G C C G, then encoder
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    gen, x = torch.Generator().manual_seed(0), _batch()
    expected = ["critic", "critic", "generator"] * 2 + ["encoder"] * 2
    for kind in expected:
        before = {k: _params(getattr(model, k)) for k in ("critic", "generator", "encoder")}
        _step(model, opt, x, gen)
        for k in ("critic", "generator", "encoder"):
            assert _same(before[k], _params(getattr(model, k))) == (k != kind), (kind, k)
    assert int(model.train_step) == 8 and model.stage() == "encoder"


def test_fanogan_validation_is_inf_in_the_gan_stage_and_izi_f_afterwards():
    torch.manual_seed(0)
    model = build("fanogan", **SMALL["fanogan"])
    x = _batch()
    model.eval()
    with torch.no_grad():
        assert math.isinf(float(model.loss(x)))
        model.train_step.fill_(6)
        val = float(model.loss(x))
        rec = model(x)
        feats = model.critic.features(torch.cat([x, rec]))
        fx, fr = feats.chunk(2)
    expected = float(((rec - x) ** 2).mean() + ((fr - fx) ** 2).mean())  # kappa = 1
    assert val == pytest.approx(expected, rel=1e-5)
    assert int(model.train_step) == 6  # validation does not advance the stage counter


def test_fanogan_losses_decrease_on_a_tiny_batch():
    torch.manual_seed(0)
    x = _batch(16)
    # critic: with the generator fixed, critic steps separate real from fake (its loss falls)
    model = build("fanogan", **{**SMALL["fanogan"], "gan_steps": 10 ** 6, "n_critic": 10 ** 6})
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    gen = torch.Generator().manual_seed(0)
    critic = [_step(model, opt, x, gen) for _ in range(15)]
    assert np.mean(critic[-3:]) < np.mean(critic[:3])
    # encoder stage: on images the (fixed) generator can produce, izi_f learns to invert it (its loss falls)
    model = build("fanogan", **{**SMALL["fanogan"], "gan_steps": 0})
    with torch.no_grad():  # BatchNorm statistics of the generator's own samples (as after a GAN stage)
        for _ in range(30):
            model.generator(model.sample_latent(16))
    model.generator.eval()
    with torch.no_grad():
        x = model.generator(model.sample_latent(16, torch.Generator().manual_seed(2)))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    enc = [_step(model, opt, x, gen) for _ in range(20)]
    assert np.mean(enc[-5:]) < 0.9 * np.mean(enc[:5])


def test_fanogan_anomaly_map_is_the_paper_score_per_pixel():
    torch.manual_seed(0)
    model = build("fanogan", **{**SMALL["fanogan"], "kappa": 0.5}).eval()
    x = _batch(2)
    mask = torch.zeros_like(x, dtype=torch.bool)
    mask[..., 4:12, 4:12] = True
    amap = model.anomaly_map(x, mask)
    assert amap.shape == x.shape and (amap >= 0).all() and (amap[~mask] == 0).all()
    with torch.no_grad():
        rec = model(x)
        fx, fr = model.critic.features(torch.cat([x, rec])).chunk(2)
        d = ((fx - fr) ** 2).mean(1, keepdim=True)  # (B, 1, 4, 4): 16 px / 4 = 4 px cells
    # the bilinear upsampling preserves the mean of the feature residual map up to border effects; check
    # the residual part exactly where the feature part is removed by kappa = 0
    model.kappa = 0.0
    assert torch.allclose(model.anomaly_map(x, mask), ((x - rec) ** 2) * mask)
    model.kappa = 0.5
    up = torch.nn.functional.interpolate(d, size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.allclose(amap, (((x - rec) ** 2) + 0.5 * up) * mask, atol=1e-6)


def test_gradient_penalty_of_a_linear_critic():
    w = torch.randn(1, 1, 4, 4)
    critic = lambda t: (t * w).flatten(1).sum(1)  # gradient w everywhere: penalty (|w| - 1)^2
    real, fake = torch.rand(3, 1, 4, 4), torch.rand(3, 1, 4, 4)
    assert float(gradient_penalty(critic, real, fake)) == pytest.approx((float(w.norm()) - 1) ** 2, rel=1e-5)


def test_frozen_call_passes_gradients_to_inputs_only():
    lin = torch.nn.Linear(3, 1)
    x = torch.rand(2, 3, requires_grad=True)
    frozen(lin, x).sum().backward()
    assert lin.weight.grad is None and torch.allclose(x.grad, lin.weight.detach().expand(2, 3))


def test_ra_encoder_and_decoder_losses_reach_only_their_network():
    torch.manual_seed(0)
    model = build("ra", **SMALL["ra"])
    parts = model.soft_intro_losses(_batch(), torch.Generator().manual_seed(0))
    model.zero_grad(set_to_none=True)
    parts["encoder"].backward(retain_graph=True)
    assert all(p.grad is None for p in model.decoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    model.zero_grad(set_to_none=True)
    parts["decoder"].backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder.parameters())


def test_ra_reconstruction_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    model = build("ra", **SMALL["ra"])
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    x, gen = _batch(16), torch.Generator().manual_seed(0)

    def elbo():
        model.eval()
        with torch.no_grad():
            value = float(model.loss(x))
        model.train()
        return value

    start = elbo()
    for _ in range(30):
        _step(model, opt, x, gen)
    assert elbo() < 0.7 * start


def test_ra_validation_loss_is_the_scaled_elbo():
    torch.manual_seed(0)
    model = build("ra", **{**SMALL["ra"], "beta_rec": 16.0, "beta_kl": 2.0}).eval()
    x = _batch(4)
    with torch.no_grad():
        mu, logvar = model.posterior(x)
        rec = model.decode(mu)
        kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)
        expected = ((16.0 * ((x - rec) ** 2).flatten(1).sum(1) + 2.0 * kl) / 256).mean()
        assert float(model.loss(x)) == pytest.approx(float(expected), rel=1e-5)


def test_phanes_trains_ra_first_then_only_the_inpainting_gan():
    torch.manual_seed(0)
    model = build("phanes", **SMALL["phanes"])
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    gen, x = torch.Generator().manual_seed(0), _batch()
    model.eval()
    with torch.no_grad():
        assert math.isinf(float(model.loss(x)))  # no checkpoint before the inpainter trains
    model.train()
    for stage in ["ra", "ra", "inpaint", "inpaint"]:
        assert model.stage() == stage
        ra_before, inp_before = _params(model.encoder) + _params(model.decoder), _params(model.inpainter)
        d_before = _params(model.discriminator)
        _step(model, opt, x, gen)
        ra_after = _params(model.encoder) + _params(model.decoder)
        assert _same(ra_before, ra_after) == (stage == "inpaint")
        assert _same(inp_before, _params(model.inpainter)) == (stage == "ra")
        assert _same(d_before, _params(model.discriminator)) == (stage == "ra")


def test_phanes_inpainting_loss_decreases_and_masks_follow_the_thresholds():
    torch.manual_seed(0)
    model = build("phanes", **{**SMALL["phanes"], "ra_steps": 0})
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    x, gen = _batch(16), torch.Generator().manual_seed(0)
    l1 = []
    for _ in range(25):
        _step(model, opt, x, gen)
        l1.append(float(model.inpaint_losses(x, random_boxes=False)["l1"].detach()))
    assert l1[-1] < 0.7 * l1[0]
    # mask: |x - ra| > threshold, restricted to the brain, dilated by one 3x3 maximum
    ra = torch.zeros(1, 1, 16, 16)
    x1 = torch.zeros(1, 1, 16, 16)
    x1[0, 0, 8, 8], x1[0, 0, 2, 2] = 0.12, 0.5
    brain = torch.ones_like(x1, dtype=torch.bool)
    brain[..., :4, :4] = False
    m_test = model.residual_mask(x1, ra, 0.10, brain)
    assert m_test.sum() == 9 and m_test[0, 0, 7:10, 7:10].all()
    assert model.residual_mask(x1, ra, 0.15, brain).sum() == 0
    # the test-time reconstruction keeps every pixel outside the mask
    model.eval()
    xb = _batch(2)
    rec = model.reconstruct(xb, torch.ones_like(xb, dtype=torch.bool))[0]
    keep = model.residual_mask(xb, model(xb), model.mask_test) == 0
    assert torch.equal(rec[keep], xb[keep])


def test_fit_runs_the_stages_and_selects_an_encoder_stage_checkpoint(tmp_path):
    from brainuad.training import TrainSettings, fit, load_model

    vols = np.random.default_rng(0).random((3, 4, 16, 16)).astype(np.float32)
    hp = {**SMALL["fanogan"], "gan_steps": 6}
    settings = TrainSettings(max_steps=10, batch_size=4, lr=1e-3, val_every=2, betas=(0.0, 0.9), amp=False)
    out = fit("fanogan", hp, vols, vols[:1], settings, out_model=tmp_path / "m.pt", out_log=tmp_path / "log.tsv",
              workdir=tmp_path / "work", device="cpu", progress=False)
    assert out["status"] == "done" and out["best_step"] > 6 and math.isfinite(out["best_val_loss"])
    model = load_model(tmp_path / "m.pt", "cpu")
    assert model.stage() == "encoder"
