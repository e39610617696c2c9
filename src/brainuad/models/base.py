"""What a model is: the attributes and methods the training loop and inference rely on.

The interface is a set of :class:`typing.Protocol` classes rather than an abstract base class:
reconstruction models and map-producing models have disjoint methods (``reconstruct`` vs
``anomaly_map``), learning-free models have no ``loss``, and a structural check lets a model be any
plain ``nn.Module`` subclass that declares the members, without a common base class. Each model family
declares the members in its own class body (e.g. the diffusion models' shared base); :func:`check_model`
verifies a class or an instance, and ``tests/models/test_interface.py`` runs it on every registered model.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import torch

#: what a model's inference output is: reconstructions of the input, or an anomaly map
PRODUCES = ("recon", "map")
#: where ``loss`` draws its random numbers: on the model's device, or on the CPU
RANDOM_DEVICES = ("model", "cpu")


@runtime_checkable
class Model(Protocol):
    """Members every registered model declares.

    Attributes
    ----------
    input_dims : {2, 3}
        2: the model takes axial slices (B, 1, H, W); 3: whole volumes (B, 1, D, H, W).
    trainable : bool
        False for learning-free models (no train job; built from their hyper-parameters).
    produces : {"recon", "map"}
        "recon": :class:`Reconstructor` (scored against the input); "map": :class:`MapProducer`.
    """

    input_dims: int
    trainable: bool
    produces: Literal["recon", "map"]


@runtime_checkable
class Trainable(Protocol):
    """What :func:`brainuad.training.fit` trains (every model with ``trainable = True``).

    Attributes
    ----------
    input_dims : {2, 3}
        Selects the batches: slices (B, 1, H, W) or volumes (B, 1, D, H, W).
    random_device : {"model", "cpu"}
        Device of the generator the loop passes to :meth:`loss`: the model's device, or the CPU
        (for objectives that draw their randomness on the CPU before moving it to the model).

    A model may declare ``param_groups(lr) -> list[dict]`` (optimiser parameter groups with learning rates
    of their own, e.g. EDC's encoder and decoder) and ``closed_form = True`` with
    ``fit_reference(train_volumes)`` instead of ``loss`` (fitted without gradient steps, e.g. the covariance
    model).

    A model may also declare ``accepts_target = True`` when its ``loss`` takes a keyword ``target`` (the
    un-erased batch): only such models can be trained with spatial erasing (``TrainSettings.erasing``,
    :mod:`brainuad.training.erasing`), which corrupts the input and keeps the clean batch as the target.
    """

    input_dims: int
    random_device: Literal["model", "cpu"]

    def loss(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training loss of a batch of healthy inputs.

        Parameters
        ----------
        batch : Tensor (B, 1, H, W) or (B, 1, D, H, W), in [0, 1]
        generator : torch.Generator, optional
            Source of every random number the loss draws (seeded by the loop, so training resumes
            bit-identically).

        Returns
        -------
        Tensor () — mean over the batch (the loop weights validation batches by B).
        """


@runtime_checkable
class Reconstructor(Protocol):
    """A model with ``produces = "recon"``."""

    def reconstruct(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, noise_level=None, samples: int = 1,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Reconstructions of the inputs.

        Parameters
        ----------
        x : Tensor (B, 1, H, W) or (B, 1, D, H, W), in [0, 1]
        mask : BoolTensor of x's shape, optional
            Brain mask (True inside).
        noise_level : optional
            Model-specific test-time corruption (diffusion models: t_test or a list of them).
        samples : int
            Independent reconstructions S.
        generator : torch.Generator, optional
            Source of every random number (on x's device).

        Returns
        -------
        Tensor (S, *x.shape)
        """


@runtime_checkable
class MapProducer(Protocol):
    """A model with ``produces = "map"`` (feature-based or learning-free)."""

    def anomaly_map(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Anomaly map of the inputs.

        Parameters
        ----------
        x : Tensor (B, 1, H, W) or (B, 1, D, H, W), in [0, 1]
        mask : BoolTensor of x's shape (True inside the brain)

        Returns
        -------
        Tensor of x's shape; higher = more anomalous.
        """


def _members(proto) -> list[str]:
    """Names a protocol class declares: its annotated attributes and its methods."""
    methods = [k for k, v in vars(proto).items() if callable(v) and not k.startswith("_")]
    return list(proto.__annotations__) + methods


def check_model(model) -> None:
    """Raise TypeError naming what ``model`` (a class or an instance) lacks of the interface.

    Checks the :class:`Model` attributes and their values, :class:`Trainable` for trainable models and
    :class:`Reconstructor` / :class:`MapProducer` according to ``produces``.
    """
    name = getattr(model, "__name__", type(model).__name__)
    missing = [m for m in ("input_dims", "trainable", "produces") if not hasattr(model, m)]
    if missing:
        raise TypeError(f"{name} does not declare {', '.join(missing)}")
    if model.input_dims not in (2, 3):
        raise TypeError(f"{name}.input_dims must be 2 or 3, got {model.input_dims!r}")
    if model.produces not in PRODUCES:
        raise TypeError(f"{name}.produces must be one of {PRODUCES}, got {model.produces!r}")
    # a closed-form model (``closed_form = True``, e.g. the covariance model) is fitted by ``fit_reference``
    # instead of gradient steps, so it has no ``loss``
    closed_form = getattr(model, "closed_form", False)
    if model.trainable and closed_form and not hasattr(model, "fit_reference"):
        raise TypeError(f"{name} is closed_form but does not declare fit_reference")
    gradient_trained = model.trainable and not closed_form
    needed = [Reconstructor if model.produces == "recon" else MapProducer] + ([Trainable] if gradient_trained else [])
    for proto in needed:
        for member in _members(proto):
            if not hasattr(model, member):
                raise TypeError(f"{name} ({proto.__name__}) does not declare {member}")
    if gradient_trained and model.random_device not in RANDOM_DEVICES:
        raise TypeError(f"{name}.random_device must be one of {RANDOM_DEVICES}, got {model.random_device!r}")


def posterior_reconstructions(decode, mu: torch.Tensor, logvar: torch.Tensor, samples: int,
                              generator: torch.Generator | None = None) -> torch.Tensor:
    """Reconstructions of a Gaussian-posterior model: the posterior mean, then ``samples - 1`` draws.

    Parameters
    ----------
    decode : callable
        Latent tensor of ``mu``'s shape -> reconstruction (B, 1, ...).
    mu, logvar : Tensor
        Posterior mean and log-variance, same shape.
    samples : int
        Number of reconstructions; the first decodes ``mu``, the others z = mu + eps * exp(logvar / 2) with
        eps ~ N(0, 1) drawn from ``generator`` in order (for the multi-sample scores).

    Returns
    -------
    Tensor (samples, B, 1, ...)
    """
    outs = [decode(mu)]
    for _ in range(samples - 1):
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        outs.append(decode(mu + eps * (0.5 * logvar).exp()))
    return torch.stack(outs)
