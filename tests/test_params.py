"""params.yaml validation: every bad value fails with the key and what is allowed."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from mnist_basics import PipelineError
from mnist_basics.params import SECTIONS, defaults, load
from tests.conftest import ROOT


def write(tmp_path, params: dict):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_committed_params_are_the_documented_defaults():
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert committed == defaults()
    assert set(load(ROOT / "params.yaml", *SECTIONS)) == set(SECTIONS)


@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        ("mlp", "lr", -1.0, "mlp.lr: must be greater than 0 (got -1.0)"),
        ("linear", "lr", 0.0, "linear.lr: must be greater than 0"),
        ("linear", "epochs", 0, "linear.epochs: must be at least 1 (got 0)"),
        ("train", "device", "tpu", "train.device: must be one of 'auto', 'cpu' or 'cuda'"),
        ("mlp", "batch_size", "256", "mlp.batch_size: input should be a valid integer"),
        ("mlp", "epochs", 2.5, "mlp.epochs: input should be a valid integer"),
        ("resnet18", "pct_start", 1.5, "resnet18.pct_start: must be less than 1"),
        ("resnet18", "channels_last", "yes",
         "resnet18.channels_last: input should be a valid boolean"),
        ("train", "seed", -3, "train.seed: must be at least 0"),
        ("data", "md5", "not-hex", "data.md5: must match"),
        ("data", "url", "ftp://x/y.tgz", "data.url: must match"),
        ("data", "max_members", 0, "data.max_members: must be at least 1"),
    ],
)
def test_bad_value_names_key_and_allowed_values(tmp_path, section, key, value, expected):
    params = defaults()
    params[section][key] = value
    with pytest.raises(PipelineError) as err:
        load(write(tmp_path, params), section)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_int_is_accepted_where_a_float_is_expected(tmp_path):
    params = defaults()
    params["linear"]["lr"] = 1
    assert load(write(tmp_path, params), "linear")["linear"].lr == 1.0


def test_typo_in_key_is_an_unknown_key(tmp_path):
    params = defaults()
    params["mlp"]["lrr"] = params["mlp"].pop("lr")
    with pytest.raises(PipelineError, match=r"mlp\.lrr: unknown key; allowed keys: "
                                            r"batch_size, epochs, hidden, lr"):
        load(write(tmp_path, params), "mlp")


def test_missing_key(tmp_path):
    params = defaults()
    del params["mlp"]["epochs"]
    with pytest.raises(PipelineError, match=r"mlp\.epochs: is missing"):
        load(write(tmp_path, params), "mlp")


def test_typo_in_section_name(tmp_path):
    params = defaults()
    params["mpl"] = params.pop("mlp")
    with pytest.raises(PipelineError, match="unknown section 'mpl'; allowed: data, train"):
        load(write(tmp_path, params), "train")


def test_missing_section(tmp_path):
    params = defaults()
    del params["mlp"]
    with pytest.raises(PipelineError, match="mlp: section is missing"):
        load(write(tmp_path, params), "mlp")


def test_yaml_that_does_not_parse(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("mlp:\n  lr: [0.1\n")
    with pytest.raises(PipelineError, match="is not valid YAML at line"):
        load(path, "mlp")


def test_missing_file(tmp_path):
    with pytest.raises(PipelineError, match="not found"):
        load(tmp_path / "nope.yaml", "mlp")


def test_a_stage_fails_on_bad_params_before_touching_its_outputs(tmp_path):
    params = defaults()
    params["train"]["device"] = "tpu"
    out = tmp_path / "out"
    out.mkdir()
    (out / "mlp.json").write_text("previous good metrics\n")
    r = subprocess.run(
        [sys.executable, "stages/mlp.py", "--params", str(write(tmp_path, params)),
         "--tensors", str(tmp_path / "absent.safetensors"),
         "--metrics", str(out / "mlp.json"), "--checkpoint", str(out / "mlp.safetensors")],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'params.yaml'}: train.device: must be one of "
        "'auto', 'cpu' or 'cuda' (got 'tpu')"
    )
    assert (out / "mlp.json").read_text() == "previous good metrics\n"
    assert sorted(p.name for p in out.iterdir()) == ["mlp.json"]
