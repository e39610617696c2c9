"""The ``skull_strip`` option and the external skull-stripping tool (e.g. HD-BET) it may name."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from brainuad.data.nifti import check_same_grid, read_volume

__all__ = ["SKULL_STRIP_METHODS", "run_skull_strip_command", "skull_strip_settings"]

#: ``skull_strip.method`` values: the template's mask, an external tool (HD-BET), or no stripping.
SKULL_STRIP_METHODS = ("template", "hd-bet", "none")
_COMMAND_FIELDS = ("input", "output", "mask", "threads")
_HD_BET_EXAMPLE = "hd-bet -i {input} -o {output} -device cpu -mode fast -tta 0"


def skull_strip_settings(skull_strip: str | Mapping[str, object] | None) -> dict:
    """Normalise the ``skull_strip`` option to ``{"method": ..., "command": ...}``.

    Parameters
    ----------
    skull_strip : None, str or mapping
        ``None`` / ``"template"``, ``"none"``, ``"hd-bet"`` or ``{"method": ..., "command": ...}``.

    Raises
    ------
    ValueError
        Unknown method; ``hd-bet`` without a command; a command with another method.
    """
    if skull_strip is None:
        settings = {"method": "template"}
    elif isinstance(skull_strip, str):
        settings = {"method": skull_strip}
    else:
        settings = dict(skull_strip)
    method = str(settings.get("method", "template")).lower()
    command = settings.get("command") or None
    if method not in SKULL_STRIP_METHODS:
        raise ValueError(f"preprocess.skull_strip.method must be one of {SKULL_STRIP_METHODS}, got {method!r}")
    if method == "hd-bet" and command is None:
        raise ValueError("preprocess.skull_strip.method 'hd-bet' runs an external tool that brainuad does not "
                         "ship: set preprocess.skull_strip.command to the command line, e.g. "
                         f"'{_HD_BET_EXAMPLE}' (HD-BET: https://github.com/MIC-DKFZ/HD-BET), or use method "
                         "'template'")
    if command is not None and method != "hd-bet":
        raise ValueError(f"preprocess.skull_strip.command is only used with method 'hd-bet' (method is {method!r})")
    return {"method": method, "command": command}


def run_skull_strip_command(
    command: str | Sequence[str],
    image_path: str | Path,
    reference: nib.spatialimages.SpatialImage,
    workdir: str | Path,
    *,
    threads: int = 1,
) -> np.ndarray:
    """Run an external skull-stripping tool (e.g. HD-BET) on a raw image and read its brain mask.

    Parameters
    ----------
    command : str or list of str
        Command line (a string is split like a shell would, without running a shell). The
        placeholders ``{input}`` (the raw image), ``{output}`` (``<workdir>/brain.nii.gz``, the
        skull-stripped image the tool writes), ``{mask}`` (``<workdir>/brain_mask.nii.gz``) and
        ``{threads}`` are filled in; HD-BET 1.x writes ``{output}`` and ``brain_mask.nii.gz`` next
        to it: ``hd-bet -i {input} -o {output} -device cpu -mode fast -tta 0``.
    image_path : path
        Raw image (never modified).
    reference : nibabel image
        The loaded raw image; the tool's output must be on its grid.
    workdir : path
        Existing folder for the tool's files.
    threads : int
        Value of ``{threads}``.

    Returns
    -------
    (X, Y, Z) bool ndarray
        The brain mask on the raw grid: ``{mask}`` when the tool wrote it, else the non-zero
        voxels of ``{output}``.

    Raises
    ------
    RuntimeError
        The executable is not installed, the tool fails or writes neither file (a setup problem:
        the run stops).
    InputDataError
        The tool's output is not on the raw image's grid.
    """
    args = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    if not args:
        raise ValueError("preprocess.skull_strip.command is empty")
    workdir = Path(workdir)
    fields = {"input": str(image_path), "output": str(workdir / "brain.nii.gz"),
              "mask": str(workdir / "brain_mask.nii.gz"), "threads": str(int(threads))}
    try:
        args = [a.format(**fields) for a in args]
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(f"preprocess.skull_strip.command {command!r}: bad placeholder ({error}); use "
                         + ", ".join("{" + f + "}" for f in _COMMAND_FIELDS)) from error
    if shutil.which(args[0]) is None:
        raise RuntimeError(f"preprocess.skull_strip.command: {args[0]!r} is not installed (not found on PATH); "
                           "install the tool (HD-BET: pip install hd-bet) or set preprocess.skull_strip.method "
                           "to 'template'")
    proc = subprocess.run(args, capture_output=True, text=True, cwd=workdir)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip()[-1500:]
        raise RuntimeError(f"preprocess.skull_strip.command failed on {image_path} (exit {proc.returncode}): "
                           f"{' '.join(args)}\n{tail}")
    source = next((Path(fields[k]) for k in ("mask", "output") if Path(fields[k]).is_file()), None)
    if source is None:
        raise RuntimeError(f"preprocess.skull_strip.command wrote neither {fields['mask']} nor {fields['output']} "
                           f"for {image_path}: {' '.join(args)}")
    data, affine = read_volume(source)
    check_same_grid(source, data.shape, affine, image_path, reference.shape[:3], reference.affine)
    return np.asarray(data) != 0
