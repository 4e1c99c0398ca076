# The two quick-start commands: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgeprune-installed

.PHONY: demo test lint setup bench clean

$(STAMP): setup.py constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# constraints.txt pins torch==2.13.0; CPU or CUDA build depends on pip's index (README: Install)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,onnxruntime,openvino,opencv,ray]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgeprune demo $(DEMO_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP)
	$(VENV)/bin/ruff check .
	# the torch-free side runs on the device's Python: JetPack 5 ships 3.8
	$(VENV)/bin/vermin -q -t=3.8- --no-tips --violations runtimes devices edgeprune/fileio.py edgeprune/errors.py
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build dist *.egg-info
