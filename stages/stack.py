"""Stage `stack`: decode every PNG into the chapter's stacked uint8 tensors.

    python stages/stack.py        # --raw data/mnist_sample, writes the two files below
    OMP_NUM_THREADS=1 python stages/stack.py --raw some/folder --tensors x.safetensors ...

Writes train_x uint8 [12396, 28, 28], train_y uint8 [12396], valid_x [2038, 28, 28] and
valid_y [2038] (1 for a 3, 0 for a 7; 3s then 7s, each sorted by file name) as one
safetensors file, and the images per split and class as JSON. A PNG that is truncated,
corrupt, not 28x28 8-bit grayscale, or not a PNG at all stops the stage with its name, and
nothing is written. Decodes in as many processes as it is given cores (OMP_NUM_THREADS, as
Snakemake sets it, else every core).
"""

from mnist_basics import cli
from mnist_basics.artifacts import save_tensors, write_json
from mnist_basics.data import stack


def main() -> None:
    args = cli.parser("stack", __doc__).parse_args()
    tensors, counts = stack(args.raw, workers=cli.cpu_threads())
    save_tensors(args.tensors, tensors)
    write_json(args.counts, counts)
    cli.log.info("stacked %s from %s into %s", counts, args.raw, args.tensors)


if __name__ == "__main__":
    cli.run(main)
