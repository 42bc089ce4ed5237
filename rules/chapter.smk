# GENERATED from mnist_basics/pipeline/definition.py by `make dvc.yaml`: edit that file.
# Snakemake's view of dvc.yaml: the same stages, commands and paths. `snakemake chapter`
# builds them all; rules/bridge.smk defines params_yaml() and value(). `conda:` is used only
# with --software-deployment-method conda.


rule download:
    input:
        "stages/download.py",
        "mnist_basics/__init__.py",
        "mnist_basics/artifacts.py",
        "mnist_basics/params.py",
        "mnist_basics/registry.py",
        "mnist_basics/pipeline/__init__.py",
        "mnist_basics/pipeline/cli.py",
        "mnist_basics/data/__init__.py",
        "mnist_basics/data/stack.py",
        "mnist_basics/data/download.py",
        params_yaml("download"),
    output:
        "data/mnist_sample.tgz",
    log: "logs/download.log"
    threads: 1
    resources: gpu=0
    conda: "../environment.yml"
    shell:
        "python stages/download.py"
        " --out data/mnist_sample.tgz"
        " > {log} 2>&1"


rule stack:
    input:
        "stages/stack.py",
        "mnist_basics/__init__.py",
        "mnist_basics/artifacts.py",
        "mnist_basics/params.py",
        "mnist_basics/registry.py",
        "mnist_basics/pipeline/__init__.py",
        "mnist_basics/pipeline/cli.py",
        "mnist_basics/data/__init__.py",
        "mnist_basics/data/stack.py",
        "data/mnist_sample.tgz",
    output:
        "data/mnist_sample.safetensors",
        "data/counts.json",
    log: "logs/stack.log"
    threads: 1
    resources: gpu=0
    conda: "../environment.yml"
    shell:
        "python stages/stack.py"
        " --archive data/mnist_sample.tgz"
        " --tensors data/mnist_sample.safetensors"
        " --counts data/counts.json"
        " > {log} 2>&1"


rule sgd_example:
    input:
        "stages/sgd_example.py",
        "mnist_basics/__init__.py",
        "mnist_basics/artifacts.py",
        "mnist_basics/params.py",
        "mnist_basics/registry.py",
        "mnist_basics/pipeline/__init__.py",
        "mnist_basics/pipeline/cli.py",
        "mnist_basics/compat.py",
        "mnist_basics/data/__init__.py",
        "mnist_basics/data/stack.py",
        "mnist_basics/chapter/__init__.py",
        "mnist_basics/chapter/train.py",
        "mnist_basics/chapter/models.py",
        "mnist_basics/chapter/sgd_example.py",
        params_yaml("sgd_example"),
    output:
        "data/sgd_example.safetensors",
        "metrics/sgd_example.json",
        "metrics/sgd_example.csv",
    log: "logs/sgd_example.log"
    threads: 1
    resources: gpu=0
    conda: "../environment.yml"
    shell:
        "python stages/sgd_example.py"
        " --tensors data/sgd_example.safetensors"
        " --steps metrics/sgd_example.csv"
        " --metrics metrics/sgd_example.json"
        " > {log} 2>&1"


rule pixel_mean:
    input:
        "stages/pixel_mean.py",
        "mnist_basics/__init__.py",
        "mnist_basics/artifacts.py",
        "mnist_basics/params.py",
        "mnist_basics/registry.py",
        "mnist_basics/pipeline/__init__.py",
        "mnist_basics/pipeline/cli.py",
        "mnist_basics/compat.py",
        "mnist_basics/data/__init__.py",
        "mnist_basics/data/stack.py",
        "mnist_basics/chapter/__init__.py",
        "mnist_basics/chapter/train.py",
        "mnist_basics/methods/__init__.py",
        "mnist_basics/methods/pixel_mean.py",
        "data/mnist_sample.safetensors",
    output:
        "models/pixel_mean.safetensors",
        "models/pixel_mean.json",
        "models/pixel_mean_valid.safetensors",
        "metrics/pixel_mean_timing.json",
        "metrics/pixel_mean_classes.json",
        "metrics/pixel_mean.json",
        report("metrics/pixel_mean_history.csv", caption="../reports/captions/history.rst", category="3. Training history", subcategory="pixel_mean"),
    log: "logs/pixel_mean.log"
    threads: 1
    resources: gpu=0
    conda: "../environment.yml"
    shell:
        "python stages/pixel_mean.py"
        " --tensors data/mnist_sample.safetensors"
        " --checkpoint models/pixel_mean.safetensors"
        " --model-card models/pixel_mean.json"
        " --predictions models/pixel_mean_valid.safetensors"
        " --timing metrics/pixel_mean_timing.json"
        " --metrics metrics/pixel_mean.json"
        " --history metrics/pixel_mean_history.csv"
        " --classes metrics/pixel_mean_classes.json"
        " > {log} 2>&1"


rule linear:
    input:
        "stages/linear.py",
        "mnist_basics/__init__.py",
        "mnist_basics/artifacts.py",
        "mnist_basics/params.py",
        "mnist_basics/registry.py",
        "mnist_basics/pipeline/__init__.py",
        "mnist_basics/pipeline/cli.py",
        "mnist_basics/compat.py",
        "mnist_basics/data/__init__.py",
        "mnist_basics/data/stack.py",
        "mnist_basics/chapter/__init__.py",
        "mnist_basics/chapter/train.py",
        "mnist_basics/chapter/models.py",
        "data/mnist_sample.safetensors",
        params_yaml("linear"),
    output:
        "models/linear.safetensors",
        "models/linear.json",
        "models/linear_valid.safetensors",
        "metrics/linear_timing.json",
        "metrics/linear_classes.json",
        "metrics/linear.json",
        report("metrics/linear_history.csv", caption="../reports/captions/history.rst", category="3. Training history", subcategory="linear"),
    log: "logs/linear.log"
    threads: 1
    resources: gpu=TRAIN_GPU
    conda: "../environment.yml"
    shell:
        "python stages/linear.py"
        " --tensors data/mnist_sample.safetensors"
        " --checkpoint models/linear.safetensors"
        " --model-card models/linear.json"
        " --predictions models/linear_valid.safetensors"
        " --timing metrics/linear_timing.json"
        " --metrics metrics/linear.json"
        " --history metrics/linear_history.csv"
        " --classes metrics/linear_classes.json"
        " > {log} 2>&1"


rule mlp:
    input:
        "stages/mlp.py",
        "mnist_basics/__init__.py",
        "mnist_basics/artifacts.py",
        "mnist_basics/params.py",
        "mnist_basics/registry.py",
        "mnist_basics/pipeline/__init__.py",
        "mnist_basics/pipeline/cli.py",
        "mnist_basics/compat.py",
        "mnist_basics/data/__init__.py",
        "mnist_basics/data/stack.py",
        "mnist_basics/chapter/__init__.py",
        "mnist_basics/chapter/train.py",
        "mnist_basics/chapter/models.py",
        "data/mnist_sample.safetensors",
        params_yaml("mlp"),
    output:
        "models/mlp.safetensors",
        "models/mlp.json",
        "models/mlp_valid.safetensors",
        "metrics/mlp_timing.json",
        "metrics/mlp_classes.json",
        "metrics/mlp.json",
        report("metrics/mlp_history.csv", caption="../reports/captions/history.rst", category="3. Training history", subcategory="mlp"),
    log: "logs/mlp.log"
    threads: 1
    resources: gpu=TRAIN_GPU
    conda: "../environment.yml"
    shell:
        "python stages/mlp.py"
        " --tensors data/mnist_sample.safetensors"
        " --checkpoint models/mlp.safetensors"
        " --model-card models/mlp.json"
        " --predictions models/mlp_valid.safetensors"
        " --timing metrics/mlp_timing.json"
        " --metrics metrics/mlp.json"
        " --history metrics/mlp_history.csv"
        " --classes metrics/mlp_classes.json"
        " > {log} 2>&1"


rule resnet18:
    input:
        "stages/resnet18.py",
        "mnist_basics/__init__.py",
        "mnist_basics/artifacts.py",
        "mnist_basics/params.py",
        "mnist_basics/registry.py",
        "mnist_basics/pipeline/__init__.py",
        "mnist_basics/pipeline/cli.py",
        "mnist_basics/compat.py",
        "mnist_basics/data/__init__.py",
        "mnist_basics/data/stack.py",
        "mnist_basics/chapter/__init__.py",
        "mnist_basics/chapter/train.py",
        "mnist_basics/methods/__init__.py",
        "mnist_basics/methods/resnet.py",
        "data/mnist_sample.safetensors",
        params_yaml("resnet18"),
    output:
        "models/resnet18.safetensors",
        "models/resnet18.json",
        "models/resnet18_valid.safetensors",
        "metrics/resnet18_timing.json",
        "metrics/resnet18_classes.json",
        "metrics/resnet18.json",
        report("metrics/resnet18_history.csv", caption="../reports/captions/history.rst", category="3. Training history", subcategory="resnet18"),
        report("metrics/resnet18_steps.csv", caption="../reports/captions/steps.rst", category="3. Training history", subcategory="resnet18"),
    log: "logs/resnet18.log"
    threads: workflow.cores
    resources: gpu=TRAIN_GPU
    conda: "../environment.yml"
    shell:
        "python stages/resnet18.py"
        " --tensors data/mnist_sample.safetensors"
        " --checkpoint models/resnet18.safetensors"
        " --model-card models/resnet18.json"
        " --predictions models/resnet18_valid.safetensors"
        " --timing metrics/resnet18_timing.json"
        " --metrics metrics/resnet18.json"
        " --history metrics/resnet18_history.csv"
        " --steps metrics/resnet18_steps.csv"
        " --classes metrics/resnet18_classes.json"
        " > {log} 2>&1"


rule nn_linear:
    input:
        "stages/nn_linear.py",
        "mnist_basics/__init__.py",
        "mnist_basics/artifacts.py",
        "mnist_basics/params.py",
        "mnist_basics/registry.py",
        "mnist_basics/pipeline/__init__.py",
        "mnist_basics/pipeline/cli.py",
        "mnist_basics/compat.py",
        "mnist_basics/data/__init__.py",
        "mnist_basics/data/stack.py",
        "mnist_basics/chapter/__init__.py",
        "mnist_basics/chapter/train.py",
        "mnist_basics/chapter/models.py",
        "data/mnist_sample.safetensors",
        params_yaml("nn_linear"),
    output:
        "metrics/nn_linear.json",
        "metrics/nn_linear_history.csv",
    log: "logs/nn_linear.log"
    threads: 1
    resources: gpu=TRAIN_GPU
    conda: "../environment.yml"
    shell:
        "python stages/nn_linear.py"
        " --tensors data/mnist_sample.safetensors"
        " --history metrics/nn_linear_history.csv"
        " --metrics metrics/nn_linear.json"
        " > {log} 2>&1"


rule report:
    input:
        "stages/report.py",
        "mnist_basics/__init__.py",
        "mnist_basics/artifacts.py",
        "mnist_basics/params.py",
        "mnist_basics/registry.py",
        "mnist_basics/pipeline/__init__.py",
        "mnist_basics/pipeline/cli.py",
        "mnist_basics/data/__init__.py",
        "mnist_basics/data/stack.py",
        "mnist_basics/report/__init__.py",
        "mnist_basics/report/i18n.py",
        "mnist_basics/report/figures.py",
        "mnist_basics/report/page.py",
        "mnist_basics/report/chapter.py",
        "mnist_basics/report/try_it.py",
        "mnist_basics/report/templates/sections.html.j2",
        "mnist_basics/report/templates/page.css",
        "mnist_basics/report/locale/et/LC_MESSAGES/messages.po",
        "mnist_basics/report/templates/report.html.j2",
        "mnist_basics/report/templates/try_it.html.j2",
        "mnist_basics/report/templates/prepare.js",
        "data/mnist_sample.tgz",
        "data/mnist_sample.safetensors",
        "data/counts.json",
        "data/sgd_example.safetensors",
        "metrics/sgd_example.csv",
        "metrics/sgd_example.json",
        "models/pixel_mean.safetensors",
        "models/pixel_mean.json",
        "models/pixel_mean_valid.safetensors",
        "metrics/pixel_mean.json",
        "metrics/pixel_mean_history.csv",
        "metrics/pixel_mean_classes.json",
        "models/linear.safetensors",
        "models/linear.json",
        "models/linear_valid.safetensors",
        "metrics/linear.json",
        "metrics/linear_history.csv",
        "metrics/linear_classes.json",
        "models/mlp.safetensors",
        "models/mlp.json",
        "models/mlp_valid.safetensors",
        "metrics/mlp.json",
        "metrics/mlp_history.csv",
        "metrics/mlp_classes.json",
        "models/resnet18.safetensors",
        "models/resnet18.json",
        "models/resnet18_valid.safetensors",
        "metrics/resnet18.json",
        "metrics/resnet18_history.csv",
        "metrics/resnet18_steps.csv",
        "metrics/resnet18_classes.json",
        "metrics/nn_linear_history.csv",
        "metrics/nn_linear.json",
        params_yaml("report"),
    output:
        report("reports/index.html", caption="../reports/captions/report.rst", category="1. Report"),
        report("reports/accuracy.csv", caption="../reports/captions/accuracy.rst", category="2. Accuracy"),
    log: "logs/report.log"
    threads: 1
    resources: gpu=0
    conda: "../environment.yml"
    shell:
        "python stages/report.py"
        " --input download.out=data/mnist_sample.tgz"
        " --input stack.tensors=data/mnist_sample.safetensors"
        " --input stack.counts=data/counts.json"
        " --input sgd_example.tensors=data/sgd_example.safetensors"
        " --input sgd_example.steps=metrics/sgd_example.csv"
        " --input sgd_example.metrics=metrics/sgd_example.json"
        " --input pixel_mean.checkpoint=models/pixel_mean.safetensors"
        " --input pixel_mean.model_card=models/pixel_mean.json"
        " --input pixel_mean.predictions=models/pixel_mean_valid.safetensors"
        " --input pixel_mean.metrics=metrics/pixel_mean.json"
        " --input pixel_mean.history=metrics/pixel_mean_history.csv"
        " --input pixel_mean.classes=metrics/pixel_mean_classes.json"
        " --input linear.checkpoint=models/linear.safetensors"
        " --input linear.model_card=models/linear.json"
        " --input linear.predictions=models/linear_valid.safetensors"
        " --input linear.metrics=metrics/linear.json"
        " --input linear.history=metrics/linear_history.csv"
        " --input linear.classes=metrics/linear_classes.json"
        " --input mlp.checkpoint=models/mlp.safetensors"
        " --input mlp.model_card=models/mlp.json"
        " --input mlp.predictions=models/mlp_valid.safetensors"
        " --input mlp.metrics=metrics/mlp.json"
        " --input mlp.history=metrics/mlp_history.csv"
        " --input mlp.classes=metrics/mlp_classes.json"
        " --input resnet18.checkpoint=models/resnet18.safetensors"
        " --input resnet18.model_card=models/resnet18.json"
        " --input resnet18.predictions=models/resnet18_valid.safetensors"
        " --input resnet18.metrics=metrics/resnet18.json"
        " --input resnet18.history=metrics/resnet18_history.csv"
        " --input resnet18.steps=metrics/resnet18_steps.csv"
        " --input resnet18.classes=metrics/resnet18_classes.json"
        " --input nn_linear.history=metrics/nn_linear_history.csv"
        " --input nn_linear.metrics=metrics/nn_linear.json"
        " --input pixel_mean.timing=metrics/pixel_mean_timing.json"
        " --input linear.timing=metrics/linear_timing.json"
        " --input mlp.timing=metrics/mlp_timing.json"
        " --input resnet18.timing=metrics/resnet18_timing.json"
        " --out reports/index.html"
        " --accuracy-csv reports/accuracy.csv"
        " > {log} 2>&1"


rule chapter:  # every output above
    input:
        rules.download.output,
        rules.stack.output,
        rules.sgd_example.output,
        rules.pixel_mean.output,
        rules.linear.output,
        rules.mlp.output,
        rules.resnet18.output,
        rules.nn_linear.output,
        rules.report.output,
