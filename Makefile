# serumrnn: `make demo`, `make test`, `make bench` each create or refresh .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test bench install clean models linux-plugins

install: $(STAMP)

# torch==2.13.0 first: it takes the local CPU build; anything unpinned would pull CUDA wheels.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[test,distributed,vst]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/serumrnn demo

test: $(STAMP) linux-plugins
	$(PY) -m pytest -q tests

# The linux-vst rack's real plugins (Debian/Ubuntu packages), installed when we are root
# and have apt-get; elsewhere (or offline) their tests skip, except under CI=1.
LINUX_VST_PACKAGES := zynaddsubfx-vst lsp-plugins-vst dragonfly-reverb-vst
linux-plugins:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && ! dpkg -s $(LINUX_VST_PACKAGES) >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(LINUX_VST_PACKAGES) >/dev/null) \
			|| echo "Could not install $(LINUX_VST_PACKAGES); the linux-vst rack tests will skip."; \
	fi

bench: $(STAMP)
	mkdir -p benchmarks/results
	$(PY) -m pytest -q benchmarks --benchmark-only --benchmark-columns=min,median,max,rounds \
		--benchmark-json=benchmarks/results/latest.json
	$(PY) benchmarks/summary.py benchmarks/results/latest.json

# Rebuild the shipped model bundles from scratch: data in ~/.cache/serumrnn/data (N=24
# chains per preset and effect subset, seed 0), compact models trained with one torch
# thread under a time budget per command, bundle files copied into core/bundles/<group>.
# The budgets make the result depend on the machine's speed; each group's wall time is
# at most the sum of its budgets plus ~1-2 minutes of data generation (2-core CPU).
# `make models` builds every group, `make models-all` just one.
DATA := $(HOME)/.cache/serumrnn/data
WORK := $(HOME)/.cache/serumrnn/bundles
SERUMRNN := $(VENV)/bin/serumrnn
MODEL_GROUPS := basic advanced modulating all
PARAM_MINUTES_basic := 20
SELECTOR_MINUTES_basic := 12
PARAM_MINUTES_advanced := 12
SELECTOR_MINUTES_advanced := 8
PARAM_MINUTES_modulating := 12
SELECTOR_MINUTES_modulating := 8
PARAM_MINUTES_all := 50
SELECTOR_MINUTES_all := 25
# Second, longer passes (task:model:minutes), run after the first: the first passes ran
# on a busy machine and stopped after a few epochs; these early-stop on their own.
EXTRA_PASSES_basic := selector:rnn:20
EXTRA_PASSES_advanced := selector:rnn:20 params:all:25
EXTRA_PASSES_modulating := selector:rnn:20 params:eq:12 params:distortion:6 params:phaser:6

models: $(addprefix models-,$(MODEL_GROUPS))

models-%: $(STAMP)
	$(SERUMRNN) generate --group $* --chains-per-combo 24 --seed 0 --out $(DATA)/$*-s0
	$(SERUMRNN) train params --data $(DATA)/$*-s0 --out $(WORK)/$* --size compact \
		--max-minutes $(PARAM_MINUTES_$*) --threads 1 --fresh
	$(SERUMRNN) train selector --data $(DATA)/$*-s0 --out $(WORK)/$* --kind all --size compact \
		--max-minutes $(SELECTOR_MINUTES_$*) --threads 1 --fresh
	for pass in $(EXTRA_PASSES_$*); do \
		set -- $$(echo $$pass | tr : ' '); \
		if [ $$1 = params ]; then which=--effect; else which=--kind; fi; \
		$(SERUMRNN) train $$1 --data $(DATA)/$*-s0 --out $(WORK)/$* $$which $$2 --size compact \
			--max-minutes $$3 --threads 1 --fresh || exit 1; \
	done
	rm -rf core/bundles/$* && mkdir -p core/bundles/$*
	cp $(WORK)/$*/bundle.json $(WORK)/$*/*.safetensors core/bundles/$*/

clean:
	rm -rf $(VENV) demo-out .pytest_cache .benchmarks
