"""Stage resnet18: torchvision's resnet18 trained from scratch for one epoch, one-cycle schedule.

The book's last model (`cnn_learner(dls, resnet18, pretrained=False)` then
`fit_one_cycle(1, 0.1)`): cross-entropy over the classes 3 and 7, SGD with Nesterov momentum,
channels_last tensors, bfloat16 autocast where the hardware runs it natively. Besides the
outputs every training stage writes, `--steps` records the loss and learning rate of each
optimizer step. Reads params sections `train` and `resnet18`; `mnist_basics/methods/resnet.py`
explains the choices.

On the full MNIST (`--dataset mnist`) it has ten outputs (params `mnist.resnet18`).

    dvc repro -s resnet18   # dvc.yaml holds its command, every path in it
    python stages/resnet18.py --params my_params.yaml ...   # the same, other params
"""

from mnist_basics.chapter.train import Paths, save_results
from mnist_basics.methods.resnet import train_resnet18
from mnist_basics.params import load_for
from mnist_basics.pipeline import cli


def main() -> None:
    args = cli.method_parser("resnet18", __doc__).parse_args()
    params = load_for(args.params, args.dataset, "train", "resnet18")
    save_results(Paths.from_args(args), train_resnet18(params, args.tensors, args.dataset))


if __name__ == "__main__":
    cli.run(main)
