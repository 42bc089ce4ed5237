"""Stage sgd_example: the chapter's SGD walk-through (the "roller coaster"), and its small sums.

Fits `f(t) = a*t**2 + b*t + c` to 20 noisy speeds by the chapter's seven steps (see
mnist_basics/chapter/sgd_example.py), and computes the chapter's gradient, `mnist_loss` and curve
examples with the project's own functions. Writes the data, the params, predictions and loss
at every step (the report draws the chapter's four panels from them), the loss and params
per step as a plot, and the small examples as metrics. Reads params section `sgd_example`.

    dvc repro -s sgd_example # dvc.yaml holds its command, every path in it
"""

import torch

from mnist_basics.artifacts import save_tensors, write_csv, write_json
from mnist_basics.chapter.sgd_example import curves, gradients, mnist_loss_examples, sgd_example
from mnist_basics.chapter.train import cpu_threads
from mnist_basics.params import load
from mnist_basics.pipeline import cli


def main() -> None:
    args = cli.parser("stages/sgd_example.py", __doc__, params=("sgd_example",),
                      outputs=["tensors"], plots=["steps"], kept=["metrics"]).parse_args()
    p = load(args.params, "sgd_example")["sgd_example"]
    torch.set_num_threads(cpu_threads("sgd_example"))
    run = sgd_example(p.seed, p.lr, p.steps)
    save_tensors(args.tensors, {**run, **{f"curve_{k}": v for k, v in curves().items()}})
    write_csv(args.steps, [{"step": i, "loss": round(loss, 4),
                            **{k: round(v, 6) for k, v in zip("abc", row.tolist(), strict=True)}}
                           for i, (loss, row) in enumerate(zip(run["loss"].tolist(),
                                                               run["params"], strict=True))])
    write_json(args.metrics, {"loss_start": round(run["loss"][0].item(), 4),
                              "loss_end": round(run["loss"][-1].item(), 4),
                              "gradients": gradients(), "mnist_loss": mnist_loss_examples()})
    cli.log.info("loss %.1f -> %.1f in %d steps", run["loss"][0], run["loss"][-1], p.steps)


if __name__ == "__main__":
    cli.run(main)
