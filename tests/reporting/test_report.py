from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from brainuad.reporting.report import (
    QC_ROWS,
    figure_page,
    one_column,
    qc_pages,
    read_captions,
    result_table,
    short,
    sweep_caption,
    write_report,
)

CAPTION_FILES = sorted((Path(__file__).resolve().parents[2] / "workflow" / "report").glob("*.rst"))


@pytest.fixture
def captions(tmp_path):
    texts = {"table": "{n_folds} folds;\n  {metrics}; {name}\n", "sweep_model": "M {models} {table} ({settings}) {scoring} {dashed} {name} {folds}",
             "sweep_scoring": "S {scoring} {param} {values} {model} {dashed} {name}", "qualitative": "Fold {fold}.",
             "training_curves": "Curves.", "qc_flagged": "{n_flagged} of {n_subjects}. {first_shown}Source {dataset}",
             "qc_excluded": "{n_excluded} out. {first_shown}See {dataset}", "qc_slices": "Slices {dataset}."}
    for kind, text in texts.items():
        (tmp_path / f"{kind}.rst").write_text(text)
    return read_captions(sorted(tmp_path.glob("*.rst")))


def test_read_captions_collapses_whitespace(captions):
    assert captions["table"] == "{n_folds} folds; {metrics}; {name}"


def test_shipped_captions_fill_their_fields():
    caps = read_captions(CAPTION_FILES)
    fields = {"table": dict(n_folds=3, metrics="dice", name="main"), "inference_time": dict(reference="AE"),
              "qualitative": dict(fold=0), "sweep_model": dict(models="a", table="t", settings="x -> y", scoring="l1",
                                                                dashed="d", name="sweep_s", folds="fold 0"),
              "sweep_scoring": dict(scoring="ssim", param="sigma", values=[1], model="a", dashed="d", name="sweep_s"),
              "qc_flagged": dict(n_flagged=1, n_subjects=2, first_shown="", dataset="h", crop_fraction="1.0%",
                                 mad_threshold="3.5"),
              "qc_excluded": dict(n_excluded=1, first_shown="", dataset="h"), "qc_slices": dict(dataset="h"),
              "training_curves": {}, "domain_shift": {}, "mhd": {}, "p81_slicewise": {}, "p81_lesion_size": {},
              "p81_l1": {},
              "lesionwise": dict(overlap="any"), "healthy_fpr": dict(targets="1 %", source="x.tsv"),
              "sweep": {}, "benchmark_pdf": {}, "workflow": {}}  # the last three: HTML report only
    assert set(caps) == set(fields)
    for kind, values in fields.items():
        assert "{" not in caps[kind].format(**values)
    assert caps["table"].format(**fields["table"]) == ("rows: model · scoring; 3 folds; metrics dice; "
                                                       "source: results/tables/main.tsv")


def test_short_and_one_column():
    assert short("a  b\nc") == "a b c"
    assert short("x" * 12, width=10) == "xxxxxxx..."
    empty = one_column([], "reasons", [], "none")
    assert empty.index.tolist() == ["-"] and empty["reasons"].tolist() == ["none"] and empty.index.name == "subject"


def test_result_table_note(tmp_path, captions):
    long = pd.DataFrame([{"row": "AE", "dataset_label": "T", "metric": "dice", "mean": 0.5, "std": 0.1,
                          "n_folds": n, "note": ""} for n in (2, 3)])
    long.to_csv(tmp_path / "main.tsv", sep="\t", index=False)
    title, table, note = result_table(tmp_path / "main.tsv", {"metrics": ["dice", "l1"]}, captions)
    assert title == "main" and note == "3 folds; dice, l1; main" and table.loc["AE", "T · DICE"] == "50.00 ± 10.00"


def test_sweep_and_figure_captions(captions):
    model = {"models": ["a", "b"], "table": "t.tsv", "set": {"x": "s.k", "y": "s.j"}, "reference": "default"}
    assert sweep_caption("m", model, captions) == "M a, b t.tsv (x -> s.k, y -> s.j) l1 the configured model sweep_m folds"
    assert sweep_caption("m", {**model, "reference": None}, captions).endswith("l1 no reference sweep_m folds")
    assert sweep_caption("m", {**model, "folds": [0]}, captions).endswith("sweep_m fold 0")  # sweeps.<name>.folds
    assert sweep_caption("m", {**model, "folds": [0, 2]}, captions).endswith("sweep_m folds 0, 2")
    scoring = {"scoring": "ssim", "param": "sigma", "values": [0.5, 1], "model": "a"}
    assert sweep_caption("s", scoring, captions) == "S ssim sigma [0.5, 1] a no reference sweep_s"
    kw = dict(tables={"main": {"title": "Main"}}, qualitative={"main": {"fold": 2}}, sweeps={"s": {**scoring, "title": "T"}})
    assert figure_page("f/qualitative_main.png", captions, **kw) == ("Qualitative results: Main", "f/qualitative_main.png",
                                                                    "Fold 2.")
    assert figure_page("f/training_curves.png", captions, **kw)[2] == "Curves."
    assert figure_page("f/sweep_s.png", captions, **kw)[0] == "T"
    with pytest.raises(ValueError, match="no report page"):
        figure_page("f/other.png", captions, **kw)


def test_qc_pages(tmp_path, captions):
    d = tmp_path / "h"
    d.mkdir()
    n = QC_ROWS + 2
    pd.DataFrame({"subject": [f"s{i}" for i in range(n + 1)], "flagged": [True] * n + [False],
                  "n_flags": [1] * n + [0], "reasons": ["bad  volume"] * n + [""]}).to_csv(d / "qc.tsv", sep="\t", index=False)
    pd.DataFrame({"subject": ["x"], "source": ["s"], "file": ["/raw/x_t1.nii.gz"], "stage": ["manifest"],
                  "reason": ["/raw/x_t1.nii.gz: unreadable"]}).to_csv(d / "exclusions.tsv", sep="\t", index=False)
    tables, figures = qc_pages(d / "qc.tsv", d / "exclusions.tsv", d / "qc.png", "Healthy", captions)
    (t1, flagged, note1), (t2, excluded, note2) = tables
    assert t1 == "Data quality: Healthy -- flagged subjects" and len(flagged) == QC_ROWS
    assert flagged.index[0] == "s0 (1)" and flagged.iloc[0, 0] == "bad volume"
    assert note1 == f"{n} of {n + 1}. First {QC_ROWS} shown. Source h"
    assert excluded.loc["x"].iloc[0] == "manifest: x_t1.nii.gz: unreadable" and note2 == "1 out. See h"
    assert figures == [("Data quality: Healthy -- mid-slices", d / "qc.png", "Slices h.")]


def test_write_report_writes_a_pdf(tmp_path):
    long = pd.DataFrame([{"row": "AE", "dataset_label": "T", "metric": "dice", "mean": 0.5, "std": 0.1,
                          "n_folds": 2, "note": ""}])
    long.to_csv(tmp_path / "main.tsv", sep="\t", index=False)
    plt.imsave(tmp_path / "training_curves.png", np.zeros((4, 4)))
    write_report(tmp_path / "r.pdf", captions=CAPTION_FILES, tables=[tmp_path / "main.tsv"], inference=[],
                 figures=[tmp_path / "training_curves.png"], qc_tables=[], qc_exclusions=[], qc_figures=[],
                 table_specs={"main": {"metrics": ["dice"]}}, qualitative={}, inference_time={}, sweeps={},
                 datasets={}, title="T", config={"a": 1}, benchmarks=tmp_path / "bench")
    assert (tmp_path / "r.pdf").read_bytes()[:4] == b"%PDF"


def test_provenance_page_states_the_preset_and_every_convention(tmp_path, monkeypatch):
    from brainuad.reporting import pdf as pdf_mod
    from brainuad.reporting.report import conventions_lines

    pages = []
    original = pdf_mod._text_page
    monkeypatch.setattr(pdf_mod, "_text_page", lambda pdf, title, lines, **kw: (pages.append((title, lines)),
                                                                                original(pdf, title, lines, **kw)))
    conventions = [("ssim_covariance", "population", "preset author_code"),
                   ("auprc_region", "brain", "set in config")]
    long = pd.DataFrame([{"row": "AE", "dataset_label": "T", "metric": "dice", "mean": 0.5, "std": 0.1,
                          "n_folds": 2, "note": ""}])
    long.to_csv(tmp_path / "main.tsv", sep="\t", index=False)
    write_report(tmp_path / "r.pdf", captions=CAPTION_FILES, tables=[tmp_path / "main.tsv"], inference=[],
                 figures=[], qc_tables=[], qc_exclusions=[], qc_figures=[],
                 table_specs={"main": {"metrics": ["dice"]}}, qualitative={}, inference_time={}, sweeps={},
                 datasets={}, title="T", config={"a": 1}, benchmarks=tmp_path / "bench", preset="author_code",
                 conventions=conventions)
    provenance = dict(pages)["Provenance"]
    expected = conventions_lines("author_code", conventions)
    assert expected[0] == "Conventions (config 'conventions', config/README.md): preset author_code"
    assert expected[1].split() == ["ssim_covariance", "population", "(preset", "author_code)"]
    assert expected[2].split() == ["auprc_region", "brain", "(set", "in", "config)"]
    start = provenance.index(expected[0])
    assert provenance[start : start + 3] == expected
    assert conventions_lines("x", []) == []
def _tested_long():
    rows = []
    for label, mean, star, p in (("cDDPM", 0.56, True, float("nan")), ("AE", 0.36, False, 0.0001)):
        rows.append({"row": label, "dataset": "brats", "dataset_label": "BRATS", "metric": "dice_oracle",
                     "mean": mean, "std": 0.01, "n_folds": 5, "note": "", "unit": "subject", "n_units": 100,
                     "ci_low": mean - 0.02, "ci_high": mean + 0.02, "p_vs_best": p, "p_adjusted": p, "star": star,
                     "test": "unpaired one-sided permutation test", "mark": "underline" if star else ""})
    return pd.DataFrame(rows)


def test_tables_with_statistics_claims_and_published_pages(tmp_path):
    from brainuad.reporting.report import ci_table, claims_table, published_table
    from brainuad.reporting.tables import to_latex, wide

    long = _tested_long()
    long.to_csv(tmp_path / "main.tsv", sep="\t", index=False)
    shown = wide(long)
    assert shown.loc["cDDPM", "BRATS · [DICE]"] == "**<u>56.00 ± 1.00</u>**"
    assert r"\textbf{\underline{56.00 $\pm$ 1.00}}" in to_latex(shown, "t")
    star = wide(long.assign(mark=["star", ""]))
    assert star.loc["cDDPM", "BRATS · [DICE]"] == "**56.00 ± 1.00***"
    assert r"\textbf{56.00 $\pm$ 1.00}$^*$" in to_latex(star, "t")
    title, ci, _ = ci_table(tmp_path / "main.tsv", {"title": "Main"})
    assert title == "Main (± 95 % CI)" and ci.loc["AE", "BRATS · [DICE]"] == "36.00 [34.00, 38.00]"

    pub = tmp_path / "tab.tsv"
    pub.write_text("paper\ttable\trow\tsource_row\tcolumn\tmetric\tunit\tmean\tstd\ttext\tmarks\n"
                   "thesis\tTab4.4\tcDDPM [22]\tcDDPM [22]\tBRATS (T2)\tdice_oracle\t%\t56.30\t1.25\t56.30 ± 1.25\tbold\n"
                   "thesis\tTab4.4\tAE [62]\tAE [62]\tBRATS (T2)\tdice_oracle\t%\t30.00\t1.73\t30.00 ± 1.73\t\n")
    spec = {"title": "Main", "metrics": ["dice_oracle"], "published": {"table": "tab", "rows": {"cDDPM": "cDDPM [22]", "AE": "AE [62]"},
                                           "datasets": {"brats": "BRATS (T2)"}}}
    _, sbs, note = published_table(tmp_path / "main.tsv", spec, pub, {"brats": {"label": "BRATS"}})
    assert sbs.loc["cDDPM", "difference"] == "-0.30" and sbs.loc["cDDPM", "outside CI"] == "no"
    assert sbs.loc["AE", "difference"] == "+6.00" and sbs.loc["AE", "outside CI"] == "**yes**"
    assert "1 of 2 cells outside" in " ".join(note.split())

    claims = pd.DataFrame([
        {"claim": "sadm", "text": "SADM_res > cDDPM", "source": "Tab4.6", "kind": "metric",
         "verdict": "not testable here (missing: model sadm_res)", "p": "", "expected": "", "test": ""},
        {"claim": "ens", "text": "ENS helps", "source": "Tab4.4", "kind": "metric", "better": "cDDPM + ENS",
         "worse": "cDDPM", "dataset": "brats", "metric": "dice_oracle", "effect": 0.63, "p": 0.01,
         "p_adjusted": 0.01, "verdict": "reproduced", "expected": "+0.63", "test": "paired test"}])
    claims.to_csv(tmp_path / "claims.tsv", sep="\t", index=False)
    title, page, _ = claims_table(tmp_path / "claims.tsv")
    assert [" ".join(v.split()) for v in page["verdict"]] == ["not testable here (missing: model sadm_res)", "reproduced"]
    assert " ".join(page["measured"].iloc[1].split()) == "+0.63 (thesis: +0.63)"

    write_report(tmp_path / "r.pdf", captions=CAPTION_FILES, tables=[tmp_path / "main.tsv"], inference=[],
                 figures=[], qc_tables=[], qc_exclusions=[], qc_figures=[], table_specs={"main": spec},
                 qualitative={}, inference_time={}, sweeps={}, datasets={"brats": {"label": "BRATS"}}, title="T",
                 config={"a": 1}, benchmarks=tmp_path / "bench", published=[pub], claims=[tmp_path / "claims.tsv"])
    assert (tmp_path / "r.pdf").read_bytes()[:4] == b"%PDF"


def test_heldout_page_lists_the_stage2_training_and_calibration_subjects(tmp_path):
    from brainuad.reporting.report import heldout_table

    path = tmp_path / "tumour_t2.json"
    path.write_text('{"role": "pathology", "val": ["t3"], "train": ["t1", "t5"], "test": ["t2", "t4", "t6"]}')
    title, table, note = heldout_table([path], {"tumour_t2": {"label": "Tumour (T2)"}})
    assert "held-out" in title
    assert table.loc["Tumour (T2)", "n"].tolist() == [2, 1, 3]
    assert table.loc["Tumour (T2)", "subjects"].tolist()[:2] == ["t1, t5", "t3"]
    assert "removed from the test split" in note and "public code" in note


def test_dataset_note_is_printed_under_its_tables(tmp_path, captions):
    from brainuad.reporting.report import result_table

    tsv = tmp_path / "main.tsv"
    pd.DataFrame([{"row": "AE", "dataset_label": "MS (T2)", "metric": "dice", "mean": 0.02, "std": 0.01,
                   "n_folds": 2, "note": ""}]).to_csv(tsv, sep="\t", index=False)
    spec = {"metrics": ["dice"], "datasets": ["ms"], "title": "Main"}
    _, _, note = result_table(tsv, spec, captions, {"ms": {"label": "MS (T2)", "note": "at chance because X."}})
    assert "MS (T2): at chance because X." in " ".join(note.split())
    _, _, plain = result_table(tsv, spec, captions, {"ms": {"label": "MS (T2)"}})
    assert "at chance" not in plain
