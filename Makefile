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
# about its two budgets plus ~1-2 minutes of data generation (2-core CPU).
# `make models` builds every group, `make models-all` just one.
DATA := $(HOME)/.cache/serumrnn/data
WORK := $(HOME)/.cache/serumrnn/bundles
SERUMRNN := $(VENV)/bin/serumrnn
MODEL_GROUPS := basic advanced modulating all
PARAM_MINUTES_basic := 20
SELECTOR_MINUTES_basic := 12
RNN_MINUTES_basic := 20
PARAM_MINUTES_advanced := 12
SELECTOR_MINUTES_advanced := 8
# A second, longer rnn pass: the first, sharing 8 minutes with ni and cnn on a busy
# machine, stopped after a few epochs (it early-stops within 20 minutes on its own).
RNN_MINUTES_advanced := 20
PARAM_MINUTES_modulating := 12
SELECTOR_MINUTES_modulating := 8
RNN_MINUTES_modulating := 20
PARAM_MINUTES_all := 24
SELECTOR_MINUTES_all := 14

models: $(addprefix models-,$(MODEL_GROUPS))

models-%: $(STAMP)
	$(SERUMRNN) generate --group $* --chains-per-combo 24 --seed 0 --out $(DATA)/$*-s0
	$(SERUMRNN) train params --data $(DATA)/$*-s0 --out $(WORK)/$* --size compact \
		--max-minutes $(PARAM_MINUTES_$*) --threads 1 --fresh
	$(SERUMRNN) train selector --data $(DATA)/$*-s0 --out $(WORK)/$* --kind all --size compact \
		--max-minutes $(SELECTOR_MINUTES_$*) --threads 1 --fresh
	$(if $(RNN_MINUTES_$*),$(SERUMRNN) train selector --data $(DATA)/$*-s0 --out $(WORK)/$* --kind rnn \
		--size compact --max-minutes $(RNN_MINUTES_$*) --threads 1 --fresh)
	rm -rf core/bundles/$* && mkdir -p core/bundles/$*
	cp $(WORK)/$*/bundle.json $(WORK)/$*/*.safetensors core/bundles/$*/

clean:
	rm -rf $(VENV) demo-out .pytest_cache .benchmarks
