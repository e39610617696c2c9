"""Any BIDS data set.

Layout: images ``sub-<id>[_ses-<s>][_<key>-<value>...]_<suffix>.nii[.gz]`` anywhere below ``root``
(raw data and ``derivatives/``); ``suffix`` (default from the sequence: t1 ``T1w``, t2 ``T2w``,
flair ``FLAIR``, pd ``PDw``) and ``entities`` (e.g. ``{"acq": "mprage"}``) select the image,
``mask_suffix`` (``mask``) and ``mask_entities`` (e.g. ``{"label": "L", "desc": "T1lesion"}``; by
default any mask whose ``desc`` is not ``brain``) the lesion label, and ``brain_mask_entities``
(e.g. ``{"desc": "brain"}``) an optional brain mask. Files match the image by ``sub`` and ``ses``;
a mask without a session applies to every session of its subject. Subject id ``sub-<id>``
(``sub-<id>_ses-<s>`` when a subject has several sessions). Age/sex from ``participants.tsv``
(``participant_id``, ``age``, ``sex``). ``require_label`` (default False).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from brainuad.data.sources.checks import NIFTI_NAME, Candidate, Policy, build_rows, check_root, common_policy
from brainuad.data.sources.checks import resolve, stem, subject_id
from brainuad.data.sources.registry import register_source
from brainuad.data.sources.tables import read_participants
from brainuad.errors import InputDataError


_BIDS_SUFFIX = {"t1": "T1w", "t2": "T2w", "flair": "FLAIR", "pd": "PDw"}


def _bids_parse(name: str) -> tuple[dict[str, str], str] | None:
    """``sub-01_ses-1_desc-x_mask.nii.gz`` -> ({"sub": "01", "ses": "1", "desc": "x"}, "mask")."""
    if not NIFTI_NAME.search(name):
        return None
    parts = stem(name).split("_")
    if len(parts) < 2 or not parts[0].startswith("sub-"):
        return None
    entities = {}
    for part in parts[:-1]:
        key, sep, value = part.partition("-")
        if not sep or not value:
            return None
        entities[key] = value
    return entities, parts[-1]


def _matches(entities: Mapping[str, str], wanted: Mapping[str, str] | None) -> bool:
    return all(entities.get(k) == str(v) for k, v in (wanted or {}).items())


def _bids_scan(root: Path, policy: Policy, *, suffixes: Mapping[str, str], entities: Mapping[str, str] | None,
               mask_suffix: str, mask_entities: Mapping[str, str] | None,
               brain_mask_entities: Mapping[str, str] | None, participants: Path | None
               ) -> tuple[list[dict], list[dict]]:
    files: list[tuple[Path, dict[str, str], str]] = []
    for path in sorted(root.rglob("sub-*")):
        parsed = _bids_parse(path.name)
        if parsed is not None and path.is_file():
            files.append((path, *parsed))
    demo = read_participants(participants, key=lambda s: s if s.startswith("sub-") else f"sub-{s}")
    sessions: dict[str, set[str]] = {}
    for _, ent, _ in files:
        sessions.setdefault(ent["sub"], set()).add(ent.get("ses", ""))
    candidates: dict[tuple[str, str], Candidate] = {}

    def candidate_of(path: Path, ent: dict[str, str]) -> Candidate:
        key = (ent["sub"], ent.get("ses", ""))
        if key not in candidates:
            several = len(sessions[ent["sub"]] - {""}) > 1
            name = f"sub-{key[0]}" + (f"_ses-{key[1]}" if key[1] and several else "")
            age, sex = demo.get(f"sub-{key[0]}", ("", ""))
            candidates[key] = Candidate(subject=subject_id(name), where=path.parent, name=name, age=age, sex=sex)
            prefix = f"sub-{key[0]}" + (f"_ses-{key[1]}" if key[1] else "")
            for seq, suffix in suffixes.items():
                extra = "".join(f"_{k}-{v}" for k, v in (entities or {}).items())
                candidates[key].expected[seq] = str(path.parent / f"{prefix}{extra}_{suffix}.nii.gz")
            mask_extra = "".join(f"_{k}-{v}" for k, v in (mask_entities or {}).items())
            candidates[key].seg_expected = str(path.parent / f"{prefix}{mask_extra}_{mask_suffix}.nii.gz")
        return candidates[key]

    def assign(candidate: Candidate, attribute: str, path: Path, what: str) -> None:
        current = getattr(candidate, attribute) if attribute != "images" else candidate.images.get(what)
        if current is not None and current != path:
            candidate.problem = candidate.problem or InputDataError(
                path, f"two files match the {what} of {candidate.subject} (also {current.name}); "
                      "narrow the selection with entities / mask_entities")
            return
        if attribute == "images":
            candidate.images[what] = path
        else:
            setattr(candidate, attribute, path)

    by_suffix = {suffix: seq for seq, suffix in suffixes.items()}
    for path, ent, suffix in files:
        if suffix in by_suffix and _matches(ent, entities) and "label" not in ent:
            assign(candidate_of(path, ent), "images", path, by_suffix[suffix])
    images_of = {key: c for key, c in candidates.items()}
    for path, ent, suffix in files:
        if suffix != mask_suffix:
            continue
        is_brain = brain_mask_entities is not None and _matches(ent, brain_mask_entities)
        if is_brain:
            attribute = "brain_mask"
        elif mask_entities is not None:
            if not _matches(ent, mask_entities):
                continue
            attribute = "seg"
        elif ent.get("desc", "").lower() == "brain":
            continue
        else:
            attribute = "seg"
        # a mask without a session applies to every session of its subject
        keys = [k for k in images_of if k[0] == ent["sub"] and (k[1] == ent.get("ses", k[1]))] or \
               [(ent["sub"], ent.get("ses", ""))]
        for key in keys:
            target = candidates.get(key) or candidate_of(path, ent)
            assign(target, attribute, path, "lesion mask" if attribute == "seg" else "brain mask")
    return build_rows(list(candidates.values()), policy, root)


@register_source("bids")
def scan_bids(root: str | Path, *, sequence: str = "t1", suffix: str | None = None,
              entities: Mapping[str, str] | None = None, mask_suffix: str = "mask",
              mask_entities: Mapping[str, str] | None = None, brain_mask_entities: Mapping[str, str] | None = None,
              participants: str | Path | None = "participants.tsv", sequence_suffixes: Mapping[str, str] | None = None,
              **options) -> tuple[list[dict], list[dict]]:
    """Any BIDS data set (layout in the module docstring).

    Parameters
    ----------
    root : path
        BIDS root (raw data and ``derivatives/`` are searched recursively).
    sequence : str
        Sequence name written to the rows.
    suffix : str, optional
        BIDS suffix of the image (default from ``sequence``: T1w, T2w, FLAIR, PDw).
    entities : mapping, optional
        Entities the image file must have (e.g. ``{"acq": "mprage", "run": "1"}``).
    mask_suffix : str
        Suffix of the lesion label (default ``mask``).
    mask_entities : mapping, optional
        Entities the lesion label must have; default any ``mask`` whose ``desc`` is not ``brain``.
    brain_mask_entities : mapping, optional
        Entities of a brain mask (e.g. ``{"desc": "brain"}``) written to ``brain_mask``.
    participants : path or None
        Participants table (``participant_id``, ``age``, ``sex``) relative to ``root``; ignored
        when absent.
    sequence_suffixes : mapping, optional
        ``{sequence: suffix}`` of the ``require_sequences`` without a default suffix.
    **options
        Common options of :mod:`brainuad.data.sources`; ``require_label`` default False, binary labels.

    Returns
    -------
    rows, exclusions : list of dict
    """
    root = check_root(root, "BIDS")
    policy = common_policy("bids", sequence, options, require_label=False)
    suffixes = {**_BIDS_SUFFIX, **(sequence_suffixes or {})}
    suffixes[policy.sequence] = suffix or suffixes.get(policy.sequence, policy.sequence)
    wanted = {s: suffixes[s] for s in (policy.sequence, *policy.require_sequences) if s in suffixes}
    for seq in policy.require_sequences:
        if seq not in wanted:
            raise ValueError(f"scan_bids: no BIDS suffix known for sequence {seq!r}; give sequence_suffixes")
    table = resolve(participants, root)
    return _bids_scan(root, policy, suffixes=wanted, entities=entities, mask_suffix=mask_suffix,
                      mask_entities=mask_entities, brain_mask_entities=brain_mask_entities,
                      participants=table if table is not None and table.is_file() else None)
