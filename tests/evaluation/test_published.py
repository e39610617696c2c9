"""config/published/*.tsv: the parser, and a random sample of entries against the thesis text."""

import random
import re
from pathlib import Path

import pandas as pd
import pytest

from brainuad.evaluation.published import COLUMNS, read_published, side_by_side
from brainuad.reporting.tables import METRICS

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = sorted((ROOT / "config" / "published").glob("*.tsv"))
THESIS = Path("/work/shared/reference/000_805df2685ecff9c0.txt")


def test_every_published_file_parses():
    assert len(PUBLISHED) >= 16
    total = 0
    for path in PUBLISHED:
        df = read_published(path)
        assert list(df.columns[: len(COLUMNS)]) == COLUMNS
        assert df["mean"].notna().all()
        total += len(df)
    assert total > 1000  # every number of method-spec section 5 (1038 cells)


def test_parser_reads_a_known_cell_and_rejects_bad_files(tmp_path):
    df = read_published(ROOT / "config" / "published" / "thesis_tab4_5.tsv")
    cell = df[(df["row"] == "cDDPM S^MHD_full") & (df["column"] == "BRATS (T2)")].iloc[0]
    assert (cell["mean"], cell["std"], cell["metric"], cell["unit"]) == (70.55, 0.28, "dice_oracle", "%")
    assert set(cell["marks"].split(",")) == {"bold", "underline"}
    thresh = read_published(ROOT / "config" / "published" / "thesis_tab4_4.tsv")
    assert pd.isna(thresh[thresh["row"] == "Thresh [142]"]["std"]).all()  # the learning-free row has no std

    bad = tmp_path / "bad.tsv"
    bad.write_text("\t".join(COLUMNS) + "\nthesis\tTab\tr\tr\tc\tdice\t%\tabc\t\tabc\t\n")
    with pytest.raises(ValueError, match=r"bad.tsv: line 2: mean 'abc' is not a number"):
        read_published(bad)
    bad.write_text("paper\trow\n")
    with pytest.raises(ValueError, match="bad.tsv: missing column"):
        read_published(bad)
    line = "thesis\tTab\tr\tr\tc\tdice\t%\t1.0\t\t1.0\t\n"
    bad.write_text("\t".join(COLUMNS) + "\n" + line + line)
    with pytest.raises(ValueError, match="appears more than once"):
        read_published(bad)


def _normalised_thesis() -> str:
    text = THESIS.read_text(encoding="utf-8")
    text = re.sub(r"</?(b|u|math)>", "", text).replace("$\\pm$", "±").replace("\\pm", "±").replace("$", "")
    return re.sub(r"\s*±\s*", " ± ", text)


@pytest.mark.skipif(not THESIS.exists(), reason="thesis text not available")
def test_twenty_random_entries_appear_verbatim_in_the_thesis():
    text = _normalised_thesis()
    lines = text.splitlines()
    entries = pd.concat([read_published(p) for p in PUBLISHED], ignore_index=True)
    sample = entries.iloc[random.Random(15).sample(range(len(entries)), 20)]
    for _, e in sample.iterrows():
        value = re.compile(r"(?<![\d.])" + re.escape(e["text"]) + r"(?!\d)")
        name = re.sub(r"\s*\[\d+\]$", "", e["source_row"]).split()[0]
        # the value is printed on a line of the thesis that also names the row
        hits = [ln for ln in lines if value.search(ln) and name.split("_")[0] in ln]
        assert hits, f"{e['table']} {e['row']} {e['column']} {e['metric']}: {e['text']!r} not found with {name!r}"


def test_side_by_side_flags_a_difference_outside_the_ci():
    published = pd.DataFrame([{"paper": "thesis", "table": "Tab", "row": "P-A", "source_row": "A", "column": "C",
                               "metric": "dice", "unit": "%", "mean": 50.0, "std": 1.0, "text": "50.0 ± 1.0",
                               "marks": ""},
                              {"paper": "thesis", "table": "Tab", "row": "P-B", "source_row": "B", "column": "C",
                               "metric": "dice", "unit": "%", "mean": 30.0, "std": 1.0, "text": "30.0 ± 1.0",
                               "marks": ""}])
    table = pd.DataFrame({"row": ["A", "B"], "dataset": ["d", "d"], "metric": ["dice", "dice"], "mean": [0.49, 0.40],
                          "ci_low": [0.47, 0.38], "ci_high": [0.51, 0.42]})
    spec = {"table": "x", "rows": {"A": "P-A", "B": "P-B"}, "datasets": {"d": "C"}}
    out = side_by_side(table, spec, published, METRICS).set_index("row")
    assert out.loc["A", "difference"] == pytest.approx(-1.0) and not out.loc["A", "outside_ci"]
    assert out.loc["B", "difference"] == pytest.approx(10.0) and out.loc["B", "outside_ci"]
