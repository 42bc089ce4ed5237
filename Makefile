# The README's two commands are `make run` and `make test`; both create .venv first if needed.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Stage commands say `python` and `dvc`: they must be the ones in .venv.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1

.DEFAULT_GOAL := help
.PHONY: help venv fastai-venv run repro mnist mnist-dvc spread spread-dvc experiments test test-fast lint bench test-deps dvc.yaml readme messages push pull clean lock

help:  ## list the targets
	@grep -E '^[a-zA-Z_.-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	test -d $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP)  ## create .venv with every dependency pinned exactly

# The book's notebook runs with fastai in its own environment, beside the same torch, for
# `make bench` to time it next to the pipeline (bench/notebook.py).
FASTAI_VENV := .venv-fastai
FASTAI_STAMP := $(FASTAI_VENV)/.installed
$(FASTAI_STAMP): bench/fastai-requirements.txt
	test -d $(FASTAI_VENV) || python3 -m venv $(FASTAI_VENV)
	$(FASTAI_VENV)/bin/pip install --quiet --disable-pip-version-check -r $<
	touch $@

fastai-venv: $(FASTAI_STAMP)  ## create .venv-fastai: fastai, for make bench to run the notebook beside

# Both build each dataset that params.yaml `datasets` lists: the chapter's MNIST_SAMPLE, and
# the full MNIST too once `mnist` is added there.
run: $(STAMP)  ## run the whole pipeline with Snakemake (what is out of date)
	snakemake --cores 4 --resources gpu=1

repro: $(STAMP)  ## run the whole pipeline with DVC instead
	dvc repro $$(python -m mnist_basics dvcfiles)

mnist: $(STAMP)  ## the full MNIST only, whatever `datasets` lists: reports/mnist.html
	snakemake mnist --cores 4 --resources gpu=1

mnist-dvc: $(STAMP)  ## the same with DVC (shown to DVC first: pipeline/scope.py)
	dvc repro $$(python -m mnist_basics dvcfiles mnist)

# Not part of `make run`: 42 more trainings (params.yaml spread and sweep), jobs side by side.
spread: $(STAMP)  ## train each method once per seed, and the sweep: reports/spread.html
	snakemake spread --cores 4 --resources gpu=1

spread-dvc: $(STAMP)  ## the same spread and sweep with DVC (one job at a time)
	dvc repro spread/dvc.yaml

# DVC's own table of its experiments, each with only what it changed (params, metrics), minus
# the dependencies' hashes and dates, so that it fits a terminal (README: Two engines).
experiments: $(STAMP)  ## compare the DVC experiments: the params and results each one changed
	dvc exp show --only-changed --no-pager --drop '^[^:]+\.(json|csv|safetensors|tgz|html)$$|^Created$$'

push: $(STAMP)  ## send every artifact to the default DVC remote (README: Sharing results)
	python -m mnist_basics push

pull: $(STAMP)  ## get every artifact from the default DVC remote, each checked: no training
	python -m mnist_basics pull

# The tests start their own sshd, munged and Slurm daemons on 127.0.0.1; installing the
# packages must not start the system's (policy-rc.d tells Debian's scripts not to start
# services meanwhile).
test-deps:  ## install the Debian packages the tests use: Chromium; OpenSSH's server, Slurm and munge (none started)
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }
	@test -x /usr/sbin/sshd && test -x /usr/sbin/munged && test -x /usr/sbin/slurmctld && \
	  test -x /usr/sbin/slurmd && test -x /usr/bin/sbatch || { \
	  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
	    chmod +x /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends openssh-server slurmctld slurmd slurm-client munge; }

# Test files run side by side, each file in one worker (its module-wide servers and copies
# stay its own), the slowest first (tests/conftest.py): most of the slow ones wait on
# engines, servers, Slurm and the browser, so three workers share two cores well.
TEST_WORKERS ?= 3
test: $(STAMP) test-deps  ## run every test, slow ones included (TEST_WORKERS files at a time)
	pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=30

test-fast: $(STAMP)  ## run the tests that take seconds
	pytest -m "not slow and not browser"

lint: $(STAMP)  ## ruff, and check that the dvc.yaml files, rules/*.smk and the README's tables are current
	ruff check .
	python -m mnist_basics.pipeline.engines --check
	python -m mnist_basics.report.readme --check

dvc.yaml: $(STAMP)  ## regenerate the dvc.yaml files and rules/*.smk from mnist_basics/pipeline/definition.py
	python -m mnist_basics.pipeline.engines

# FASTAI=no times the pipeline alone, without building .venv-fastai (~6 GB).
FASTAI ?= yes
bench: $(STAMP) $(if $(filter no,$(FASTAI)),,$(FASTAI_STAMP))  ## time the pipeline, and beside fastai; writes bench/results.json
	python bench/run.py $(if $(filter no,$(FASTAI)),--no-fastai)

readme: $(STAMP)  ## regenerate the README's results and performance tables
	python -m mnist_basics.report.readme

# The report's strings (babel.cfg says where), extracted into a scratch template that updates
# each catalogue: new strings come in untranslated, changed ones fuzzy, removed ones go.
messages: $(STAMP)  ## extract the report's strings into its translations (mnist_basics/report/locale)
	pot=$$(mktemp --suffix=.pot) && trap 'rm -f "$$pot"' EXIT && \
	pybabel --quiet extract --mapping-file=babel.cfg --add-comments=Translators: --add-location=file \
	  --no-wrap --project=mnist-basics --version=0.1.0 --output-file="$$pot" . && \
	pybabel update --input-file="$$pot" --output-dir=mnist_basics/report/locale --no-wrap \
	  --ignore-obsolete --ignore-pot-creation-date

lock:  ## re-pin requirements.txt from pyproject.toml (in a scratch venv)
	rm -rf /tmp/mnist-basics-lock && python3 -m venv /tmp/mnist-basics-lock
	/tmp/mnist-basics-lock/bin/pip install --quiet -e '.[dev]'
	{ head -2 requirements.txt; /tmp/mnist-basics-lock/bin/pip freeze --exclude-editable; } > requirements.txt.new
	mv requirements.txt.new requirements.txt

clean:  ## remove the pipeline's outputs (DVC's cache keeps them)
	rm -rf data/*.tgz data/*.safetensors data/*counts.json models metrics/*.json metrics/*.csv \
	  metrics/mnist reports/index.html reports/accuracy.csv reports/mnist.html \
	  reports/mnist_accuracy.csv logs .snakemake
