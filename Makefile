# Two commands for a fresh machine with Python 3.11+: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo demo-asgi test lint typecheck layers pytest test-django61 docs conformance conformance-ci bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)  ## Serve example/ on http://127.0.0.1:8000 (echo and lowercase pages)
	$(BIN)/python example/manage.py runserver 127.0.0.1:8000

demo-asgi: $(STAMP)  ## The same demo under uvicorn (ASGI) on http://127.0.0.1:8000
	$(BIN)/uvicorn --app-dir example example_project.asgi:application --host 127.0.0.1 --port 8000

test: lint typecheck layers pytest  ## The whole suite, ruff, mypy --strict and the layer contracts

lint: $(STAMP)
	$(BIN)/ruff check src tests example
	$(BIN)/ruff format --check src tests example

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

# Two workers: most tests wait on servers they started, so two share two cores well.
PYTEST_WORKERS ?= 2

pytest: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS)

# pyenv's shims only answer for the selected version; put 3.13's own bin/ first on PATH.
PY313_BIN := $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.13*/bin))

test-django61: $(STAMP)  ## The suite on Python 3.13 with Django 6.1 (needs python3.13)
	PATH="$(if $(PY313_BIN),$(PY313_BIN):)$$PATH" $(BIN)/nox --session "tests(python='3.13', django='6.1')"

docs: $(STAMP)  ## The HTML documentation in docs/_build/html (Sphinx; warnings are errors)
	$(BIN)/python -m pip install --quiet -r docs/requirements.txt
	$(BIN)/python -m sphinx -W --keep-going -n -b html docs docs/_build/html

conformance: $(STAMP)  ## Autobahn|Testsuite, all 517 cases, on runserver, gunicorn and uvicorn (~35 min; needs Python 2.7 and gcc)
	$(BIN)/python conformance/run.py --full

conformance-ci: $(STAMP)  ## The Autobahn subset CI runs (docs/conformance.md; about 1.5 min)
	$(BIN)/python conformance/run.py --subset

soak: $(STAMP)  ## 20,000 connections, 500 chatting at once for 10 min per server; nothing lost or leaked (~50 min; SOAK_ARGS="--target uvicorn-async --duration 60")
	$(BIN)/python -m tests.soak --report soak-report.md $(SOAK_ARGS)

# The benchmarks have their own venv: the alternatives (Channels, Starlette, Flask-Sock...)
# are never dependencies of the library. Python 3.11, as the figures in bench/ were taken.
BENCH_PYTHON ?= python3.11
BENCH_VENV := bench/.venv
BENCH_STAMP := $(BENCH_VENV)/.installed-stamp

$(BENCH_STAMP): bench/requirements.txt pyproject.toml
	$(BENCH_PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -e . -r bench/requirements.txt
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)  ## Us against Channels, Starlette, Flask-Sock, websockets: bench/results/bench.{md,json,png} (~15 min; Redis at 127.0.0.1:6379)
	$(BENCH_VENV)/bin/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .nox .mypy_cache .ruff_cache .pytest_cache
