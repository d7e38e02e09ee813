# Three commands do everything on a fresh machine:
#   make demo   -> the whole DAG on the embedded demo config (config.yaml)
#   make run CONFIG=configs/folder.yaml [TARGET=prepare_data]  -> your dataset, no activation needed
#   make test   -> the test suite
# Both create the virtual environment in .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: demo run test venv clean-demo
CONFIG ?= config.yaml
TARGET ?=

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CI's pins: the pair that imports together on the reference machines
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	# the SLURM executor plugin too: the SLURM tests use it (workstation installs leave it out)
	$(BIN)/python -m pip install --quiet -e '.[test,slurm]'
	touch $@

demo: venv
	$(BIN)/im2flow run --configfile config.yaml --cores $(CORES)

run: venv
	$(BIN)/im2flow run --configfile $(CONFIG) --cores $(CORES) $(TARGET)

test: venv
	$(BIN)/python -m pytest -q --durations=10

clean-demo:
	rm -rf results/demo data/demo
