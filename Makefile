# The two commands: `make certify` (the main job) and `make test` (all tests).
# Both install what they need on a fresh machine: .venv with the package and its dev
# extras, and rabbitmq-server + redis-server from Debian packages when run as root.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: certify test test-all soak explore full images test-containers lint typecheck bench deps system-deps clean

certify: deps
	$(BIN)/celery-chaos certify --profile quick --report chaos-report

test: deps
	$(BIN)/python -m pytest -m "not soak and not explore and not full" $(PYTEST_ARGS)

soak: deps
	$(BIN)/python -m pytest -m soak $(PYTEST_ARGS)

explore: deps
	$(BIN)/python -m pytest -m explore $(PYTEST_ARGS)

full: deps
	$(BIN)/python -m pytest -m full $(PYTEST_ARGS)

lint: deps
	$(BIN)/ruff check harness sample_system tests scenarios benchmarks loadtests

typecheck: deps
	$(BIN)/mypy harness

images: deps
	$(BIN)/python -m harness.images build

test-containers: deps
	$(BIN)/python -m pytest -m containers $(PYTEST_ARGS)

bench: deps
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

deps: system-deps $(STAMP)

system-deps:
	@bash scripts/ensure-system-deps.sh

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) chaos-report .pytest_cache build *.egg-info
