import pytest
import torch

from brainuad.models import _REGISTRY, available, build
from brainuad.models.base import MapProducer, Model, Reconstructor, Trainable, check_model
from brainuad.models.masked_autoencoder import MaskedAutoencoder

SMALL = {
    "ae": dict(image_size=(16, 16), channels=[4, 8], latent_dim=4),
    "vae": dict(image_size=(16, 16), channels=[4, 8], latent_dim=4),
    "vae2d_p81": dict(image_size=(16, 16), channels=[4, 8], latent_dim=4),
    "vae3d": dict(image_size=(4, 16, 16), channels=[4, 8], latent_dim=4),
    "dae": dict(image_size=(16, 16), channels=[4, 8], noise_res=4),
    "svae": dict(image_size=(4, 16, 16), channels=[4, 8], d_model=8, latent_dim=4, layers=1, heads=2),
    "anoddpm": dict(image_size=(16, 16), channels=[4, 8], res_blocks=1),
    "pddpm": dict(image_size=(16, 16), channels=[4, 8], res_blocks=1),
    "cddpm": dict(image_size=(16, 16), channels=[4, 8], res_blocks=1, context_dim=4, encoder_channels=[4, 8],
                  encoder_blocks=[1, 1]),
    "draem_net": dict(recon_channels=[4, 8], seg_channels=[4, 8]),
    "pii": dict(channels=[4, 8]),
    "fpi": dict(channels=[4, 8]),
}
SMALL["sadm"] = dict(stage1_arch="cddpm", stage1_hparams=SMALL["cddpm"], channels=[4, 8], groups=4)


@pytest.mark.parametrize("name", available())
def test_every_registered_model_satisfies_the_interface(name):
    check_model(_REGISTRY[name])
    model = build(name, **SMALL.get(name, {}))
    check_model(model)
    assert isinstance(model, Model)
    assert isinstance(model, Reconstructor if model.produces == "recon" else MapProducer)
    assert isinstance(model, Trainable) == model.trainable


def test_every_registered_model_runs_its_declared_inference():
    for name in available():
        model = build(name, **SMALL.get(name, {})).eval()
        shape = (2, 1, 16, 16) if model.input_dims == 2 else (1, 1, 4, 16, 16)
        x, mask = torch.rand(shape), torch.ones(shape, dtype=torch.bool)
        if model.produces == "recon":
            assert model.reconstruct(x, mask, samples=2, generator=torch.Generator().manual_seed(0)).shape == (2, *shape)
        else:
            assert model.anomaly_map(x, mask).shape == shape


def test_check_model_names_what_is_missing():
    class NoReconstruct(torch.nn.Module):
        input_dims, trainable, produces, random_device = 2, True, "recon", "model"

        def loss(self, batch, generator=None):
            return batch.mean()

    with pytest.raises(TypeError, match="NoReconstruct \\(Reconstructor\\) does not declare reconstruct"):
        check_model(NoReconstruct)
    NoReconstruct.produces = "maps"
    with pytest.raises(TypeError, match="produces must be one of"):
        check_model(NoReconstruct)
    with pytest.raises(TypeError, match="does not declare input_dims"):
        check_model(torch.nn.Linear)


def test_the_pretraining_objective_is_trainable_but_not_a_uad_model():
    mae = MaskedAutoencoder({"channels": [4, 8], "blocks": [1, 1], "context_dim": 4}, patch=4)
    assert isinstance(mae, Trainable) and mae.random_device == "cpu"
    assert not isinstance(mae, Model)


def test_schema_arch_names_are_the_registry():
    """A new model is one module with @register plus its name in the schema enum; this keeps the two equal."""
    from pathlib import Path

    import yaml

    from brainuad.models import available

    schema = yaml.safe_load((Path(__file__).resolve().parents[2] / "workflow" / "schemas" /
                             "config.schema.yaml").read_text())
    assert schema["properties"]["models"]["additionalProperties"]["properties"]["arch"]["enum"] == available()
