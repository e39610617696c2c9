"""Anomaly scoring: turn an input and its stored reconstructions into an anomaly map.

Every score is a pure function registered under a name and called through :func:`score`::

    amap = score("l1", image, recons, mask)

Shapes
------
image, mask : (B, 1, H, W) slices or (B, 1, D, H, W) volumes (torch tensors or numpy arrays).
recons : the image shape with a leading sample axis, (S, B, 1, H, W) or (S, B, 1, D, H, W);
    S = 1 for a single reconstruction.
returns : an anomaly map with the image's shape and type, zero outside the mask.

A scoring function receives tensors (numpy inputs are converted and the result converted back),
so the same code runs on CPU and CUDA.

A scoring registered with ``uses="maps"`` (``native``) takes the anomaly maps a learning-free model
stored itself instead of reconstructions; :func:`brainuad.scoring.stored.score_stored` applies
either kind to a stored reconstruct output.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

import numpy as np
import torch

_REGISTRY: dict[str, Callable] = {}
_USES: dict[str, str] = {}
USES = ("recons", "maps")
"""What a scoring reads: ``recons`` (the input and its reconstructions) or ``maps`` (the model's own maps)."""


def register(name: str, uses: str = "recons"):
    """Decorator that registers a scoring under ``name``.

    Parameters
    ----------
    name : str
    uses : {"recons", "maps"}, default "recons"
        ``"recons"``: ``fn(image, recons, mask, **params) -> map`` (see the module docstring);
        ``"maps"``: ``fn(maps, **params) -> maps`` on the (N, D, H, W) maps the model stored itself.
    """
    if uses not in USES:
        raise ValueError(f"uses must be one of {USES}, got {uses!r}")

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"scoring {name!r} is registered twice")
        _REGISTRY[name] = fn
        _USES[name] = uses
        return fn

    return deco


def available() -> list[str]:
    """Names of all registered scores, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def scoring_fn(name: str) -> Callable:
    """The registered function of scoring ``name``."""
    _load_builtin()
    if name not in _REGISTRY:
        raise KeyError(f"unknown scoring {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]


def uses_model_maps(name: str) -> bool:
    """True when scoring ``name`` takes the model's own anomaly maps rather than reconstructions."""
    scoring_fn(name)
    return _USES[name] == "maps"


def score(name: str, image, recons, mask, **params):
    """Compute the anomaly map ``name`` (see the module docstring for shapes).

    Parameters
    ----------
    name : str
        A registered scoring name, e.g. ``"l1"``.
    image : Tensor or ndarray, (B, 1, H, W) or (B, 1, D, H, W)
    recons : Tensor or ndarray, (S, *image.shape)
    mask : Tensor or ndarray, image shape, brain mask (non-zero = brain)
    **params
        Scoring hyper-parameters (from the config, passed through Snakemake ``params:``).

    Returns
    -------
    Tensor or ndarray with the image's shape; numpy in, numpy out.
    """
    fn = scoring_fn(name)
    if uses_model_maps(name):
        raise ValueError(f"scoring {name!r} takes the model's own anomaly maps, not reconstructions")
    as_numpy = isinstance(image, np.ndarray)
    img_t = torch.as_tensor(np.asarray(image, dtype=np.float32)) if as_numpy else image.float()
    rec_t = torch.as_tensor(np.asarray(recons, dtype=np.float32)) if as_numpy else recons.float()
    msk_t = torch.as_tensor(np.asarray(mask)).to(img_t.device) if as_numpy else mask.to(img_t.device)
    if rec_t.dim() != img_t.dim() + 1 or tuple(rec_t.shape[1:]) != tuple(img_t.shape):
        raise ValueError(
            f"recons must have shape (S, *image.shape) = (S, {tuple(img_t.shape)}), got {tuple(rec_t.shape)}"
        )
    if tuple(msk_t.shape) != tuple(img_t.shape):
        raise ValueError(f"mask shape {tuple(msk_t.shape)} differs from image shape {tuple(img_t.shape)}")
    out = fn(img_t, rec_t, msk_t > 0, **params)
    return out.cpu().numpy() if as_numpy else out


_loaded = False


def _load_builtin():
    """Import every module of the package, so that their ``@register`` decorators run (lazily, to keep
    ``import brainuad.scoring`` cheap): a new scoring is one new module."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
