# GENERATED from mnist_basics/pipeline/definition.py by `make dvc.yaml`: edit that file.
# Snakemake's view of mnist/dvc.yaml: the same stages, commands and paths. `snakemake mnist`
# builds them all; rules/bridge.smk defines params_yaml() and value(). `conda:` is used only
# with --software-deployment-method conda.


rule mnist_download:
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
        params_yaml("mnist/dvc.yaml:download"),
    output:
        "data/mnist.tgz",
    log: "logs/mnist_download.log"
    threads: 1
    resources: gpu=0
    conda: "../environment.yml"
    shell:
        "python stages/download.py --dataset mnist"
        " --out data/mnist.tgz"
        " > {log} 2>&1"


rule mnist_stack:
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
        "data/mnist.tgz",
    output:
        "data/mnist.safetensors",
        "data/mnist_counts.json",
    log: "logs/mnist_stack.log"
    threads: 1
    resources: gpu=0
    conda: "../environment.yml"
    shell:
        "python stages/stack.py --dataset mnist"
        " --archive data/mnist.tgz"
        " --tensors data/mnist.safetensors"
        " --counts data/mnist_counts.json"
        " > {log} 2>&1"


rule mnist_pixel_mean:
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
        "data/mnist.safetensors",
    output:
        "models/mnist/pixel_mean.safetensors",
        "models/mnist/pixel_mean.json",
        "models/mnist/pixel_mean_valid.safetensors",
        "metrics/mnist/pixel_mean_timing.json",
        "metrics/mnist/pixel_mean_classes.json",
        "metrics/mnist/pixel_mean.json",
        "metrics/mnist/pixel_mean_history.csv",
    log: "logs/mnist_pixel_mean.log"
    threads: 1
    resources: gpu=0
    conda: "../environment.yml"
    shell:
        "python stages/pixel_mean.py --dataset mnist"
        " --tensors data/mnist.safetensors"
        " --checkpoint models/mnist/pixel_mean.safetensors"
        " --model-card models/mnist/pixel_mean.json"
        " --predictions models/mnist/pixel_mean_valid.safetensors"
        " --timing metrics/mnist/pixel_mean_timing.json"
        " --metrics metrics/mnist/pixel_mean.json"
        " --history metrics/mnist/pixel_mean_history.csv"
        " --classes metrics/mnist/pixel_mean_classes.json"
        " > {log} 2>&1"


rule mnist_linear:
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
        "data/mnist.safetensors",
        params_yaml("mnist/dvc.yaml:linear"),
    output:
        "models/mnist/linear.safetensors",
        "models/mnist/linear.json",
        "models/mnist/linear_valid.safetensors",
        "metrics/mnist/linear_timing.json",
        "metrics/mnist/linear_classes.json",
        "metrics/mnist/linear.json",
        "metrics/mnist/linear_history.csv",
    log: "logs/mnist_linear.log"
    threads: 1
    resources: gpu=TRAIN_GPU
    conda: "../environment.yml"
    shell:
        "python stages/linear.py --dataset mnist"
        " --tensors data/mnist.safetensors"
        " --checkpoint models/mnist/linear.safetensors"
        " --model-card models/mnist/linear.json"
        " --predictions models/mnist/linear_valid.safetensors"
        " --timing metrics/mnist/linear_timing.json"
        " --metrics metrics/mnist/linear.json"
        " --history metrics/mnist/linear_history.csv"
        " --classes metrics/mnist/linear_classes.json"
        " > {log} 2>&1"


rule mnist_mlp:
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
        "data/mnist.safetensors",
        params_yaml("mnist/dvc.yaml:mlp"),
    output:
        "models/mnist/mlp.safetensors",
        "models/mnist/mlp.json",
        "models/mnist/mlp_valid.safetensors",
        "metrics/mnist/mlp_timing.json",
        "metrics/mnist/mlp_classes.json",
        "metrics/mnist/mlp.json",
        "metrics/mnist/mlp_history.csv",
    log: "logs/mnist_mlp.log"
    threads: 1
    resources: gpu=TRAIN_GPU
    conda: "../environment.yml"
    shell:
        "python stages/mlp.py --dataset mnist"
        " --tensors data/mnist.safetensors"
        " --checkpoint models/mnist/mlp.safetensors"
        " --model-card models/mnist/mlp.json"
        " --predictions models/mnist/mlp_valid.safetensors"
        " --timing metrics/mnist/mlp_timing.json"
        " --metrics metrics/mnist/mlp.json"
        " --history metrics/mnist/mlp_history.csv"
        " --classes metrics/mnist/mlp_classes.json"
        " > {log} 2>&1"


rule mnist_resnet18:
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
        "data/mnist.safetensors",
        params_yaml("mnist/dvc.yaml:resnet18"),
    output:
        "models/mnist/resnet18.safetensors",
        "models/mnist/resnet18.json",
        "models/mnist/resnet18_valid.safetensors",
        "metrics/mnist/resnet18_timing.json",
        "metrics/mnist/resnet18_classes.json",
        "metrics/mnist/resnet18.json",
        "metrics/mnist/resnet18_history.csv",
        "metrics/mnist/resnet18_steps.csv",
    log: "logs/mnist_resnet18.log"
    threads: workflow.cores
    resources: gpu=TRAIN_GPU
    conda: "../environment.yml"
    shell:
        "python stages/resnet18.py --dataset mnist"
        " --tensors data/mnist.safetensors"
        " --checkpoint models/mnist/resnet18.safetensors"
        " --model-card models/mnist/resnet18.json"
        " --predictions models/mnist/resnet18_valid.safetensors"
        " --timing metrics/mnist/resnet18_timing.json"
        " --metrics metrics/mnist/resnet18.json"
        " --history metrics/mnist/resnet18_history.csv"
        " --steps metrics/mnist/resnet18_steps.csv"
        " --classes metrics/mnist/resnet18_classes.json"
        " > {log} 2>&1"


rule mnist_report:
    input:
        "stages/digits_report.py",
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
        "mnist_basics/report/digits.py",
        "mnist_basics/report/templates/sections.html.j2",
        "mnist_basics/report/templates/page.css",
        "mnist_basics/report/locale/et/LC_MESSAGES/messages.po",
        "mnist_basics/report/templates/digits.html.j2",
        "data/mnist.safetensors",
        "data/mnist_counts.json",
        "models/mnist/pixel_mean.safetensors",
        "models/mnist/pixel_mean.json",
        "models/mnist/pixel_mean_valid.safetensors",
        "metrics/mnist/pixel_mean.json",
        "metrics/mnist/pixel_mean_history.csv",
        "metrics/mnist/pixel_mean_classes.json",
        "models/mnist/linear.safetensors",
        "models/mnist/linear.json",
        "models/mnist/linear_valid.safetensors",
        "metrics/mnist/linear.json",
        "metrics/mnist/linear_history.csv",
        "metrics/mnist/linear_classes.json",
        "models/mnist/mlp.safetensors",
        "models/mnist/mlp.json",
        "models/mnist/mlp_valid.safetensors",
        "metrics/mnist/mlp.json",
        "metrics/mnist/mlp_history.csv",
        "metrics/mnist/mlp_classes.json",
        "models/mnist/resnet18.safetensors",
        "models/mnist/resnet18.json",
        "models/mnist/resnet18_valid.safetensors",
        "metrics/mnist/resnet18.json",
        "metrics/mnist/resnet18_history.csv",
        "metrics/mnist/resnet18_steps.csv",
        "metrics/mnist/resnet18_classes.json",
        "metrics/pixel_mean.json",
        "metrics/linear.json",
        "metrics/mlp.json",
        "metrics/resnet18.json",
        params_yaml("mnist/dvc.yaml:report"),
    output:
        report("reports/mnist.html", caption="../reports/captions/mnist.rst", category="5. Full MNIST"),
        report("reports/mnist_accuracy.csv", caption="../reports/captions/accuracy.rst", category="5. Full MNIST"),
    log: "logs/mnist_report.log"
    threads: 1
    resources: gpu=0
    conda: "../environment.yml"
    shell:
        "python stages/digits_report.py --dataset mnist"
        " --input stack.tensors=data/mnist.safetensors"
        " --input stack.counts=data/mnist_counts.json"
        " --input pixel_mean.checkpoint=models/mnist/pixel_mean.safetensors"
        " --input pixel_mean.model_card=models/mnist/pixel_mean.json"
        " --input pixel_mean.predictions=models/mnist/pixel_mean_valid.safetensors"
        " --input pixel_mean.metrics=metrics/mnist/pixel_mean.json"
        " --input pixel_mean.history=metrics/mnist/pixel_mean_history.csv"
        " --input pixel_mean.classes=metrics/mnist/pixel_mean_classes.json"
        " --input linear.checkpoint=models/mnist/linear.safetensors"
        " --input linear.model_card=models/mnist/linear.json"
        " --input linear.predictions=models/mnist/linear_valid.safetensors"
        " --input linear.metrics=metrics/mnist/linear.json"
        " --input linear.history=metrics/mnist/linear_history.csv"
        " --input linear.classes=metrics/mnist/linear_classes.json"
        " --input mlp.checkpoint=models/mnist/mlp.safetensors"
        " --input mlp.model_card=models/mnist/mlp.json"
        " --input mlp.predictions=models/mnist/mlp_valid.safetensors"
        " --input mlp.metrics=metrics/mnist/mlp.json"
        " --input mlp.history=metrics/mnist/mlp_history.csv"
        " --input mlp.classes=metrics/mnist/mlp_classes.json"
        " --input resnet18.checkpoint=models/mnist/resnet18.safetensors"
        " --input resnet18.model_card=models/mnist/resnet18.json"
        " --input resnet18.predictions=models/mnist/resnet18_valid.safetensors"
        " --input resnet18.metrics=metrics/mnist/resnet18.json"
        " --input resnet18.history=metrics/mnist/resnet18_history.csv"
        " --input resnet18.steps=metrics/mnist/resnet18_steps.csv"
        " --input resnet18.classes=metrics/mnist/resnet18_classes.json"
        " --input sample_pixel_mean.metrics=metrics/pixel_mean.json"
        " --input sample_linear.metrics=metrics/linear.json"
        " --input sample_mlp.metrics=metrics/mlp.json"
        " --input sample_resnet18.metrics=metrics/resnet18.json"
        " --input pixel_mean.timing=metrics/mnist/pixel_mean_timing.json"
        " --input linear.timing=metrics/mnist/linear_timing.json"
        " --input mlp.timing=metrics/mnist/mlp_timing.json"
        " --input resnet18.timing=metrics/mnist/resnet18_timing.json"
        " --out reports/mnist.html"
        " --accuracy-csv reports/mnist_accuracy.csv"
        " > {log} 2>&1"


rule mnist:  # every output above
    input:
        rules.mnist_download.output,
        rules.mnist_stack.output,
        rules.mnist_pixel_mean.output,
        rules.mnist_linear.output,
        rules.mnist_mlp.output,
        rules.mnist_resnet18.output,
        rules.mnist_report.output,
