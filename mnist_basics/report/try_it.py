"""The report's "Try it" panel: draw a digit, see it prepared and read by this run's models.

    from mnist_basics.report.try_it import context
    html = template.render(try_it=context(pixel_mean=means, linear=linear, mlp=mlp), ...)

with `{% include "try_it.html.j2" %}` where the panel goes (autoescape on). The page needs no
server and asks for nothing: it carries `templates/prepare.js`, the JavaScript twin of
mnist_basics/predict/prepare.py, and the weights of pixel_mean, linear and mlp as base64 float32
(about 140 kB for the three), and computes everything as you draw. A model given as None
hides its part. resnet18 (45 MB) stays out: the panel shows the `predict` command that runs
it on the drawing, and a button that saves the drawing as a PNG. NumPy only, no torch.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mnist_basics import PipelineError

PIXELS = 28 * 28
SCRIPT = Path(__file__).with_name("templates") / "prepare.js"


def context(pixel_mean: Mapping[str, np.ndarray] | None = None,
            linear: Mapping[str, np.ndarray] | None = None,
            mlp: Mapping[str, np.ndarray] | None = None, *,
            heading: str = "Try it", picture: str = "drawing.png") -> dict[str, object]:
    """What try_it.html.j2 reads, as `try_it`.

    pixel_mean: mean3 and mean7, float [28, 28]; linear: weights [784, 1] and bias [1];
    mlp: simple_net's state, '0.weight' [hidden, 784], '0.bias' [hidden], '2.weight'
    [1, hidden], '2.bias' [1] -- each as its checkpoint holds it, or None when it is missing.
    `picture` is the name the download button gives the drawing.
    """
    from markupsafe import Markup

    script = SCRIPT.read_text()
    if "</script" in script.lower() or "<!--" in script:  # it is inlined in a <script>
        raise PipelineError(f"{SCRIPT}: cannot be inlined in a <script> element")
    out: dict[str, object] = {
        "heading": heading,
        "picture": picture,
        "command": f"python -m mnist_basics predict {picture} --model resnet18",
        "script": Markup(script),
        "pixel_mean": None, "linear": None, "mlp": None,
    }
    # Each part: {"data": {name in the page: base64}}, or None.
    if pixel_mean is not None:
        out["pixel_mean"] = {"data": encode("pixel_mean", pixel_mean, {
            "mean3": ("mean3", (28, 28)), "mean7": ("mean7", (28, 28))})}
    if linear is not None:
        out["linear"] = {"data": encode("linear", linear, {
            "weights": ("weights", (PIXELS, 1)), "bias": ("bias", (1,))})}
    if mlp is not None:
        w1 = np.asarray(mlp.get("0.weight", np.zeros((0, 0))))
        hidden = w1.shape[0] if w1.ndim == 2 else 0
        out["mlp"] = {"hidden": hidden, "data": encode("mlp", mlp, {
            "0.weight": ("w1", (hidden, PIXELS)), "0.bias": ("b1", (hidden,)),
            "2.weight": ("w2", (1, hidden)), "2.bias": ("b2", (1,))})}
    return out


def encode(model: str, state: Mapping[str, np.ndarray],
           wanted: Mapping[str, tuple[str, tuple[int, ...]]]) -> dict[str, str]:
    """{checkpoint key: (name in the page, shape)} -> {name: base64 of float32 little-endian
    bytes}; base64 needs no escaping in an HTML attribute."""
    out = {}
    for key, (name, shape) in wanted.items():
        if key not in state:
            raise PipelineError(f"{model}: no tensor {key!r} for the Try it panel")
        a = np.asarray(state[key])
        if a.shape != shape or 0 in shape:
            raise PipelineError(f"{model}: {key} has shape {list(a.shape)}, "
                                f"the Try it panel needs {list(shape)}")
        out[name] = base64.b64encode(a.astype("<f4").tobytes()).decode("ascii")
    return out


def embedded_bytes(ctx: Mapping[str, object]) -> int:
    """How many bytes the panel's data attributes and script add to a page."""
    total = len(str(ctx["script"]).encode())
    for part in ("pixel_mean", "linear", "mlp"):
        total += sum(len(v) for v in (ctx[part] or {"data": {}})["data"].values())
    return total
