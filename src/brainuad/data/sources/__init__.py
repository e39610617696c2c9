"""Data sources: the folder layout of a public MRI distribution -> manifest rows + exclusions.

Every source is a function ``scan_<kind>(root, *, sequence, ..., **options) -> (rows, exclusions)``
in the module ``brainuad.data.sources.<kind>``, whose docstring documents the layout; it is
registered with ``@register_source("<kind>")`` and reached through :func:`scan`
(``scan(kind, root, **options)``; :func:`source_kinds` lists the kinds, :func:`source_options` the
option keys of a kind, :func:`check_options` rejects others at config time). Sources only read:
every file is opened read-only (checksums, NIfTI headers and voxels), nothing is written, moved or
touched next to the raw data. Adding a kind = one module here (imported below) + its name in the
``sources.*.kind`` enum of workflow/schemas/config.schema.yaml (a test checks both agree).

Rows
----
``rows`` is a list of dicts with the columns :data:`brainuad.data.manifest.SOURCE_COLUMNS` (their
meaning is in :mod:`brainuad.data.manifest`), one per usable subject, in subject order;
:func:`brainuad.data.manifest.manifest_frame` turns them into a DataFrame for
:func:`brainuad.data.manifest.write_manifest`. The phantom's rows have the
:data:`brainuad.data.manifest.MANIFEST_COLUMNS` only.

Exclusions
----------
``exclusions`` is a list of ``{"source", "subject", "file", "reason"}``
(:data:`EXCLUSION_KEYS`): one per subject that was found in the layout but cannot be used
(``reason`` is the full message, naming the file first). Checks, in order, per subject
(:mod:`brainuad.data.sources.checks`): the image of ``sequence`` exists (missing sequence), every
sequence of ``require_sequences`` exists, every image is a readable 3D NIfTI (not truncated or
corrupt, not 4D, finite affine, voxel size in (0, 20] mm, no NaN/Inf voxel, not all zero), the
label exists where one is required, the label is on the image's voxel grid (shape and affine), its
values are non-negative integers within the allowed values (``label_values``; {0, 1} unless a
layout says otherwise: non-binary labels are excluded), it has at least one lesion voxel
(``allow_empty_label=False``), and a shipped brain mask is on the image's grid, binary and not
empty. ``check="header"`` reads only the headers (existence, 4D, voxel size, grid match; no
truncation / NaN / label value checks) for a fast scan of a large distribution. ``strict=True``
raises one :class:`brainuad.errors.InputDataError` listing every bad subject (with their count)
instead. A missing or empty ``root``, and two subject ids that become the same once sanitised,
always raise.

Common options (every source but the phantom)
---------------------------------------------
``sequence`` (which image goes into the rows), ``require_sequences`` (other sequences a subject
must have), ``check`` (``"full"`` | ``"header"``), ``strict`` (bool), ``source`` (name written
in the exclusions, default the kind), ``workers`` (threads for checksums and checks, default 1),
``label_values`` (allowed label values; ``None`` = any non-negative integer), ``allow_empty_label``,
``require_label``, ``registered`` / ``skull_stripped`` (override the layout's default flags).
The workflow sets ``sequence`` from the data set and ``strict`` from the source, not from
``options``.
"""

import importlib
import pkgutil

from brainuad.data.sources.checks import COMMON_OPTIONS, EXCLUSION_KEYS
from brainuad.data.sources.registry import SOURCES, check_options, register_source, scan, source_kinds
from brainuad.data.sources.registry import source_options
for _info in pkgutil.iter_modules(__path__):  # every layout module registers its kind: a new kind is one module
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["COMMON_OPTIONS", "EXCLUSION_KEYS", "SOURCES", "check_options", "register_source", "scan",
           "source_kinds", "source_options"]
