"""Registry of the data sources: kind -> scan function and the option keys a config may give it."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from brainuad.data.sources.checks import COMMON_OPTIONS

#: ``scan(root, *, sequence, ..., **options) -> (rows, exclusions)``
ScanFunction = Callable[..., tuple[list[dict], list[dict]]]
#: Scan keywords that a config sets elsewhere, not in ``sources.<name>.options``.
SET_ELSEWHERE = {"sequence": "datasets.<name>.sequence", "strict": "sources.<name>.strict"}


@dataclass(frozen=True)
class Source:
    """One registered data source.

    Attributes
    ----------
    kind : str
        The ``sources.<name>.kind`` of the config.
    scan : callable
        ``scan(root, *, sequence, ..., **options) -> (rows, exclusions)``.
    declared_options : tuple of str, callable or None
        Option keys declared at registration (a callable returning them is called on first use);
        None: the keyword-only parameters of ``scan``, plus :data:`COMMON_OPTIONS` when it takes
        ``**options``.
    """

    kind: str
    scan: ScanFunction
    declared_options: tuple[str, ...] | Callable[[], Iterable[str]] | None = None


#: kind -> registered source.
SOURCES: dict[str, Source] = {}


def register_source(kind: str, *, options: Iterable[str] | Callable[[], Iterable[str]] | None = None):
    """Function decorator registering a scan function as the data source ``kind``.

    Parameters
    ----------
    kind : str
        Source kind named in the config.
    options : iterable of str, or a callable returning them, optional
        Keys a config may give in ``sources.<name>.options`` when they are not the scan function's
        keyword parameters (the phantom's are generator settings).
    """
    declared = options if options is None or callable(options) else tuple(options)

    def deco(function: ScanFunction) -> ScanFunction:
        if kind in SOURCES:
            raise ValueError(f"data source kind {kind!r} is registered twice")
        SOURCES[kind] = Source(kind, function, declared)
        return function

    return deco


def _source(kind: str) -> Source:
    if kind not in SOURCES:
        raise ValueError(f"unknown data source kind {kind!r}; expected one of {sorted(SOURCES)}")
    return SOURCES[kind]


def source_kinds() -> list[str]:
    """Registered source kinds, sorted."""
    return sorted(SOURCES)


def source_options(kind: str) -> tuple[str, ...]:
    """Option keys a config may give a source of ``kind``, sorted.

    They are the keys allowed in ``sources.<name>.options`` and, for real data, in each
    ``sources.<name>.cohorts.<cohort>``; ``sequence`` and ``strict`` are set elsewhere (:data:`SET_ELSEWHERE`).

    Raises
    ------
    ValueError
        Unknown kind.
    """
    source = _source(kind)
    declared = source.declared_options
    if declared is not None:
        return tuple(sorted(declared() if callable(declared) else declared))
    parameters = inspect.signature(source.scan).parameters.values()
    names = {p.name for p in parameters if p.kind is p.KEYWORD_ONLY}
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        names |= set(COMMON_OPTIONS)
    return tuple(sorted(names - set(SET_ELSEWHERE)))


def check_options(kind: str, options: Mapping, where: str) -> None:
    """Reject option keys a source of ``kind`` does not accept, before any data are read.

    Parameters
    ----------
    kind : str
        Source kind.
    options : mapping
        Options as the config gives them (``sources.<name>.options`` or one cohort).
    where : str
        Config path of ``options`` used in the message, e.g. ``"sources.wmh.options"``.

    Raises
    ------
    ValueError
        ``"config error: <where>.<key>: unknown option for kind '<kind>'; accepted: a, b, ..."``
        (``sequence`` / ``strict``: where to set them instead); unknown kind.
    """
    accepted = source_options(kind)
    for key in options:
        if key in accepted:
            continue
        if key in SET_ELSEWHERE:
            raise ValueError(f"config error: {where}.{key}: not an option of a source; set it as {SET_ELSEWHERE[key]}")
        raise ValueError(f"config error: {where}.{key}: unknown option for kind {kind!r}; "
                         f"accepted: {', '.join(accepted)}")


def scan(kind: str, root: str | Path, **options) -> tuple[list[dict], list[dict]]:
    """Run the source of ``kind`` on ``root`` (layouts: the module of each kind, options: the package).

    Returns
    -------
    rows : list of dict
        One per usable subject, keys :data:`brainuad.data.manifest.SOURCE_COLUMNS`
        (phantom: :data:`brainuad.data.manifest.MANIFEST_COLUMNS`).
    exclusions : list of dict
        ``{"source", "subject", "file", "reason"}`` per subject left out.

    Raises
    ------
    ValueError
        Unknown kind or option value.
    TypeError
        Unknown option.
    InputDataError
        Missing root, no subject found, unreadable table; with ``strict=True`` one error listing every bad subject.
    """
    return _source(kind).scan(root, **options)
