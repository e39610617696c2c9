"""brainuad.conventions: the presets expand to the values documented in config/README.md and the schema,
switches override a preset, and brainuad.study hands each rule only the switches it uses."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from brainuad import conventions as conv
from brainuad.study import Study

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
SMOKE = yaml.safe_load((ROOT / "tests" / "smoke" / "config.yaml").read_text())

AUTHOR_CODE = {"ssim_covariance": "population", "ssim_padding": "mirror", "postprocess_order": "mask_first",
               "component_rule": "filled_at_most", "auprc_region": "volume", "threshold_ties": "last"}
THESIS_TEXT = {"ssim_covariance": "population", "ssim_padding": "reflect", "postprocess_order": "median_first",
               "component_rule": "fewer_than", "auprc_region": "brain", "threshold_ties": "first"}


def study(section=None) -> Study:
    cfg = copy.deepcopy(SMOKE)
    if section is not None:
        cfg["conventions"] = section
    validate(cfg, str(SCHEMA))
    return Study(cfg, ROOT)


def test_presets_expand_to_the_issue_values():
    assert conv.resolve({"preset": "author_code"}) == {"preset": "author_code", **AUTHOR_CODE}
    assert conv.resolve({"preset": "thesis_text"}) == {"preset": "thesis_text", **THESIS_TEXT}
    assert conv.resolve(None) == conv.resolve({}) == conv.resolve({"preset": "thesis_text"})


def test_presets_are_documented_in_config_readme():
    """The table of config/README.md "conventions" lists every switch with the value of each preset."""
    text = (ROOT / "config" / "README.md").read_text()
    section = text[text.index("## `conventions`"):]
    section = section[: section.index("\n## ", 1)]
    documented = {}
    for line in section.splitlines():
        m = re.match(r"^\| `(\w+)` \| `(\w+)` \| `(\w+)` \|", line)
        if m:
            documented[m.group(1)] = (m.group(2), m.group(3))
    assert documented == {k: (AUTHOR_CODE[k], THESIS_TEXT[k]) for k in conv.SWITCHES}


def test_schema_enums_equal_the_registry():
    schema = yaml.safe_load(SCHEMA.read_text())["properties"]["conventions"]
    assert schema["properties"]["preset"]["enum"] == list(conv.PRESETS)
    assert schema["properties"]["preset"]["default"] == conv.DEFAULT_PRESET
    assert {k: tuple(v["enum"]) for k, v in schema["properties"].items() if k != "preset"} == conv.SWITCHES
    for preset in conv.PRESETS.values():
        assert set(preset) == set(conv.SWITCHES)
        assert all(value in conv.SWITCHES[key] for key, value in preset.items())


def test_shipped_configs_pick_their_presets():
    for name, preset in (("config.yaml", "thesis_text"), ("thesis.yaml", "author_code")):
        cfg = yaml.safe_load((ROOT / "config" / name).read_text())
        assert cfg["conventions"] == {"preset": preset}, name


def test_a_switch_overrides_the_preset_and_bad_values_are_named():
    out = conv.resolve({"preset": "author_code", "auprc_region": "brain"})
    assert out == {"preset": "author_code", **AUTHOR_CODE, "auprc_region": "brain"}
    with pytest.raises(ValueError, match="conventions.preset: 'paper'"):
        conv.resolve({"preset": "paper"})
    with pytest.raises(ValueError, match="conventions.threshold_ties: 'middle' is not one of first, last"):
        conv.resolve({"threshold_ties": "middle"})
    with pytest.raises(ValueError, match="conventions.order: unknown switch"):
        conv.resolve({"order": "mask_first"})


def test_schema_default_fills_the_section():
    cfg = copy.deepcopy(SMOKE)
    cfg.pop("conventions", None)
    validate(cfg, str(SCHEMA))
    assert cfg["conventions"] == {"preset": "thesis_text"}


def test_study_hands_each_rule_only_its_switches():
    s = study({"preset": "author_code", "ssim_padding": "reflect"})
    # SSIM scorings get the SSIM switches under their own keyword names; l1 and native get none
    assert s.scoring_params("mean_ssim") == {"name": "mean_ssim", "covariance": "population", "padding": "reflect"}
    assert s.scoring_params("mhd_full") == {"name": "mhd_full", "lam": 0.01, "ssim_covariance": "population",
                                            "ssim_padding": "reflect"}
    assert s.scoring_params("mhd_full@samples=2")["ssim_padding"] == "reflect"  # sweep values too
    assert s.scoring_params("l1") == {"name": "l1"} and s.scoring_params("native") == {"name": "native"}
    # pathology evaluations use the four evaluation switches, healthy ones only the order
    assert s.evaluation_conventions("tumour_t2") == {k: AUTHOR_CODE[k] for k in conv.EVALUATION_SWITCHES}
    assert s.evaluation_conventions("healthy_t2") == {"postprocess_order": "mask_first"}
    assert s.figure_conventions() == {"postprocess_order": "mask_first", "component_rule": "filled_at_most"}
    assert s.conventions_provenance()[:2] == [("ssim_covariance", "population", "preset author_code"),
                                              ("ssim_padding", "reflect", "set in config")]


def test_scoring_entry_wins_and_mhd_without_ssim_gets_no_switch():
    s = study({"preset": "author_code"})
    s.scorings["ssim_sk"] = {"name": "ssim", "covariance": "sample"}
    assert s.scoring_params("ssim_sk") == {"name": "ssim", "covariance": "sample", "padding": "mirror"}
    s.scorings["mhd_raw"] = {"name": "mhd_diag", "combine_ssim": False}
    assert s.scoring_params("mhd_raw") == {"name": "mhd_diag", "combine_ssim": False}
