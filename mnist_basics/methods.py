"""The chapter's methods by name, and the files each method's stage writes, by flag.

Plain names, no paths and no imports: the stage catalogue (`pipeline.py`) gives each flag its
path, the pages and predict list the methods in this order, and the training code asks which
method may use every core. Editing the catalogue's paths or comments changes nothing here,
so no stage reruns for it.
"""

METHODS = ("pixel_mean", "linear", "mlp", "resnet18")
TRAINED = ("linear", "mlp", "resnet18")  # the methods that train, on a GPU when there is one
MULTICORE = ("resnet18",)  # uses every core its engine grants; the small models run on one

# A method stage's flags: DVC-cached outputs, the metrics and the per-epoch plots kept in git.
OUTPUTS = ("checkpoint", "model_card", "predictions", "timing")
METRICS = ("metrics",)
PLOTS = ("history",)
EXTRA_PLOTS = {"resnet18": ("steps",)}  # resnet18's one-cycle run, step by step
WALL_CLOCK_FLAG = "timing"  # the one output two identical runs write differently


def flags(method: str) -> tuple[str, ...]:
    """Every file flag of a method's stage, in the order its command lists them."""
    return (*OUTPUTS, *METRICS, *PLOTS, *EXTRA_PLOTS.get(method, ()))


def spread_name(method: str, seed: object) -> str:
    """One spread run's file, inside the spread's folder: `mlp_seed3.json`."""
    return f"{method}_seed{seed}.json"


def sweep_name(value: object, seed: object) -> str:
    """One sweep run's file, inside the sweep's folder: `value0.05_seed0.json`."""
    return f"value{value}_seed{seed}.json"
