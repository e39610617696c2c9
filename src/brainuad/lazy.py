"""Lazy package exports (PEP 562): ``from brainuad.evaluation import dice`` imports only the submodule
that defines ``dice``, so that a Snakemake job pays for the imports it uses and no more.

Every workflow job is a fresh Python process; eager ``from .x import *`` lines in package ``__init__``
files made each job import scikit-learn, torch or MONAI even when its script used none of them
(``benchmarks/bench_startup.py`` measures what each rule's script imports).
"""

from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, list[str]]):
    """``__getattr__`` and ``__dir__`` for a package that re-exports names of its submodules lazily.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : dict
        submodule name (relative, without the dot) -> the names it exports.

    Returns
    -------
    (__getattr__, __dir__, __all__) to assign in the package's ``__init__``.
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    def __dir__():
        return sorted(where)

    return __getattr__, __dir__, sorted(where)
