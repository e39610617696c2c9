"""ATLAS v2.0: stroke lesions, T1 only, a BIDS layout (read by :mod:`brainuad.data.sources.bids`).

Layout: ``.../sub-r001s001/ses-1/anat/sub-r001s001_ses-1[_space-MNI152NLin2009aSym]_T1w.nii.gz``
with ``..._label-L_desc-T1lesion_mask.nii.gz`` next to it. Label required, binary. The images are
in MNI152NLin2009aSym space; set ``registered=True`` only if the pre-processing template is that
space.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from brainuad.data.sources.bids import scan_bids
from brainuad.data.sources.registry import register_source


@register_source("atlas")
def scan_atlas(root: str | Path, *, sequence: str = "t1", entities: Mapping[str, str] | None = None,
               mask_entities: Mapping[str, str] | None = None, brain_mask_entities: Mapping[str, str] | None = None,
               participants: str | Path | None = "participants.tsv", sequence_suffixes: Mapping[str, str] | None = None,
               **options) -> tuple[list[dict], list[dict]]:
    """ATLAS v2.0 (layout in the module docstring); T1 only.

    Parameters
    ----------
    root : path
        The ATLAS folder (e.g. ``ATLAS_2/Training``), searched recursively.
    sequence : "t1"
    entities : mapping, optional
        Extra entities of the image file (e.g. ``{"space": "MNI152NLin2009aSym"}``).
    mask_entities : mapping, optional
        Entities of the lesion mask, default ``{"label": "L", "desc": "T1lesion"}``.
    brain_mask_entities : mapping, optional
        Entities of a brain mask (e.g. ``{"desc": "brain"}``).
    participants : path or None
        Optional participants table.
    sequence_suffixes : mapping, optional
        ``{sequence: suffix}`` of ``require_sequences`` (as in :func:`brainuad.data.sources.bids.scan_bids`).
    **options
        Common options of :mod:`brainuad.data.sources`; label required and binary.

    Returns
    -------
    rows, exclusions : list of dict
    """
    if str(sequence).lower() != "t1":
        raise ValueError(f"ATLAS has T1 images only, not {sequence!r}")
    options.setdefault("require_label", True)
    return scan_bids(root, sequence="t1", suffix="T1w", entities=entities, mask_suffix="mask",
                     mask_entities=mask_entities or {"label": "L", "desc": "T1lesion"},
                     brain_mask_entities=brain_mask_entities, participants=participants,
                     sequence_suffixes=sequence_suffixes, **options)
