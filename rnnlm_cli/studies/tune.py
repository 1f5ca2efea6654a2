"""Hyperparameter search with Optuna (the optional `tune` extra): TPE sampling, pruning by the
validation loss of each evaluation, many workers on one storage.

A worker (`run_worker`) runs trials until the study has `n_trials` trials that are finished
(complete or pruned), running or waiting; each trial trains in the worker's own process into
OUT/trial-NNNNN and reports each validation loss to the pruner (trainer's on_evaluation hook).

Storages (`open_storage`):
  sqlite:///path.db, postgresql://..., mysql+pymysql://...   Optuna's RDBStorage (SQLAlchemy), with a
      heartbeat: a trial whose worker died (SIGKILL, a lost machine) is marked failed after
      GRACE_PERIOD seconds without a beat and re-queued once (RetryFailedTrialCallback), the next
      time any worker starts a trial
  journal:path.log      Optuna's journal file (for a shared filesystem without a database). It has no
      heartbeat: a dead worker's trial is found by the PID and host it recorded when a worker on
      the same host starts a trial (marked failed and re-queued); one on another host stays
      RUNNING until `--report` shows it and it is dealt with by hand
A worker stopped by SIGINT/SIGTERM saves its run's checkpoint, marks its trial failed, queues
the same parameters again for another worker, and exits 130/143.

Exactly n_trials: with sqlite and journal storages (one filesystem) a lock file beside the
storage makes "count, then start a trial" atomic across workers; with a database server a
trial found to be surplus when it starts (other trials numbered lower already make up
n_trials) is marked failed with the user attribute "surplus" and does not train.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import socket

from rnnlm_cli import grid
from rnnlm_cli.config import Config, to_yaml
from rnnlm_cli.errors import ConfigError, DataError, TrainingError, brief
from rnnlm_cli.fileio import atomic_write_text
from rnnlm_cli.paths import shown
from rnnlm_cli.train.lock import pid_alive

INSTALL = "rnnlm tune needs Optuna, an optional extra: pip install 'rnnlm[tune]'"
HEARTBEAT_INTERVAL = 10          # seconds between a running trial's heartbeats (RDB storages)
GRACE_PERIOD = 60                # a trial without a heartbeat for this long is failed and re-queued
PRUNERS = ("median", "halving", "none")
MAX_FAILURES = 5                 # a worker stops after this many failed trials in a row
BEST_CONFIG = "best.yaml"
LOCK_SUFFIX = ".rnnlm-lock"       # beside a file storage (not ".lock": Optuna's journal uses that name)


def require_optuna():
    """The optuna module, or ConfigError (exit 2) saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError(INSTALL) from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)       # its per-trial warnings: the worker logs its own
    return optuna


# --------------------------------------------------------------------------- the search space

def read_space(path: str) -> list[grid.Range]:
    """A search space from YAML: a mapping of config keys to DIST(a,b) strings, or to a list
    (a choice). Validated against the schema (ConfigError naming the key)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except OSError as exc:
        raise DataError(f"cannot read search space {shown(path)}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"search space {shown(path)} is not valid YAML: {brief(str(exc).splitlines()[0])}") from None
    if not isinstance(doc, dict) or not doc:
        raise ConfigError(f"search space {shown(path)} must be a non-empty mapping of config keys to distributions, "
                          f"e.g. 'train.lr: loguniform(1e-4, 1e-2)'")
    space = []
    for key, value in doc.items():
        where = f"search space {shown(path)}, {brief(key, quote=False)}"
        if isinstance(value, list):
            space.append(grid.make_range(str(key), "choice", [str(v) for v in value], where))
        elif isinstance(value, str):
            space.append(grid.parse_range(f"{key}={value}", option=f"search space {shown(path)}:"))
        else:
            raise ConfigError(f"{where}: expected DIST(a,b) or a list of choices, got {brief(value)}")
        if space[-1].key == "train.out":
            raise ConfigError(f"{where}: tune sets train.out itself (OUT/trial-NNNNN)")
    return space


def suggest(trial, r: grid.Range):
    if r.kind == "choice":
        return trial.suggest_categorical(r.key, list(r.args))
    if r.kind == "int":
        return trial.suggest_int(r.key, r.args[0], r.args[1])
    return trial.suggest_float(r.key, r.args[0], r.args[1], log=r.kind == "loguniform")


# --------------------------------------------------------------------------- storages

def storage_lock_path(url: str) -> str | None:
    """The lock file beside a storage on this filesystem (sqlite, journal), else None."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        return None if path in ("", ":memory:") else path + LOCK_SUFFIX
    if url.startswith("journal:"):
        return journal_path(url) + LOCK_SUFFIX
    return None


def journal_path(url: str) -> str:
    path = url[len("journal:"):]
    return path[2:] if path.startswith("//") else path


def check_storage_url(url: str) -> None:
    """Refuse a URL of no known kind (ConfigError) and a file storage whose folder is missing
    (DataError), before anything is opened or created."""
    if url.startswith("journal:"):
        path = journal_path(url)
    elif url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
    elif "://" in url and url.split("://")[0].replace("+", "").isalnum():
        return
    else:
        raise ConfigError(f"--storage {brief(url)}: expected sqlite:///FILE.db, a database URL "
                          f"(postgresql://..., mysql://...) or journal:FILE")
    if not path:
        raise ConfigError(f"--storage {brief(url)}: no file named")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DataError(f"cannot open storage {brief(url)}: folder {shown(folder)} does not exist")
    if os.path.isdir(path):
        raise DataError(f"cannot open storage {brief(url)}: {shown(path)} is a folder")


def open_storage(url: str):
    """An Optuna storage for the URL (see the module docstring); DataError when it cannot be opened."""
    optuna = require_optuna()
    check_storage_url(url)
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend, JournalStorage
            return JournalStorage(JournalFileBackend(journal_path(url)))
        from optuna.storages import RDBStorage, RetryFailedTrialCallback
        return RDBStorage(url, heartbeat_interval=HEARTBEAT_INTERVAL, grace_period=GRACE_PERIOD,
                          failed_trial_callback=RetryFailedTrialCallback(max_retry=1))
    except ImportError as exc:      # a database driver that is not installed
        raise DataError(f"cannot open storage {brief(url)}: {exc}") from None
    except Exception as exc:        # SQLAlchemy's and the drivers' errors have no common base here
        if isinstance(exc, optuna.exceptions.OptunaError) or type(exc).__module__.split(".")[0] in (
                "sqlalchemy", "sqlite3", "optuna"):
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"cannot open storage {brief(url)}: {brief(first, 200, quote=False)}") from None
        raise


def storage_lock(url: str):
    """A context that holds the lock file beside a file storage (nothing for a database server)."""
    return _file_lock(storage_lock_path(url))


@contextlib.contextmanager
def _file_lock(path: str | None):
    if path is None:
        yield lambda: None
        return
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    held = [True]
    fcntl.flock(fd, fcntl.LOCK_EX)

    def release():
        if held[0]:
            held[0] = False
            fcntl.flock(fd, fcntl.LOCK_UN)
    try:
        yield release
    finally:
        release()
        os.close(fd)


# --------------------------------------------------------------------------- the worker

class _Surplus(Exception):
    """A trial started after the study already had its trials (database servers only)."""


def make_pruner(optuna, name: str):
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def load_study(optuna, storage, name: str, pruner: str = "median", create: bool = True):
    try:
        if create:
            return optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction="minimize",
                                       sampler=optuna.samplers.TPESampler(), pruner=make_pruner(optuna, pruner))
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise DataError(f"no study named {brief(name)} in this storage") from None


def _counts(optuna, study) -> dict:
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    return {s: sum(t.state == s for t in trials) for s in states}


def _fail_dead_local_trials(optuna, study, log) -> None:
    """Journal storages (no heartbeat): a RUNNING trial whose worker ran on this host and is gone
    is marked failed and its parameters queued again."""
    states = optuna.trial.TrialState
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
        if t.user_attrs.get("host") == host and not pid_alive(int(t.user_attrs.get("pid", 0))):
            try:
                study._storage.set_trial_state_values(t._trial_id, state=states.FAIL)
            except Exception:   # another worker got there first
                continue
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            log(f"trial {t.number}: its worker (PID {t.user_attrs.get('pid')}) is gone; marked failed and re-queued")


def open_study(storage_url: str, study_name: str, pruner: str = "median"):
    """The study (created when new), opened under the storage's lock file: two workers creating
    one new database would race otherwise. DataError when the storage cannot be opened."""
    optuna = require_optuna()
    with _file_lock(storage_lock_path(storage_url)):
        return load_study(optuna, open_storage(storage_url), study_name, pruner)


def run_worker(study, base: Config, space: list[grid.Range], storage_url: str, n_trials: int,
               out: str, log=None, progress=None) -> dict:
    """Run trials of `study` (open_study) until it has n_trials (finished, running or waiting);
    returns {"trials": number this worker ran, "best": best trial info or None}."""
    optuna = require_optuna()
    from rnnlm_cli.train.trainer import Interrupted, train

    log = log or (lambda message: None)
    lock_path = storage_lock_path(storage_url)
    states = optuna.trial.TrialState
    ran = failures = 0

    while True:
        with _file_lock(lock_path) as release:
            optuna.storages.fail_stale_trials(study)
            if storage_url.startswith("journal:"):
                _fail_dead_local_trials(optuna, study, log)
            counts = _counts(optuna, study)
            total = sum(counts[s] for s in (states.COMPLETE, states.PRUNED, states.RUNNING, states.WAITING))
            if not counts[states.WAITING] and total >= n_trials:
                break

            def objective(trial):
                trial.set_user_attr("host", socket.gethostname())
                trial.set_user_attr("pid", os.getpid())
                release()                                  # the trial exists (RUNNING): others may count it
                if lock_path is None:
                    lower = [t for t in study.get_trials(deepcopy=False)
                             if t.number < trial.number and t.state in (states.COMPLETE, states.PRUNED,
                                                                        states.RUNNING, states.WAITING)]
                    if len(lower) >= n_trials:
                        trial.set_user_attr("surplus", True)
                        raise _Surplus()
                values = {r.key: suggest(trial, r) for r in space}
                folder = os.path.join(out, f"trial-{trial.number:05d}")
                trial.set_user_attr("run", folder)
                try:
                    cfg = base.with_values({**values, "train.out": folder})
                except ConfigError as exc:
                    trial.set_user_attr("fail_reason", brief(str(exc), 500, quote=False))
                    raise
                log(f"trial {trial.number}: {' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in values.items())}")

                def report(step, loss):
                    if math.isfinite(loss):
                        trial.report(loss, step)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"pruned at step {step} (valid loss {loss:.4f})")
                try:
                    summary = train(cfg, force=True, progress=progress, on_evaluation=report)
                except Interrupted:              # the checkpoint is saved; another worker redoes the trial
                    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
                    raise
                except (ConfigError, TrainingError) as exc:     # the trial fails; the worker goes on
                    trial.set_user_attr("fail_reason", brief(str(exc), 500, quote=False))
                    raise
                loss = summary.get("best_valid_loss", summary.get("valid_loss"))
                if loss is None or not math.isfinite(loss):
                    raise TrainingError("the run has no finite validation loss")
                return loss

            finished: list = []
            study.optimize(objective, n_trials=1, catch=(_Surplus, ConfigError, TrainingError),
                           gc_after_trial=False, callbacks=[lambda _, frozen: finished.append(frozen)])
        ran += 1
        mine = finished[-1] if finished else None
        if mine is not None and mine.state == states.FAIL and not mine.user_attrs.get("surplus"):
            failures += 1
            log(f"trial {mine.number}: failed ({mine.user_attrs.get('fail_reason', 'no reason given')})")
            if failures >= MAX_FAILURES:    # a space that only makes bad configurations would loop for ever
                raise TrainingError(f"{failures} trials in a row failed in this worker; the last: "
                                    f"{brief(str(mine.user_attrs.get('fail_reason', '')), 300, quote=False)}")
        else:
            failures = 0
    write_best(study, base, out)
    return {"trials": ran, "best": best_info(optuna, study)}


def best_info(optuna, study) -> dict | None:
    try:
        best = study.best_trial
    except ValueError:
        return None
    return {"number": best.number, "value": best.value, "params": best.params, "run": best.user_attrs.get("run")}


def write_best(study, base: Config, out: str) -> str | None:
    """OUT/best.yaml: the best trial's resolved configuration, ready for `rnnlm train --config`
    (train.out: OUT/best, a new folder)."""
    try:
        best = study.best_trial
    except ValueError:
        return None
    cfg = base.with_values({**best.params, "train.out": os.path.join(out, "best")})
    path = os.path.join(out, BEST_CONFIG)
    text = (f"# the best trial ({best.number}, valid loss {best.value:.4f}) of study {study.study_name}; "
            f"train it with: rnnlm train --config {path}\n" + to_yaml(cfg))
    atomic_write_text(path, text)
    return path


def report(storage_url: str, study_name: str) -> dict:
    """The trials table and the parameter importances of a study (read only)."""
    optuna = require_optuna()
    check_storage_url(storage_url)
    lock = storage_lock_path(storage_url)
    if lock and not os.path.isfile(lock[:-len(LOCK_SUFFIX)]):      # reading must not create an empty storage
        raise DataError(f"cannot open storage {brief(storage_url)}: {shown(lock[:-len(LOCK_SUFFIX)])} does not exist")
    study = load_study(optuna, open_storage(storage_url), study_name, create=False)
    trials = []
    for t in study.get_trials(deepcopy=False):
        steps = sorted(t.intermediate_values)
        params = t.params or dict(t.system_attrs.get("fixed_params") or {})     # a queued trial's are fixed
        trials.append({"number": t.number, "state": t.state.name.lower(), "value": t.value,
                       "params": params, "last_step": steps[-1] if steps else None,
                       "duration_s": t.duration.total_seconds() if t.duration else None,
                       "run": t.user_attrs.get("run")})
    importances, why = {}, None
    try:
        importances = {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (ValueError, RuntimeError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return {"study": study_name, "trials": trials, "importances": importances, "importances_unavailable": why,
            "best": best_info(optuna, study)}


