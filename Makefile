# Set-up installs into .venv/ by default. To use your own environment instead (say, a
# conda env with detectron2 built from source with CUDA ops), pass its interpreter:
#     make test PYTHON=$(which python)
# An importable torch or detectron2 there is kept as it is. DETECTRON2_SOURCE (a detectron2
# checkout, a source archive, a pip URL, or `pypi` for 0.6) picks where detectron2 is built
# from when set-up installs it; see dev/build_detectron2.py.
PYTHON ?= .venv/bin/python
export DETECTRON2_SOURCE
# make test TESTS="tests/layers tests/modeling": only these test folders or files.
TESTS ?=

# make test-detectron2-main [DETECTRON2_SOURCE=path|url]: the whole suite against a detectron2
# built with its C++ ops from DETECTRON2_SOURCE (default: detectron2's GitHub main), in its own venv.
MAIN_PYTHON ?= .venv-detectron2-main/bin/python
MAIN_SOURCE = $(or $(DETECTRON2_SOURCE),git+https://github.com/facebookresearch/detectron2.git)

.PHONY: setup test test-slow test-reproduction lint quickstart test-detectron2-main

setup:
	bash dev/setup.sh $(PYTHON)

test: setup
	$(PYTHON) -m pytest $(TESTS)

test-slow: setup
	$(PYTHON) -m pytest -m slow $(TESTS)

# Re-train the committed quickstart and compare weights and AP (about 17 min on 2 cores).
test-reproduction: setup
	$(PYTHON) -m pytest -m reproduction $(TESTS)

# ruff: lint, import order and format (settings in pyproject.toml); clang-format for the
# C++ kernel (.clang-format).
lint: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -c "import clang_format; clang_format.clang_format()" --dry-run --Werror pasa_det/layers/csrc/*.cpp

quickstart: setup
	$(PYTHON) tools/quickstart.py

test-detectron2-main:
	$(MAKE) test test-slow PYTHON=$(MAIN_PYTHON) DETECTRON2_SOURCE=$(MAIN_SOURCE)
