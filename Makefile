# moeplan: `make run` solves the default instance, `make test` runs the whole suite.
# Both create .venv on a fresh machine: `make run` installs moeplan with its runtime
# dependencies only; `make test` (and lint, bench, protos) also the dev extra (test tools, plots,
# Ray). Each install is redone when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
INSTANCE ?= instances/seeds/000-qwen3-235b.yaml
# The default instance is a hand-written seed whose targets no plan meets (INFEASIBLE, with the
# explanation); the same model on real H100s then shows a plan, proved optimal.
PLAN_INSTANCE ?= instances/models/qwen3-235b-a22b-fp8-h100.yaml

.PHONY: run test lint bench bench-docs protos clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $(RUNTIME)

$(DEV): pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[dev]"
	touch $(DEV)

# Exit code 1 means "no plan" (INFEASIBLE, with its explanation): an answer, not a failure.
run: $(RUNTIME)
	$(BIN)/moeplan solve $(INSTANCE) || [ $$? -eq 1 ]
	@echo
	$(BIN)/moeplan solve $(PLAN_INSTANCE) || [ $$? -eq 1 ]

test: $(DEV)
	$(BIN)/python -m pytest -q

lint: $(DEV)
	$(BIN)/ruff check solver service moeplan tests benchmarks

# Batch-solve every instance with the baselines, a report and plots (outputs are not committed).
bench: $(DEV)
	$(BIN)/moeplan bench instances --overwrite --out bench-results.jsonl --report md --plots bench-plots

# Regenerate docs/benchmarks.md and its figures (run on an otherwise idle machine).
bench-docs: $(DEV)
	mkdir -p benchmarks/results docs/img
	$(BIN)/python benchmarks/make_sweep.py
	$(BIN)/python benchmarks/solve_times.py --docs docs/benchmarks.md --json benchmarks/results/solve_times.json
	$(BIN)/moeplan bench instances --workers 1 --solver-workers 2 --overwrite \
		--out benchmarks/results/bench.jsonl --plots docs/img \
		--report md --report-out docs/benchmarks.md
	$(BIN)/moeplan plot instances/sweep/load-powerlaw-a1.01-r00-medium-e064-h100.yaml --out docs/img
	$(BIN)/moeplan plot instances/models/qwen3-235b-h100-powerlaw.yaml --out docs/img

# Regenerate the checked-in gRPC stubs from protos/ (tests fail when the two drift apart).
protos: $(DEV)
	$(BIN)/python -m grpc_tools.protoc -Iservice/_gen=protos --python_out=. --pyi_out=. \
		--grpc_python_out=. protos/moeplan/v1/planner.proto

clean:
	rm -rf $(VENV) build *.egg-info
