# One target per workflow. `make run` and `make test` set up everything they need.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEVICE ?= dev1

.PHONY: run test lint size heap setup system-deps sim clean flash deploy repl bench

run: $(STAMP)
	@$(PYTHON) tools/system_deps.py --for run
	$(VENV)/bin/wisp run

# Two processes, a test file each at a time (a file's tests share its broker, browser and order):
# most tests wait on brokers, devices and timeouts, so two halve the time even on two cores.
# TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	@$(PYTHON) tools/system_deps.py --for test
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Style and likely bugs (ruff, configured in pyproject.toml); the formatter is not gated.
lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The firmware's .mpy total for the ESP32 against the limit in pyproject.toml ([tool.wisp]).
size: $(STAMP)
	$(PY) -m tools.fwsize

# The ESP32 heap ratchet: the full session on a 32-bit MicroPython build within the heap limits in
# pyproject.toml ([tool.wisp]); says so and passes when those builds are not on this machine.
heap: $(STAMP)
	@$(PYTHON) tools/system_deps.py --for test
	$(PY) bench/heap_ratchet.py

setup: $(STAMP)

# Benchmarks print their figures and write them into docs/benchmarks.md (not part of `make test`).
bench: $(STAMP)
	@$(PYTHON) tools/system_deps.py --for test
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(PY) bench/ask_latency.py
	$(PY) bench/cli_ask.py
	$(PY) bench/request_size.py
	$(PY) bench/action_latency.py
	$(PY) bench/v1_concurrency.py
	$(PY) bench/device_footprint.py
	$(PY) bench/heap_days.py
	$(PY) bench/fuzz.py
	$(PY) bench/lfs_power_cut.py
	$(PY) bench/phrases.py
	$(PY) bench/bridge_mqtt.py
	$(PY) bench/bridge_failover.py
	$(PY) bench/bridge_vs_litellm.py
	$(PY) bench/fleet.py
	$(PY) bench/long_outage.py --minutes 3
	$(PY) bench/soak.py --minutes 30
	$(PY) bench/fleet_soak.py
	$(PY) bench/first_evening.py
	$(PY) bench/ota.py --devices 100

system-deps:
	@$(PYTHON) tools/system_deps.py --for test

sim: $(STAMP)
	$(VENV)/bin/wisp sim --id $(DEVICE)

# Boards on USB (docs/tools.md): make flash PORT=/dev/ttyUSB0 FW=ESP32_GENERIC-v1.26.1.bin DEVICE=dev1
PORT   ?= /dev/ttyUSB0
FW     ?=
# Pass --device to deploy only when DEVICE was given: the board keeps its config.json otherwise.
DEVICE_FLAG = $(if $(filter command line environment,$(origin DEVICE)),--device $(DEVICE),)

flash: $(STAMP)
	@test -n "$(FW)" || { echo "make flash needs FW=<MicroPython .bin from micropython.org/download>"; exit 2; }
	$(VENV)/bin/wisp flash --port $(PORT) --firmware $(FW) --device $(DEVICE)

deploy: $(STAMP)
	$(VENV)/bin/wisp deploy --port $(PORT) $(DEVICE_FLAG)

repl: $(STAMP)
	$(VENV)/bin/wisp repl --port $(PORT)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

clean:
	rm -rf $(VENV) .wisp build *.egg-info
