# serumrnn: `make demo`, `make test`, `make bench` each create or refresh .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test bench install clean models

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

# Rebuild the shipped model bundles from scratch (data in ~/.cache/serumrnn, then the
# bundle files copied into core/bundles/). Wall time on a 2-core CPU: about 35 minutes
# (about 4 minutes per model; the time budgets make the result depend on machine speed).
DATA := $(HOME)/.cache/serumrnn/data
WORK := $(HOME)/.cache/serumrnn/bundles
SERUMRNN := $(VENV)/bin/serumrnn
models: $(STAMP)
	$(SERUMRNN) generate --group basic --chains-per-combo 24 --seed 0 --out $(DATA)/basic-s0
	$(SERUMRNN) train params --data $(DATA)/basic-s0 --out $(WORK)/basic --size compact --max-minutes 20 --threads 1 --fresh
	$(SERUMRNN) train selector --data $(DATA)/basic-s0 --out $(WORK)/basic --kind all --size compact --max-minutes 12 --threads 1 --fresh
	rm -rf core/bundles/basic && mkdir -p core/bundles/basic
	cp $(WORK)/basic/bundle.json $(WORK)/basic/*.safetensors core/bundles/basic/

clean:
	rm -rf $(VENV) demo-out .pytest_cache .benchmarks
