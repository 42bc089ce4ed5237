"""Stage report of the full MNIST: the ten digits' page, beside the chapter's figures.

Reads every output of mnist/dvc.yaml's stages and the chapter's metrics, and writes
`reports/mnist.html` (self-contained, like the chapter's page) and `reports/mnist_accuracy.csv`:
the ten mean digits, each method's confusion matrix and per-digit accuracy, the most-confused
pairs with examples, and each figure beside its MNIST_SAMPLE one.

    python stages/digits_report.py --dataset mnist      # every path defaults to the pipeline's
"""

from dataclasses import fields

from mnist_basics import cli
from mnist_basics.artifacts import write_csv, write_text
from mnist_basics.digits_report import DigitsInputs, accuracy_rows, render_page
from mnist_basics.params import load_for
from mnist_basics.pipeline import BY_DATASET


def main() -> None:
    args = cli.parser("digits_report", __doc__).parse_args()
    declared = BY_DATASET[args.dataset]["report"].params  # mnist.linear, train, ...
    params = load_for(args.params, args.dataset,
                      *(name.removeprefix(f"{args.dataset}.") for name in declared))
    inputs = DigitsInputs(**{f.name: getattr(args, f.name) for f in fields(DigitsInputs)})
    page = render_page(inputs, params)  # everything that can fail, before anything is written
    write_csv(args.accuracy_csv, accuracy_rows(inputs))
    write_text(args.out, page)


if __name__ == "__main__":
    cli.run(main)
