# fx developer tasks. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
WS := workspaces/demo

.PHONY: install browser demo test test-fast typecheck protos bench clean shell

install: $(STAMP) browser

# Headless Chromium for the status page test (tests/test_ops_status.py); Debian's package, installed once.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "warning: chromium is missing and could not be installed (needs apt-get as root); the status page test needs it"

# pip prints what it collects and installs (TensorFlow is the long part); setuptools' note that an
# editable install is one is filtered out, it is the point of `-e`.
$(STAMP): setup.cfg pyproject.toml requirements-dp-reference.txt
	@echo "==> [1/3] creating $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "==> [2/3] upgrading pip"
	$(PY) -m pip install --quiet --upgrade pip
	@echo "==> [3/3] installing fx with its tensorflow, torch, ray, dev and plot extras (1-2 minutes; pip lists each package)"
	@# The distribution was called "fx" before (the name of an unrelated PyPI project): drop that old install.
	$(PY) -m pip uninstall --quiet --yes fx 2>/dev/null || true
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --progress-bar off -e '.[tensorflow,torch,ray,dev,plot]'
	@# Test-only reference for the DP accountant tests (pins attrs<24: never one of fx's requirements).
	$(PY) -m pip install --quiet -r requirements-dp-reference.txt
	touch $(STAMP)
	@echo "==> fx is installed in $(VENV)/bin: run \`. $(VENV)/bin/activate\` (or \`make shell\`) to use \`fx\`"

demo: $(STAMP)
	$(PY) scripts/demo.py --workspaces workspaces
	@echo "==> to run fx yourself: \`. $(VENV)/bin/activate\` (or \`make shell\`), then e.g. \`cd $(WS) && fx plan print\`"

# A shell with the virtual environment active (exit it to leave).
shell: $(STAMP)
	@echo "==> fx is on PATH in this shell; type exit to leave"
	@VIRTUAL_ENV="$(CURDIR)/$(VENV)" PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $${SHELL:-/bin/sh} -i

test: $(STAMP) browser typecheck
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
