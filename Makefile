# glee-serve developer entry points. `make test` is what CI runs (see .ci/run).
PY ?= python

.PHONY: test lint serve format

test:
	$(PY) -m pytest -q

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format:
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

serve:
	$(PY) -m glee serve
