"""fastbook chapter 4 ("MNIST basics") as a reproducible pipeline.

The package holds everything the stage scripts in `stages/` share: the pipeline definition
(`pipeline`), validated params (`params`), atomic artifact I/O (`artifacts`), the data
(`download`, `data`), the chapter's models and training loop (`models`, `train`,
`pixel_mean`) and the report (`report`). Import cost matters here: submodules import torch
and friends lazily, so `import mnist_basics` stays cheap.
"""

__version__ = "0.1.0"


class PipelineError(Exception):
    """A problem the user can fix; stage scripts print it as one line and exit non-zero."""
