# rnnlm: every target installs what it needs into .venv first, so a fresh clone needs only
# `make demo` (the main job) and `make test`.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
RNNLM  := $(VENV)/bin/rnnlm
STAMP  := $(VENV)/.installed
DEMO   := runs/demo

.PHONY: install test demo bench lint clean

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

bench: $(STAMP)
	$(PY) scripts/bench.py

lint: $(STAMP)
	$(PY) -m compileall -q rnnlm_cli tests scripts
	$(PY) -m pyflakes rnnlm_cli tests scripts 2>/dev/null || true

clean:
	rm -rf $(VENV) runs build dist *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
