# GENERATED from mnist_basics/pipeline/definition.py by `make dvc.yaml`: edit that file.
# Snakemake's view of spread/dvc.yaml: the same stages, commands and paths. `snakemake spread`
# builds them all; rules/bridge.smk defines params_yaml() and value(). `conda:` is used only
# with --software-deployment-method conda.


rule spread_linear:
    input:
        "stages/spread.py",
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
        "mnist_basics/methods/__init__.py",
        "mnist_basics/methods/resnet.py",
        "data/mnist_sample.safetensors",
        params_yaml("spread/dvc.yaml:linear"),
    output:
        "metrics/spread/linear_seed{seed}.json",
    wildcard_constraints: seed=r"\d+", value=r"[^/_]+"
    log: "logs/spread_linear_{seed}.log"
    threads: 1
    resources: gpu=0
    conda: "../environment.yml"
    shell:
        "python stages/spread.py linear --seed {wildcards.seed}"
        " --tensors data/mnist_sample.safetensors"
        " --out metrics/spread/linear_seed{wildcards.seed}.json"
        " > {log} 2>&1"


rule spread_mlp:
    input:
        "stages/spread.py",
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
        "mnist_basics/methods/__init__.py",
        "mnist_basics/methods/resnet.py",
        "data/mnist_sample.safetensors",
        params_yaml("spread/dvc.yaml:mlp"),
    output:
        "metrics/spread/mlp_seed{seed}.json",
    wildcard_constraints: seed=r"\d+", value=r"[^/_]+"
    log: "logs/spread_mlp_{seed}.log"
    threads: 1
    resources: gpu=0
    conda: "../environment.yml"
    shell:
        "python stages/spread.py mlp --seed {wildcards.seed}"
        " --tensors data/mnist_sample.safetensors"
        " --out metrics/spread/mlp_seed{wildcards.seed}.json"
        " > {log} 2>&1"


rule spread_resnet18:
    input:
        "stages/spread.py",
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
        "mnist_basics/methods/__init__.py",
        "mnist_basics/methods/resnet.py",
        "data/mnist_sample.safetensors",
        params_yaml("spread/dvc.yaml:resnet18"),
    output:
        "metrics/spread/resnet18_seed{seed}.json",
    wildcard_constraints: seed=r"\d+", value=r"[^/_]+"
    log: "logs/spread_resnet18_{seed}.log"
    threads: workflow.cores
    resources: gpu=TRAIN_GPU
    conda: "../environment.yml"
    shell:
        "python stages/spread.py resnet18 --seed {wildcards.seed}"
        " --tensors data/mnist_sample.safetensors"
        " --out metrics/spread/resnet18_seed{wildcards.seed}.json"
        " > {log} 2>&1"


rule spread_sweep:
    input:
        "stages/spread.py",
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
        "mnist_basics/methods/__init__.py",
        "mnist_basics/methods/resnet.py",
        "data/mnist_sample.safetensors",
        params_yaml("spread/dvc.yaml:sweep"),
    output:
        "metrics/sweep/value{value}_seed{seed}.json",
    params:
        sweep_key=value("sweep.key"),
        sweep_method=value("sweep.method"),
    wildcard_constraints: seed=r"\d+", value=r"[^/_]+"
    log: "logs/spread_sweep_{value}_{seed}.log"
    threads: 1
    resources: gpu=0
    conda: "../environment.yml"
    shell:
        "python stages/spread.py {params.sweep_method} --seed {wildcards.seed} --set {params.sweep_key}={wildcards.value}"
        " --tensors data/mnist_sample.safetensors"
        " --out metrics/sweep/value{wildcards.value}_seed{wildcards.seed}.json"
        " > {log} 2>&1"


rule spread_report:
    input:
        "stages/spread_report.py",
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
        "mnist_basics/report/spread.py",
        "mnist_basics/report/templates/sections.html.j2",
        "mnist_basics/report/templates/page.css",
        "mnist_basics/report/locale/et/LC_MESSAGES/messages.po",
        "mnist_basics/report/templates/spread.html.j2",
        expand("metrics/spread/linear_seed{seed}.json", seed=value("spread.seeds")),
        expand("metrics/spread/mlp_seed{seed}.json", seed=value("spread.seeds")),
        expand("metrics/spread/resnet18_seed{seed}.json", seed=value("spread.seeds")),
        expand("metrics/sweep/value{value}_seed{seed}.json", value=value("sweep.values"), seed=value("sweep.seeds")),
        "metrics/linear.json",
        "metrics/mlp.json",
        "metrics/resnet18.json",
        params_yaml("spread/dvc.yaml:report"),
    output:
        report("reports/spread.html", caption="../reports/captions/spread.rst", category="4. Seed spread"),
        report("reports/spread.csv", caption="../reports/captions/spread_csv.rst", category="4. Seed spread"),
        report("reports/sweep.csv", caption="../reports/captions/spread_csv.rst", category="4. Seed spread"),
        "metrics/spread.json",
    log: "logs/spread_report.log"
    threads: 1
    resources: gpu=0
    conda: "../environment.yml"
    shell:
        "python stages/spread_report.py"
        " --spread-runs metrics/spread"
        " --sweep-runs metrics/sweep"
        " --input linear.metrics=metrics/linear.json"
        " --input mlp.metrics=metrics/mlp.json"
        " --input resnet18.metrics=metrics/resnet18.json"
        " --out reports/spread.html"
        " --csv reports/spread.csv"
        " --sweep-csv reports/sweep.csv"
        " --metrics metrics/spread.json"
        " > {log} 2>&1"


rule spread:  # every output above
    input:
        expand("metrics/spread/linear_seed{seed}.json", seed=value("spread.seeds")),
        expand("metrics/spread/mlp_seed{seed}.json", seed=value("spread.seeds")),
        expand("metrics/spread/resnet18_seed{seed}.json", seed=value("spread.seeds")),
        expand("metrics/sweep/value{value}_seed{seed}.json", value=value("sweep.values"), seed=value("sweep.seeds")),
        rules.spread_report.output,
