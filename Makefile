# The two README commands: `make demo` (main job) and `make test` (test suite).
# Both create the virtual environment in .venv on first use; nothing else is needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow clean

$(BIN)/cellbench: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

demo: $(BIN)/cellbench
	$(BIN)/cellbench demo --out cellbench-demo

test: $(BIN)/cellbench
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(BIN)/cellbench
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf cellbench-demo .pytest_cache
