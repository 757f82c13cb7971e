# Set-up and the two entry points of the README, on one of two configurations, each pinned by
# one file in constraints/ and installed in its own venv (.venv-<STACK>):
#   STACK=tf221  TensorFlow 2.21 + tf_keras, Python 3.12 (else 3.13): the default where it exists
#   STACK=tf214  TensorFlow 2.14 + tensorflow-compression (the conformance reference), Python 3.11
# e.g. `make test`, `make test STACK=tf214`, `make test TESTS=tests/test_coding.py`.

# The interpreter of Python $(1): on PATH, else pyenv's latest $(1); empty if neither runs.
python_of = $(shell for p in python$(1) "env PYENV_VERSION=$$(pyenv latest $(1) 2>/dev/null) python$(1)"; do $$p -c "import sys; print(sys.executable)" 2>/dev/null && break; done)

NEW_PYTHON := $(or $(call python_of,3.12),$(call python_of,3.13))
STACK ?= $(if $(NEW_PYTHON),tf221,tf214)
ifeq ($(STACK),tf221)
  PYTHON ?= $(or $(NEW_PYTHON),$(call python_of,3.11))
  EXTRAS := test,tuning,examples
else ifeq ($(STACK),tf214)
  PYTHON ?= $(call python_of,3.11)
  EXTRAS := test,tuning,examples,reference
else
  $(error STACK must be tf221 or tf214, got '$(STACK)')
endif
ifeq ($(strip $(PYTHON)),)
  $(error no Python for STACK=$(STACK): install Python 3.12 (tf221) or 3.11 (tf214), or set PYTHON)
endif
CONSTRAINTS := constraints/$(STACK).txt
VENV ?= .venv-$(STACK)
BIN := $(VENV)/bin
TESTS ?= tests
SHARED_TFDS := ../shared/datasets/tensorflow_datasets
# Use the prepared TFDS data beside the checkout when it exists; otherwise TFDS downloads.
export TFDS_DATA_DIR ?= $(if $(wildcard $(SHARED_TFDS)),$(abspath $(SHARED_TFDS)),)
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: venv demo test stack
venv: $(VENV)/.installed

$(VENV)/.installed: $(CONSTRAINTS) setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=23"
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	touch $@

# The main job: train a small LilNetX LeNet5 on MNIST, compress, decompress, export, report.
demo: venv
	$(BIN)/python examples/mnist.py --model=lenet5 --epochs=1 --train_examples=20000 --output_dir=runs/demo

test: venv
	$(BIN)/python -m pytest -q -x $(TESTS)

# The configuration the targets above use here (for scripts, e.g. .ci/run).
stack:
	@echo $(STACK)
