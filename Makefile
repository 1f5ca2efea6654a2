# rnnlm: every target installs what it needs into .venv first, so a fresh clone needs only
# `make demo` (the main job) and `make test`.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
RNNLM  := $(VENV)/bin/rnnlm
STAMP  := $(VENV)/.installed
DEMO   := runs/demo

.PHONY: install test demo bench lint clean probe probe-horizons

install: $(STAMP)

# re-installs only when the package metadata changes (editable install: code changes need nothing);
# the plot extra (matplotlib) is installed too, so `--plot FILE.png` and its tests work here
$(STAMP): setup.cfg pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,plot]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

# the main job on the project's own corpus: prepare, train, evaluate, sample, check, diagnose
demo: $(STAMP)
	$(RNNLM) preprocess --config configs/tiny.yaml --force
	$(RNNLM) train --config configs/tiny.yaml --force
	$(RNNLM) evaluate --checkpoint $(DEMO)/tanh/best.npz --split test
	$(RNNLM) generate --checkpoint $(DEMO)/tanh/best.npz --n 3 --prime "the man"
	$(RNNLM) gradcheck --all

# long-range agreement (rnnlm probe): six models on the agreement corpus, accuracy by distance side
# by side, then each model's gradient horizon next to its long-distance accuracy (results/probe.md)
PROBE_MODELS := tanh irnn gru lstm tanh-k5 tanh-k35
PROBE_RUNS   := runs/probe
PROBE_CKS    := $(foreach m,$(PROBE_MODELS),--checkpoint $(PROBE_RUNS)/$(m)/best.npz)

# one BLAS thread: these models are small, and threaded BLAS on a busy 2-core machine ran 10-20x slower
probe probe-horizons: export OMP_NUM_THREADS := 1

probe: $(STAMP)
	@for m in $(PROBE_MODELS); do \
	  echo "training $$m (configs/probe/$$m.yaml)" >&2; \
	  $(RNNLM) train --config configs/probe/$$m.yaml --force --quiet > /dev/null || exit 1; \
	done
	$(RNNLM) probe $(PROBE_CKS) --format json > $(PROBE_RUNS)/probe.json
	$(RNNLM) probe $(PROBE_CKS)
	@$(MAKE) --no-print-directory probe-horizons

# reads the runs of `make probe` (does not train)
probe-horizons: $(STAMP)
	@for m in $(PROBE_MODELS); do \
	  $(RNNLM) diagnose-gradients --checkpoint $(PROBE_RUNS)/$$m/best.npz --format json --quiet \
	    > $(PROBE_RUNS)/$$m/diagnose.json || exit 1; \
	done
	$(PY) -m rnnlm_cli.probe $(PROBE_RUNS)/probe.json $(foreach m,$(PROBE_MODELS),$(PROBE_RUNS)/$(m)/diagnose.json)

# throughput table (docs/performance.md); e.g. make bench BENCH_ARGS="--quick" or "--time-to-quality"
bench: $(STAMP)
	$(PY) scripts/bench.py $(BENCH_ARGS)

lint: $(STAMP)
	$(PY) -m compileall -q rnnlm_cli tests scripts
	$(PY) -m pyflakes rnnlm_cli tests scripts 2>/dev/null || true

clean:
	rm -rf $(VENV) runs build dist *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
