"""Stage report of spread/dvc.yaml: gather the spread's and the sweep's runs into one page.

Reads every run that params.yaml `spread` and `sweep` list (metrics/spread/, metrics/sweep/)
and the chapter's own metrics, and writes `reports/spread.html`, `reports/spread.csv`,
`reports/sweep.csv` and `metrics/spread.json` (mnist_basics/spread.py says what each holds).

    python stages/spread_report.py         # every path defaults to the pipeline's
"""

from mnist_basics import cli, spread
from mnist_basics.artifacts import read_json, write_csv, write_json, write_text
from mnist_basics.params import load
from mnist_basics.pipeline import SPREAD_BY_NAME, report_flag

STAGE = SPREAD_BY_NAME["report"]


def main() -> None:
    args = cli.parser(STAGE, __doc__).parse_args()
    params = {k: v.model_dump() for k, v in load(args.params, *STAGE.params).items()}
    runs, sweep = spread.read_runs(args.spread_runs, args.sweep_runs, params)
    chapter = {m: read_json(getattr(args, report_flag(m, "metrics")))
               for m in spread.SPREAD_METHODS}
    summary = spread.summarise(runs, sweep, chapter)
    page = spread.render(spread=runs, sweep=sweep, summary=summary, params=params)
    write_csv(args.csv, runs)
    write_csv(args.sweep_csv, sweep)
    write_json(args.metrics, summary)
    write_text(args.out, page)


if __name__ == "__main__":
    cli.run(main)
