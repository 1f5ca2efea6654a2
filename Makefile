# rnnlm: every target installs what it needs into .venv first, so a fresh clone needs only
# `make demo` (the main job) and `make test`.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
RNNLM  := $(VENV)/bin/rnnlm
STAMP  := $(VENV)/.installed
DEMO   := runs/demo

.PHONY: install test demo diagnose bench lint clean probe probe-horizons docs docs-check longrange ptb-k2

install: $(STAMP)

# re-installs only when the package metadata changes (editable install: code changes need nothing);
# the plot extra (matplotlib) is installed too, so `--plot FILE.png` and its tests work here
$(STAMP): setup.cfg pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,plot,tune,tensorboard]'
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
	$(RNNLM) diagnose-gradients --config configs/diagnose/tanh.yaml --config configs/diagnose/irnn.yaml \
	  --config configs/diagnose/gru.yaml --config configs/diagnose/lstm.yaml

# the figures of docs/diagnostics.md: lag profiles of four fresh models (tanh, IRNN, GRU, LSTM) on the
# agreement corpus, and on Penn Treebank when $(PTB) exists (with the layer x lag heat maps of a fresh
# 3-layer tanh RNN and a 3-layer LSTM there); then the demo model trained (2 epochs)
# against its fresh self. Text and JSON in runs/diagnose/, PNGs in docs/ (about a minute).
# diagnose-gradients only reads prepared data, so each corpus is preprocessed first (the four agreement
# configs share configs/tiny.yaml's folder, the four PTB configs configs/ptb-rnn.yaml's).
PTB            := ../shared/corpora/ptb
DIAG_OUT       := runs/diagnose
DIAG_AGREEMENT := $(foreach m,tanh irnn gru lstm,--config configs/diagnose/$(m).yaml)
DIAG_PTB       := $(foreach m,tanh irnn gru lstm,--config configs/diagnose/ptb-$(m).yaml)
DIAG_DEPTH     := --config configs/diagnose/ptb-tanh3.yaml --config configs/diagnose/ptb-lstm3.yaml

diagnose: $(STAMP)
	@mkdir -p $(DIAG_OUT)
	$(RNNLM) preprocess --config configs/tiny.yaml --force --quiet > /dev/null
	$(RNNLM) diagnose-gradients $(DIAG_AGREEMENT) --plot docs/lag_profile_agreement.png > $(DIAG_OUT)/agreement.txt
	$(RNNLM) diagnose-gradients $(DIAG_AGREEMENT) --format json --quiet > $(DIAG_OUT)/agreement.json
	@cat $(DIAG_OUT)/agreement.txt
	@if [ -d $(PTB) ]; then \
	  set -x; \
	  $(RNNLM) preprocess --config configs/diagnose/ptb-tanh.yaml --force --quiet > /dev/null && \
	  $(RNNLM) diagnose-gradients $(DIAG_PTB) --plot docs/lag_profile_ptb.png > $(DIAG_OUT)/ptb.txt && \
	  $(RNNLM) diagnose-gradients $(DIAG_PTB) --format json --quiet > $(DIAG_OUT)/ptb.json && \
	  cat $(DIAG_OUT)/ptb.txt && \
	  $(RNNLM) diagnose-gradients $(DIAG_DEPTH) --plot docs/depth_time_ptb.png > $(DIAG_OUT)/ptb-depth.txt && \
	  $(RNNLM) diagnose-gradients $(DIAG_DEPTH) --format json --quiet > $(DIAG_OUT)/ptb-depth.json && \
	  cat $(DIAG_OUT)/ptb-depth.txt; \
	else \
	  echo "Penn Treebank part skipped: $(PTB) not found (corpora/README.md says how to get it)"; \
	fi
	$(RNNLM) train --config configs/tiny.yaml --set train.out=$(DIAG_OUT)/tiny-trained --force --quiet > /dev/null
	$(RNNLM) diagnose-gradients --checkpoint $(DIAG_OUT)/tiny-trained/best.npz --config configs/diagnose/tanh.yaml \
	  > $(DIAG_OUT)/trained.txt
	$(RNNLM) diagnose-gradients --checkpoint $(DIAG_OUT)/tiny-trained/best.npz --config configs/diagnose/tanh.yaml \
	  --format json --quiet > $(DIAG_OUT)/trained.json
	@head -5 $(DIAG_OUT)/trained.txt

# long-range agreement (rnnlm probe): six models on the agreement corpus, each trained with
# PROBE_SEEDS seeds (runs/probe/MODEL/seedS), probed and reported over seeds (mean and range), then
# each model's gradient horizon over seeds; writes results/probe.json and rewrites the generated
# tables of results/probe.md and README.md from it (scripts/probe_docs.py). The 18 trainings and
# diagnoses run PROBE_JOBS at a time, each process with one BLAS thread.
PROBE_MODELS := tanh irnn gru lstm tanh-k5 tanh-k35
PROBE_SEEDS  := 1 2 3
PROBE_JOBS   ?= 2
PROBE_RUNS   := runs/probe
PROBE_DIRS   := $(foreach m,$(PROBE_MODELS),$(foreach s,$(PROBE_SEEDS),$(PROBE_RUNS)/$(m)/seed$(s)))
PROBE_CKS    := $(PROBE_DIRS:%=%/best.npz)
PROBE_DIAGS  := $(PROBE_DIRS:%=%/diagnose.json)

# one BLAS thread per process: these models are small, and threaded BLAS on a busy 2-core machine ran
# 10-20x slower; the parallelism is across runs instead
probe probe-horizons $(PROBE_CKS) $(PROBE_DIAGS): export OMP_NUM_THREADS := 1
probe probe-horizons $(PROBE_CKS) $(PROBE_DIAGS): export OPENBLAS_NUM_THREADS := 1

probe: $(STAMP)
	$(RNNLM) preprocess --config configs/probe/tanh.yaml --force --quiet > /dev/null
	@$(MAKE) --no-print-directory -j$(PROBE_JOBS) $(PROBE_CKS)
	$(RNNLM) probe --over-seeds $(PROBE_CKS:%=--checkpoint %) --format json > $(PROBE_RUNS)/probe.json
	@$(MAKE) --no-print-directory probe-horizons
	$(PY) scripts/probe_docs.py results/probe.json README.md results/probe.md

# reads the runs of `make probe` (does not train): diagnoses each run, writes results/probe.json
# (the probe result with horizons) and prints the horizon table
probe-horizons: $(STAMP)
	@$(MAKE) --no-print-directory -j$(PROBE_JOBS) $(PROBE_DIAGS)
	$(RNNLM) probe-horizons $(PROBE_RUNS)/probe.json $(PROBE_DIAGS) --format json > results/probe.json
	$(RNNLM) probe-horizons $(PROBE_RUNS)/probe.json $(PROBE_DIAGS)

# one run: runs/probe/MODEL/seedS/best.npz from configs/probe/MODEL.yaml with train.seed=S (always retrained)
$(PROBE_CKS): $(PROBE_RUNS)/%/best.npz: FORCE
	@echo "training $(*D) seed $(patsubst seed%,%,$(*F))" >&2
	@$(RNNLM) train --config configs/probe/$(*D).yaml --set train.seed=$(patsubst seed%,%,$(*F)) \
	  --set train.out=$(PROBE_RUNS)/$* --force --quiet > /dev/null

$(PROBE_DIAGS): $(PROBE_RUNS)/%/diagnose.json: FORCE
	@$(RNNLM) diagnose-gradients --checkpoint $(PROBE_RUNS)/$*/best.npz --format json --quiet > $@.tmp && mv $@.tmp $@

.PHONY: FORCE
FORCE:

# the long-range memory study (rnnlm longrange): configs/longrange.yaml's models x truncations on the copy
# task at each delay and on agreement at each distance, LONGRANGE_JOBS runs at a time (each a process with
# one BLAS thread); a rerun skips the runs that finished (cached by config hash in runs/longrange). Writes
# results/longrange.json, results/longrange.md and docs/longrange.png, then the README's generated tables.
LONGRANGE_JOBS ?= 2

longrange: $(STAMP)
	$(RNNLM) longrange --config configs/longrange.yaml --out runs/longrange -j $(LONGRANGE_JOBS) \
	  --record results/longrange.json --markdown results/longrange.md --plot docs/longrange.png
	$(VENV)/bin/cog -r -I scripts README.md

# fixed truncation (k2 = k1) against train.k2: auto on Penn Treebank, the same budget (configs/ptb-lstm-k2.yaml):
# two records, results/ptb-lstm-k2-fixed.json and results/ptb-lstm-k2-auto.json, then the README's table
ptb-k2: $(STAMP)
	$(RNNLM) preprocess --config configs/ptb-lstm-k2.yaml --quiet > /dev/null
	$(RNNLM) train --config configs/ptb-lstm-k2.yaml --force --quiet --record results/ptb-lstm-k2-fixed.json > /dev/null
	$(RNNLM) train --config configs/ptb-lstm-k2.yaml --set train.k2=auto --set train.out=runs/ptb-lstm-k2-auto \
	  --force --quiet --record results/ptb-lstm-k2-auto.json > /dev/null
	$(VENV)/bin/cog -r -I scripts README.md

# throughput table (docs/performance.md); e.g. make bench BENCH_ARGS="--quick" or "--time-to-quality"
# reference results (model quality): each trains end to end on the standard corpora
# (../shared/corpora) and records results/NAME.json; `make results` renders the README table and
# docs/learning_curves.png from the records
QUALITY := ptb-rnn ptb-lstm ptb-gru shakespeare-char ptb-lstm2
.PHONY: results depth depth-short ablation $(QUALITY)

$(QUALITY): $(STAMP)
	$(RNNLM) train --config configs/$@.yaml --force --record results/$@.json

# depth: configs/ptb-lstm2.yaml (two layers; `make ptb-lstm2`) against the same recipe and budget with
# one layer (results/depth-lstm1.json); the README's depth tables read these records
depth: $(STAMP)
	$(RNNLM) train --config configs/ptb-lstm2.yaml --set model.num_layers=1 \
	  --set train.out=runs/depth/lstm1-650 --force --quiet --record results/depth-lstm1.json

# depth under a short budget: both models trained for 2 epochs with Adam (results/depth-short-lstm*.json)
DEPTH_SHORT := --set train.epochs=2 --set train.optimizer=adam --set train.lr=0.002 --set train.clip_threshold=1.0 \
  --set train.decay_start=3 --set train.lr_factor=0.5 --set evaluate.dynamic_after_training=false
depth-short: $(STAMP)
	$(RNNLM) train --config configs/ptb-lstm2.yaml $(DEPTH_SHORT) \
	  --set train.out=runs/depth-short/lstm2-650 --force --quiet --record results/depth-short-lstm2.json
	$(RNNLM) train --config configs/ptb-lstm2.yaml $(DEPTH_SHORT) --set model.num_layers=1 \
	  --set train.out=runs/depth-short/lstm1-650 --force --quiet --record results/depth-short-lstm1.json

# the regularisers on configs/ptb-lstm2.yaml's recipe at Zaremba's small width (200 units), removed one at a
# time under a short budget and over several seeds: per seed one `rnnlm sweep --ablate`
# (runs/ablation/seed-S; a rerun resumes it), then `rnnlm compare` into results/ablation-seedS.json
ABLATION_EPOCHS ?= 3
ABLATION_JOBS ?= 2
ABLATION_SEEDS ?= 1 2 3
ABLATION_BASE := --set model.hidden_size=200 --set model.embedding_size=200 --set model.embedding_scale=3 \
  --set train.epochs=$(ABLATION_EPOCHS) --set train.eval_every=332 \
  --set model.dropout_locked=true --set model.weight_drop=0.2 --set model.dropout_words=0.1 \
  --set model.ar=2 --set model.tar=1 --set train.average=nt --set train.k1_spread=5 \
  --set evaluate.dynamic_after_training=false
ABLATIONS := --ablate model.dropout_locked=false --ablate model.weight_drop=0 --ablate model.dropout_words=0 \
  --ablate "model.ar=0 model.tar=0" --ablate train.average=none --ablate train.k1_spread=0 \
  --ablate "model.dropout_embedding=0 model.dropout_between=0 model.dropout_output=0" \
  --ablate model.tie_weights=false --ablate model.embedding_scale=1
ablation: $(STAMP)
	set -e; for s in $(ABLATION_SEEDS); do \
	  $(RNNLM) sweep --config configs/ptb-lstm2.yaml $(ABLATION_BASE) --set train.seed=$$s $(ABLATIONS) \
	    --out runs/ablation/seed-$$s -j $(ABLATION_JOBS) --quiet; \
	  $(RNNLM) compare runs/ablation/seed-$$s --sort test_ppl --format json > results/ablation-seed$$s.json.tmp; \
	  mv results/ablation-seed$$s.json.tmp results/ablation-seed$$s.json; \
	done

results: $(STAMP)
	$(RNNLM) results $(wildcard $(QUALITY:%=results/%.json)) --plot docs/learning_curves.png

bench: $(STAMP)
	$(PY) scripts/bench.py $(BENCH_ARGS)

# the generated sections of README.md and docs/ (tables, figures, sample outputs, docs/cli.md), rewritten
# from their sources by cog (scripts/docgen.py); with ../shared/corpora/ptb also the Penn Treebank ones
DOCS := README.md $(wildcard docs/*.md)

docs: $(STAMP)
	RNNLM_DOCS_FULL=1 $(VENV)/bin/cog -r -I scripts $(DOCS)

# the docs' tests in full: every documented command, including those tagged [slow] or [corpora]
# (skipped by `make test`), and every generated section, including the Penn Treebank ones
docs-check: $(STAMP)
	RNNLM_DOCS_FULL=1 $(PY) -m pytest tests/test_docs.py

lint: $(STAMP)
	$(PY) -m compileall -q rnnlm_cli tests scripts
	$(PY) -m pyflakes rnnlm_cli tests scripts

clean:
	rm -rf $(VENV) runs build dist *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
