"""Stage linear: the chapter's hand-written linear model, `linear1` trained with `BasicOptim`.

weights [784, 1] and bias [1] start from `init_params` (torch.randn); each batch goes through
`linear1(xb) = xb@weights + bias` and `mnist_loss`, and `BasicOptim` takes a plain SGD step.
Reads params sections `train` and `linear`.

    python stages/linear.py                # every path defaults to the pipeline's
    python stages/linear.py --params my_params.yaml --metrics /tmp/linear.json
"""

from mnist_basics import cli
from mnist_basics.data import load_sample
from mnist_basics.models import INPUT, Linear1, fit, linear_arch, prepare
from mnist_basics.params import load
from mnist_basics.train import Clock, Paths, model_card, save_results, setup, trained_result


def main() -> None:
    args = cli.parser("linear", __doc__).parse_args()
    params = load(args.params, "train", "linear")
    train, p = params["train"], params["linear"]
    clock = Clock()
    device = setup(train.seed, train.device, "linear")
    data = prepare(load_sample(args.tensors), device)
    model = Linear1(device)
    run = fit(model, data, lr=p.lr, epochs=p.epochs, batch_size=p.batch_size, seed=train.seed,
              desc="linear")
    card = model_card("linear", arch=linear_arch(), input=INPUT, params=params)
    save_results(Paths.from_args(args), trained_result(
        run, state=model.state_dict(), card=card, valid_y=data.valid_y.squeeze(1), clock=clock,
        device=device))


if __name__ == "__main__":
    cli.run(main)
