"""Stage download: fetch fastai's MNIST_SAMPLE archive, verify it, write it to --out.

    python stages/download.py --out data/mnist_sample.tgz          # params.yaml data.url
    MNIST_SAMPLE_URL=/path/to/mnist_sample.tgz dvc repro -s download   # an offline copy
    MNIST_URL=/path/to/mnist_png.tgz python stages/download.py --dataset mnist --out x.tgz

MNIST_SAMPLE_URL takes a path, a file:// URL or an http(s) URL. Without it, a valid copy at
~/.fastai/archive/mnist_sample.tgz is used before the network. The archive is accepted when
its md5 is data.md5 or its files have data.content_digest, and every member has been vetted;
the output is replaced only once everything checks out. Nothing is extracted: the stack
stage reads the PNGs straight from the archive.
"""

from mnist_basics import params
from mnist_basics.data.download import download
from mnist_basics.pipeline import cli
from mnist_basics.registry import DATASETS


def main() -> None:
    args = cli.parser("stages/download.py", __doc__, params=("data",), datasets=True,
                      outputs=["out"]).parse_args()
    data = params.load_for(args.params, args.dataset, "data")["data"]
    download(data, args.out, layout=DATASETS[args.dataset])


if __name__ == "__main__":
    cli.run(main)
