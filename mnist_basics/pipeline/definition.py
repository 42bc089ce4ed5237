"""The pipeline's one definition: every stage, its script, inputs, params and outputs.

Both engines read this list and nothing else: `pipeline/engines.py` writes each dvc.yaml and
each Snakemake rule file (rules/*.smk) from it (`make dvc.yaml`); they are committed, and
`make lint` checks that they are current. `pipeline/bridge.py` keeps the two engines in one
state.

Every path a stage reads or writes is named once here, and reaches its script through the
command (DVC's own convention): `python stages/mlp.py --tensors data/... --checkpoint ...`.
No stage script imports this module, so a stage's code deps are its script and the modules
it really imports: editing a comment here reruns nothing, a new stage runs alone, and a
changed path reruns the stage whose command changed and its dependants. A test points any
path elsewhere with `Stage.argv`.

The full MNIST (all ten digits, the chapter's "further research") runs the same stages: each
dataset of `DATASETS` gets its own copy of the chapter's stages from `chapter_stages`, its own
paths and params sections, and its own dvc.yaml (`mnist/dvc.yaml`; Snakemake's rules
`mnist_<stage>`). params.yaml `datasets` says which of them `make run` and `make repro` build.

The seed spread and the sweep (`make spread`, `SPREAD`, spread/dvc.yaml) are stages too.
"""

from __future__ import annotations

from mnist_basics.params import SPREAD_SECTIONS, page_sections, section
from mnist_basics.pipeline.stage import ROOT, Stage
from mnist_basics.registry import (
    DATASETS,
    KEPT,
    METHODS,
    METRICS,
    OUTPUTS,
    PLOTS,
    SAMPLE,
    TRAINED,
    WALL_CLOCK_FLAG,
    spread_name,
    sweep_name,
)

DVC_YAML = ROOT / "dvc.yaml"
SPREAD_DVCFILE = "spread/dvc.yaml"
SPREAD_DVC_YAML = ROOT / SPREAD_DVCFILE

# -- Datasets --------------------------------------------------------------------------------
# MNIST_SAMPLE is the chapter's: its stages, paths and params sections keep their plain names.
# Any other dataset's stages live in <name>/dvc.yaml, write under their own names (data/<name>.*,
# models/<name>/, metrics/<name>/, reports/<name>.html) and read params.yaml's <name>.* sections
# (`train` and `report` are shared). mnist_basics/registry.py lists the datasets (DATASETS).


def _sub(dataset: str) -> str:
    return "" if dataset == SAMPLE else f"{dataset}/"


def dvcfile(dataset: str) -> str:
    return f"{_sub(dataset)}dvc.yaml"


# -- Artifacts -------------------------------------------------------------------------------
# The verified archive, kept whole and re-packed canonically: the stack stage reads its PNGs
# without extracting them, and any faithful copy of the source gives the same bytes.
def archive(dataset: str = SAMPLE) -> str:
    return f"data/{dataset}.tgz"


def tensors(dataset: str = SAMPLE) -> str:  # train_x, train_y, valid_x, valid_y (uint8)
    return f"data/{dataset}.safetensors"


def counts(dataset: str = SAMPLE) -> str:  # images per split and class
    return "data/counts.json" if dataset == SAMPLE else f"data/{dataset}_counts.json"


def report(dataset: str = SAMPLE) -> str:
    return "reports/index.html" if dataset == SAMPLE else f"reports/{dataset}.html"


def accuracy_csv(dataset: str = SAMPLE) -> str:
    return "reports/accuracy.csv" if dataset == SAMPLE else f"reports/{dataset}_accuracy.csv"


ARCHIVE, TENSORS, COUNTS = archive(), tensors(), counts()


def checkpoint(name: str, dataset: str = SAMPLE) -> str:
    return f"models/{_sub(dataset)}{name}.safetensors"


def model_card(name: str, dataset: str = SAMPLE) -> str:  # architecture and params
    return f"models/{_sub(dataset)}{name}.json"


def predictions(name: str, dataset: str = SAMPLE) -> str:  # the answer on each valid digit
    return f"models/{_sub(dataset)}{name}_valid.safetensors"


# Results only, so equal params give equal bytes: the metrics (the same keys for every
# method), each class's accuracy, one row per epoch.
def metrics(name: str, dataset: str = SAMPLE) -> str:
    return f"metrics/{_sub(dataset)}{name}.json"


def classes(name: str, dataset: str = SAMPLE) -> str:
    return f"metrics/{_sub(dataset)}{name}_classes.json"


def history(name: str, dataset: str = SAMPLE) -> str:
    return f"metrics/{_sub(dataset)}{name}_history.csv"


def timing(name: str, dataset: str = SAMPLE) -> str:  # wall-clock figures: differ every run
    return f"metrics/{_sub(dataset)}{name}_timing.json"


def steps(dataset: str = SAMPLE) -> str:  # resnet18's loss and lr at every step
    return f"metrics/{_sub(dataset)}resnet18_steps.csv"


STEPS = steps()
SGD_EXAMPLE = {  # the chapter's SGD walk-through and its small examples
    "tensors": "data/sgd_example.safetensors",  # time, speed, params/preds/loss per step, curves
    "metrics": "metrics/sgd_example.json",
    "steps": "metrics/sgd_example.csv",  # the loss and a, b, c at every step
}
REPORT, ACCURACY_CSV = report(), accuracy_csv()

# The spread's results: one small JSON per run, kept in git like the metrics ({seed} and
# {value} are the runs' matrix keys), and the page and tables that gather them.
SPREAD_RUNS = "metrics/spread"
SWEEP_RUNS = "metrics/sweep"


def spread_run(method: str, seed: object = "{seed}") -> str:
    return f"{SPREAD_RUNS}/{spread_name(method, seed)}"


def sweep_run(value: object = "{value}", seed: object = "{seed}") -> str:
    return f"{SWEEP_RUNS}/{sweep_name(value, seed)}"


SPREAD_REPORT = "reports/spread.html"
SPREAD_CSV = "reports/spread.csv"  # one row per method and seed
SWEEP_CSV = "reports/sweep.csv"  # one row per value and seed
SPREAD_METRICS = "metrics/spread.json"  # mean, sd, min, max per method and per swept value

# Outputs that hold this run's wall-clock figures (the page shows when it was written and the
# seconds): the only outputs that two runs with the same params and code write differently.
WALL_CLOCK = (*(timing(m, d) for d in DATASETS for m in METHODS), *map(report, DATASETS))

# The shared code each stage imports; editing a module reruns exactly the stages listed here.
# tests/test_engines.py checks the lists against what each stage script really imports.


def code(*modules: str) -> list[str]:
    """Package modules as a stage lists them: `chapter.train` is mnist_basics/chapter/train.py,
    after each __init__.py above it, which importing it runs too."""
    files: dict[str, None] = {}
    for module in modules:
        parts = module.split(".")
        for depth in range(len(parts)):
            files["/".join(["mnist_basics", *parts[:depth], "__init__.py"])] = None
        files["/".join(["mnist_basics", *parts]) + ".py"] = None
    return list(files)


CORE = ("artifacts", "params", "registry", "pipeline.cli")  # every stage script's imports
TRAINING = (*CORE, "compat", "data.stack", "chapter.train")
PAGE = (*CORE, "data.stack", "report.i18n", "report.figures", "report.page")
TEMPLATES = "mnist_basics/report/templates"
PAGE_FILES = [f"{TEMPLATES}/sections.html.j2", f"{TEMPLATES}/page.css",
              "mnist_basics/report/locale/et/LC_MESSAGES/messages.po"]
PLOT_AXES = {"history": ("epoch", "valid_accuracy"), "steps": ("step", "lr")}


def chapter_stages(dataset: str = SAMPLE) -> list[Stage]:
    """The chapter's stages for one dataset. MNIST_SAMPLE's are the chapter itself; another
    dataset runs the same stages but the chapter's small examples (sgd_example, nn_linear),
    which are about 3s and 7s, each under its own paths, params sections and dvc.yaml."""
    chapter = dataset == SAMPLE
    common = {"dataset": dataset, "dvcfile": dvcfile(dataset)}

    def method(name: str) -> Stage:
        trains = name in TRAINED
        path = {"checkpoint": checkpoint, "model_card": model_card, "predictions": predictions,
                "timing": timing, "metrics": metrics, "history": history, "classes": classes,
                "steps": lambda _, d: steps(d)}

        def paths(flags) -> dict[str, str]:
            return {flag: path[flag](name, dataset) for flag in flags}

        plots = paths((*PLOTS, *METHODS[name].extra_plots))
        return Stage(
            name=name,
            inputs={"tensors": tensors(dataset)},
            outputs=paths(OUTPUTS),
            metrics=paths(METRICS),
            plots=plots,
            kept=paths(KEPT),
            code=code(*TRAINING, METHODS[name].module),
            params=[section("train"), section(name, dataset)] if trains else [],
            gpu=trains,
            # The small models run fastest on one thread; resnet18 uses every core it is given.
            multicore=METHODS[name].multicore,
            plot_axes={p: PLOT_AXES[flag] for flag, p in plots.items()},
            **common,
        )

    download = Stage(
        name="download",
        outputs={"out": archive(dataset)},
        code=code(*CORE, "data.stack", "data.download"),
        params=[section("data", dataset)],
        **common,
    )
    stack = Stage(
        name="stack",
        inputs={"archive": archive(dataset)},
        outputs={"tensors": tensors(dataset), "counts": counts(dataset)},
        code=code(*CORE, "data.stack"),
        **common,
    )
    methods = [method(m) for m in METHODS]
    if not chapter:
        return [download, stack, *methods, _digits_report(dataset, methods)]
    # The chapter's two examples keep their numbers in plain JSON, not DVC metrics: they are
    # not results of a method, and `dvc metrics show` stays one table of the methods.
    sgd_example = Stage(
        name="sgd_example",
        outputs={"tensors": SGD_EXAMPLE["tensors"]},
        kept={"metrics": SGD_EXAMPLE["metrics"]},
        plots={"steps": SGD_EXAMPLE["steps"]},
        code=code(*TRAINING, "chapter.models", "chapter.sgd_example"),
        params=["sgd_example"],
        plot_axes={SGD_EXAMPLE["steps"]: ("step", "loss")},
    )
    nn_linear = Stage(
        name="nn_linear",
        inputs={"tensors": TENSORS},
        kept={"metrics": metrics("nn_linear")},
        plots={"history": history("nn_linear")},
        code=code(*TRAINING, "chapter.models"),
        params=["train", "linear"],
        gpu=True,
        plot_axes={history("nn_linear"): ("epoch", "basic_optim")},
    )
    made = [download, stack, sgd_example, *methods, nn_linear]
    return [*made, Stage(
        name="report",
        # Every output of every stage: the page hashes each file it lists, so its
        # reproducibility table is this run's under either engine.
        inputs=page_inputs(made),
        side_inputs=wall_clock_inputs(made),
        outputs={"out": REPORT, "accuracy_csv": ACCURACY_CSV},
        code=[*code(*PAGE, "report.chapter", "report.try_it"), *PAGE_FILES,
              f"{TEMPLATES}/report.html.j2", f"{TEMPLATES}/try_it.html.j2",
              f"{TEMPLATES}/prepare.js"],
        params=page_sections(),  # every section of the chapter: the page lists each value
    )]


def report_flag(stage: str, flag: str) -> str:
    """A page's name for another stage's output: `mlp.metrics` (`--input mlp.metrics=PATH`)."""
    return f"{stage}.{flag}"


def page_inputs(stages: list[Stage]) -> dict[str, str]:
    """Every output of these stages but their wall-clock figures, by a page's names."""
    return {report_flag(s.name, flag): path for s in stages
            for flag, path in s.written.items() if flag != WALL_CLOCK_FLAG}


def wall_clock_inputs(stages: list[Stage]) -> dict[str, str]:
    """Their wall-clock figures, which a page reads beside its inputs (`side_inputs`)."""
    return {report_flag(s.name, WALL_CLOCK_FLAG): s.outputs[WALL_CLOCK_FLAG] for s in stages
            if WALL_CLOCK_FLAG in s.outputs}


def _digits_report(dataset: str, methods: list[Stage]) -> Stage:
    """The ten digits' page: every method's outputs, beside the chapter's own figures."""
    return Stage(
        name="report",
        script_name="digits_report",
        dataset=dataset,
        dvcfile=dvcfile(dataset),
        inputs={report_flag("stack", "tensors"): tensors(dataset),
                report_flag("stack", "counts"): counts(dataset),
                **page_inputs(methods),
                **{report_flag(f"sample_{m}", "metrics"): metrics(m) for m in METHODS}},
        side_inputs=wall_clock_inputs(methods),
        outputs={"out": report(dataset), "accuracy_csv": accuracy_csv(dataset)},
        code=[*code(*PAGE, "report.digits"), *PAGE_FILES, f"{TEMPLATES}/digits.html.j2"],
        params=page_sections(dataset),
    )


STAGES: list[Stage] = chapter_stages()
STAGES_OF: dict[str, list[Stage]] = {d: chapter_stages(d) for d in DATASETS}
STAGES_OF[SAMPLE] = STAGES
MNIST_STAGES = STAGES_OF["mnist"]
BY_NAME = {s.name: s for s in STAGES}
BY_DATASET = {d: {s.name: s for s in stages} for d, stages in STAGES_OF.items()}


def dataset_stages(datasets) -> list[Stage]:
    """The stages of these datasets (params.yaml `datasets`), in the order of DATASETS."""
    return [s for d in DATASETS if d in datasets for s in STAGES_OF[d]]

# -- The spread: `make spread` (spread/dvc.yaml), never part of `make run` ---------------------
# A spread job runs its method's training function, which the registry names (stages/spread.py).
SPREAD_CODE = code(*TRAINING, *(METHODS[m].module for m in TRAINED))


def _spread_stage(method: str) -> Stage:
    return Stage(
        name=method,
        dvcfile=SPREAD_DVCFILE,
        script_name="spread",
        matrix={"seed": "spread.seeds"},
        args=f"{method} --seed {{seed}}",
        inputs={"tensors": TENSORS},
        kept={"out": spread_run(method)},
        code=SPREAD_CODE,
        # train.seed is the chapter's; each run takes its own.
        params=["train.device", method],
        gpu=method == "resnet18",  # the small models share a GPU, or a core each
        multicore=METHODS[method].multicore,
    )


SPREAD_METHODS = TRAINED
SPREAD: list[Stage] = [
    *(_spread_stage(m) for m in SPREAD_METHODS),
    Stage(
        name="sweep",
        dvcfile=SPREAD_DVCFILE,
        script_name="spread",
        matrix={"value": "sweep.values", "seed": "sweep.seeds"},
        args="{sweep.method} --seed {seed} --set {sweep.key}={value}",
        inputs={"tensors": TENSORS},
        kept={"out": sweep_run()},
        code=SPREAD_CODE,
        params=["train.device", "{sweep.method}"],
    ),
    Stage(
        name="report",
        dvcfile=SPREAD_DVCFILE,
        script_name="spread_report",
        inputs={"spread_runs": SPREAD_RUNS, "sweep_runs": SWEEP_RUNS,
                **{report_flag(m, "metrics"): metrics(m) for m in SPREAD_METHODS}},
        gathers={"spread_runs": SPREAD_METHODS, "sweep_runs": ("sweep",)},
        # In git, like the runs: a clone shows the spread without training 42 models.
        # Its summary too: many keys per method, for the pages and the README, not DVC's tables.
        kept={"out": SPREAD_REPORT, "csv": SPREAD_CSV, "sweep_csv": SWEEP_CSV,
              "metrics": SPREAD_METRICS},
        code=[*code(*PAGE, "report.spread"), *PAGE_FILES, f"{TEMPLATES}/spread.html.j2"],
        params=list(SPREAD_SECTIONS),
    ),
]
SPREAD_BY_NAME = {s.name: s for s in SPREAD}


def spread_jobs(params: dict) -> list[Stage]:
    """Every concrete stage of spread/dvc.yaml at these params: `mlp@3`, ..., `report`."""
    return [job for s in SPREAD for job in s.expand(params)]


