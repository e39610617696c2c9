"""Tables next to a data set (participants, demographics, lists of files): reading them and their fields."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from brainuad.data.nifti import describe
from brainuad.data.sources.checks import subject_id
from brainuad.errors import InputDataError

def parse_age(value) -> float | str:
    """Age in years as float, ``""`` when ``value`` is not a number."""
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return "" if pd.isna(number) else float(number)


_SEX = {"m": "M", "male": "M", "man": "M", "f": "F", "female": "F", "woman": "F"}


def parse_sex(value, numeric: Mapping[int, str] | None = None) -> str:
    """``"M"``, ``"F"`` or ``""``; ``numeric`` maps integer codes (IXI: 1 = M, 2 = F)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if numeric is not None:
        number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
        if not pd.isna(number) and float(number).is_integer():
            return numeric.get(int(number), "")
    return _SEX.get(str(value).strip().lower(), "")


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV / TSV / XLS(X) table read-only; problems raise InputDataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(path, "table does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".xls", ".xlsx"):
            try:
                return pd.read_excel(path, sheet_name=0, engine="xlrd" if suffix == ".xls" else "openpyxl")
            except ImportError as error:
                raise InputDataError(path, f"reading {suffix} needs an Excel reader that is not installed "
                                           f"({describe(error)}); export the sheet as CSV and give that "
                                           "file instead") from error
        sep = "\t" if suffix in (".tsv", ".txt") else ("," if suffix == ".csv" else None)
        return pd.read_csv(path, sep=sep, engine="python", dtype=str, keep_default_na=False)
    except InputDataError:
        raise
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise InputDataError(path, f"cannot be read as a table ({describe(error)})") from error


def find_column(table: pd.DataFrame, names: Iterable[str]) -> str | None:
    """First column of ``table`` whose name matches one of ``names`` (case-insensitive)."""
    lower = {str(c).strip().lower(): c for c in table.columns}
    for name in names:
        if name.lower() in lower:
            return lower[name.lower()]
    return None


_ID_COLUMNS = ("participant_id", "subject", "subject_id", "id", "brats21id", "brats20id", "brats19_id",
               "brats_id", "patient", "patient_id")


def read_participants(path: Path | None, *, id_columns: Sequence[str] = _ID_COLUMNS,
                      key: Callable[[str], str] = subject_id) -> dict[str, tuple[float | str, str]]:
    """``{key(id): (age, sex)}`` from a participants table (first matching id column).

    An id listed twice keeps its first row, unless only a later one has an age.
    """
    if path is None:
        return {}
    table = read_table(path)
    id_col = find_column(table, id_columns) or table.columns[0]
    age_col = find_column(table, ("age", "age_years"))
    sex_col = find_column(table, ("sex", "gender"))
    out: dict[str, tuple[float | str, str]] = {}
    for rec in table.to_dict("records"):
        ident = str(rec[id_col]).strip()
        if not ident:
            continue
        age = parse_age(rec[age_col]) if age_col else ""
        sex = parse_sex(rec[sex_col]) if sex_col else ""
        previous = out.get(key(ident))
        if previous is None or (previous[0] == "" and age != ""):
            out[key(ident)] = (age, sex)
    return out


def parse_flag(value) -> bool | None:
    """True / False for yes-like / no-like text (``1``, ``true``, ``y``; ``0``, ``false``, ``n``), else None."""
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y"):
        return True
    if text in ("0", "false", "no", "n"):
        return False
    return None
