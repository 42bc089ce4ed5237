"""Stage mlp: the chapter's `simple_net` (784-30-ReLU-1) trained with `mnist_loss` and `BasicOptim`.

The same loss, optimizer and batching as stage `linear`. The book trains it with
`fit(40, 0.1)`; params.yaml sets the epochs, batch size, learning rate and hidden units.
Reads params sections `train` and `mlp`.

On the full MNIST (`--dataset mnist`) it is 784-30-ReLU-10 with a hand-written softmax and
cross-entropy (params `mnist.mlp`).

    dvc repro -s mlp        # dvc.yaml holds its command, every path in it
    python stages/mlp.py --params my_params.yaml ...   # the same, other params
"""

from mnist_basics.chapter.models import train_mlp
from mnist_basics.chapter.train import Paths, save_results
from mnist_basics.params import load_for
from mnist_basics.pipeline import cli


def main() -> None:
    args = cli.method_parser("mlp", __doc__).parse_args()
    params = load_for(args.params, args.dataset, "train", "mlp")
    save_results(Paths.from_args(args), train_mlp(params, args.tensors, args.dataset))


if __name__ == "__main__":
    cli.run(main)
