"""Every knob of the pipeline, validated: one pydantic model per `params.yaml` section.

A stage loads only the sections it declares in `pipeline.py` (so DVC reruns it exactly when
one of them changes) and validates them before it touches any output. The values themselves
live in params.yaml alone: these models hold types and bounds, and every key is required.
A bad value fails with one line that names the key and what is allowed:

    params.yaml: mlp.lr: must be greater than 0 (got -1.0)
    params.yaml: train.device: must be one of 'auto', 'cpu', 'cuda' (got 'tpu')
    params.yaml: mlp.lrr: unknown key; allowed keys: batch_size, epochs, hidden, lr
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError

from mnist_basics import PipelineError
from mnist_basics.registry import DATASETS as LAYOUTS
from mnist_basics.registry import SAMPLE, TRAINED


class Section(BaseModel):
    # Strict: a string "0.1" is not a float, and an unknown key is an error, not a no-op.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Hex32 = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
PositiveInt = Annotated[int, Field(ge=1)]
Lr = Annotated[float, Field(gt=0, le=100)]


class Data(Section):
    """Where the archive comes from and how it is checked (stage `download`)."""

    url: Annotated[str, Field(pattern=r"^(https?|file)://")]
    md5: Hex32  # of the official archive
    content_digest: Hex64  # sha256 over the extracted tree: accepts faithful re-packs
    max_members: Annotated[int, Field(ge=1, le=1_000_000)]
    max_bytes: Annotated[int, Field(ge=1, le=10**10)]  # the members' size once unpacked


class Train(Section):
    """Shared by every training stage."""

    seed: Annotated[int, Field(ge=0, le=2**32 - 1)]
    device: Literal["auto", "cpu", "cuda"]  # auto: cuda when available, else cpu


class Linear(Section):
    """The chapter's hand-written linear model: `linear1` trained with `BasicOptim`."""

    lr: Lr
    batch_size: PositiveInt
    epochs: PositiveInt


class Mlp(Section):
    """`simple_net`: 784-hidden-ReLU-1, same loss and optimizer."""

    lr: Lr
    batch_size: PositiveInt
    epochs: PositiveInt
    hidden: PositiveInt


Momentum = Annotated[float, Field(ge=0, lt=1)]


class Resnet18(Section):
    """torchvision's resnet18 from scratch, one-cycle schedule (the book's fit_one_cycle)."""

    lr: Lr  # peak learning rate of the one-cycle schedule
    epochs: PositiveInt
    # The last partial batch of each epoch is dropped; batchnorm needs 2 images per batch.
    batch_size: Annotated[int, Field(ge=2)]
    pct_start: Annotated[float, Field(gt=0, lt=1)]  # fraction of steps spent warming up
    weight_decay: Annotated[float, Field(ge=0, le=1)]  # conv and linear weights only
    max_momentum: Momentum  # SGD momentum at the start and end of the cycle,
    base_momentum: Momentum  # and at the peak lr
    channels_last: bool  # memory format for the convolutions
    # Autocast matmuls and convolutions to bfloat16; "auto": where the hardware runs it natively.
    bf16: bool | Literal["auto"]


class SgdExample(Section):
    """The chapter's SGD walk-through: a quadratic fitted to 20 noisy speeds."""

    seed: Annotated[int, Field(ge=0, le=2**32 - 1)]
    lr: Lr
    steps: PositiveInt


Seeds = Annotated[list[Annotated[int, Field(ge=0, le=2**32 - 1)]], Field(min_length=1)]
TrainedMethod = Literal[TRAINED]


class Spread(Section):
    """`make spread`: every trained method once per seed (train.seed is the chapter's one)."""

    seeds: Seeds


class Sweep(Section):
    """`make spread` too: one key of one method's section over a grid, each value per seed."""

    method: TrainedMethod
    key: str  # a key of that method's section, e.g. lr
    values: Annotated[list[float | int | bool], Field(min_length=1)]
    seeds: Seeds


class DigitsLinear(Linear):
    """The linear model on ten digits: weights [784, 10] and a bias, softmax loss."""

    init_std: Annotated[float, Field(gt=0, le=10)]  # `init_params`' std, weights and bias


class DigitsMlp(Mlp):
    """784-hidden-ReLU-10 on ten digits, trained by `BasicOptim` with a learning-rate schedule."""

    schedule: Literal["constant", "cosine"]  # cosine: from lr down to 0 over the whole run


class Report(Section):
    """The report page (stage `report`); mnist_basics/report/i18n.py holds its catalogues."""

    lang: Literal["en", "et"]  # the page's language: English or Estonian


# Each trained method's knobs (mnist_basics/registry.py): on two classes, as the chapter
# trains it, and on more.
METHOD_SECTIONS: dict[str, tuple[type[Section], type[Section]]] = {
    "linear": (Linear, DigitsLinear),
    "mlp": (Mlp, DigitsMlp),
    "resnet18": (Resnet18, Resnet18),
}
SECTIONS: dict[str, type[Section]] = {
    "sgd_example": SgdExample,
    "data": Data,
    "train": Train,
    **{m: METHOD_SECTIONS[m][0] for m in TRAINED},
    "report": Report,
    "spread": Spread,
    "sweep": Sweep,
    # Each other dataset's own knobs, under its name, e.g. `mnist:` (its stages share `train`
    # and `report`).
    **{f"{d}.{name}": model for d, layout in LAYOUTS.items() if d != SAMPLE
       for name, model in [("data", Data), *((m, METHOD_SECTIONS[m][not layout.binary])
                                             for m in TRAINED)]},
}
PARAMS = "params.yaml"  # DVC's default params file, at the project's root
DATASET_NAMES = tuple(LAYOUTS)  # what `datasets` may list
DATASETS = "datasets"  # the list of datasets that `make run` and `make repro` build
SHARED = ("train", "report")  # the sections every dataset's stages share


def _num(x):
    return int(x) if isinstance(x, float) and x.is_integer() else x


def _describe(err: dict) -> str:
    kind, got = err["type"], err.get("input")
    ctx = {k: _num(v) for k, v in err.get("ctx", {}).items()}
    if kind == "greater_than":
        return f"must be greater than {ctx['gt']} (got {got!r})"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']} (got {got!r})"
    if kind == "less_than":
        return f"must be less than {ctx['lt']} (got {got!r})"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']} (got {got!r})"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']} (got {got!r})"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern']} (got {got!r})"
    if kind == "too_short":
        return f"must list at least {ctx['min_length']} value (got {got!r})"
    if kind == "missing":
        return "is missing"
    return f"{err['msg'].lower()} (got {got!r})"


def _fail(path: Path, msg: str) -> PipelineError:
    return PipelineError(f"{path}: {msg}")


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading floats as YAML 1.2 (and DVC, which writes params.yaml
    for `dvc exp run -S` and dvc.lock) do: `1e-05` is a number, not the string '1e-05'."""


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                 |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                 |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                 |[-+]?\.(?:inf|Inf|INF)
                 |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def load_yaml(text: str) -> object:
    return yaml.load(text, Loader=Loader)  # a SafeLoader: plain data, never objects


# params.yaml's top-level keys: each section, `mnist` (which holds sections) and `datasets`.
TOP_LEVEL = [*dict.fromkeys(name.partition(".")[0] for name in SECTIONS), DATASETS]


class Datasets(RootModel[Annotated[list[Literal[DATASET_NAMES]], Field(min_length=1)]]):
    """params.yaml `datasets`: which datasets the default runs build, each named once."""

    model_config = ConfigDict(strict=True, frozen=True)


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        raw = load_yaml(path.read_text())
    except FileNotFoundError:
        raise _fail(path, "not found; run from the project root or pass --params") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise _fail(path, f"is not valid YAML{line}: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise _fail(path, "must be a mapping of sections (data, train, linear, ...)")
    unknown = sorted(set(raw) - set(TOP_LEVEL), key=str)
    if unknown:
        raise _fail(path, f"unknown section {unknown[0]!r}; allowed: {', '.join(TOP_LEVEL)}")
    for group in TOP_LEVEL:  # a key that holds sections may hold only those
        inner = [n.partition(".")[2] for n in SECTIONS if n.startswith(f"{group}.")]
        if inner and isinstance(raw.get(group), dict):
            extra = sorted(set(raw[group]) - set(inner), key=str)
            if extra:
                raise _fail(path, f"unknown section '{group}.{extra[0]}'; "
                                  f"allowed: {', '.join(inner)}")
    return raw


def _section(raw: dict, name: str) -> object:
    """raw's value at a section's name, `mnist.linear` being raw["mnist"]["linear"]."""
    value: object = raw
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _datasets(path: Path, values: object) -> Datasets:
    try:
        out = Datasets.model_validate(values)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join([DATASETS, *map(str, err["loc"])])
        raise _fail(path, f"{key}: {_describe(err)}") from None
    twice = [name for i, name in enumerate(out.root) if name in out.root[:i]]
    if twice:
        raise _fail(path, f"{DATASETS}: lists {twice[0]!r} twice")
    return out


def load(path: str | Path, *names: str,
         overrides: dict[str, dict] | None = None) -> dict[str, Section]:
    """Validate and return the named sections of params.yaml, e.g. `load(p, "train", "mlp")`;
    the full MNIST's are `mnist.linear` and so on, and `datasets` is a list.

    `overrides` replaces values before they are checked, as a seed spread or a sweep job
    does: `load(p, "train", "mlp", overrides={"train": {"seed": 3}, "mlp": {"lr": 0.05}})`.
    """
    path = Path(path)
    raw = read_yaml(path)
    out = {}
    for name in names:
        if name == DATASETS:
            out[name] = _datasets(path, raw.get(name))
            continue
        model = SECTIONS[name]
        values = _section(raw, name)
        if isinstance(values, dict) and overrides and name in overrides:
            values = {**values, **overrides[name]}
        if not isinstance(values, dict):
            raise _fail(path, f"{name}: section is missing or not a mapping")
        unknown = sorted(set(values) - set(model.model_fields), key=str)
        if unknown:
            allowed = ", ".join(sorted(model.model_fields))
            raise _fail(path, f"{name}.{unknown[0]}: unknown key; allowed keys: {allowed}")
        missing = sorted(set(model.model_fields) - set(values))
        if missing:
            raise _fail(path, f"{name}.{missing[0]}: is missing")
        try:
            out[name] = model.model_validate(values)
        except ValidationError as e:
            err = e.errors()[0]
            key = ".".join([name, *map(str, err["loc"])])
            raise _fail(path, f"{key}: {_describe(err)}") from None
    return out


def values(path: str | Path) -> dict:
    """Every section, validated, as params.yaml nests them: {"mnist": {"linear": {...}}}."""
    out: dict = {}
    for name, section in load(path, *SECTIONS, DATASETS).items():
        *groups, last = name.split(".")
        into = out
        for g in groups:
            into = into.setdefault(g, {})
        into[last] = section.model_dump()
    return out


def section(name: str, dataset: str = SAMPLE) -> str:
    """The params.yaml section a dataset's stage reads: `linear`, `mnist.linear`."""
    return name if dataset == SAMPLE or name in SHARED else f"{dataset}.{name}"


DATASET_PAGE_SECTIONS = ("data", "train", *TRAINED, "report")  # another dataset's page's


def page_sections(dataset: str = SAMPLE) -> list[str]:
    """The sections a dataset's page lists: on the chapter's page, every chapter section."""
    if dataset == SAMPLE:
        return [n for n in SECTIONS if "." not in n]
    return [section(n, dataset) for n in DATASET_PAGE_SECTIONS]


SPREAD_SECTIONS = ("spread", "sweep", "train", *TRAINED, "report")  # the spread's page's


def load_for(path: str | Path, dataset: str, *names: str) -> dict[str, Section]:
    """A dataset's copy of the named sections, under their plain names: for the full MNIST,
    `load_for(p, "mnist", "train", "linear")` reads `train` and `mnist.linear`."""
    loaded = load(path, *(section(n, dataset) for n in names))
    return {n: loaded[section(n, dataset)] for n in names}
