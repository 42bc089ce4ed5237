"""Stage report of the full MNIST: the ten digits' page, beside the chapter's figures.

Reads every output of mnist/dvc.yaml's stages and the chapter's metrics, and writes
`reports/mnist.html` (self-contained, like the chapter's page) and `reports/mnist_accuracy.csv`:
the ten mean digits, each method's confusion matrix and per-digit accuracy, the most-confused
pairs with examples, and each figure beside its MNIST_SAMPLE one.

    dvc repro mnist/dvc.yaml:report       # mnist/dvc.yaml holds its full command
"""

from mnist_basics.artifacts import write_csv, write_text
from mnist_basics.params import DATASET_PAGE_SECTIONS as SECTIONS
from mnist_basics.params import load_for
from mnist_basics.pipeline import cli
from mnist_basics.report.digits import accuracy_rows, read_inputs, render_page


def main() -> None:
    ap = cli.parser("stages/digits_report.py", __doc__, params=SECTIONS, datasets=True,
                    outputs=["out", "accuracy_csv"])
    cli.named_paths(ap)
    args = ap.parse_args()
    params = load_for(args.params, args.dataset, *SECTIONS)
    inputs = read_inputs(args)
    page = render_page(inputs, params)  # everything that can fail, before anything is written
    write_csv(args.accuracy_csv, accuracy_rows(inputs))
    write_text(args.out, page)


if __name__ == "__main__":
    cli.run(main)
