"""Stage nn_linear: the chapter's linear model rebuilt from PyTorch's pieces, two ways.

The chapter replaces `linear1` by `nn.Linear(28*28, 1)`, still trained by `BasicOptim`, then
`BasicOptim` by an optimizer that comes with the library. This stage trains both from the
same start (seed `train.seed`) with the `linear` section's lr, batch size and epochs, and
records each one's accuracy per epoch and how far apart their parameters end (SGD with no
momentum is `BasicOptim`'s step, so they should not be). Reads params sections `train` and
`linear`.

    dvc repro -s nn_linear  # dvc.yaml holds its command, every path in it
"""

import torch

from mnist_basics.artifacts import write_csv, write_json
from mnist_basics.chapter.models import BasicOptim, fit, nn_linear, prepare, torch_sgd
from mnist_basics.chapter.train import class_accuracies, setup
from mnist_basics.data.stack import MNIST_SAMPLE, load_sample
from mnist_basics.params import load
from mnist_basics.pipeline import cli

VARIANTS = {"basic_optim": BasicOptim, "torch_sgd": torch_sgd}


def main() -> None:
    args = cli.parser("stages/nn_linear.py", __doc__, params=("train", "linear"),
                      inputs=["tensors"], plots=["history"], kept=["metrics"]).parse_args()
    params = load(args.params, "train", "linear")
    train, p = params["train"], params["linear"]
    device = setup(train.seed, train.device, "nn_linear")
    data = prepare(load_sample(args.tensors), device)
    runs, models = {}, {}
    for name, opt_func in VARIANTS.items():
        torch.manual_seed(train.seed)  # the same start for both
        models[name] = nn_linear().to(device)
        runs[name] = fit(models[name], data, lr=p.lr, epochs=p.epochs, batch_size=p.batch_size,
                         seed=train.seed, desc=f"nn_linear {name}", opt_func=opt_func)
    a, b = (m.state_dict() for m in models.values())
    apart = max((a[k] - b[k]).abs().max().item() for k in a)
    valid_y = data.valid_y.squeeze(1).cpu()
    write_json(args.metrics, {
        **{name: {**class_accuracies(run.last.pred, valid_y, MNIST_SAMPLE.names),
                  "train_loss": run.history[-1]["train_loss"]} for name, run in runs.items()},
        "largest_parameter_difference": apart})
    write_csv(args.history, [{"epoch": rows[0]["epoch"],
                              **{n: r["valid_accuracy"] for n, r in zip(runs, rows, strict=True)}}
                             for rows in zip(*(run.history for run in runs.values()),
                                             strict=True)])


if __name__ == "__main__":
    cli.run(main)
