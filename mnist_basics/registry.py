"""The methods and the datasets, one entry each: everything else derives from these two lists.

The stage catalogue (`pipeline/definition.py`), the params sections (`params.py`), the pages'
rows, predict and the spread's trainers all read `METHODS` and `DATASETS`. Adding a method is
one `Method` here plus its code (its module, its stage script, its params model); adding a
dataset such as Fashion-MNIST is one `Layout` plus its params.yaml sections.

Plain data, no imports of the package: every stage imports this module, so it holds names,
never paths or code. The titles are marked for translation (`N_`), translated where shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


def N_(message: str) -> str:
    """Marks a title for the catalogues (`make messages`); a page translates it when shown."""
    return message


# -- Methods ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One row of an accuracy table: the metrics' keys start with `prefix`, the answers are
    the predictions file's `pred` key."""

    key: str
    title: str
    book: float | None  # the chapter's figure on MNIST_SAMPLE (fastbook's stored outputs)
    prefix: str = ""
    pred: str = "pred"


@dataclass(frozen=True)
class Method:
    """One of the chapter's methods. Its module holds `load_predictor(state, card)` and, for a
    trained method, `train_<name>(params, tensors, dataset)`; `stages/<name>.py` runs it."""

    name: str
    module: str  # inside the package, e.g. "methods.resnet"
    trains: bool  # by gradient descent: a params section, the GPU token, the spread
    rows: tuple[Row, ...]
    multicore: bool = False  # uses every core its engine grants; the small models run on one
    extra_plots: tuple[str, ...] = ()  # plots besides the per-epoch history

    @property
    def import_name(self) -> str:
        return f"mnist_basics.{self.module}"

    @property
    def trainer(self) -> str:
        return f"train_{self.name}"


METHODS: dict[str, Method] = {m.name: m for m in (
    # Distances to the mean of each class's training digits; the book reports no RMSE figure.
    Method("pixel_mean", "methods.pixel_mean", trains=False, rows=(
        Row("pixel_mean", N_("pixel mean (L1)"), 0.9511),
        Row("pixel_mean_rmse", N_("pixel mean (RMSE)"), None, prefix="rmse_", pred="pred_rmse"),
    )),
    Method("linear", "chapter.models", trains=True,
           rows=(Row("linear", "linear", 0.9696),)),
    Method("mlp", "chapter.models", trains=True,
           rows=(Row("mlp", "mlp", 0.982826),)),
    Method("resnet18", "methods.resnet", trains=True, multicore=True,
           extra_plots=("steps",),  # its one-cycle run, step by step
           rows=(Row("resnet18", "resnet18", 0.997056),)),
)}
TRAINED = tuple(name for name, m in METHODS.items() if m.trains)
ROWS: dict[str, Row] = {r.key: r for m in METHODS.values() for r in m.rows}
METHOD_OF_ROW = {r.key: m.name for m in METHODS.values() for r in m.rows}

# A method stage's flags: DVC-cached outputs; kept in git, the metrics (the same few keys for
# every method and dataset, so `dvc metrics show` reads as one table), the per-epoch plots,
# and each class's accuracy (one key per class: the pages read it, DVC's tables don't).
OUTPUTS = ("checkpoint", "model_card", "predictions", "timing")
METRICS = ("metrics",)
PLOTS = ("history",)
KEPT = ("classes",)
WALL_CLOCK_FLAG = "timing"  # the one output two identical runs write differently


def flags(method: str) -> tuple[str, ...]:
    """Every file flag of a method's stage, in the order its command lists them."""
    return (*OUTPUTS, *METRICS, *PLOTS, *METHODS[method].extra_plots, *KEPT)


def spread_name(method: str, seed: object) -> str:
    """One spread run's file, inside the spread's folder: `mlp_seed3.json`."""
    return f"{method}_seed{seed}.json"


def sweep_name(value: object, seed: object) -> str:
    """One sweep run's file, inside the sweep's folder: `value0.05_seed0.json`."""
    return f"value{value}_seed{seed}.json"


# -- Datasets --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """One dataset's archive: `<top>/<split>/<class>/*.png`, the first split for training."""

    name: str  # the dataset's name in params.yaml `datasets`
    top: str  # the archive's top folder
    splits: tuple[str, str]  # (training, validation) folder names
    classes: tuple[str, ...]  # class folder names, in the order the stack stage writes them
    label: Mapping[str, int]  # class folder -> label in the tensors
    labels_file: str | None  # a file under top/ the archive must hold, if any
    env: str  # the environment variable that points the download stage at a copy
    archive: str  # the file's name as fastai publishes and caches it
    # Its page's targets on the validation digits, by accuracy row: (figure, exactly), and
    # published figures beside them, (accuracy, source).
    targets: Mapping[str, tuple[float, bool]] = field(default_factory=dict)
    comparisons: Mapping[str, tuple[tuple[float, str], ...]] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """fastai's name for it, `URLs.MNIST_SAMPLE`, for messages."""
        return self.name.upper()

    @property
    def data_section(self) -> str:
        """params.yaml's section for its download (url, checksums, caps)."""
        return "data" if self.name == SAMPLE else f"{self.name}.data"

    @property
    def class_dirs(self) -> tuple[str, ...]:
        return tuple(f"{split}/{cls}" for split in self.splits for cls in self.classes)

    @property
    def binary(self) -> bool:
        """The chapter's 3-vs-7 task (one output, `mnist_loss`), not ten digits."""
        return len(self.classes) == 2

    @property
    def names(self) -> tuple[str, ...]:
        """The class names by label: names[j] is the class labelled j, the j-th column of a
        predictions file's `probs` (MNIST_SAMPLE: 7, 3; the full MNIST: 0, ..., 9)."""
        return tuple(sorted(self.classes, key=self.label.__getitem__))


SAMPLE = "mnist_sample"  # the chapter's dataset: its sections and paths keep plain names
DATASETS: dict[str, Layout] = {d.name: d for d in (
    # fastai's URLs.MNIST_SAMPLE: the chapter labels a 3 as 1 and a 7 as 0.
    Layout(name=SAMPLE, top="mnist_sample", splits=("train", "valid"), classes=("3", "7"),
           label={"3": 1, "7": 0}, labels_file="labels.csv", env="MNIST_SAMPLE_URL",
           archive="mnist_sample.tgz"),
    # fastai's URLs.MNIST: all ten digits, each labelled by its own value; no labels file.
    Layout(name="mnist", top="mnist_png", splits=("training", "testing"),
           classes=tuple("0123456789"), label={str(d): d for d in range(10)},
           labels_file=None, env="MNIST_URL", archive="mnist_png.tgz",
           # The pixel mean is deterministic: its figures are met to the digit; the trained
           # methods' at least.
           targets={"pixel_mean": (0.6685, True), "pixel_mean_rmse": (0.8203, True),
                    "linear": (0.920, False), "mlp": (0.970, False),
                    "resnet18": (0.990, False)},
           # On the same 10,000 digits (accuracy = 1 - error rate).
           comparisons={
               "linear": ((0.880, N_("LeCun et al. 1998: a linear classifier")),),
               "mlp": ((0.954, N_("Nielsen's 784-30-10 network")),
                       (0.953, N_("LeCun et al. 1998: 300 hidden units"))),
               "resnet18": ((0.9864, N_("fastai's fit_one_cycle(1, 0.1), 170 s on the same "
                                        "2-core CPU")),),
           }),
)}
