"""Tests for brainuad.data.preprocess.options.PreprocessOptions against the config schema and files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from brainuad.data.preprocess import PreprocessOptions

ROOT = Path(__file__).resolve().parents[2]


def schema_properties() -> dict:
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    return schema["properties"]["preprocess"]["properties"]


def config_section(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())["preprocess"]


def test_every_schema_key_is_an_option_and_schema_defaults_are_the_defaults():
    fields = {field.name: field.default for field in dataclasses.fields(PreprocessOptions)}
    properties = schema_properties()
    assert set(properties) <= set(fields)
    defaults = {key: spec["default"] for key, spec in properties.items() if "default" in spec}
    assert defaults == {"template_mask": None, "min_registration_similarity": 0.3, "max_voxel_anisotropy": 8,
                        "min_nonzero_fraction": 0.01}
    for key, value in defaults.items():
        assert getattr(PreprocessOptions(), key) == value


def test_defaults_are_the_demo_config():
    assert PreprocessOptions.from_config(config_section("config/config.yaml")) == PreprocessOptions()


def test_from_config_thesis_values_as_tuples():
    options = PreprocessOptions.from_config(config_section("config/thesis.yaml"))
    assert options.spacing_mm == 1.0 and options.downsample == 2 and options.slice_crop == 15
    assert options.crop_pad == (192, 192, 160)
    assert options.reg_iterations == (1000, 500, 250, 100)
    assert options.reg_smoothing_sigmas == (3, 2, 1, 0)
    assert options.percentiles == (1, 99)
    assert options.skull_strip == {"method": "template", "command": None}


def test_unknown_key_is_rejected_with_its_name():
    with pytest.raises(ValueError, match=r"unknown preprocess option\(s\) 'crop', 'spacing'; known options: "
                                         r"spacing_mm, template"):
        PreprocessOptions.from_config({"spacing": 2.0, "crop": [1, 2, 3], "n4": False})


def test_null_takes_the_default_and_lists_become_tuples():
    options = PreprocessOptions.from_config({"template_mask": None, "downsample": None, "crop_pad": [10, 20, 30]})
    assert options.template_mask is None and options.downsample == 1.5
    assert options.crop_pad == (10, 20, 30)


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PreprocessOptions().n4 = False


def test_skull_strip_is_normalised_and_checked():
    assert PreprocessOptions(skull_strip="none").skull_strip == {"method": "none", "command": None}
    assert PreprocessOptions(skull_strip=None).skull_strip == {"method": "template", "command": None}
    command = ["hd-bet", "-i", "{input}", "-o", "{output}"]
    assert PreprocessOptions(skull_strip={"method": "HD-BET", "command": command}).skull_strip == {
        "method": "hd-bet", "command": command}
    with pytest.raises(ValueError, match="skull_strip.command"):
        PreprocessOptions(skull_strip="hd-bet")
    with pytest.raises(ValueError, match="one of"):
        PreprocessOptions.from_config({"skull_strip": {"method": "bet2"}})


@pytest.mark.parametrize(("registration", "registers"), [("Affine", True), ("SyN", True), ("none", False),
                                                         ("None", False)])
def test_registers(registration, registers):
    assert PreprocessOptions(registration=registration).registers is registers
