# The two README commands: `make demo` (main job) and `make test` (test suite).
# Both create the virtual environment in .venv on first use; nothing else is needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow test-strict test-yolo clean

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

# The fast suite with warnings as errors, then with asserts off (python -O; PYTHONOPTIMIZE reaches the `cellbench`
# processes the tests start): no warning that cellbench causes, no assert in library code. Twice `make test`'s time.
test-strict: $(BIN)/cellbench
	PYTHONWARNINGS=error $(BIN)/python -m pytest -q -m "not slow"
	PYTHONOPTIMIZE=1 $(BIN)/python -O -m pytest -q -m "not slow"

# The `yolo` method (Ultralytics, AGPL-3.0) in its own environment: the extra is kept out of .venv,
# [dev] and [all]. Same constraints as .venv (torch and the rest resolve to its versions), plus
# constraints-yolo.txt for what Ultralytics brings; [demo] (stardist's DSB2018 image, no TensorFlow) lets
# benchmarks/dsb_half_split.py --methods yolo run in it.
YOLO_VENV ?= .venv-yolo

$(YOLO_VENV)/.installed: pyproject.toml constraints.txt constraints-yolo.txt
	$(PYTHON) -m venv $(YOLO_VENV)
	$(YOLO_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(YOLO_VENV)/bin/python -m pip install --quiet -c constraints.txt -c constraints-yolo.txt -e '.[yolo,demo]' pytest
	touch $@

test-yolo: $(YOLO_VENV)/.installed
	$(YOLO_VENV)/bin/python -m pytest -q tests/methods/test_yolo.py tests/methods/test_contract.py -k yolo

clean:
	rm -rf cellbench-demo .pytest_cache
