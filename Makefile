# One target per workflow. `make run` and `make test` set up everything they need.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEVICE ?= dev1

.PHONY: run test setup system-deps sim ask clean

run: $(STAMP)
	@$(PYTHON) tools/system_deps.py --for run
	$(VENV)/bin/wisp run

test: $(STAMP)
	@$(PYTHON) tools/system_deps.py --for test
	$(PY) -m pytest -q

setup: $(STAMP)

system-deps:
	@$(PYTHON) tools/system_deps.py --for test

sim: $(STAMP)
	$(VENV)/bin/wisp sim --id $(DEVICE)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

clean:
	rm -rf $(VENV) .wisp build *.egg-info
