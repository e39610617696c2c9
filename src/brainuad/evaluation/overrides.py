"""Per-table evaluation protocols: a table, a table row or a sweep may override the ``evaluation`` section.

A ``protocol`` entry holds a subset of the ``evaluation`` keys that change post-processing and
thresholding -- ``median``, ``erode``, ``erode_mode``, ``min_component`` (0 switches a step off, as in
``evaluation``) and ``threshold`` (merged key by key). :func:`effective_options` merges it over the
``evaluation`` section; :func:`protocol_id` names the result by what differs from ``evaluation``
(``default`` when nothing does), e.g. ``erode~0__median~0__min_component~0``. The id is the folder of
the evaluation (``results/eval/.../<scoring>/protocol-<id>/``), so two tables with the same effective
protocol share one evaluation, and the id changes only when the protocol changes what is evaluated.

Torch-free and numpy-free: imported by :mod:`brainuad.study` at workflow parse time.
"""

from __future__ import annotations

import copy
import re

#: the protocol id of the ``evaluation`` section as configured (the plain evaluation folder)
DEFAULT = "default"
#: the ``evaluation`` keys a protocol may set
PROTOCOL_KEYS = ("median", "erode", "erode_mode", "min_component", "threshold")


def effective_options(evaluation: dict, protocol: dict | None) -> dict:
    """The ``evaluation`` section with ``protocol`` merged over it (``threshold`` key by key).

    Raises
    ------
    ValueError
        A key that is not in :data:`PROTOCOL_KEYS`.
    """
    out = copy.deepcopy(evaluation)
    for key, value in (protocol or {}).items():
        if key not in PROTOCOL_KEYS:
            raise ValueError(f"protocol key {key!r} is not one of {', '.join(PROTOCOL_KEYS)}")
        if key == "threshold":
            out["threshold"] = {**out.get("threshold", {}), **value}
        else:
            out[key] = value
    return out


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _text(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def protocol_id(evaluation: dict, protocol: dict | None) -> str:
    """Folder-safe name of the effective protocol: ``key~value`` of every setting that differs from
    ``evaluation`` (sorted, joined by ``__``; nested keys dotted), or :data:`DEFAULT`.

    Examples
    --------
    >>> protocol_id({"median": 5, "erode": 3}, {"median": 0})
    'median~0'
    >>> protocol_id({"median": 5, "erode": 3}, {"median": 5})
    'default'
    """
    base = _flat({k: evaluation.get(k) for k in PROTOCOL_KEYS if k in evaluation})
    eff = _flat({k: v for k, v in effective_options(evaluation, protocol).items() if k in PROTOCOL_KEYS})
    diff = sorted(k for k in eff if eff[k] != base.get(k))
    if not diff:
        return DEFAULT
    name = "__".join(f"{k}~{_text(eff[k])}" for k in diff)
    if not re.fullmatch(r"[A-Za-z0-9_.~+-]+", name):
        raise ValueError(f"protocol {protocol} gives the folder name {name!r}; values may hold only letters, "
                         "digits and . + -")
    return name


def resolve(evaluation: dict, *layers: dict | None) -> dict:
    """The protocol of a table row: the ``protocol`` entries of the layers (e.g. table, then row) merged in
    order, ``threshold`` key by key; an empty dict when none sets one."""
    out: dict = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            out[key] = {**out.get(key, {}), **value} if key == "threshold" else value
    effective_options(evaluation, out)  # validates the keys
    return out
