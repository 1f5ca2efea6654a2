"""Training: `train(cfg)` runs one training run into the output folder `train.out`.

The run, in order (train() below reads the same way):
  1. check the output folder, writing nothing: not a file, creatable, not held by a live run,
     --resume needs a checkpoint, an earlier run needs --resume or --force
  2. the prepared data (corpus.ensure_prepared: built or rebuilt from data.train when missing
     or out of date, said through `log`)
  3. the Trainer: model, optimizer, data checks; with --resume, the checkpoint read back
  4. claim the folder (the first write): take its lock (a dead run's stale lock is taken
     over, said through `log`), remove temporary files of killed writes, trim metrics.jsonl
     to the checkpoint (--resume) or clear the earlier run's files (--force)
  5. the loop, then the final evaluations and summary.json; the lock is released however
     this ends

One update (Trainer._update): batch -> forward + backward (step.batch_gradients, gradient of
the mean loss per scored token) -> clip (returns the pre-clip norm) -> non-finite policy ->
optimizer step -> the chunk's last state is carried, as a constant, into the next chunk
(stream and window modes) -> a metrics line. The learning-rate policy is schedule.py.

Output folder (train.out):
  config.yaml      the resolved configuration
  metrics.jsonl    one JSON object per logged update, plus evaluation lines (with "split")
  checkpoint.npz   the latest state (atomic; see checkpoint.py) -- `--resume` continues from it
  best.npz         the parameters with the best validation loss so far
  summary.json     final figures, written when training ends; "checkpoints" names the files that
                   exist, by their names in this folder ({"last": "checkpoint.npz", "best": "best.npz"
                   or null, "evaluated": the one the final valid/test figures used})

Exact resume: everything the rest of the run depends on is in the checkpoint (parameters,
optimizer state, the random generator, data position, carried hidden state, step, epoch,
learning rate, schedule state, the weight average), and the epoch's sentence order (full mode)
and chunk lengths (train.k1_spread) are functions of (seed, epoch), so a resumed run's
parameters are bit-identical to an uninterrupted one.

Weight averaging (train.average; NT-ASGD, Merity et al. 2018). Once averaging has started
(`always`: before the first update; `nt`: at the validation that schedule.averaging_triggered
picks), the running mean of the iterates after each applied update (skipped non-finite ones
do not count) is kept beside them: ax_1 = x_1, ax_{n+1} = ax_n + (x_{n+1} - ax_n) / (n + 1).
The iterate at the trigger itself is not in the mean (as in the AWD-LSTM code; the paper's
Algorithm 1 counts it). The mean is held in the parameters' dtype (train.dtype), not float64:
with float32 its rounding error grows with the number of iterates averaged, harmless at the
run lengths here but not bounded. Training goes on from the raw iterate; every validation,
best.npz, checkpoint.npz's param/ entries (so evaluate, generate, probe, diagnose-gradients
and dynamic evaluation read the average without knowing of it) and the final figures use the
average once it holds an iterate; the raw iterate is saved beside it (raw/ entries) for resume.
The evaluation lines carry "averaged" (and "averaging_started" at the trigger), summary.json
averaging_started_step and averaged_updates. With the schedules: validations after the
trigger are of the average, so plateau cuts and the best loss compare averaged losses with
earlier raw ones (as AWD-LSTM does); a rollback (train.reject_threshold) restores best.npz
whole: its raw iterate, optimizer state and averaging state (the average and its count, or no
averaging when best.npz is older than the trigger, after which the rule may fire again).
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time

import numpy as np

from rnnlm_cli.train import checkpoint, schedule, step
from rnnlm_cli.data.batching import SentenceBatches, StreamBatches, chunk_lengths
from rnnlm_cli.config import Config, check_training_memory, to_yaml, validation_users
from rnnlm_cli.data.corpus import Prepared, ensure_prepared, separator_id, vocab_checksum
from rnnlm_cli.evaluate import dynamic_splits, evaluate_tokens, perplexity
from rnnlm_cli.errors import CheckpointError, ConfigError, DataError, TrainingError, brief
from rnnlm_cli.fileio import atomic_write_json, atomic_write_text, is_temporary, make_folders, remove_folders
from rnnlm_cli.progress import ProgressFactory, no_progress
from rnnlm_cli.train.lock import RunLock
from rnnlm_cli.paths import shown
from rnnlm_cli.train.metrics import METRICS_NAME, MetricsLog, tensorboard_writer_class
from rnnlm_cli.nn import lags
from rnnlm_cli.nn.model import Model
from rnnlm_cli.runs import check_data_settings, check_model_matches, check_params, check_resume, load_model
from rnnlm_cli.train.optim import clip_gradients, find_nonfinite, make_optimizer
from rnnlm_cli.values import SCHEMA_VERSION


K2_STREAMS = 4      # k2 auto measures on this many streams of the batch: its cost grows with k2_max^2
LENGTHS_SEED = 1    # train.k1_spread: epoch e's chunk lengths come from default_rng([train.seed, e, LENGTHS_SEED])


class Interrupted(Exception):
    """Training stopped by SIGINT/SIGTERM after saving a checkpoint; `code` is 130 or 143."""

    def __init__(self, code: int, path: str):
        super().__init__(f"interrupted; checkpoint saved to {path}")
        self.code, self.path = code, path


# --------------------------------------------------------------------------- the run

def train(cfg: Config, resume: bool = False, force: bool = False, progress: ProgressFactory | None = None,
          log=None, on_evaluation=None) -> dict:
    """Train as configured; returns the summary (also written to OUT/summary.json).

    progress: a progress factory (rnnlm_cli/progress.py) for the bar of each epoch and of
    preprocessing (default: none); log(message): one line per event worth telling a user;
    on_evaluation(step, valid_loss): called after each validation during training, once its
    checkpoints are written (a tuner reports to its pruner there; an exception it raises ends
    the run, the lock released, as any error does).
    """
    log = log or _no_log
    out = cfg.train.out
    lock = RunLock(out)
    check_output_folder(out, lock, resume, force)                        # refuses before any write
    if cfg.train.tensorboard:
        tensorboard_writer_class()                                       # installed, or one line and exit 2
    prepared = ensure_prepared(cfg, progress=progress, log=log)          # may build data.prepared, says so
    check_data_settings(cfg, prepared)                                   # the config says what the data is
    trainer = Trainer(cfg, prepared, progress=progress, log=log)
    trainer.on_evaluation = on_evaluation
    if resume:
        trainer.restore(os.path.join(out, CHECKPOINT))
    created: list[str] = []
    try:
        created = claim_output_folder(out, lock, resume, trainer.p.step, log)   # the first write into OUT
        return trainer.run()
    finally:
        lock.release()
        remove_folders(created)      # the folders this run created, where it left nothing in them


def _no_log(message: str) -> None:
    pass


# --------------------------------------------------------------------------- the output folder

CHECKPOINT = "checkpoint.npz"
RUN_FILES = (CHECKPOINT, "best.npz", METRICS_NAME, "summary.json")


def check_output_folder(out: str, lock: RunLock, resume: bool, force: bool) -> None:
    """Refuse an unusable or busy output folder, writing nothing."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise DataError(f"output folder {shown(out)} is a file")
    if os.path.isdir(out):
        lock.check()                   # refuses a folder that another live run holds
    else:
        # the nearest existing ancestor must be a folder we may write into
        parent = os.path.dirname(os.path.abspath(out))
        while not os.path.lexists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise DataError(f"cannot create output folder {shown(out)}: {shown(parent)} is a file")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise DataError(f"cannot create output folder {shown(out)}: {shown(parent)} is not writable")
    ck = os.path.join(out, CHECKPOINT)
    if resume:
        if not os.path.exists(ck):
            raise CheckpointError(f"nothing to resume: {shown(ck)} does not exist")
    elif os.path.exists(ck) and not force:
        raise DataError(f"{shown(out)} already holds a training run (checkpoint.npz); "
                        f"use --resume to continue it or --force to start over")
    elif not force:
        # files of a run that stopped before its first checkpoint: nothing to resume, but not ours to delete
        left = [n for n in RUN_FILES if os.path.isfile(os.path.join(out, n))
                and os.path.getsize(os.path.join(out, n)) > 0]
        if left:
            raise DataError(f"{shown(out)} holds files of an earlier run ({', '.join(left)}) but no checkpoint.npz "
                            f"to resume from; use --force to start over")
    if os.path.isdir(out) and not os.access(out, os.W_OK | os.X_OK):
        raise DataError(f"cannot write to output folder {shown(out)}: permission denied")


def _leftover(name: str) -> bool:
    """A temporary file of a killed write: fileio's names, and those of earlier versions
    (.ckpt-*.npz.tmp, FILE.tmp-PID), so their runs resume cleanly too."""
    return is_temporary(name) or any(name.startswith(f"{f}.tmp-") for f in RUN_FILES + ("config.yaml",))


def claim_output_folder(out: str, lock: RunLock, resume: bool, step: int, log) -> list[str]:
    """Create OUT, take its lock, and clear what this run replaces: temporary files of killed
    writes; with resume, the metrics logged after the checkpoint at `step`; else the files of
    an earlier run (--force). Returns the folders it created (make_folders); when it fails, or a
    signal stops it, it removes them again (with the lock), so a run stopped before it wrote
    anything leaves no empty folder that a sweep could not tell from a foreign one."""
    try:
        created = make_folders(out)  # all or nothing: a path too long leaves no folder behind
    except OSError as exc:
        raise DataError(f"cannot create output folder {shown(out)}: {exc.strerror}") from None
    try:
        _claim(out, lock, resume, step, log)
    except BaseException:
        lock.release()
        remove_folders(created)
        raise
    return created


def _claim(out: str, lock: RunLock, resume: bool, step: int, log) -> None:
    lock.acquire()
    if lock.taken_over is not None:
        log(f"took over {lock.path} from PID {lock.taken_over}, which is no longer running")
    try:
        for name in os.listdir(out):
            if _leftover(name):
                os.unlink(os.path.join(out, name))
        if resume:
            MetricsLog(out).trim_after(step)
        else:
            for name in RUN_FILES:
                path = os.path.join(out, name)
                if os.path.exists(path):
                    os.unlink(path)
    except OSError as exc:
        raise DataError(f"cannot write to output folder {shown(out)}: {exc.strerror}") from None


# --------------------------------------------------------------------------- resuming with changed settings

# keys that only say how long and how often a run goes on: a resumed run applies their new values
RUN_LENGTH_KEYS = ("train.epochs", "train.max_steps", "train.eval_every", "train.log_every", "train.checkpoint_every",
                   "train.log_param_norms_every")
# sections whose keys shape the training run (the others configure other commands)
RUN_SECTIONS = ("data", "model", "train")
# keys that say where things are, not what they are: a moved run or data folder may be resumed from;
# the data it holds is checked instead (the vocabulary must be the checkpoint's, runs.check_model_matches)
LOCATION_KEYS = ("train.out", "data.prepared", "data.train", "data.valid", "data.test")


def resume_changes(saved, cfg: Config, path: str) -> list[str]:
    """Compare the configuration of a resumed run with the one in its checkpoint: a changed key
    that the checkpoint fixes (model, data, optimizer, schedule, ...) is refused with CheckpointError
    naming the key and both values, since the run would go on with the checkpoint's; changed
    run-length keys (RUN_LENGTH_KEYS) are applied, and returned as log lines."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"cannot resume from {path}: the checkpoint holds no configuration")
    mine = cfg.to_dict()
    applied = []
    for section in RUN_SECTIONS:
        old_section = saved.get(section) if isinstance(saved.get(section), dict) else {}
        for key, new in mine[section].items():
            if key not in old_section:          # a key newer than the checkpoint: nothing to compare
                continue
            old, full = old_section[key], f"{section}.{key}"
            if old == new or full in LOCATION_KEYS:
                continue
            if full in RUN_LENGTH_KEYS:
                applied.append(f"resume: {full} changed from {brief(old)} to {brief(new)} (applied)")
                continue
            raise CheckpointError(f"cannot resume from {path}: {full} is {brief(old)} in the checkpoint but "
                                  f"{brief(new)} in the configuration; resume with the checkpoint's value, or "
                                  f"start over with --force")
    return applied


# --------------------------------------------------------------------------- helpers

def reset_streams(state, rng, p: float):
    """The state with each stream's rows zeroed with probability p (new arrays where any is).

    A model trained only on carried states meets the zero state once per stream per epoch, yet
    evaluation and generation start from it; a char-level LSTM was seen to fall into a
    nonsense regime from there (8 nats/char) while its carried-state loss was 1.5."""
    if state is None:
        return None
    reset = rng.random(state[0].shape[0]) < p
    if not reset.any():
        return state
    keep = (~reset).astype(state[0].dtype)[:, None]
    return tuple(a * keep for a in state)


# --------------------------------------------------------------------------- the trainer

@dataclasses.dataclass
class Progress:
    """Everything besides parameters and optimizer state that an exact resume needs."""

    step: int = 0
    epoch: int = 0            # epochs completed
    batch: int = 0            # next batch index within the current epoch
    tokens: int = 0
    lr: float = 0.0
    best_loss: float = math.inf
    nonfinite_skipped: int = 0
    nonfinite_run: int = 0
    clipped: int = 0
    wall: float = 0.0
    stopped: str = ""
    log_loss: float = 0.0     # loss and token count summed since the last metrics line
    log_count: float = 0.0
    k2: int = 0               # k2 auto: the k2 of the next chunk's window (where the carried state lies); 0: k1
    k2_target: int = 0        # k2 auto: the k2 chosen by the last measurement; 0: none yet
    avg_started: bool = False  # train.average: averaging is under way
    avg_start_step: int = 0    # the update count when it started (0: before the first update)
    avg_count: int = 0         # iterates in the average so far (0: none yet, the raw weights are used)
    valid_history: list = dataclasses.field(default_factory=list)   # average=nt: validation losses up to the trigger


class Trainer:
    """Trainer(cfg, prepared).run() -> summary: the model, the optimizer and the loop.

    It only trains: the caller (train) checks and claims the output folder and hands in the
    prepared data; `restore(path)` continues from a checkpoint instead of a fresh model.
    """

    def __init__(self, cfg: Config, prepared: Prepared, progress: ProgressFactory | None = None, log=None):
        self.cfg, self.tc = cfg, cfg.train
        self.out = cfg.train.out
        self.progress = progress or no_progress
        self.log = log or _no_log
        self.metrics = MetricsLog(self.out, cfg.train.tensorboard)
        self.last_saved: tuple[str, int] | None = None     # (path, step) of the last checkpoint written
        self.on_evaluation = None                           # f(step, valid_loss) after each validation
        self._signal = None
        self.prepared = prepared
        self.sep = separator_id(prepared)
        self.train_tokens = prepared.split("train")
        self.valid_tokens = prepared.split("valid")
        self.test_tokens = prepared.split("test")
        self._check_data()
        check_training_memory(cfg, len(prepared.vocab))      # before the model and optimizer allocate
        self._warn_oov()
        self.dtype = np.dtype(self.tc.dtype)
        self.rng = np.random.default_rng(self.tc.seed)
        self.model = Model(cfg.model, len(prepared.vocab), dtype=self.dtype, rng=self.rng,
                           class_counts=prepared.vocab.counts)
        self.optimizer = make_optimizer(self.model.params, self.tc)
        self.p = Progress(lr=self.tc.lr, avg_started=self.tc.average == "always")
        self.avg: dict | None = None     # train.average: the running mean of the iterates, once it holds one
        self._avg_scratch: dict = {}
        self.state = None
        self.auto_k2 = self.tc.bptt == "stream" and self.tc.k2 == "auto"
        self._k2_out = 0                 # k2 auto: the k2 the current chunk carries its state for
        self._k2_event = None            # k2 auto: the measurement to log with the next update line
        if self.tc.average == "nt":
            self._check_validation_runs()

    # ------------------------------------------------------------------ setup
    def _check_data(self) -> None:
        tc, vocab = self.tc, self.prepared.vocab
        if len(vocab) < 2:
            only = f" ({vocab.tokens[0]!r})" if len(vocab) else ""
            raise DataError(f"the vocabulary of {self.prepared.folder} has {len(vocab)} type{only}: there is "
                            f"nothing to predict; a language model needs at least 2 distinct tokens")
        for name, tokens in (("train", self.train_tokens), ("valid", self.valid_tokens), ("test", self.test_tokens)):
            if len(tokens) and int(tokens.max()) >= len(vocab):
                raise DataError(f"{self.prepared.folder}/{name}.npy holds token id {int(tokens.max())}, outside the "
                                f"vocabulary of {len(vocab)} (corrupted; re-run 'rnnlm preprocess --force')")
        if tc.bptt == "full" and self.sep is None:
            raise ConfigError("train.bptt=full needs sentence boundaries (data.eos at word level or "
                              "data.newline_symbol at char level)")
        users = validation_users(tc)
        if users and len(self.valid_tokens) < 2:
            raise DataError(f"{users} acts on validation losses, but the valid split of {self.prepared.folder} "
                            f"has {len(self.valid_tokens)} tokens (give data.valid or a validation ratio in "
                            f"data.split when preprocessing)")
        need = 2 * tc.batch_size
        if tc.bptt != "full" and len(self.train_tokens) < need:
            raise DataError(f"the training split has {len(self.train_tokens)} tokens, too few for "
                            f"train.batch_size={tc.batch_size} parallel streams (need at least {need})")

    def _check_validation_runs(self) -> None:
        """train.average=nt starts at a validation: refuse a run too short to validate at all."""
        tc = self.tc
        per_epoch = ([len(self._batches(e)) for e in range(tc.epochs)] if tc.k1_spread    # lengths vary by epoch
                     else [len(self._batches(0))] * tc.epochs)
        total = sum(per_epoch)
        if tc.max_steps:
            total = min(total, tc.max_steps)
        first = tc.eval_every if isinstance(tc.eval_every, int) else per_epoch[0]
        if first > total:
            when = f"every {tc.eval_every} updates" if isinstance(tc.eval_every, int) else \
                f"at the end of the first epoch ({per_epoch[0]} updates)"
            raise ConfigError(f"train.average=nt starts averaging after a validation, but this run validates "
                              f"{when} and makes only {total} updates: no validation would run (lower "
                              f"train.eval_every or raise train.epochs / train.max_steps)")

    OOV_WARNING = 0.05   # a valid/test share of <unk> tokens worth a warning when training holds none

    def _warn_oov(self) -> None:
        """Warn (log) when many valid/test tokens become <unk> but the training split holds no <unk>:
        the model never learns to predict it, and those tokens dominate the evaluation loss."""
        vocab = self.prepared.vocab
        trained_unk = vocab.counts[vocab.unk_id] if vocab.unk_id is not None else 0
        rates = self.prepared.meta.get("oov_rate") or {}
        for split in ("valid", "test"):
            rate = rates.get(split)
            if trained_unk == 0 and isinstance(rate, (int, float)) and rate > self.OOV_WARNING:
                self.log(f"warning: {rate:.1%} of the {split} tokens are not in the vocabulary and are read as "
                         f"<unk>, which the training split never holds, so the model cannot learn to predict "
                         f"them; map rare training words to <unk> with data.min_count (e.g. 2) or data.vocab_size")

    def _batches(self, epoch: int):
        tc = self.tc
        if tc.bptt == "full":
            rng = np.random.default_rng([tc.seed, epoch])   # the epoch's order is a function of (seed, epoch)
            return SentenceBatches(self.train_tokens, self.sep, tc.batch_size, rng=rng, max_len=tc.max_len)
        if tc.k1_spread:       # the epoch's chunk lengths are a function of (seed, epoch)
            steps = len(self.train_tokens) // tc.batch_size - 1
            rng = np.random.default_rng([tc.seed, epoch, LENGTHS_SEED])
            lengths = chunk_lengths(rng, tc.k1, tc.k1_spread, steps)
            return StreamBatches(self.train_tokens, tc.batch_size, tc.k1, lengths=lengths)
        fixed_k2 = tc.k2 if tc.bptt == "stream" and not self.auto_k2 else 0
        return StreamBatches(self.train_tokens, tc.batch_size, tc.k1, fixed_k2)

    def _iterate(self, batches, start: int):
        """The epoch's batches from `start`; with k2 auto, each chunk's window from the k2 in
        force, after a measurement every train.k2_every updates (`_measure_k2`)."""
        if not self.auto_k2:
            yield from batches.iterate(start)
            return
        tc, p = self.tc, self.p
        for c in range(start, len(batches)):
            if p.step % tc.k2_every == 0:
                self._measure_k2(batches, c)
            k2_in = p.k2 or tc.k1
            self._k2_out = min(p.k2_target or tc.k1, k2_in + tc.k1)      # grows by at most k1 per chunk
            yield batches.batch(c, k2_in, self._k2_out)

    def _measure_k2(self, batches, c: int) -> None:
        """k2 auto: the lag profile on the train.k2_max training steps that end with chunk c (or
        with the first chunk that has that many before it), from the zero state, on at most
        K2_STREAMS streams; the target k2 is the horizon + 1 within [k1, k2_max]."""
        tc, p = self.tc, self.p
        first_full = -(-(tc.k2_max - tc.k1) // tc.k1)                   # the first chunk with k2_max steps
        window = batches.batch(min(len(batches) - 1, max(c, first_full)), tc.k2_max, tc.k2_max)
        x, y = window.x[:, :K2_STREAMS], window.y[:, :K2_STREAMS]
        horizon, lower = lags.horizon(lags.measure(self.model, x, y), tc.k2_threshold)
        target = min(tc.k2_max, max(tc.k1, horizon + 1))
        self._k2_event = {"horizon": horizon, "horizon_is_lower_bound": lower, "window": int(x.shape[0]),
                          "target": target, "changed": target != p.k2_target}
        p.k2_target = target

    # ------------------------------------------------------------------ checkpoints
    def _meta(self) -> dict:
        return {"progress": dataclasses.asdict(self.p), "config": self.cfg.to_dict(),
                "vocab_size": len(self.prepared.vocab), "vocab_sha256": vocab_checksum(self.prepared),
                "has_state": self.state is not None, "class_bounds": self.model.class_bounds}

    def _save(self, name: str) -> str:
        """Write OUT/name atomically; never over a good checkpoint with non-finite weights."""
        path = os.path.join(self.out, name)
        bad = find_nonfinite(self.model.params) or (find_nonfinite(self.avg) if self.avg is not None else None)
        if bad:
            raise TrainingError(f"parameter {bad} holds non-finite values at step {self.p.step}; {name} was not "
                                f"overwritten (lower train.lr or clip gradients); {self._last_good()}")
        state = self.state if self.state is not None else ()
        # param/: the weights to use (the average, once it holds an iterate); raw/: then the iterate
        weights, raw = (self.model.params, None) if self.avg is None else (self.avg, self.model.params)
        arrays = checkpoint.pack(weights, self.optimizer.state, state, self.rng, self._meta(), raw=raw)
        checkpoint.save(path, arrays)
        if name == "checkpoint.npz":
            self.last_saved = (path, self.p.step)
        return path

    def restore(self, path: str) -> None:
        """Continue from the checkpoint at `path`: parameters (the raw iterate, and the average
        beside it), optimizer, generator, progress."""
        snap = checkpoint.read_all(path)
        optim, state, rng_state, meta = snap.optim, snap.state, snap.rng_state, snap.meta
        for line in resume_changes(meta.get("config"), self.cfg, path):
            self.log(line)
        check_model_matches(self.model, self.prepared, meta, path)
        check_resume(self.model, snap.iterate, optim, state, meta, self.tc.batch_size, path)
        if snap.raw:
            check_params(snap.params, path, self.dtype)
        try:
            self.model = Model(self.cfg.model, len(self.prepared.vocab), dtype=self.dtype, params=snap.iterate,
                               class_bounds=meta.get("class_bounds"), class_counts=self.prepared.vocab.counts)
            self.optimizer = make_optimizer(self.model.params, self.tc)
            self.optimizer.load_state(optim)
            self.rng.bit_generator.state = rng_state
            self.p = Progress(**meta["progress"])
            self.avg = self._average_of(snap)
            self.state = tuple(np.array(s, dtype=self.dtype) for s in state) if meta.get("has_state") else None
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"cannot resume from {path}: incomplete or inconsistent checkpoint ({exc})") from None
        self.p.stopped = ""            # a run stopped by max_steps or a signal may go on
        self.last_saved = (path, self.p.step)
        self.log(f"resumed from {path} at step {self.p.step} (epoch {self.p.epoch + 1}, batch {self.p.batch})")

    # ------------------------------------------------------------------ signals
    def _on_signal(self, signum, frame):
        self._signal = signum

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict:
        """Train to the end (the caller holds the output folder's lock); returns the summary."""
        try:
            atomic_write_text(os.path.join(self.out, "config.yaml"), to_yaml(self.cfg))
            self.metrics.open()
            old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                self._loop()
            finally:
                for s, handler in old.items():
                    signal.signal(s, handler)
            return self._finish()
        except OSError as exc:   # a full disk or a vanished folder while writing logs
            where = f" ({shown(exc.filename)})" if exc.filename else ""
            raise TrainingError(f"writing to {shown(self.out)} failed: {exc.strerror or exc}{where}; "
                                f"{self._last_good()}") from None
        finally:
            self.metrics.close()

    def _last_good(self) -> str:
        if self.last_saved is None:
            return "last good checkpoint: none yet"
        path, step = self.last_saved
        return f"last good checkpoint: {path} (step {step})"

    def _loop(self) -> None:
        tc, p = self.tc, self.p
        total_epochs = tc.epochs
        start_time = time.perf_counter() - p.wall
        bar = None
        while p.epoch < total_epochs and not p.stopped:
            p.lr = schedule.lr_for_epoch(tc, p.epoch, p.lr)
            p.stopped = schedule.stop_reason(tc, p.lr)
            if p.stopped:
                break
            batches = self._batches(p.epoch)
            if bar is not None:
                bar.close()
            bar = self.progress(total=len(batches), initial=p.batch, desc=f"epoch {p.epoch + 1}/{total_epochs}")
            if p.batch == 0:
                p.log_loss = p.log_count = 0.0       # a metrics line covers one epoch at most
                if tc.bptt != "full":
                    self.state = None
            interval = {"tokens": 0, "t0": time.perf_counter()}
            for batch in self._iterate(batches, p.batch):
                if tc.max_steps and p.step >= tc.max_steps:   # resumed at the limit: no extra update
                    p.stopped = f"reached train.max_steps={tc.max_steps}"
                    break
                self._update(batch, interval, bar)
                p.batch = batch.index + 1
                p.wall = time.perf_counter() - start_time
                if self._signal is not None:
                    path = self._save("checkpoint.npz")
                    raise Interrupted(130 if self._signal == signal.SIGINT else 143, path)
                if isinstance(tc.eval_every, int) and p.step % tc.eval_every == 0:
                    self._evaluate_and_save()
                elif tc.checkpoint_every and p.step % tc.checkpoint_every == 0:
                    self._save("checkpoint.npz")
                if tc.max_steps and p.step >= tc.max_steps and not p.stopped:
                    p.stopped = f"reached train.max_steps={tc.max_steps}"
                if p.stopped:
                    break
            else:
                p.epoch += 1
                p.batch = 0
                p.wall = time.perf_counter() - start_time
                if tc.eval_every == "epoch":
                    self._evaluate_and_save()
                elif tc.checkpoint_every:
                    self._save("checkpoint.npz")
        if bar is not None:
            bar.close()
        p.wall = time.perf_counter() - start_time
        if not p.stopped:
            p.stopped = f"completed {p.epoch} epoch(s)"
        self._save("checkpoint.npz")

    def _update(self, batch, interval: dict, bar) -> None:
        tc, p = self.tc, self.p
        mode = tc.bptt
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # NaN/inf are caught below, by name
            fwd, grads, next_state = step.batch_gradients(self.model, batch, self.state, mode=mode,
                                                          window=tc.window, train=True, rng=self.rng,
                                                          normalize="token")
        p.step += 1
        n_tok = int(fwd.count)
        # clip (measures the pre-clip norm), then the non-finite policy
        bad = None if math.isfinite(fwd.loss) else "loss"
        pre, post = clip_gradients(grads, tc.clip, tc.clip_threshold)
        if bad is None and not math.isfinite(pre):
            bad = find_nonfinite(grads) or "gradient"
        param_norms = None
        if tc.log_param_norms_every and p.step % tc.log_param_norms_every == 0:
            param_norms = grads.norms()            # from each gradient's sq_norm(): nothing dense is formed
        if bad is not None:
            self._nonfinite(bad, grads)
            self.state = None                  # a poisoned state is not carried on
        else:
            p.nonfinite_run = 0
            lr = p.lr * batch.x.shape[0] / tc.k1 if tc.k1_spread else p.lr   # a drawn length scales the rate
            self.optimizer.step(self.model.params, grads, lr)
            if p.avg_started:
                self._accumulate_average()
            self.state = reset_streams(next_state, self.rng, tc.state_reset) if tc.state_reset else next_state
            p.tokens += n_tok
            p.log_loss += fwd.loss
            p.log_count += fwd.count
        k2_in = p.k2 or tc.k1
        if self.auto_k2:
            p.k2 = self._k2_out               # where the carried state (or, after a skip, none) lies
        interval["tokens"] += n_tok
        clipped = math.isfinite(pre) and post < pre
        p.clipped += int(bool(clipped))
        bar.update(1)
        event, self._k2_event = self._k2_event, None
        if p.step % tc.log_every == 0 or param_norms is not None or event is not None:
            dt = max(time.perf_counter() - interval["t0"], 1e-9)
            loss = p.log_loss / p.log_count if p.log_count else float("nan")
            line = {"step": p.step, "epoch": p.epoch + 1, "tokens": p.tokens, "lr": p.lr, "loss": loss,
                    "ppl": perplexity(loss) if math.isfinite(loss) else None,
                    "grad_norm": pre if math.isfinite(pre) else None,
                    "grad_norm_clipped": post if math.isfinite(post) else None,
                    "clipped": bool(clipped), "nonfinite_skipped": p.nonfinite_skipped,
                    "tokens_per_sec": interval["tokens"] / dt}
            if param_norms is not None:
                line["param_grad_norms"] = param_norms
            if tc.k1_spread:
                line["chunk_len"] = int(batch.x.shape[0])
            if self.auto_k2:
                line["k2"] = k2_in
                if event is not None:
                    line["k2_measured"] = event
            self.metrics.append(line)
            bar.set_postfix(step=p.step, loss=f"{loss:.3f}", ppl=f"{line['ppl'] or float('nan'):.1f}",
                            gnorm=f"{pre:.2f}", lr=f"{p.lr:.3g}", tok_s=f"{line['tokens_per_sec']:.0f}")
            interval.update(tokens=0, t0=time.perf_counter())
            p.log_loss = p.log_count = 0.0

    def _k2_summary(self) -> dict:
        """k2 auto, from metrics.jsonl (which a resumed run trims to its checkpoint): the targets
        the measurements chose, in order, and the mean k2 over the logged updates."""
        from rnnlm_cli.train.metrics import read_metrics

        lines = [m for _, m in read_metrics(self.out) if "split" not in m and "k2" in m]
        targets = [m["k2_measured"]["target"] for m in lines if "k2_measured" in m]
        return {"measurements": len(targets), "targets": targets, "last": self.p.k2_target,
                "mean_k2": sum(m["k2"] for m in lines) / len(lines) if lines else None}

    def _nonfinite(self, what: str, grads: dict) -> None:
        """The non-finite policy for one update whose loss or gradient (`what`) is NaN/inf."""
        tc, p = self.tc, self.p
        poisoned = find_nonfinite(self.model.params)
        if poisoned:   # skipping cannot help: an earlier update overflowed the weights
            raise TrainingError(f"parameter {poisoned} holds non-finite values at step {p.step} (an update "
                                f"overflowed; lower train.lr or clip gradients); {self._last_good()}")
        if what == "loss":
            culprit = find_nonfinite(grads)
            desc = f"non-finite loss at step {p.step}" + (f" (gradient in {culprit} too)" if culprit else "")
        else:
            desc = f"non-finite gradient in {what} at step {p.step}"
        if tc.nonfinite == "error":
            raise TrainingError(f"{desc}; {self._last_good()} (lower train.lr, or set train.nonfinite=skip)")
        p.nonfinite_skipped += 1
        p.nonfinite_run += 1
        self.log(f"step {p.step}: {desc}; update skipped ({p.nonfinite_run} in a row)")
        if p.nonfinite_run >= tc.max_nonfinite:
            raise TrainingError(f"{p.nonfinite_run} consecutive non-finite updates (train.max_nonfinite="
                                f"{tc.max_nonfinite}) at step {p.step}, the last: {desc}; {self._last_good()}")

    # ------------------------------------------------------------------ evaluation and the schedule
    def _evaluate_and_save(self) -> None:
        """Validate, let the schedule decide (keep, cut the rate, roll back, stop), save."""
        tc, p = self.tc, self.p
        if len(self.valid_tokens) < 2:
            self._save("checkpoint.npz")
            return
        result = evaluate_tokens(self._weights_in_use(), self.valid_tokens, self.cfg, self.sep)
        loss = result["loss"]
        line = {"step": p.step, "epoch": p.epoch if p.batch == 0 else p.epoch + 1, "split": "valid",
                "loss": loss, "ppl": result["ppl"], "tokens": result["tokens"], "lr": p.lr, "elapsed": p.wall}
        if tc.average != "none":
            line["averaged"] = self.avg is not None
        self.log(f"step {p.step}: valid loss {loss:.4f}, ppl {result['ppl']:.2f}"
                 + (" (averaged weights)" if self.avg is not None else ""))
        new, decision = schedule.after_validation(tc, schedule.ScheduleState(p.lr, p.best_loss), loss)
        p.lr, p.best_loss = new.lr, new.best_loss
        if decision.action == schedule.ROLLBACK:
            self._roll_back_to_best()
            self.log(f"step {p.step}: validation loss rose above the best by more than "
                     f"{tc.reject_threshold:.0%}; rolled back to best.npz, lr -> {p.lr:.3g}"
                     + ("" if tc.average == "none" else " with its weight average" if p.avg_started
                        else " (written before averaging started: averaging is off again)"))
        if tc.average == "nt" and not p.avg_started:
            if schedule.averaging_triggered(p.valid_history, loss, tc.average_nonmono):
                p.avg_started, p.avg_start_step, p.avg_count, self.avg = True, p.step, 0, None
                line["averaging_started"] = True
                self.log(f"step {p.step}: validation loss {loss:.4f} is worse than the best of those more than "
                         f"{tc.average_nonmono} validations before it; averaging the weights from here on")
            p.valid_history.append(loss)
        self.metrics.append(line)
        if decision.action == schedule.CUT:
            self.log(f"step {p.step}: validation improved less than {tc.min_improvement:.2%}; lr -> {p.lr:.3g}")
        if decision.stop:
            p.stopped = decision.stop
        if decision.improved:
            self._save("best.npz")
        self._save("checkpoint.npz")
        if self.on_evaluation is not None:
            self.on_evaluation(p.step, loss)

    def _dynamic_figures(self, model) -> dict:
        """The final figures under dynamic evaluation (evaluate.dynamic_*), never mixed with the
        static ones: {"protocol", "valid_*", "test_*", "wall_time_s"}."""
        start = time.perf_counter()
        splits = {name: tokens for name, tokens in (("valid", self.valid_tokens), ("test", self.test_tokens))
                  if len(tokens) >= 2}
        figures, protocol = dynamic_splits(model, splits, self.train_tokens, self.cfg, self.sep)
        out = {"protocol": protocol}
        for split, r in figures.items():
            out.update({f"{split}_loss": r["loss"], f"{split}_ppl": r["ppl"], f"{split}_bits": r["bits"]})
        out["wall_time_s"] = time.perf_counter() - start
        return out

    def _roll_back_to_best(self) -> None:
        """The parameters (the raw iterate), optimizer state and averaging state of best.npz;
        the carried state is dropped."""
        snap = checkpoint.read_all(os.path.join(self.out, "best.npz"))
        for k in self.model.params:
            self.model.params[k][...] = snap.iterate[k]
        self.optimizer.load_state(snap.optim)
        saved = snap.meta.get("progress", {})
        p = self.p
        p.avg_started = saved.get("avg_started", self.tc.average == "always")
        p.avg_start_step, p.avg_count = saved.get("avg_start_step", 0), saved.get("avg_count", 0)
        self.avg = self._average_of(snap)
        self.state = None

    # ------------------------------------------------------------------ weight averaging
    def _average_of(self, snap) -> dict | None:
        """The average a checkpoint holds (its param/ entries when it has raw/ ones), as our dtype."""
        if not snap.raw:
            return None
        return {k: np.array(v, dtype=self.dtype) for k, v in snap.params.items()}

    def _accumulate_average(self) -> None:
        """After an update: ax_{n+1} = ax_n + (x - ax_n) / (n + 1), in place, in the parameters' dtype."""
        p, params = self.p, self.model.params
        if self.avg is None:
            self.avg = {k: x.copy() for k, x in params.items()}          # ax_1 = x_1
        else:
            n = p.avg_count
            for k, x in params.items():
                a = self.avg[k]
                d = self._avg_scratch.get(k)
                if d is None:
                    d = self._avg_scratch[k] = np.empty_like(a)
                np.subtract(x, a, out=d)
                d /= n + 1
                a += d
        p.avg_count += 1

    def _weights_in_use(self) -> Model:
        """The model to evaluate: the average once it holds an iterate, else the raw weights."""
        if self.avg is None:
            return self.model
        return Model(self.cfg.model, self.model.V, dtype=self.dtype, params=self.avg,
                     class_bounds=self.model.class_bounds)

    def _finish(self) -> dict:
        p = self.p
        summary = {"schema_version": SCHEMA_VERSION, "steps": p.step, "epochs": p.epoch, "batches_into_epoch": p.batch,
                   "tokens": p.tokens, "wall_time_s": p.wall, "tokens_per_sec": p.tokens / max(p.wall, 1e-9),
                   "clip_rate": p.clipped / max(p.step, 1), "nonfinite_skipped": p.nonfinite_skipped,
                   "stopped": p.stopped, "lr": p.lr, "params": self.model.num_params()}
        if self.auto_k2:
            summary["k2_auto"] = self._k2_summary()
        if self.tc.average != "none":
            summary["averaging_started_step"] = p.avg_start_step if p.avg_started else None
            summary["averaged_updates"] = p.avg_count
        best = os.path.join(self.out, "best.npz")
        final_model = self._weights_in_use()
        final_averaged = self.avg is not None
        has_best = os.path.exists(best)
        if has_best:
            final_model, _, best_meta = load_model(best)
            final_averaged = best_meta.get("progress", {}).get("avg_count", 0) > 0
            summary["best_valid_loss"] = p.best_loss
            summary["best_valid_ppl"] = perplexity(p.best_loss)
        # the checkpoints that exist (best.npz only after a validation improved), and which one
        # the final evaluations below used
        evaluated = "best.npz" if has_best else CHECKPOINT           # names inside the run folder, like summary.json
        summary["checkpoints"] = {"last": CHECKPOINT, "best": "best.npz" if has_best else None, "evaluated": evaluated}
        for split, tokens in (("valid", self.valid_tokens), ("test", self.test_tokens)):
            if len(tokens) >= 2:
                r = evaluate_tokens(final_model, tokens, self.cfg, self.sep)
                summary[f"{split}_loss"], summary[f"{split}_ppl"] = r["loss"], r["ppl"]
                summary[f"{split}_bits"] = r["bits"]
                line = {"step": p.step, "epoch": p.epoch, "split": split, "final": True,
                        "loss": r["loss"], "ppl": r["ppl"], "tokens": r["tokens"], "elapsed": p.wall,
                        "checkpoint": evaluated}
                if self.tc.average != "none":
                    line["averaged"] = final_averaged
                self.metrics.append(line)
        if self.cfg.evaluate.dynamic_after_training:
            summary["dynamic"] = self._dynamic_figures(final_model)
        atomic_write_json(os.path.join(self.out, "summary.json"), summary)   # NaN/inf as null
        return summary
