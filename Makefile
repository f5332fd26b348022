# The README's two commands: `make demo` and `make test`. CI runs `make test` through .ci/run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint format bench bench-quick clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(BIN)/crisisdesk demo

# One pytest-xdist worker per CPU (at most 8), each with its own PostgreSQL database (tests/conftest.py).
test: install
	$(BIN)/pytest -n auto --maxprocesses 8

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python bench/statuspage.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/match.py
	$(BIN)/python bench/impact.py

bench-quick: install
	$(BIN)/python bench/statuspage.py --quick
	$(BIN)/python bench/fanout.py --quick
	$(BIN)/python bench/ingest.py --quick
	$(BIN)/python bench/match.py --quick
	$(BIN)/python bench/impact.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache crisisdesk.db* bench/results
