# Two commands do everything on a fresh machine:
#   make demo   -> the whole DAG on the embedded demo config (config.yaml)
#   make test   -> the test suite
# Both create the virtual environment in .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: demo test venv clean-demo

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CI's pins: the pair that imports together on the reference machines
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: venv
	$(BIN)/snakemake --cores $(CORES) --configfile config.yaml

test: venv
	$(BIN)/python -m pytest -q --durations=10

clean-demo:
	rm -rf results/demo data/demo
