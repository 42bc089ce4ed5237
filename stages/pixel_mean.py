"""Stage pixel_mean: the chapter's baseline, each digit compared with the ideal 3 and 7.

Reads the stacked tensors, averages the training 3s and 7s into `mean3` and `mean7`, and
classifies the validation digits by L1 distance (the book's `mnist_distance`) and by RMSE.
Writes the mean images as the checkpoint, the predictions as every method writes them (`pred`,
`probs`) with the distances beside, and the book's accuracies (3s, 7s, their average) as
metrics. It reads no params.

On the full MNIST (`--dataset mnist`) there are ten means, one per digit.

    dvc repro -s pixel_mean # dvc.yaml holds its command, every path in it
"""

import torch

from mnist_basics.chapter.train import Clock, Paths, cpu_threads, save_results
from mnist_basics.data.stack import load_sample
from mnist_basics.methods.pixel_mean import pixel_mean_result
from mnist_basics.pipeline import cli


def main() -> None:
    args = cli.method_parser("pixel_mean", __doc__).parse_args()
    clock = Clock()
    torch.set_num_threads(cpu_threads("pixel_mean"))
    sample = load_sample(args.tensors)
    save_results(Paths.from_args(args), pixel_mean_result(sample, clock, args.dataset))


if __name__ == "__main__":
    cli.run(main)
