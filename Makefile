# make demo — set everything up and run the demo on embedded defaults
# make test — set everything up and run the tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TESTS  := $(VENV)/.installed-test

.PHONY: install demo test test-fast clean

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

demo: install
	$(BIN)/sensorwatch demo

test: $(TESTS)
	$(BIN)/python -m pytest

test-fast: $(TESTS)
	$(BIN)/python -m pytest -m "not integration"

clean:
	rm -rf $(VENV) .sensorwatch .pytest_cache *.egg-info
