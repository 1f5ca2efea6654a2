"""Reading what training wrote: a checkpoint back into a model, with its configuration and data.

`open_checkpoint(path)` is the one reader that evaluate, generate, diagnose-gradients and the
probe use: the model, the resolved configuration (the checkpoint's own, or a config file and
`--set` overrides on top), the prepared data it was trained on, and the checkpoint's meta,
after checking that the prepared vocabulary is the one the model was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnlm_cli.config import Config, build_config, load_config, parse_override
from rnnlm_cli.data.corpus import Prepared, load_prepared, vocab_checksum
from rnnlm_cli.errors import CheckpointError, ConfigError, brief, brief_path
from rnnlm_cli.nn.model import Model
from rnnlm_cli.train import checkpoint
from rnnlm_cli.train.optim import find_nonfinite


def check_params(params: dict, path: str, dtype=None) -> None:
    """Refuse parameters that are not floating point, hold NaN/inf, or overflow `dtype` (e.g.
    float64 values beyond float32's range, which the cast would turn into inf)."""
    for name, value in params.items():
        if value.dtype.kind != "f":
            raise CheckpointError(f"checkpoint {path}: parameter {name} has dtype {value.dtype}, expected float")
    bad = find_nonfinite(params)
    if bad:
        raise CheckpointError(f"checkpoint {path}: parameter {bad} holds non-finite values (NaN or inf)")
    if dtype is not None:
        check_cast({f"parameter {k}": v for k, v in params.items()}, dtype, f"checkpoint {path}")


def check_cast(arrays: dict, dtype, where: str) -> None:
    """Refuse arrays whose values do not fit `dtype` (float64 beyond float32's 3.4e38)."""
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        return
    top = float(np.finfo(dtype).max)
    for name, value in arrays.items():
        if value.size and value.dtype.kind == "f" and np.dtype(value.dtype).itemsize > dtype.itemsize:
            largest = float(np.max(np.abs(value)))
            if largest > top:
                raise CheckpointError(f"{where}: {name} holds {largest:.3g}, beyond the {top:.3g} of {dtype} "
                                      f"it is cast to")


def check_resume(model: Model, params: dict, optim: dict, state: tuple, meta: dict, batch_size: int,
                 path: str) -> None:
    """What `train --resume` needs of a checkpoint beyond checkpoint.read's checks (which hold
    the entries to the checkpoint's own configuration): its progress and has_state entries, and
    parameters, optimizer slots and carried state that fit the resuming run's dtype and shapes."""
    where = f"checkpoint {path}"
    for key in ("progress", "has_state"):
        if key not in meta:
            raise CheckpointError(f"{where}: meta entry '{key}' is missing (not a checkpoint of a training run)")
    check_params(params, path, model.dtype)
    check_cast({f"optimizer entry {k}": v for k, v in optim.items() if k != "t"}, model.dtype, where)
    expected = [a.shape for a in model.initial_state(batch_size)] if meta["has_state"] else []
    if [s.shape for s in state] != expected:
        raise CheckpointError(f"{where}: the carried hidden state has shapes {[s.shape for s in state]}, expected "
                              f"{expected} (train.batch_size x model.hidden_size per part)")


def load_model(path: str, dtype=None) -> tuple[Model, Config, dict]:
    """(model, config, meta) from a checkpoint written by training.

    Every entry is validated before use (checkpoint.read: types, ranges, finiteness; here: the
    configuration, the vocabulary size, the layout and the cast to `dtype`): a crafted file is
    refused with one CheckpointError naming the entry, never half-used.
    """
    params, _, _, _, meta = checkpoint.read(path)
    config = meta.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path} holds no configuration")
    try:
        cfg = build_config(config)
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {path} holds an unreadable configuration: {exc}") from None
    vocab_size = meta.get("vocab_size")
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 1:
        raise CheckpointError(f"checkpoint {path}: vocab_size is {vocab_size!r}, expected a positive integer")
    dtype = dtype or cfg.train.dtype
    check_params(params, path, dtype)
    try:
        model = Model(cfg.model, vocab_size, dtype=dtype, params=params, class_bounds=meta.get("class_bounds"))
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {path} does not match its configuration: {exc}") from None
    return model, cfg, meta


def tokenisation_keys(level: str) -> tuple[str, ...]:
    """The data keys that decide how text becomes tokens and ids at this level."""
    return ("level", "lowercase", "eos" if level == "word" else "newline_symbol", "vocab_size", "min_count")


def check_data_settings(cfg: Config, prepared: Prepared) -> None:
    """The prepared folder's own settings (meta.json) decide how text is tokenised; a
    configuration that says otherwise (data.level word for a char-level folder, another
    lowercase, ...) is refused, naming the key and both values, so that every later use of
    cfg.data (evaluate --split FILE, generate --prime, the probe, the saved config) agrees with
    the data."""
    built = prepared.meta.get("config")
    if not isinstance(built, dict):
        built = {"level": prepared.meta.get("level")}
    level = built.get("level")
    for key in tokenisation_keys(level if isinstance(level, str) else cfg.data.level):
        if key not in built:
            continue
        mine = getattr(cfg.data, key)
        if built[key] != mine:
            raise ConfigError(f"data.{key} is {brief(mine)} in the configuration, but the prepared folder "
                              f"{brief_path(prepared.folder)} was built with {brief(built[key])}; set "
                              f"data.{key}={brief(built[key], quote=False)} or re-run preprocess")


def check_model_matches(model: Model, prepared: Prepared, meta: dict, where: str) -> None:
    """Refuse a checkpoint whose vocabulary differs from the prepared data's."""
    if int(meta.get("vocab_size", -1)) != len(prepared.vocab):
        raise CheckpointError(f"{where} was trained with a vocabulary of {meta.get('vocab_size')} tokens, "
                              f"but {prepared.folder} has {len(prepared.vocab)}")
    if meta.get("vocab_sha256") and meta["vocab_sha256"] != vocab_checksum(prepared):
        raise CheckpointError(f"{where} was trained on another vocabulary than {prepared.folder} "
                              f"(same size, different tokens)")


@dataclass
class OpenedCheckpoint:
    """A checkpoint read back: the model, the configuration in force, the data, the meta."""

    model: Model
    cfg: Config
    prepared: Prepared | None
    meta: dict
    path: str


def _refuse_model_overrides(overrides, saved, path: str) -> None:
    """A `--set model.KEY=...` that differs from the checkpoint's model would be ignored (the
    checkpoint decides the model): refuse it instead of pretending it applies."""
    for text in overrides:
        (section, key), _ = parse_override(text)
        if section != "model":
            continue
        try:
            wanted = getattr(build_config({}, [text]).model, key)
        except ConfigError:
            continue                       # an invalid value: the full configuration says why
        have = getattr(saved.model, key)
        if wanted != have:
            raise ConfigError(f"--set {brief(text, quote=False)}: the checkpoint {brief_path(path)} decides the model "
                              f"(model.{key} is {brief(have)} there); a command that reads a checkpoint "
                              f"cannot change it")


def open_checkpoint(path: str, config_path: str | None = None, overrides=(), dtype=None,
                    with_data: bool = True) -> OpenedCheckpoint:
    """Read `path` (a checkpoint written by training) for a command that only reads.

    The configuration is the checkpoint's own, or `config_path` when given, plus the `--set`
    overrides; the model is always the checkpoint's (cast to `dtype`, default its training
    dtype). With `with_data`, the configuration's prepared-data folder is loaded (never
    rebuilt) and must hold the vocabulary the model was trained with.
    """
    model, cfg, meta = load_model(path, dtype=dtype)
    _refuse_model_overrides(overrides, cfg, path)
    if config_path:
        cfg = load_config(config_path, list(overrides))
    elif overrides:   # on top of the checkpoint's own configuration
        cfg = build_config(meta["config"], list(overrides))
    prepared = None
    if with_data:
        prepared = load_prepared(cfg.data.prepared)
        check_model_matches(model, prepared, meta, path)
        check_data_settings(cfg, prepared)
    return OpenedCheckpoint(model=model, cfg=cfg, prepared=prepared, meta=meta, path=path)
