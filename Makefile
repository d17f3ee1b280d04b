# moeplan: `make run` solves the default instance, `make test` runs the whole suite.
# Both create .venv and install the project (with its test dependencies) on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
INSTANCE ?= instances/seeds/000-qwen3-235b.yaml

.PHONY: run test lint bench bench-docs protos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Exit code 1 means "no plan" (INFEASIBLE, with its explanation): an answer, not a failure.
run: $(STAMP)
	$(BIN)/moeplan solve $(INSTANCE) || [ $$? -eq 1 ]

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check solver service moeplan tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
