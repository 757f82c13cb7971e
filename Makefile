# Set-up and the two entry points of the README. Every version comes from constraints.txt.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
SHARED_TFDS := ../shared/datasets/tensorflow_datasets
# Use the prepared TFDS data beside the checkout when it exists; otherwise TFDS downloads.
export TFDS_DATA_DIR ?= $(if $(wildcard $(SHARED_TFDS)),$(abspath $(SHARED_TFDS)),)
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: venv demo test
venv: $(VENV)/.installed

$(VENV)/.installed: constraints.txt setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=23"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

# The main job: train a small LilNetX LeNet5 on MNIST, compress, decompress, export, report.
demo: venv
	$(BIN)/python examples/mnist.py --model=lenet5 --epochs=1 --train_examples=20000 --output_dir=runs/demo

test: venv
	$(BIN)/python -m pytest -q -x tests
