# make demo — set everything up and run the demo on embedded defaults
# make test — set everything up and run the tests
# make bench — the performance benchmarks, each writing benchmarks/results/*.json (about 25 min on 2 cores)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TESTS  := $(VENV)/.installed-test
BENCH  := $(VENV)/.installed-bench

# Root installs system packages itself; anyone else through sudo, if it asks no password.
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)

.PHONY: install demo test test-fast bench browser clean

install: $(STAMP)

# The service and its jobs.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

# Plus what the tests need, and Airflow for the retraining DAGs.
$(TESTS): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,airflow]'
	touch $(TESTS)

# Plus the profiler and the optional librdkafka client the benchmarks compare.
$(BENCH): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench,fast]'
	touch $(BENCH)

# The browser of the UI tests: Debian's chromium and its matching driver, installed when missing.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { echo "installing chromium and chromium-driver (apt-get) for the browser tests"; \
	    $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	      --no-install-recommends chromium chromium-driver >/dev/null; } || \
	  echo "note: chromium could not be installed: the browser tests will be skipped"

demo: install
	$(BIN)/sensorwatch demo

test: $(TESTS) browser
	$(BIN)/python -m pytest

test-fast: $(TESTS)
	$(BIN)/python -m pytest -m "not integration"

# Throughput first: latency runs at half its measured rate, naive compares with it.
bench: $(BENCH)
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/naive.py
	$(BIN)/python benchmarks/archive.py
	$(BIN)/python benchmarks/train_speed.py

clean:
	rm -rf $(VENV) .sensorwatch .pytest_cache *.egg-info
