# Set-up installs into .venv/ by default. To use your own environment instead (say, a
# conda env with detectron2 built from source with CUDA ops), pass its interpreter:
#     make test PYTHON=$(which python)
# An importable torch or detectron2 there is kept as it is.
PYTHON ?= .venv/bin/python

.PHONY: setup test test-slow quickstart

setup:
	bash dev/setup.sh $(PYTHON)

test: setup
	$(PYTHON) -m pytest

test-slow: setup
	$(PYTHON) -m pytest -m slow

quickstart: setup
	$(PYTHON) tools/quickstart.py
