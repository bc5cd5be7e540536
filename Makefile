# The two commands a newcomer needs: `make demo` and `make test`. Both install into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU machines without CUDA: these builds lie on this project's CI disk. GPU users may
# instead `pip install -e ".[dev,app,onnx]"` into an environment that already has their torch build.
# The app extra (Gradio) and playwright let the test suite drive `splitmatch app` in a browser;
# the onnx extra lets it export a model and run the file with onnxruntime (tests/export/test_export_onnx.py).
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test lint bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e ".[dev,app,onnx]"
	touch $@

demo: install
	$(VENV)/bin/splitmatch demo --out demo_out

# Two test processes (pytest-xdist): the suite's subprocesses and single-threaded steps keep both cores busy.
test: install
	$(PY) -m pytest -q -n 2

lint: install
	$(VENV)/bin/ruff check splitmatch tests benchmarks
	$(VENV)/bin/ruff format --check splitmatch tests benchmarks
