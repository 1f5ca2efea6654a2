"""The long-range memory study: how far each model carries information, and whether its gradient
horizon says so in advance.

A grid of models x truncations x task lengths (configs/longrange.yaml, `load_study`):
  copy       copy-task corpora (data/copytask.py) at each delay T of `copy.delays`
  agreement  agreement corpora (data/agreement.py) whose every sentence has its verb exactly d
             words after the subject, for each d of `agreement.distances`
Each run trains one model on one corpus under the same budget (the `common` settings, e.g.
train.epochs), then records (`run_one`):
  recall     accuracy of the model's own argmax prediction with the true prefix (analysis/recall.py):
             overall and per position (copy) or per distance (agreement); solved when >= `solved`
  losses     copy: loss per token and per recalled symbol next to the memoryless baseline over
             the same positions
  horizon    the gradient horizon and decay rate (nn/lags.py, analysis/diagnostics.decay_fit) of
             the fresh model (the trainer's own initialisation) and of the trained one, measured
             on test sequences from the zero state; the window is the task's sequence length
  training   clip rate, steps, tokens/s, wall time; with train.k2 auto the k2 it chose
Runs go to parallel processes (`jobs`), each with one BLAS thread (OMP/OPENBLAS/MKL_NUM_THREADS
set before the process starts). Each run's result is cached in its folder (result.json) under the
hash of everything that shapes it (`run_hash`): a rerun skips finished runs and redoes changed ones.
The corpora and their prepared folders are built first, once each, by the parent process.
"""

from __future__ import annotations

import concurrent.futures as futures
import json
import multiprocessing
import os
import time
from dataclasses import dataclass, field

import numpy as np
import yaml

from rnnlm_cli.config import build_config
from rnnlm_cli.errors import ConfigError, DataError, TrainingError, brief
from rnnlm_cli.fileio import atomic_write_json
from rnnlm_cli.values import SCHEMA_VERSION, json_digest

STUDY_VERSION = 1           # part of every run's hash: bump when what a run measures changes
GENERATORS = {"copy": 1, "agreement": 2}     # bump when a task's corpus changes for the same parameters
MEASURE_SEQUENCES = 8       # test sequences the lag profiles are measured on
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# --------------------------------------------------------------------------- the study's configuration

@dataclass(frozen=True)
class Study:
    seed: int = 1
    threshold: float = 1e-3
    solved: float = 0.99
    common: list = field(default_factory=list)
    models: dict = field(default_factory=dict)
    truncations: dict = field(default_factory=dict)
    only: dict = field(default_factory=dict)         # truncation -> the models it runs with (default: all)
    copy: dict = field(default_factory=dict)
    agreement: dict = field(default_factory=dict)


COPY_KEYS = {"symbols": 10, "alphabet": 8, "delays": [5, 10, 20, 40, 80, 160], "train": 500, "valid": 50, "test": 100}
AGREEMENT_KEYS = {"distances": [2, 8, 16, 32], "train": 1000, "valid": 100, "test": 200}
MAX_RUNS = 1000


def _overrides(where: str, value) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise ConfigError(f"{where}: expected a list of section.key=value settings, got {brief(value)}")
    return list(value)


def _task(where: str, value, defaults: dict, lengths: str) -> dict:
    """A task section with its defaults filled in; absent, null or {}: the task does not run."""
    if value is None or value == {}:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {brief(value)}")
    unknown = [k for k in value if k not in defaults]
    if unknown:
        raise ConfigError(f"{where}: unknown key {brief(unknown[0])} (keys: {', '.join(defaults)})")
    out = {**defaults, **value}
    for key, v in out.items():
        if key == lengths:
            if not (isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                                                      for x in v)):
                raise ConfigError(f"{where}.{key}: expected a non-empty list of integers >= 0, got {brief(v)}")
        elif not isinstance(v, int) or isinstance(v, bool) or v < (1 if key in ("train", "test") else 0):
            raise ConfigError(f"{where}.{key}: expected an integer >= {1 if key in ('train', 'test') else 0}, "
                              f"got {brief(v)}")
    return out


def parse_study(doc: dict, where: str = "study") -> Study:
    """A Study from the YAML mapping; ConfigError naming the key for every mistake."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: the top level must be a mapping")
    known = {f for f in Study.__dataclass_fields__}
    unknown = [k for k in doc if k not in known]
    if unknown:
        raise ConfigError(f"{where}: unknown key {brief(unknown[0])} (keys: {', '.join(sorted(known))})")
    seed, threshold, solved = doc.get("seed", 1), doc.get("threshold", 1e-3), doc.get("solved", 0.99)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"{where}: seed: expected an integer >= 0, got {brief(seed)}")
    for key, v in (("threshold", threshold), ("solved", solved)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v <= 1:
            raise ConfigError(f"{where}: {key}: expected a number in (0, 1], got {brief(v)}")
    groups = {}
    for key in ("models", "truncations"):
        value = doc.get(key)
        if not isinstance(value, dict) or not value:
            raise ConfigError(f"{where}: {key}: expected a mapping of names to lists of settings, got {brief(value)}")
        groups[key] = {str(name): _overrides(f"{where}: {key}.{name}", v) for name, v in value.items()}
    only = doc.get("only") or {}
    if not isinstance(only, dict):
        raise ConfigError(f"{where}: only: expected a mapping of truncations to lists of models, got {brief(only)}")
    for trunc, models in only.items():
        if trunc not in groups["truncations"]:
            raise ConfigError(f"{where}: only.{trunc}: no such truncation")
        if not isinstance(models, list) or any(m not in groups["models"] for m in models):
            raise ConfigError(f"{where}: only.{trunc}: expected a list of model names, got {brief(models)}")
    copy = _task(f"{where}: copy", doc.get("copy"), COPY_KEYS, "delays")
    agreement = _task(f"{where}: agreement", doc.get("agreement"), AGREEMENT_KEYS, "distances")
    if not copy and not agreement:
        raise ConfigError(f"{where}: neither copy nor agreement: nothing to run")
    if copy and copy["alphabet"] < 2:
        raise ConfigError(f"{where}: copy.alphabet: expected an integer >= 2, got {copy['alphabet']}")
    if copy and copy["symbols"] < 1:
        raise ConfigError(f"{where}: copy.symbols: expected an integer >= 1, got {copy['symbols']}")
    if agreement and min(agreement["distances"]) < 1:
        raise ConfigError(f"{where}: agreement.distances: expected distances >= 1")
    study = Study(seed=seed, threshold=float(threshold), solved=float(solved),
                  common=_overrides(f"{where}: common", doc.get("common", [])), models=groups["models"],
                  truncations=groups["truncations"], only={k: list(v) for k, v in only.items()},
                  copy=copy, agreement=agreement)
    for model, trunc in pairs(study):                 # every combination must be a valid configuration
        build_config({}, study.common + study.models[model] + study.truncations[trunc])
    return study


def load_study(path: str) -> Study:
    from rnnlm_cli.config import MAX_CONFIG_BYTES
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read study file {path}: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"study file {path} is larger than {MAX_CONFIG_BYTES // 1024} KiB")
    try:
        doc = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not a YAML study file ({brief(str(exc).splitlines()[0], 120, quote=False)})") \
            from None
    return parse_study(doc, path)


def pairs(study: Study) -> list[tuple[str, str]]:
    return [(m, t) for t in study.truncations for m in study.models
            if t not in study.only or m in study.only[t]]


# --------------------------------------------------------------------------- the plan

@dataclass(frozen=True)
class RunSpec:
    task: str                  # copy or agreement
    length: int                # T (copy) or d (agreement)
    model: str
    truncation: str
    settings: tuple            # the --set overrides of the run, without paths
    corpus: str                # the corpus folder (train/valid/test.txt, task.json or probe.jsonl, prepared/)
    folder: str                # the run's folder (result.json, run/)
    hash: str
    threshold: float
    solved: float
    task_params: tuple

    @property
    def key(self) -> str:
        return f"{self.task}/{self.length}/{self.model}/{self.truncation}"


def corpus_name(task: str, length: int) -> str:
    return f"{task}-T{length}" if task == "copy" else f"{task}-d{length}"


def task_params(study: Study, task: str, length: int) -> dict:
    spec = study.copy if task == "copy" else study.agreement
    params = {k: v for k, v in spec.items() if k not in ("delays", "distances")}
    version = {"generator": GENERATORS[task]} if GENERATORS[task] > 1 else {}
    return {**params, ("delay" if task == "copy" else "distance"): length, "seed": study.seed, **version}


def run_hash(task: str, params: dict, settings, threshold: float, solved: float) -> str:
    doc = {"version": STUDY_VERSION, "task": task, "params": params, "settings": list(settings),
           "threshold": threshold, "solved": solved}
    return json_digest(doc, 16)


def plan(study: Study, out: str, only: str | None = None) -> list[RunSpec]:
    """Every run of the study (those whose key contains `only`, when given)."""
    tasks = [("copy", T) for T in (study.copy.get("delays") or [])] + \
            [("agreement", d) for d in (study.agreement.get("distances") or [])]
    specs = []
    for task, length in tasks:
        params = task_params(study, task, length)
        corpus = os.path.join(out, "corpora", corpus_name(task, length))
        for model, trunc in pairs(study):
            settings = tuple(study.common + study.models[model] + study.truncations[trunc])
            spec = RunSpec(task=task, length=length, model=model, truncation=trunc, settings=settings, corpus=corpus,
                           folder=os.path.join(out, corpus_name(task, length), f"{model}-{trunc}"),
                           hash=run_hash(task, params, settings, study.threshold, study.solved),
                           threshold=study.threshold, solved=study.solved, task_params=tuple(sorted(params.items())))
            if only is None or only in spec.key:
                specs.append(spec)
    if len(specs) > MAX_RUNS:
        raise ConfigError(f"the study holds {len(specs):,} runs, more than {MAX_RUNS:,}: a typo, not a study")
    if not specs:
        raise ConfigError(f"no run of the study matches --only {brief(only)}")
    return specs


# --------------------------------------------------------------------------- corpora

def write_task_corpus(task: str, params: dict, folder: str) -> None:
    """The corpus of one task length (skipped when the folder already holds it: same bytes)."""
    from rnnlm_cli.data import agreement
    from rnnlm_cli.data.copytask import CopyTask, write_copy_corpus, write_files

    stamp = os.path.join(folder, "study.json")
    if os.path.exists(stamp):
        with open(stamp, encoding="utf-8") as fh:
            if json.load(fh) == params:
                return
    if task == "copy":
        write_copy_corpus(folder, CopyTask(params["symbols"], params["alphabet"], params["delay"]), seed=params["seed"],
                          n_train=params["train"], n_valid=params["valid"], n_test=params["test"])
    else:
        rng = np.random.default_rng([params["seed"], params["distance"], 3])
        d = params["distance"]
        splits = {"train": [agreement.generate_sentence(rng, d, bool(rng.random() < 0.5)) for _ in range(params["train"])]}
        covered = agreement.covered_pairs(splits["train"]) or None      # scored verbs: both forms seen in training
        for name in ("valid", "test"):
            splits[name] = [agreement.generate_sentence(rng, d, bool(rng.random() < 0.5), verb_pairs=covered)
                            for _ in range(params[name])]
        texts = {name: "".join(item.text + "\n" for item in items) for name, items in splits.items()}
        texts["probe"] = "".join(json.dumps(item.probe_record(), separators=(",", ":")) + "\n"
                                 for item in splits["test"])
        write_files(folder, texts, {"train": "train.txt", "valid": "valid.txt", "test": "test.txt",
                                    "probe": "probe.jsonl"}, "agreement corpus")
    atomic_write_json(stamp, params)


def data_settings(corpus: str) -> list[str]:
    return [f"data.train={os.path.join(corpus, 'train.txt')}", f"data.valid={os.path.join(corpus, 'valid.txt')}",
            f"data.test={os.path.join(corpus, 'test.txt')}", f"data.prepared={os.path.join(corpus, 'prepared')}",
            "data.level=word", "data.eos=true"]


def prepare_corpora(specs: list[RunSpec], log) -> None:
    """Write each corpus and its prepared folder once (the runs only read them)."""
    from rnnlm_cli.data.corpus import ensure_prepared

    done = set()
    for spec in specs:
        if spec.corpus in done:
            continue
        done.add(spec.corpus)
        write_task_corpus(spec.task, dict(spec.task_params), spec.corpus)
        ensure_prepared(build_config({}, list(spec.settings) + data_settings(spec.corpus)), log=log)


# --------------------------------------------------------------------------- one run

def _measurement_batch(prepared, eos: int):
    """(x, y) (T, N) of the first MEASURE_SEQUENCES test sentences, cut to the shortest of them."""
    from rnnlm_cli.data.batching import split_sentences

    sents = split_sentences(prepared.split("test"), eos)[:MEASURE_SEQUENCES]
    T = min(len(x) for x, _ in sents)
    x = np.stack([s[0][:T] for s in sents], axis=1).astype(np.int64)
    y = np.stack([s[1][:T] for s in sents], axis=1).astype(np.int64)
    return x, y


def _horizon(model, x, y, threshold: float) -> dict:
    from rnnlm_cli.analysis.diagnostics import decay_fit
    from rnnlm_cli.nn import lags

    profile = lags.measure(model, x, y)
    fit = decay_fit(profile, threshold)
    return {"horizon": fit["horizon"], "horizon_is_lower_bound": fit["horizon_is_lower_bound"],
            "decay_rate": fit["decay_rate"], "window": int(x.shape[0])}


def _k2_history(run_dir: str) -> list[dict]:
    from rnnlm_cli.train.metrics import read_metrics

    return [{"step": m["step"], **m["k2_measured"]} for _, m in read_metrics(run_dir) if "k2_measured" in m]


def run_one(spec: RunSpec) -> dict:
    """Train, score and measure one run; writes and returns its result (cached by hash)."""
    from rnnlm_cli.analysis.recall import model_logits, score_agreement, score_copy
    from rnnlm_cli.data.agreement import read_probe_set
    from rnnlm_cli.data.copytask import CopyTask
    from rnnlm_cli.data.corpus import load_prepared
    from rnnlm_cli.nn.model import Model
    from rnnlm_cli.runs import load_model
    from rnnlm_cli.train.lock import LockError
    from rnnlm_cli.train.trainer import train

    t0 = time.perf_counter()
    run_dir = os.path.join(spec.folder, "run")
    cfg = build_config({}, list(spec.settings) + data_settings(spec.corpus) + [f"train.out={run_dir}"])
    prepared = load_prepared(cfg.data.prepared)
    vocab = prepared.vocab
    x, y = _measurement_batch(prepared, vocab.eos_id)
    # the fresh model exactly as the trainer draws it (same generator, dtype), measured in float64
    fresh = Model(cfg.model, len(vocab), dtype=np.dtype(cfg.train.dtype), rng=np.random.default_rng(cfg.train.seed),
                  class_counts=vocab.counts)
    fresh = Model(cfg.model, len(vocab), dtype=np.float64, params=fresh.params, class_bounds=fresh.class_bounds)
    with np.errstate(all="ignore"):
        at_init = _horizon(fresh, x, y, spec.threshold)
    base = {"key": spec.key, "hash": spec.hash, "task": spec.task, "length": spec.length, "model": spec.model,
            "truncation": spec.truncation, "settings": list(spec.settings)}
    try:
        summary = train(cfg, force=True)
    except TrainingError as exc:
        if isinstance(exc, LockError) or "non-finite" not in str(exc):
            raise                              # a busy folder or a failed write: not a result
        # diverged (a non-finite loss, gradient or weight): a result too, with nothing to score
        result = {**base, "accuracy": None, "solved": False, "scores": None, "horizon_init": at_init,
                  "horizon_trained": None, "clip_rate": None, "steps": None, "tokens_per_sec": None,
                  "train_wall_s": None, "valid_loss": None, "k2_history": [], "failed": str(exc),
                  "wall_time_s": time.perf_counter() - t0}
        atomic_write_json(os.path.join(spec.folder, "result.json"), result)
        return result
    best = os.path.join(run_dir, "best.npz")
    model, _, _ = load_model(best if os.path.exists(best) else os.path.join(run_dir, "checkpoint.npz"),
                             dtype=np.float64)
    logits = model_logits(model)
    with np.errstate(all="ignore"):
        if spec.task == "copy":
            params = dict(spec.task_params)
            task = CopyTask(params["symbols"], params["alphabet"], params["delay"])
            with open(os.path.join(spec.corpus, "test.txt"), encoding="utf-8") as fh:
                lines = [line.split() for line in fh if line.strip()]
            scores = score_copy(logits, lines, task, vocab)
        else:
            scores = score_agreement(logits, read_probe_set(os.path.join(spec.corpus, "probe.jsonl")), vocab)
        trained = _horizon(model, x, y, spec.threshold)
    result = {**base, "accuracy": scores["accuracy"], "solved": scores["accuracy"] >= spec.solved, "scores": scores,
              "horizon_init": at_init, "horizon_trained": trained,
              "clip_rate": summary.get("clip_rate"), "steps": summary.get("steps"),
              "tokens_per_sec": summary.get("tokens_per_sec"), "train_wall_s": summary.get("wall_time_s"),
              "valid_loss": summary.get("valid_loss"), "k2_history": _k2_history(run_dir), "failed": None,
              "wall_time_s": time.perf_counter() - t0}
    atomic_write_json(os.path.join(spec.folder, "result.json"), result)
    return result


def cached(spec: RunSpec) -> dict | None:
    """The run's stored result when its hash is the spec's, else None."""
    path = os.path.join(spec.folder, "result.json")
    try:
        with open(path, encoding="utf-8") as fh:
            result = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict) or result.get("hash") != spec.hash:
        return None
    result.setdefault("failed", None)          # results written before runs could fail
    return result


def _worker_init() -> None:
    for var in THREAD_VARS:
        os.environ[var] = "1"


# --------------------------------------------------------------------------- the study

def run_study(study: Study, out: str, jobs: int = 2, only: str | None = None, log=None, runner=None) -> dict:
    """Run (or read from the cache) every run of the study; returns the study's result.

    log(message): a line per event; runner(spec) -> result replaces the process pool (tests)."""
    log = log or (lambda message: None)
    if jobs < 1:
        raise ConfigError(f"--jobs: expected an integer >= 1, got {jobs}")
    t0 = time.perf_counter()
    specs = plan(study, os.path.abspath(out), only)
    prepare_corpora(specs, log)
    results, todo = {}, []
    for spec in specs:
        hit = cached(spec)
        if hit is not None:
            results[spec.key] = hit
        else:
            todo.append(spec)
    log(f"{len(specs)} runs: {len(results)} cached, {len(todo)} to run ({jobs} at a time)")
    if runner is not None:
        for spec in todo:
            results[spec.key] = runner(spec)
            log(_done_line(results[spec.key], len(results), len(specs)))
    elif todo:
        saved = {v: os.environ.get(v) for v in THREAD_VARS}
        os.environ.update({v: "1" for v in THREAD_VARS})     # spawned processes start with one BLAS thread
        try:
            context = multiprocessing.get_context("spawn")
            pool = futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_worker_init)
            try:
                pending = {pool.submit(run_one, spec): spec for spec in todo}
                for done in futures.as_completed(pending):
                    spec = pending[done]
                    try:
                        results[spec.key] = done.result()
                    except Exception as exc:          # one run's failure names the run
                        raise DataError(f"run {spec.key} failed: {exc}") from None
                    log(_done_line(results[spec.key], len(results), len(specs)))
            finally:
                # on an error or a signal no new run starts; the runs under way finish (and are
                # cached) before the process exits, unless a terminal's Ctrl-C stops them too
                pool.shutdown(wait=False, cancel_futures=True)
        finally:
            for v, value in saved.items():
                if value is None:
                    os.environ.pop(v, None)
                else:
                    os.environ[v] = value
    ordered = [results[s.key] for s in specs]
    return {"schema_version": SCHEMA_VERSION, "study": study_echo(study), "jobs": jobs,
            "wall_time_s": time.perf_counter() - t0, "runs_computed": len(todo), "runs": ordered,
            "summary": summarise(study, ordered)}


def _done_line(r: dict, n: int, total: int) -> str:
    if r.get("failed"):
        return f"[{n}/{total}] {r['key']}: training failed ({r['failed']}), {r['wall_time_s']:.0f} s"
    return (f"[{n}/{total}] {r['key']}: accuracy {r['accuracy']:.3f}, horizon {r['horizon_init']['horizon']} -> "
            f"{r['horizon_trained']['horizon']}, {r['wall_time_s']:.0f} s")


def study_echo(study: Study) -> dict:
    return {"seed": study.seed, "threshold": study.threshold, "solved": study.solved, "common": study.common,
            "models": study.models, "truncations": study.truncations, "only": study.only, "copy": study.copy,
            "agreement": study.agreement}


def summarise(study: Study, runs: list[dict]) -> list[dict]:
    """Per model x truncation: the longest copy delay and agreement distance solved, and the
    horizons at init and after training on the longest copy delay (the widest window)."""
    rows = []
    for model, trunc in pairs(study):
        mine = [r for r in runs if r["model"] == model and r["truncation"] == trunc]
        if not mine:
            continue
        row = {"model": model, "truncation": trunc}
        for task in ("copy", "agreement"):
            of = sorted((r for r in mine if r["task"] == task), key=lambda r: r["length"])
            solved = [r["length"] for r in of if r["solved"]]
            row[f"{task}_longest_solved"] = max(solved) if solved else None
            row[f"{task}_lengths"] = len(of)
            row[f"{task}_accuracy"] = {str(r["length"]): r["accuracy"] for r in of}
        widest = max((r for r in mine if r["task"] == "copy"), key=lambda r: r["length"], default=None) or \
            max(mine, key=lambda r: r["length"])
        row["horizon_task"] = f"{widest['task']} {widest['length']}"
        row["horizon_init"] = widest["horizon_init"]["horizon"]
        row["horizon_trained"] = (widest["horizon_trained"] or {}).get("horizon")      # None: it failed
        row["horizon_window"] = widest["horizon_init"]["window"]
        row["train_wall_s"] = sum(r["train_wall_s"] or 0 for r in mine)
        rows.append(row)
    return rows
