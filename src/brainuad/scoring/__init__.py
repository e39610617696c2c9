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
so the same code runs on CPU and CUDA. One registered with ``arrays="any"`` (``l1``, ``l2``) is
written with operations numpy and torch share and gets numpy arrays as they are: a score job of such a
scoring never imports torch.

Import cost: every score job is a fresh process. ``import brainuad.scoring`` imports numpy only, and
:func:`scoring_fn` imports only the module that registers the requested name (found in the package's
source by :func:`registered_names`, without importing it), so an ``l1`` job does not pay for torch.

A scoring registered with ``uses="maps"`` (``native``) takes the anomaly maps a learning-free model
stored itself instead of reconstructions; :func:`brainuad.scoring.stored.score_stored` applies
either kind to a stored reconstruct output.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path
from typing import Callable

import numpy as np

_REGISTRY: dict[str, Callable] = {}
_USES: dict[str, str] = {}
_ARRAYS: dict[str, str] = {}
USES = ("recons", "maps", "recons+maps")
"""What a scoring reads: ``recons`` (the input and its reconstructions), ``maps`` (the model's own maps) or
``recons+maps`` (both, from a ``"recon_map"`` model such as SADM Stage II: ``fn(image, recons, mask,
model_map=..., **params)``)."""
ARRAYS = ("torch", "any")
"""What a scoring of reconstructions computes on: ``torch`` tensors, or ``any`` (numpy stays numpy)."""


def register(name: str, uses: str = "recons", arrays: str = "torch"):
    """Decorator that registers a scoring under ``name``.

    Parameters
    ----------
    name : str
    uses : {"recons", "maps", "recons+maps"}, default "recons"
        ``"recons"``: ``fn(image, recons, mask, **params) -> map`` (see the module docstring);
        ``"maps"``: ``fn(maps, **params) -> maps`` on the (N, D, H, W) maps the model stored itself;
        ``"recons+maps"``: ``fn(image, recons, mask, model_map=map, **params)`` with the model's own map of
        the image's shape (called through :func:`score` with ``model_map=``).
    arrays : {"torch", "any"}, default "torch"
        ``"any"``: ``fn`` uses only operations numpy arrays and torch tensors share, and :func:`score`
        passes numpy inputs through without importing torch.
    """
    if uses not in USES:
        raise ValueError(f"uses must be one of {USES}, got {uses!r}")
    if arrays not in ARRAYS:
        raise ValueError(f"arrays must be one of {ARRAYS}, got {arrays!r}")

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"scoring {name!r} is registered twice")
        _REGISTRY[name] = fn
        _USES[name] = uses
        _ARRAYS[name] = arrays
        return fn

    return deco


def available() -> list[str]:
    """Names of all registered scores, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def registered_names() -> dict[str, str]:
    """Scoring name -> module of this package that registers it, read from the modules' source.

    Every ``@register("name", ...)`` decorator with a literal name counts; nothing is imported.
    """
    global _names
    if _names is None:
        _names = {}
        for info in pkgutil.iter_modules(__path__):
            path = Path(__path__[0]) / f"{info.name}.py"
            if info.ispkg or not path.exists():
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "register"
                        and node.args and isinstance(node.args[0], ast.Constant)):
                    _names[node.args[0].value] = info.name
    return _names


_names: dict[str, str] | None = None


def scoring_fn(name: str) -> Callable:
    """The registered function of scoring ``name`` (imports only the module that registers it)."""
    if name not in _REGISTRY and name in registered_names():
        importlib.import_module(f"{__name__}.{registered_names()[name]}")
    if name not in _REGISTRY:
        _load_builtin()  # a name registered some other way
    if name not in _REGISTRY:
        raise KeyError(f"unknown scoring {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]


def uses_model_maps(name: str) -> bool:
    """True when scoring ``name`` takes the model's own anomaly maps rather than reconstructions."""
    scoring_fn(name)
    return _USES[name] == "maps"


def uses_recons_and_maps(name: str) -> bool:
    """True when scoring ``name`` combines the reconstructions with the model's own map (SADM)."""
    scoring_fn(name)
    return _USES[name] == "recons+maps"


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
    if as_numpy and _ARRAYS[name] == "any":
        img, rec, msk = np.asarray(image, np.float32), np.asarray(recons, np.float32), np.asarray(mask)
        _check_shapes(img.shape, rec.shape, msk.shape)
        return np.asarray(fn(img, rec, msk > 0, **params), dtype=np.float32)
    import torch  # here, so that scorings computed in numpy never import it

    img_t = torch.as_tensor(np.asarray(image, dtype=np.float32)) if as_numpy else image.float()
    rec_t = torch.as_tensor(np.asarray(recons, dtype=np.float32)) if as_numpy else recons.float()
    msk_t = torch.as_tensor(np.asarray(mask)).to(img_t.device) if as_numpy else mask.to(img_t.device)
    _check_shapes(tuple(img_t.shape), tuple(rec_t.shape), tuple(msk_t.shape))
    if _USES[name] == "recons+maps":
        if params.get("model_map") is None:
            raise ValueError(f"scoring {name!r} needs the model's own map (model_map=...)")
        mm = params["model_map"]
        params["model_map"] = (torch.as_tensor(np.asarray(mm, dtype=np.float32)) if isinstance(mm, np.ndarray)
                               else mm.float()).to(img_t.device)
        if tuple(params["model_map"].shape) != tuple(img_t.shape):
            raise ValueError(f"model_map shape {tuple(params['model_map'].shape)} differs from image shape "
                             f"{tuple(img_t.shape)}")
    out = fn(img_t, rec_t, msk_t > 0, **params)
    return out.cpu().numpy() if as_numpy else out


def _check_shapes(image: tuple, recons: tuple, mask: tuple) -> None:
    image, recons, mask = tuple(image), tuple(recons), tuple(mask)
    if len(recons) != len(image) + 1 or recons[1:] != image:
        raise ValueError(f"recons must have shape (S, *image.shape) = (S, {image}), got {recons}")
    if mask != image:
        raise ValueError(f"mask shape {mask} differs from image shape {image}")


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
