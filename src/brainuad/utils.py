"""Small helpers shared by the workflow scripts."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path


def exit_now() -> None:
    """End a script job that has finished at once, skipping the interpreter's teardown (exit code 0).

    Tearing down an interpreter that imported torch (freeing its modules and objects) takes about 0.35 s on
    the 2-core demo machine, a quarter of a torch job's fixed cost (``benchmarks/bench_startup.py`` times the
    same exit). The logging handlers, stdout and stderr are flushed and closed first. Call it only as a
    script's last statement, after every output file is written and closed (``torch.save``, ``np.savez``
    and pandas' ``to_csv`` close theirs); nothing registered with ``atexit`` runs.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):  # None, or a closed stream
            pass
    os._exit(0)


def log_to(path: str | Path | None, name: str = "brainuad") -> logging.Logger:
    """Send stderr (tracebacks, progress bars, warnings) and a logger to ``path`` (a rule's log file)."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = open(path, "w", buffering=1)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        force=True)
    logging.captureWarnings(True)
    return logging.getLogger(name)


def write_json(obj, path: str | Path) -> None:
    """Write JSON atomically (tmp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default))
    os.replace(tmp, path)


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def write_tsv(rows: list[dict], path: str | Path) -> None:
    """Write dict rows as a tab-separated table without pandas (one import less per job).

    Columns are the union of the rows' keys in order of first appearance; a missing value, None or NaN
    is written as an empty field and floats as ``repr`` (round-trip exact), as
    ``pandas.DataFrame(rows).to_csv(path, sep="\t", index=False)`` writes them; ``pandas.read_csv``
    reads it back the same.
    """
    import csv
    import math

    columns = list(dict.fromkeys(key for row in rows for key in row))

    def cell(value):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
            return cell(value.item())
        return repr(value) if isinstance(value, float) else str(value)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([cell(row.get(col)) for col in columns] for row in rows)


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def dry_run_job_counts(output: str) -> dict[str, int]:
    """Jobs per rule from the first 'Job stats' table that ``snakemake -n`` prints (without the total).

    Rules named ``<rule>__<group>`` (the per-model or per-dataset rules of config ``jobs``:
    ``reconstruct__...``, ``train__...``, ``train_stage2__...``, ``pretrain_encoder__...``, ``score__...``,
    ``evaluate__...``, ``preprocess__...``) are counted under ``<rule>``.
    """
    import re

    counts, in_table = {}, False
    for line in output.splitlines():
        if line.startswith("job ") and "count" in line:
            in_table = True
            continue
        if in_table:
            if line.strip().startswith("total"):
                break
            m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
            if m:
                rule = m.group(1).split("__")[0]
                counts[rule] = counts.get(rule, 0) + int(m.group(2))
    return counts
