"""Stage `stack`: decode every PNG into the chapter's stacked uint8 tensors.

    dvc repro -s stack            # --archive data/mnist_sample.tgz, writes the two files below
    python stages/stack.py --archive some.tgz --tensors x.safetensors --counts c.json

The PNGs are read straight from the archive the download stage verified; nothing is extracted.
Writes train_x uint8 [12396, 28, 28], train_y uint8 [12396], valid_x [2038, 28, 28] and
valid_y [2038] (1 for a 3, 0 for a 7; 3s then 7s, each sorted by file name) as one
safetensors file, and the images per split and class as JSON. A PNG that is truncated,
corrupt, not 28x28 8-bit grayscale, or not a PNG at all stops the stage with its name, and
nothing is written.

On the full MNIST (`--dataset mnist`) it reads data/mnist.tgz: 70,000 digits labelled 0-9.
"""

from mnist_basics.artifacts import save_tensors, write_json
from mnist_basics.data.stack import stack
from mnist_basics.pipeline import cli
from mnist_basics.registry import DATASETS


def main() -> None:
    args = cli.parser("stages/stack.py", __doc__, datasets=True, inputs=["archive"],
                      outputs=["tensors", "counts"]).parse_args()
    tensors, counts = stack(args.archive, DATASETS[args.dataset])
    save_tensors(args.tensors, tensors)
    write_json(args.counts, counts)
    cli.log.info("stacked %s from %s into %s", counts, args.archive, args.tensors)


if __name__ == "__main__":
    cli.run(main)
