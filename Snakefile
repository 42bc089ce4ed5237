# The Snakemake view of the pipeline: a table of contents. Each rule file is generated from
# mnist_basics/pipeline/definition.py, the definition dvc.yaml comes from too (`make dvc.yaml`), so both
# engines run the same commands on the same files; rules/bridge.smk keeps them in one state.
#
#   snakemake --cores 4 --resources gpu=1      # run everything that is out of date
#   snakemake -n                               # show what would run
#   snakemake mnist --cores 4 --resources gpu=1    # the full MNIST (mnist/dvc.yaml)
#   snakemake spread --cores 4 --resources gpu=1   # the seed spread and sweep (make spread)


include: "rules/bridge.smk"  # configfile params.yaml, params_yaml(), value(), DVC's locks
include: "rules/chapter.smk"  # dvc.yaml: download, stack, ..., report; target `chapter`
include: "rules/mnist.smk"  # mnist/dvc.yaml: the same stages on ten digits; target `mnist`
include: "rules/spread.smk"  # spread/dvc.yaml: the seed spread and sweep; target `spread`


rule all:
    # The default target: each dataset that params.yaml `datasets` lists (the chapter's
    # MNIST_SAMPLE unless you add mnist).
    default_target: True
    input:
        [getattr(rules, "chapter" if d == "mnist_sample" else d).input for d in value("datasets")],
