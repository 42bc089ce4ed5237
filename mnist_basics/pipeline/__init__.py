"""The pipeline: the stage catalogue, the stage command line, both engines' files, the remotes."""
