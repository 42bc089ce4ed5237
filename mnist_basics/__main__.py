"""The package's command line: `python -m mnist_basics <command>` (or `mnist-basics <command>`).

    python -m mnist_basics predict my_digit.png --model resnet18
    python -m mnist_basics push          # make push: the artifacts to the DVC remote
    python -m mnist_basics compare HEAD my-exp   # two runs side by side: reports/compare.html
    python -m mnist_basics dvcfiles      # make repro: the dvc.yaml files of params.yaml datasets

Each command lives in its own module, which provides `add_arguments(parser)` and `main(args)`;
adding one is a line in COMMANDS. A user-fixable problem prints one `error: ...` line and
exits with status 1.
"""

from __future__ import annotations

import argparse
import importlib

from mnist_basics.pipeline import cli

COMMANDS = {  # name -> (module, one-line help)
    "predict": ("mnist_basics.predict.predict",
                "classify your own image of a 3 or a 7, or of any digit"),
    "push": ("mnist_basics.pipeline.remote", "send every artifact to the default DVC remote"),
    "pull": ("mnist_basics.pipeline.remote",
             "get every artifact from the default DVC remote, checked"),
    "compare": ("mnist_basics.report.compare",
                "one page that sets two runs (git revisions, DVC experiments) side by side"),
    "dvcfiles": ("mnist_basics.pipeline.scope",
                 "the dvc.yaml files of params.yaml `datasets`, shown to DVC, the rest hidden"),
}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m mnist_basics", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, summary) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=summary, description=mod.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(run=mod.main)
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    cli.run(lambda: args.run(args), stage=False)


if __name__ == "__main__":
    main()
