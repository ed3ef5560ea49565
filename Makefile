# serumrnn: `make demo`, `make test`, `make bench` each create or refresh .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test bench install clean

install: $(STAMP)

# torch==2.13.0 first: it takes the local CPU build; anything unpinned would pull CUDA wheels.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[test,distributed]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/serumrnn demo

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	mkdir -p benchmarks/results
	$(PY) -m pytest -q benchmarks --benchmark-only --benchmark-columns=min,median,max,rounds \
		--benchmark-json=benchmarks/results/latest.json
	$(PY) benchmarks/summary.py benchmarks/results/latest.json

clean:
	rm -rf $(VENV) demo-out .pytest_cache .benchmarks
