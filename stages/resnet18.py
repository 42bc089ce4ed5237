"""Stage resnet18: torchvision's resnet18 trained from scratch for one epoch, one-cycle schedule.

The book's last model (`cnn_learner(dls, resnet18, pretrained=False)` then
`fit_one_cycle(1, 0.1)`): cross-entropy over the classes 3 and 7, SGD with Nesterov momentum,
bfloat16 autocast on channels_last tensors. Besides the outputs every training stage writes,
`--steps` records the loss and learning rate of each optimizer step. Reads params sections
`train` and `resnet18`; `mnist_basics/resnet.py` explains the choices.

    python stages/resnet18.py              # every path defaults to the pipeline's
    python stages/resnet18.py --params my_params.yaml --metrics /tmp/resnet18.json
"""

from mnist_basics import cli
from mnist_basics.data import load_sample
from mnist_basics.params import load
from mnist_basics.resnet import ARCH, card_input, fit_one_cycle, memory_format, prepare, resnet18
from mnist_basics.train import Clock, Paths, model_card, save_results, setup, trained_result


def main() -> None:
    args = cli.parser("resnet18", __doc__).parse_args()
    params = load(args.params, "train", "resnet18")
    train, p = params["train"], params["resnet18"]
    clock = Clock()
    device = setup(train.seed, train.device, "resnet18")
    data = prepare(load_sample(args.tensors), device, p.channels_last)
    # Built on the CPU from the seeded generator, then moved: the same start on every device.
    model = resnet18().to(device, memory_format=memory_format(p.channels_last))
    run = fit_one_cycle(model, data, lr=p.lr, epochs=p.epochs, batch_size=p.batch_size,
                        pct_start=p.pct_start, weight_decay=p.weight_decay,
                        max_momentum=p.max_momentum, base_momentum=p.base_momentum,
                        bf16=p.bf16, seed=train.seed)
    card = model_card("resnet18", arch=ARCH, input=card_input(data, p.bf16), params=params)
    save_results(Paths.from_args(args), trained_result(
        run, state=model.state_dict(), card=card, valid_y=data.valid_y, clock=clock,
        device=device))


if __name__ == "__main__":
    cli.run(main)
