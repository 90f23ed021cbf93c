# Fresh machine, Python 3.11: `make demo` trains the default preset; `make test` runs the suite.
# Every install goes through constraints.txt, the lock (`make lock` regenerates it on purpose).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
LOCK := constraints.txt
PIP_PIN := $(shell sed -n 's/^\# \(pip==[0-9.]*\)$$/\1/p' $(LOCK))
LATEST := .venv-latest

.PHONY: demo test test-fast test-latest lint lock bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q '$(PIP_PIN)'

$(STAMP): $(BIN)/python pyproject.toml $(LOCK)
	$(BIN)/pip install -q -c $(LOCK) torch==2.13.0
	$(BIN)/pip install -q -c $(LOCK) -e '.[test]'
	touch $(STAMP)

# The demo (digits-lenet with the doctor and the HTML report) needs torch and matplotlib only:
# not the test extras (transformers, onnx, selenium, ... ~1.8 GB). TensorBoard is skipped when absent.
$(DEMO_STAMP): $(BIN)/python pyproject.toml $(LOCK)
	$(BIN)/pip install -q -c $(LOCK) torch==2.13.0
	$(BIN)/pip install -q -c $(LOCK) -e '.[report]'
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/liandan demo

test: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/python -m pytest -p no:cacheprovider

# The fast tier: everything not marked slow (under 3 minutes on 2 cores).
test-fast: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/python -m pytest -p no:cacheprovider -m "not slow"

# The newest release of every dependency (torch stays the CPU build on disk), in its own venv.
# Not part of CI: run it before a release or a `make lock`, to see what the next lock brings.
test-latest:
	rm -rf $(LATEST)
	$(PY) -m venv $(LATEST)
	$(LATEST)/bin/pip install -q --upgrade pip
	$(LATEST)/bin/pip install -q torch==2.13.0
	# a fresh venv: every other package resolves to its newest release within pyproject's ranges;
	# the installed torch satisfies its range, so it stays the CPU build (no --upgrade, which would
	# pull a CUDA build of a newer torch)
	$(LATEST)/bin/pip install -q -e '.[test]'
	$(LATEST)/bin/pip freeze --exclude-editable > $(LATEST)/versions.txt
	@echo "versions: $(LATEST)/versions.txt"
	$(LATEST)/bin/python -m pytest -p no:cacheprovider

lock:
	PY=$(PY) bash tools/lock.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples

bench: $(STAMP)
	$(BIN)/python bench/trainer_overhead.py

clean:
	rm -rf $(VENV) $(LATEST) runs
