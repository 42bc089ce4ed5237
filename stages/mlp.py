"""Stage mlp: the chapter's `simple_net` (784-30-ReLU-1) trained with `mnist_loss` and `BasicOptim`.

The same loss, optimizer and batching as stage `linear`. The book trains it with
`fit(40, 0.1)`; params.yaml sets the epochs, batch size, learning rate and hidden units.
Reads params sections `train` and `mlp`.

    python stages/mlp.py                   # every path defaults to the pipeline's
    python stages/mlp.py --params my_params.yaml --metrics /tmp/mlp.json
"""

from mnist_basics import cli
from mnist_basics.data import load_sample
from mnist_basics.models import INPUT, fit, mlp_arch, prepare, simple_net
from mnist_basics.params import load
from mnist_basics.train import Clock, Paths, model_card, save_results, setup, trained_result


def main() -> None:
    args = cli.parser("mlp", __doc__).parse_args()
    params = load(args.params, "train", "mlp")
    train, p = params["train"], params["mlp"]
    clock = Clock()
    device = setup(train.seed, train.device, "mlp")
    data = prepare(load_sample(args.tensors), device)
    # Built on the CPU from the seeded generator, then moved: the same start on every device.
    model = simple_net(p.hidden).to(device)
    run = fit(model, data, lr=p.lr, epochs=p.epochs, batch_size=p.batch_size, seed=train.seed,
              desc="mlp")
    card = model_card("mlp", arch=mlp_arch(p.hidden), input=INPUT, params=params)
    save_results(Paths.from_args(args), trained_result(
        run, state=model.state_dict(), card=card, valid_y=data.valid_y.squeeze(1), clock=clock,
        device=device))


if __name__ == "__main__":
    cli.run(main)
