"""params.yaml validation: every bad value fails with the key and what is allowed."""

from __future__ import annotations

import pytest
import yaml

from mnist_basics import PipelineError
from mnist_basics.params import DATASETS, SECTIONS, TOP_LEVEL, load, load_for, values
from mnist_basics.pipeline.stage import lookup
from tests.harness import ROOT, run_stage, write_params


def write(tmp_path, params: dict):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def committed() -> dict:
    """The committed params.yaml, as plain values: the base every test here edits."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_params_yaml_holds_every_value_and_the_models_none():
    """params.yaml is the one place for values: every field of every model is there (and
    nothing else), each is required, and the whole file loads with the values it holds."""
    raw = committed()
    assert set(raw) == set(TOP_LEVEL)  # the sections, `mnist` (which holds its own), datasets
    assert set(raw["mnist"]) == {n.split(".")[1] for n in SECTIONS if n.startswith("mnist.")}
    for name, model in SECTIONS.items():
        assert set(lookup(raw, name)) == set(model.model_fields), name
        defaulted = [k for k, f in model.model_fields.items() if not f.is_required()]
        assert defaulted == [], f"{name}: {defaulted} have defaults outside params.yaml"
    loaded = load(ROOT / "params.yaml", *SECTIONS, DATASETS)
    assert set(loaded) == {*SECTIONS, DATASETS}
    assert values(ROOT / "params.yaml") == raw


def test_write_params_starts_from_the_committed_values(tmp_path):
    path = write_params(tmp_path / "params.yaml", mlp={"epochs": 2})
    expected = committed()
    expected["mlp"]["epochs"] = 2
    assert yaml.safe_load(path.read_text()) == expected


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
    params = committed()
    params[section][key] = value
    with pytest.raises(PipelineError) as err:
        load(write(tmp_path, params), section)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_int_is_accepted_where_a_float_is_expected(tmp_path):
    params = committed()
    params["linear"]["lr"] = 1
    assert load(write(tmp_path, params), "linear")["linear"].lr == 1.0


def test_typo_in_key_is_an_unknown_key(tmp_path):
    params = committed()
    params["mlp"]["lrr"] = params["mlp"].pop("lr")
    with pytest.raises(PipelineError, match=r"mlp\.lrr: unknown key; allowed keys: "
                                            r"batch_size, epochs, hidden, lr"):
        load(write(tmp_path, params), "mlp")


def test_missing_key(tmp_path):
    params = committed()
    del params["mlp"]["epochs"]
    with pytest.raises(PipelineError, match=r"mlp\.epochs: is missing"):
        load(write(tmp_path, params), "mlp")


def test_typo_in_section_name(tmp_path):
    params = committed()
    params["mpl"] = params.pop("mlp")
    allowed = ", ".join(TOP_LEVEL)
    with pytest.raises(PipelineError, match=f"unknown section 'mpl'; allowed: {allowed}$"):
        load(write(tmp_path, params), "train")


def test_missing_section(tmp_path):
    params = committed()
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
    params = committed()
    params["train"]["device"] = "tpu"
    out = tmp_path / "out"  # every path of the stage points in here
    previous = out / "metrics" / "mlp.json"
    previous.parent.mkdir(parents=True)
    previous.write_text("previous good metrics\n")
    r = run_stage("mlp", under=out, params=write(tmp_path, params),
                  tensors=tmp_path / "absent.safetensors")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'params.yaml'}: train.device: must be one of "
        "'auto', 'cpu' or 'cuda' (got 'tpu')"
    )
    assert previous.read_text() == "previous good metrics\n"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["metrics",
                                                                       "metrics/mlp.json"]


@pytest.mark.parametrize(("datasets", "expected"), [
    (["mnist_sample", "mnst"], "datasets.1: must be one of 'mnist_sample' or 'mnist'"),
    ([], "datasets: must list at least 1 value"),
    (["mnist", "mnist"], "datasets: lists 'mnist' twice"),
    ("mnist", "datasets: input should be a valid list"),
])
def test_bad_datasets_list(tmp_path, datasets, expected):
    params = {**committed(), "datasets": datasets}
    with pytest.raises(PipelineError, match=f"{expected}"):
        load(write(tmp_path, params), DATASETS)


def test_unknown_section_of_the_full_mnist(tmp_path):
    params = committed()
    params["mnist"]["mpl"] = params["mnist"].pop("mlp")
    with pytest.raises(PipelineError,
                       match="unknown section 'mnist.mpl'; allowed: data, linear, mlp, resnet18$"):
        load(write(tmp_path, params), "train")


def test_a_datasets_sections_under_their_plain_names():
    """A full-MNIST stage reads `mnist.linear` as its `linear`, and the shared `train`."""
    got = load_for(ROOT / "params.yaml", "mnist", "train", "linear")
    assert got["linear"].model_dump() == committed()["mnist"]["linear"]
    assert got["train"].model_dump() == committed()["train"]
    assert load_for(ROOT / "params.yaml", "mnist_sample", "linear")["linear"].model_dump() == \
        committed()["linear"]
