"""ANTsPy (``ants``) without the subpackages pre-processing never uses, imported on first use.

``import ants`` (antspyx 0.6) star-imports every subpackage, and ``ants.learn``, ``ants.math``,
``ants.plotting`` and ``ants.deeplearn`` import statsmodels, scipy.stats, matplotlib and scikit-learn:
about 90 % of its import time, paid again by every preprocess job (one process per subject;
``benchmarks/bench_startup.py``). :func:`load_ants` builds the same ``ants`` namespace from the
subpackages that hold images, I/O, registration, resampling, N4 and the transforms (``core``, ``label``,
``ops``, ``registration``, ``segmentation``, ``utils``, in the order of ``ants/__init__.py``); any
other name (``ants.plot``, ``ants.quantile``, ...) loads the remaining subpackages on first access, so
the module behaves as the full package. tests/data/test_preprocess_steps.py checks that every name
brainuad uses is the object the full package exports.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from types import ModuleType

EAGER = ("core", "label", "ops", "registration", "segmentation", "utils")
"""Subpackages star-imported at once (what pre-processing calls)."""
DEFERRED = ("learn", "math", "plotting", "contrib", "deeplearn")
"""Subpackages star-imported on the first access to a name the eager ones do not define."""


def _exports(module: ModuleType) -> dict:
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    return {name: getattr(module, name) for name in names}


def load_ants() -> ModuleType:
    """The ``ants`` module: the one already imported, or one built from :data:`EAGER` (see module doc)."""
    if "ants" in sys.modules:
        return sys.modules["ants"]
    spec = importlib.util.find_spec("ants")
    if spec is None:
        raise ImportError("antspyx is not installed (pip install -r requirements.txt)")
    ants = importlib.util.module_from_spec(spec)  # the package, without running its __init__
    sys.modules["ants"] = ants
    try:
        ants.__version__ = importlib.metadata.version("antspyx")
        for sub in EAGER:
            vars(ants).update(_exports(importlib.import_module(f"ants.{sub}")))
        importlib.import_module("ants.config")
    except BaseException:
        del sys.modules["ants"]
        raise
    deferred_loaded = []

    def __getattr__(name: str):
        if not deferred_loaded:
            deferred_loaded.append(True)
            for sub in DEFERRED:
                for key, value in _exports(importlib.import_module(f"ants.{sub}")).items():
                    vars(ants).setdefault(key, value)  # the subpackages export disjoint names
        if name in vars(ants):
            return vars(ants)[name]
        raise AttributeError(f"module 'ants' has no attribute {name!r}")

    ants.__getattr__ = __getattr__
    return ants


ants = load_ants()
