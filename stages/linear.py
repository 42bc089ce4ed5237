"""Stage linear: the chapter's hand-written linear model, `linear1` trained with `BasicOptim`.

weights [784, 1] and bias [1] start from `init_params` (torch.randn); each batch goes through
`linear1(xb) = xb@weights + bias` and `mnist_loss`, and `BasicOptim` takes a plain SGD step.
Reads params sections `train` and `linear`.

    python stages/linear.py                # every path defaults to the pipeline's
    python stages/linear.py --params my_params.yaml --metrics /tmp/linear.json
"""

from mnist_basics import cli
from mnist_basics.models import train_linear
from mnist_basics.params import load
from mnist_basics.train import Paths, save_results


def main() -> None:
    args = cli.parser("linear", __doc__).parse_args()
    params = load(args.params, "train", "linear")
    save_results(Paths.from_args(args), train_linear(params, args.tensors))


if __name__ == "__main__":
    cli.run(main)
