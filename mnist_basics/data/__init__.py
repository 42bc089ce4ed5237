"""The archives and the tensors: the verified download, and the stack of 28x28 digits."""
