"""Stage report of spread/dvc.yaml: gather the spread's and the sweep's runs into one page.

Reads every run that params.yaml `spread` and `sweep` list (metrics/spread/, metrics/sweep/)
and the chapter's own metrics, and writes `reports/spread.html`, `reports/spread.csv`,
`reports/sweep.csv` and `metrics/spread.json` (mnist_basics/report/spread.py says what each holds).

    dvc repro spread/dvc.yaml:report       # spread/dvc.yaml holds its full command
"""

from mnist_basics.artifacts import read_json, write_csv, write_json, write_text
from mnist_basics.params import SPREAD_SECTIONS, load
from mnist_basics.pipeline import cli
from mnist_basics.report import spread


def main() -> None:
    ap = cli.parser("stages/spread_report.py", __doc__, params=SPREAD_SECTIONS,
                    inputs=["spread_runs", "sweep_runs"],
                    kept=["out", "csv", "sweep_csv", "metrics"])
    cli.named_paths(ap)  # the chapter's own run of each method: --input mlp.metrics=PATH
    args = ap.parse_args()
    files = cli.by_stage(args.input)
    cli.require(files, {m: ("metrics",) for m in spread.SPREAD_METHODS})
    params = {k: v.model_dump() for k, v in load(args.params, *SPREAD_SECTIONS).items()}
    runs, sweep = spread.read_runs(args.spread_runs, args.sweep_runs, params)
    chapter = {m: read_json(files[m]["metrics"]) for m in spread.SPREAD_METHODS}
    summary = spread.summarise(runs, sweep, chapter)
    page = spread.render(spread=runs, sweep=sweep, summary=summary, params=params)
    write_csv(args.csv, runs)
    write_csv(args.sweep_csv, sweep)
    write_json(args.metrics, summary)
    write_text(args.out, page)


if __name__ == "__main__":
    cli.run(main)
