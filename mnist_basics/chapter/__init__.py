"""The chapter's own code: losses, `BasicOptim`, the training loop, the metrics, its models."""
