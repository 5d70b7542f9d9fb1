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
	$(YOLO_VENV)/bin/python -m pytest -q tests/methods/test_yolo.py tests/methods/test_contract.py tests/methods/test_model_dir_security.py -k yolo

# `make test-isa`: the tests that train something, and the demo, under other CPU instruction sets than this
# machine's: each set holds torch's own kernels, oneDNN, MKL, NumPy and OpenBLAS at what such a CPU has (the
# values each switch takes: `benchmarks/isa.py --switches`). ISA_SETS names the sets in order, ISA_SET_<name>
# holds a set's switches; native sets none. Every run first prints what each library runs on; then
# benchmarks/isa_matrix.py tabulates the demos' scores per set with each row's spread (max - min), also in
# cellbench-demo-isa-table.md. The demos go to cellbench-demo-isa-<name>. `make test-isa ISA_STEPS=tests`
# leaves the demo out; ISA_DEMO_ARGS="--methods watershed" runs a short one.
ISA_SETS ?= native avx2 sse4
ISA_SET_native :=
ISA_NPY_AVX512 := AVX512F,AVX512CD,AVX512_KNL,AVX512_KNM,AVX512_SKX,AVX512_CLX,AVX512_CNL,AVX512_ICL
ISA_SET_avx2 := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
	NPY_DISABLE_CPU_FEATURES=$(ISA_NPY_AVX512) OPENBLAS_CORETYPE=Haswell
ISA_SET_sse4 := ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2 \
	NPY_DISABLE_CPU_FEATURES=AVX,F16C,FMA3,AVX2,$(ISA_NPY_AVX512) OPENBLAS_CORETYPE=Nehalem
ISA_TESTS ?= -q -m "not slow" tests/methods/test_contract.py tests/methods/test_checkpoint.py \
	tests/methods/cellseg1/test_train_batch.py tests/runner/test_isa.py
ISA_DEMO_ARGS ?=
ISA_STEPS ?= tests demo

.PHONY: test-isa
test-isa: $(BIN)/cellbench
	$(BIN)/python benchmarks/isa_matrix.py $(foreach s,$(ISA_SETS),--set '$(s)=$(ISA_SET_$(s))') \
		$(if $(filter tests,$(ISA_STEPS)),--pytest='$(ISA_TESTS)') $(if $(filter demo,$(ISA_STEPS)),--demo='$(ISA_DEMO_ARGS)')

clean:
	rm -rf cellbench-demo cellbench-demo-isa-* .pytest_cache
