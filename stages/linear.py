"""Stage linear: the chapter's hand-written linear model, `linear1` trained with `BasicOptim`.

weights [784, 1] and bias [1] start from `init_params` (torch.randn); each batch goes through
`linear1(xb) = xb@weights + bias` and `mnist_loss`, and `BasicOptim` takes a plain SGD step.
Reads params sections `train` and `linear`.

On the full MNIST (`--dataset mnist`) the same loop trains weights [784, 10] with a
hand-written softmax and cross-entropy instead (params `mnist.linear`).

    dvc repro -s linear     # dvc.yaml holds its command, every path in it
    python stages/linear.py --params my_params.yaml ...   # the same, other params
"""

from mnist_basics.chapter.models import train_linear
from mnist_basics.chapter.train import Paths, save_results
from mnist_basics.params import load_for
from mnist_basics.pipeline import cli


def main() -> None:
    args = cli.method_parser("linear", __doc__).parse_args()
    params = load_for(args.params, args.dataset, "train", "linear")
    save_results(Paths.from_args(args), train_linear(params, args.tensors, args.dataset))


if __name__ == "__main__":
    cli.run(main)
