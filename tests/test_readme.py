"""Every command the README shows works exactly as printed, and its tables are current.

The commands run in README order in one copy of the project, on a tiny archive (placeholder
paths such as /path/to/mnist_sample.tgz point at it), with this checkout's venv as the
copy's .venv. Two are run elsewhere, as the table below says.
"""

from __future__ import annotations

import re

import pytest

from tests.digits_archive import make_digits_archive
from tests.harness import ROOT, borrow_venv, engine_env, sh, tiny_project

# Commands another test runs, and why not here: each must still be in the README.
ELSEWHERE = {
    "make test": "the suite itself: CI runs it from a clean clone",
    "MNIST_SAMPLE_URL=/path/to/mnist_sample.tgz make bench":
        "minutes of timing: tests/test_bench.py runs bench/run.py --quick",
    "snakemake --profile profiles/slurm": "needs a cluster: tests/test_slurm.py starts one",
    "TRAIN_GPUS=1 snakemake --profile profiles/slurm": "likewise, with a GPU: tests/test_slurm.py",
    # The queue runs in the background: the test waits for it, where the README says to.
    "dvc exp run --queue -S 'mlp.lr=0.1,0.2' -S 'mlp.hidden=30,60'":
        "tests/test_spread.py::test_dvc_queue_runs_a_two_by_two_grid",
    "dvc queue start -j 2": "likewise",
    "dvc queue stop": "likewise",
}
# -> files of the test
PLACEHOLDERS = ("/path/to/mnist_sample.tgz", "/path/to/mnist_png.tgz", "/tmp/mnist-basics-store")


def readme_commands() -> list[str]:
    """Each line of the README's ```bash blocks, its trailing comment dropped."""
    text = (ROOT / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            cmd = re.sub(r"\s+#.*$", "", line).strip()
            if cmd and not cmd.startswith("#"):
                out.append(cmd)
    return out


def test_the_readme_tables_are_generated_from_the_measurements():
    assert sh("python", "-m", "mnist_basics.report.readme", "--check", check=False).returncode == 0


def test_commands_run_elsewhere_are_in_the_readme():
    assert set(ELSEWHERE) <= set(readme_commands())


@pytest.mark.slow
def test_every_readme_command_works_as_printed(tmp_path, tiny_archive):
    digits = make_digits_archive(tmp_path / "digits")
    proj = tiny_project(tmp_path / "proj", tiny_archive, digits=digits)
    borrow_venv(proj)
    env = engine_env(MNIST_SAMPLE_URL=str(tiny_archive[0]), MNIST_URL=str(digits[0]))
    commands = [c for c in readme_commands() if c not in ELSEWHERE]
    assert {"make run", "dvc repro", "snakemake --report report.html"} <= set(commands)
    stand_ins = dict(zip(PLACEHOLDERS, (str(tiny_archive[0]), str(digits[0]),
                                        str(tmp_path / "store")), strict=True))
    for cmd in commands:
        for placeholder, path in stand_ins.items():
            cmd = cmd.replace(placeholder, path)
        r = sh("bash", "-c", cmd, cwd=proj, env=env, check=False, timeout=900)
        assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert (proj / "reports/index.html").exists() and (proj / "report.html").exists()
    assert (proj / "reports/mnist.html").exists()
    assert len(list((proj / "seen").glob("*.png"))) == 2  # predict --show, one per picture
    assert any((tmp_path / "store").rglob("*"))  # make push filled the remote
