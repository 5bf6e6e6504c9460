# fx developer tasks. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
WS := workspaces/demo

.PHONY: install demo test test-fast typecheck protos bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[tensorflow,dev,plot]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py --workspaces workspaces

test: $(STAMP) typecheck
	$(PY) -m pytest -q tests

typecheck: $(STAMP)
	$(PY) -m mypy --strict fx_cli

test-fast: $(STAMP)
	$(PY) -m pytest -q tests -m "not slow"

protos: $(STAMP)
	$(PY) -m fx_cli.proto.generate

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) workspaces/*/ .pytest_cache
