"""Stage report: the page a learner reads beside the chapter, and its accuracy table.

Reads every section of params.yaml and whatever the other stages have written so far, and
writes `reports/index.html` (one self-contained file: figures embedded, no network needed)
and `reports/accuracy.csv`. A stage that has not run yet gets a note instead of its section.

    dvc repro -s report     # dvc.yaml holds its command, every path in it
"""

from mnist_basics.artifacts import write_csv, write_text
from mnist_basics.params import load, page_sections
from mnist_basics.pipeline import cli
from mnist_basics.report.chapter import accuracy_rows, build, inputs, load_run, parser, render


def main() -> None:
    args = parser(__doc__).parse_args()
    params = load(args.params, *page_sections())  # the page shows each of them
    run = load_run(inputs(args), params)
    page = render(build(run))  # everything that can fail, before anything is written
    write_csv(args.accuracy_csv, accuracy_rows(run))
    write_text(args.out, page)


if __name__ == "__main__":
    cli.run(main)
