# Two commands for a newcomer: `make demo` and `make test`. Both create the virtual environment.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

# Use the local PostgreSQL for tests when it answers and DATABASE_URL is not set.
PG_PROBE := import socket; s = socket.socket(); s.settimeout(0.5); print("postgres://postgres@127.0.0.1:5432/controlplane" if s.connect_ex(("127.0.0.1", 5432)) == 0 else "")

.PHONY: venv demo test lint typecheck pytest migrations-check clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: this takes the CPU wheel from local disk (any other request pulls CUDA).
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py demo
	$(PY) manage.py demo_jobs
	$(PY) manage.py demo_billing

lint: venv
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy licensing codec_engine platform benchmarks

migrations-check: venv
	$(PY) manage.py makemigrations --check --dry-run

pytest: venv
	DATABASE_URL="$${DATABASE_URL:-$$($(PY) -c '$(PG_PROBE)')}" $(VENV)/bin/pytest $(PYTEST_ARGS)

test: lint typecheck migrations-check pytest

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
