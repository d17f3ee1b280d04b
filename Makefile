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

# Mutation testing (outside CI; about an hour on 2 cores): mutmut mutates solver/costmodel.py,
# solver/verify.py, solver/placement.py, solver/planner/model.py and service/servicer.py
# ([tool.mutmut] in pyproject.toml) and runs each mutant against its own module's tests
# (tests/test_mut_selection.py), then prints the score per module: killed / (killed + survived),
# timeouts counted as killed, mutants no selected test reaches counted as survived. It starts
# from a fresh mutants/ (git-ignored) so no stale copy of a changed file is tested; `mutmut
# results` and `mutmut show NAME` read it afterwards. docs/testing.md has the last scores and the
# survivors judged equivalent.
MUTATION := $(VENV)/.installed-mutation
MUTATION_JOBS ?= 2
.PHONY: mutation

$(MUTATION): pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[dev,mutation]"
	touch $(MUTATION)

mutation: $(MUTATION)
	rm -rf mutants
	$(BIN)/mutmut run --max-children $(MUTATION_JOBS)
	@$(BIN)/mutmut results --all true | awk -F': ' ' \
		{ m = $$1; sub(/^[ \t]+/, "", m); sub(/\.[^.]*$$/, "", m); seen[m] = 1; \
		  if ($$2 == "killed" || $$2 == "timeout") k[m]++; else s[m]++; \
		  if ($$2 == "timeout") t[m]++ } \
		END { printf "\n%-22s %7s %9s %9s %7s\n", "module", "killed", "timeouts", \
		      "survived", "score"; \
		      for (m in seen) printf "%-22s %7d %9d %9d %6.1f%%\n", m, k[m], t[m], s[m], \
		      100 * k[m] / (k[m] + s[m]) }'
