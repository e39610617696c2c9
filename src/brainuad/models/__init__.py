"""Model registry: ``build(name, **hparams) -> nn.Module``.

What a model is (``input_dims``, ``trainable``, ``produces``, ``loss``, ``reconstruct`` /
``anomaly_map``) is declared in :mod:`brainuad.models.base`. The workflow feeds slices or volumes
according to ``input_dims``, so a 3D model needs no rule changes. Adding a model = one module under
``brainuad/models/`` with ``@register`` (every module of the package is imported when the registry is
first used) + one config entry.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    """Class decorator registering a model constructor under ``name``."""

    def deco(cls):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_builtin() -> None:
    """Import every module of the package and of its subpackages (``diffusion``, whose ``__init__``
    imports nothing), so that their ``@register`` decorators run."""
    for info in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
        importlib.import_module(info.name)


def available() -> list[str]:
    """Registered model names, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


#: constructor keywords that only initialise weights (e.g. a pre-trained encoder file); dropped when a
#: model is rebuilt from its own checkpoint, whose state dict already holds those weights
INIT_ONLY = ("pretrained_encoder", "stage1_checkpoint")


def model_class(name: str) -> Callable[..., nn.Module]:
    """The constructor registered as ``name`` (KeyError listing the available names)."""
    _load_builtin()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]


def build(name: str, **hparams) -> nn.Module:
    """Instantiate the model registered as ``name`` with keyword hyper-parameters.

    Raises
    ------
    KeyError
        Unknown model name (the message lists the available ones).
    TypeError
        A hyper-parameter the model does not accept (the message names it).
    """
    cls = model_class(name)
    try:
        return cls(**hparams)
    except TypeError as err:
        raise TypeError(f"model {name!r}: {err}") from err
