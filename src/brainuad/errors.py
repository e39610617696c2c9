"""Errors that name the offending file and the problem, for users rather than developers."""

from __future__ import annotations

from pathlib import Path


class InputDataError(ValueError):
    """A user-supplied input (NIfTI, table, config) cannot be used.

    Parameters
    ----------
    path : str or Path
        The file that is wrong.
    reason : str
        What is wrong with it, in plain words.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
