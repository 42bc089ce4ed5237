"""The methods beyond the chapter's hand-written models: the pixel mean and resnet18."""
