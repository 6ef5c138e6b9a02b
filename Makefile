# The README's two commands are `make demo` and `make test`; each installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SERVICES := $(BIN)/python deploy/local/services.py

.PHONY: demo test bench bench-ab bench-scale image lint format services services-down prereqs clean help

help:
	@echo "make demo           run the main job: services, drainers, producers, verify in Neo4j"
	@echo "make test           the whole suite against real Redis and Neo4j"
	@echo "make bench          every way of writing, side by side (examples/benchmark/)"
	@echo "make bench-ab       the working tree against BASE (default HEAD), in interleaved pairs"
	@echo "make bench-scale    100,000 sessions, 1/2/4 drainers, single Redis vs cluster"
	@echo "make image          build the drainer image (podman or docker; deploy/local/images.py)"
	@echo "make lint           ruff and mypy"
	@echo "make services       start local Redis and Neo4j, print export lines"
	@echo "make services-down  stop them"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "cypherstream needs Python >= 3.10"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

prereqs: $(STAMP)
	@$(SERVICES) check

demo: prereqs
	$(BIN)/python examples/agent-fleet/fleet.py

test: prereqs
	$(BIN)/pytest -ra

BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: prereqs $(BENCH_STAMP)
	$(BIN)/python examples/benchmark/bench.py $(BENCH_ARGS)

BASE ?= HEAD
bench-ab: prereqs $(BENCH_STAMP)
	$(BIN)/python examples/benchmark/ab.py --base $(BASE) $(BENCH_ARGS)

bench-scale: prereqs $(BENCH_STAMP)
	$(BIN)/python examples/benchmark/many_sessions.py $(BENCH_ARGS)

# Podman where installed (from Debian when root), else docker; builds a stand-in base
# image from the Debian mirror where no registry answers.
image:
	@$(PYTHON) deploy/local/images.py drainer

SOURCES := cypherstream producer drainer shared tests examples deploy
# mypy cannot follow the editable install's mapping of producer/, drainer/ and shared/
# into `cypherstream`, so it reads the package through a view of symbolic links.
LINT_VIEW := $(VENV)/lint-view/cypherstream

lint: $(STAMP)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	@mkdir -p $(LINT_VIEW)
	@for part in producer drainer shared; do ln -sfn $(CURDIR)/$$part $(LINT_VIEW)/$$part; done
	@for file in $$(ls cypherstream); do ln -sfn $(CURDIR)/cypherstream/$$file $(LINT_VIEW)/$$file; done
	cd $(LINT_VIEW)/.. && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml
	cd deploy/local && $(CURDIR)/$(BIN)/mypy --strict --ignore-missing-imports services.py images.py

format: $(STAMP)
	$(BIN)/ruff format $(SOURCES)
	$(BIN)/ruff check --fix $(SOURCES)

services: prereqs
	@$(SERVICES) up

services-down:
	@$(PYTHON) deploy/local/services.py down

clean: services-down
	rm -rf $(VENV) .local deploy/local/neo4j/target deploy/local/neo4j/target-* .pytest_cache .mypy_cache .ruff_cache .hypothesis
