"""Configuration: one YAML schema for every command, as frozen dataclasses.

The defaults live here and nowhere else; `configs/default.yaml` is generated from them
(`rnnlm config show --comments`) and a test asserts that both say the same.

`load_config(path, overrides)` reads a YAML file, applies `--set section.key=value` overrides
(values parsed as YAML scalars), validates every value and returns one frozen `Config`.
`cfg.with_values({"train.out": path})` sets keys from Python values (what command-line options
give) through the same per-key validation, never through YAML text.
Mistakes raise `ConfigError` naming the full key path (and the closest valid key for a typo).

Each field declares its own validation next to its default (`_opt`): type (the annotation),
choices, range, whether it is a path, and for the odd key a `Rule` (e.g. "a positive integer
or 'epoch'"). `_check_value` applies these in one order and knows no key by name.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Union, get_args, get_origin, get_type_hints

import yaml

from rnnlm_cli.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    """A check beyond type, choices and range: `ok(value)` must hold for the coerced value, and
    `expected` is what the error message says was expected (also when the type is wrong)."""

    expected: str
    ok: Callable[[Any], bool]


POSITIVE_INT_OR_EPOCH = Rule("a positive integer or 'epoch'",
                             lambda v: v == "epoch" if isinstance(v, str) else v >= 1)


def _opt(default, help, choices=None, low=None, high=None, low_open=False, path=False, rule=None):
    """A config field: default, one-line meaning and validation rules, in one place.

    choices: the allowed values, or a function returning them (read at validation time, so a
    registry can grow after import: `_cells`, `_bptt_modes`)."""
    meta = {"help": help, "choices": choices, "low": low, "high": high,
            "low_open": low_open, "path": path, "rule": rule}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def _cells() -> tuple:
    """model.cell choices: the registered cells (nn.cells.CELLS)."""
    from rnnlm_cli.nn.cells import CELLS
    return tuple(CELLS)


def _bptt_modes() -> tuple:
    """train.bptt choices: the registered BPTT modes (train.step.MODES)."""
    from rnnlm_cli.train.step import MODES
    return tuple(MODES)


@dataclass(frozen=True)
class DataConfig:
    train: str | None = _opt(None, "training text (UTF-8); with no valid/test files it is split by `split`", path=True)
    valid: str | None = _opt(None, "validation text (optional)", path=True)
    test: str | None = _opt(None, "test text (optional)", path=True)
    split: list[float] = _opt([0.9, 0.05, 0.05], "train/valid/test ratios when only `train` is given (contiguous)")
    level: str = _opt("word", "tokenisation: word (whitespace) or char (Unicode code points)", choices=("word", "char"))
    lowercase: bool = _opt(False, "lowercase the text before tokenising")
    eos: bool = _opt(True, "word level: an <eos> token at every line end (the PTB convention)")
    newline_symbol: bool = _opt(True, "char level: keep the newline as a symbol")
    vocab_size: int = _opt(0, "vocabulary cap including <unk> (0 = no cap); the rest maps to <unk>", low=0)
    min_count: int = _opt(1, "tokens seen fewer times in training map to <unk>", low=1)
    encoding_errors: str = _opt("strict", "invalid UTF-8: strict (error naming file, line, byte) or replace", choices=("strict", "replace"))
    prepared: str = _opt("data/prepared", "prepared-data folder (written by preprocess, read by the other commands)", path=True)


@dataclass(frozen=True)
class ModelConfig:
    cell: str = _opt("tanh", "recurrent cell", choices=_cells)
    embedding_size: int = _opt(64, "E: embedding (input projection) size", low=1)
    hidden_size: int = _opt(64, "H: hidden state size", low=1)
    init: str = _opt("uniform", "input/output weights: uniform (+-1/sqrt(fan_in)) or xavier", choices=("uniform", "xavier"))
    recurrent_init: str = _opt("uniform", "recurrent matrix W: uniform, xavier, orthogonal or identity (IRNN with relu)",
                               choices=("uniform", "xavier", "orthogonal", "identity"))
    init_scale: float = _opt(1.0, "multiplies every initial weight matrix", low=0.0, low_open=True)
    recurrent_scale: float = _opt(1.0, "further multiplies the initial recurrent matrix W", low=0.0, low_open=True)
    embedding_scale: float = _opt(1.0, "further multiplies the initial embedding (+-1/sqrt(E) uniform); "
                                  "sqrt(E) gives +-1, the scale of a one-hot input's fan-in of 1", low=0.0, low_open=True)
    forget_bias: float = _opt(1.0, "LSTM forget-gate bias at initialisation")
    dropout_embedding: float = _opt(0.0, "inverted dropout on the embeddings (training only)", low=0.0, high=0.95)
    dropout_output: float = _opt(0.0, "inverted dropout on the hidden states fed to the output layer", low=0.0, high=0.95)
    tie_weights: bool = _opt(False, "output matrix = embedding matrix (needs embedding_size == hidden_size)")
    softmax: str = _opt("full", "output layer: full softmax or class-factorised (Mikolov et al. 2011)", choices=("full", "class"))
    num_classes: int = _opt(0, "word classes for softmax=class (0 = round(sqrt(V)))", low=0)


@dataclass(frozen=True)
class TrainConfig:
    out: str = _opt("runs/default", "output folder: checkpoints, metrics.jsonl, summary.json, config.yaml", path=True)
    seed: int = _opt(1234, "seed of the one random generator (init, dropout, shuffling)", low=0)
    dtype: str = _opt("float32", "floating-point type for training", choices=("float32", "float64"))
    batch_size: int = _opt(20, "B: parallel streams (stream/window) or sentences per batch (full)", low=1)
    bptt: str = _opt("stream", "truncation: full (whole sentences), window (per-output k), stream (TBPTT(k1,k2))",
                     choices=_bptt_modes)
    k1: int = _opt(35, "stream/window: tokens per chunk per stream (forward steps between updates)", low=1)
    k2: int = _opt(0, "stream: steps each chunk backpropagates (>= k1; 0 = k1)", low=0)
    window: int = _opt(5, "window: every output backpropagates through at most this many states", low=1)
    state_reset: float = _opt(0.0, "stream: chance that a stream starts its next chunk from the zero state, as "
                              "evaluation and generation start (0 = only at epoch starts)", low=0.0, high=1.0)
    max_len: int = _opt(0, "full: longest sentence kept, longer ones are cut (0 = no limit)", low=0)
    epochs: int = _opt(1, "passes over the training data", low=0)
    max_steps: int = _opt(0, "stop after this many updates (0 = no limit)", low=0)
    optimizer: str = _opt("sgd", "sgd, adagrad, rmsprop or adam", choices=("sgd", "adagrad", "rmsprop", "adam"))
    lr: float = _opt(0.1, "learning rate", low=0.0, low_open=True)
    momentum: float = _opt(0.0, "sgd momentum", low=0.0, high=0.999)
    nesterov: bool = _opt(False, "sgd: Nesterov momentum")
    beta1: float = _opt(0.9, "adam: first-moment decay", low=0.0, high=0.9999)
    beta2: float = _opt(0.999, "adam/rmsprop: second-moment decay", low=0.0, high=0.99999)
    eps: float = _opt(1e-8, "adam/rmsprop/adagrad: denominator epsilon", low=0.0, low_open=True)
    weight_decay: float = _opt(0.0, "L2 weight decay added to the gradient", low=0.0)
    clip: str = _opt("norm", "gradient clipping: norm (global L2), value (element-wise) or none", choices=("norm", "value", "none"))
    clip_threshold: float = _opt(5.0, "norm: largest global norm; value: largest absolute element", low=0.0, low_open=True)
    nonfinite: str = _opt("error", "non-finite loss or gradient: error (stop) or skip (skip the update, count it)",
                          choices=("error", "skip"))
    max_nonfinite: int = _opt(10, "skip: stop after this many consecutive skipped updates", low=1)
    schedule: str = _opt("constant", "learning-rate schedule: constant, plateau or epoch_decay",
                         choices=("constant", "plateau", "epoch_decay"))
    lr_factor: float = _opt(0.5, "plateau/epoch_decay: multiply the rate by this", low=0.0, high=1.0, low_open=True)
    min_improvement: float = _opt(0.003, "plateau: smallest relative validation-loss improvement that counts", low=0.0)
    decay_start: int = _opt(4, "epoch_decay: first epoch after which the rate decays", low=0)
    min_lr: float = _opt(0.0, "stop early once the rate falls below this (0 = never)", low=0.0)
    reject_threshold: float = _opt(0.0, "roll back to the best checkpoint when validation loss grows by this factor (0 = off)", low=0.0)
    eval_every: Union[int, str] = _opt("epoch", "validate every N updates, or 'epoch'", rule=POSITIVE_INT_OR_EPOCH)
    eval_batch_size: int = _opt(10, "parallel streams during evaluation", low=1)
    log_every: int = _opt(10, "updates between metrics.jsonl lines", low=1)
    log_param_norms_every: int = _opt(0, "updates between per-parameter gradient norms in the log (0 = never)", low=0)
    checkpoint_every: int = _opt(0, "updates between checkpoints besides evaluations (0 = only at evaluations)", low=0)


@dataclass(frozen=True)
class DiagnoseConfig:
    steps: int = _opt(50, "T: sequence length the gradients are measured over", low=2)
    batches: int = _opt(1, "batches of real sequences to average over", low=1)
    batch_size: int = _opt(10, "sequences per batch", low=1)
    threshold: float = _opt(1e-3, "horizon: largest lag whose normalised gradient norm stays above this", low=0.0, low_open=True)
    truncations: list[int] = _opt([1, 2, 4, 8, 16], "truncation lengths compared with full BPTT (T is always added)")
    jacobian_sequences: int = _opt(4, "sequences whose step Jacobians are measured (the first ones; 0 = all)", low=0)
    random_vocab: int = _opt(100, "vocabulary size of the random tokens used when there is no prepared data", low=2)


@dataclass(frozen=True)
class GradcheckConfig:
    hidden_size: int = _opt(5, "hidden (and embedding) size of the checked model", low=1)
    vocab_size: int = _opt(7, "vocabulary size of the checked model (random tokens)", low=2)
    steps: int = _opt(6, "sequence length", low=1)
    batch_size: int = _opt(3, "batch size", low=1)
    eps: float = _opt(1e-5, "finite-difference step", low=0.0, low_open=True)
    tolerance: float = _opt(1e-6, "largest relative error that passes", low=0.0, low_open=True)
    samples: int = _opt(0, "elements checked per parameter (0 = all)", low=0)


@dataclass(frozen=True)
class GenerateConfig:
    n: int = _opt(1, "number of samples", low=1)
    max_tokens: int = _opt(50, "tokens per sample (word level stops earlier at <eos>)", low=1)
    temperature: float = _opt(1.0, "softmax temperature", low=0.0, low_open=True)
    prime: str = _opt("", "text the model reads before sampling")
    seed: int = _opt(0, "sampling seed", low=0)
    allow_unk: bool = _opt(False, "allow <unk> to be sampled")
    strategy: str = _opt("sample", "sample (draw from the softmax) or greedy (always the most likely token; "
                         "reproducible without a seed)", choices=("sample", "greedy"))
    top_k: int = _opt(0, "sample: draw only among the k most likely tokens (0 = all); must be 0 with greedy", low=0)


@dataclass(frozen=True)
class ProbeConfig:
    data: str | None = _opt(None, "agreement probe items, JSON lines (corpora/README.md); null = the probe set "
                                  "shipped with rnnlm (corpora/agreement/probe.jsonl)", path=True)
    bins: list[int] = _opt([1, 2, 4, 8, 16, 30], "ascending upper edges of the distance bins: [1, 2, 4] = 1, 2, 3-4; "
                                                 "the last bin also takes longer distances")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    diagnose: DiagnoseConfig = field(default_factory=DiagnoseConfig)
    gradcheck: GradcheckConfig = field(default_factory=GradcheckConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **sections) -> "Config":
        """A copy with keys changed, e.g. cfg.replace(model={"cell": "gru"}) (no validation)."""
        new = {}
        for name, changes in sections.items():
            new[name] = dataclasses.replace(getattr(self, name), **changes)
        return dataclasses.replace(self, **new)

    def with_values(self, values: dict[str, Any]) -> "Config":
        """A validated copy with keys set from Python values: {"train.out": "runs/x #1", ...}.

        Each value is checked like a YAML or --set value of its key (a str stays a str, so
        "yes" is a folder name, not true); relative paths resolve against the current
        directory, as with --set. Raises ConfigError naming the key.
        """
        built = {name: getattr(self, name) for name in SECTIONS}
        for full, value in values.items():
            section, key = _split_key(full)
            built[section] = _set_key(built[section], section, key, value, os.getcwd())
        cfg = Config(**built)
        _cross_checks(cfg)
        return cfg


SECTIONS = {f.name: f.default_factory for f in fields(Config)}


# --------------------------------------------------------------------------- loading

class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys (plain YAML keeps the last silently)."""


def _construct_mapping(loader, node, deep=False):
    keys = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in keys:
            raise ConfigError(f"duplicate key '{key}' (line {key_node.start_mark.line + 1})")
        keys.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: str) -> dict:
    """Parse a YAML config file into a dict; every failure is a one-line ConfigError."""
    if not os.path.exists(path):
        raise ConfigError(f"config file not found: {path}")
    if os.path.isdir(path):
        raise ConfigError(f"config path is a folder, not a file: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        doc = yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:  # e.g. `!!int abc`, a list as a key
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (data, model, train, ...), "
                          f"not a {type(doc).__name__}")
    return doc


def parse_override(text: str) -> tuple[list[str], Any]:
    """'model.hidden_size=128' -> (['model', 'hidden_size'], 128); the value is a YAML scalar."""
    if "=" not in text:
        raise ConfigError(f"--set expects section.key=value, got '{text}'")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"--set expects section.key=value, got '{text}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError, RecursionError):
        value = raw   # not a YAML scalar (e.g. `!!int abc`): the text itself, which validation then judges
    return parts, value


def _suggest(name: str, valid: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def _all_keys() -> list[str]:
    return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in fields(cls)]


def _suggest_key(section: str, key: str) -> str:
    """A close key of the same section, else a nearly equal key of another one (e.g. model.lr -> train.lr).

    Whole 'section.key' strings are not compared: their shared prefix makes unrelated keys look
    alike (train.learning_rate is not train.nonfinite).
    """
    others = {f.name: s for s, cls in reversed(SECTIONS.items()) if s != section for f in fields(cls)}
    if key in others:   # the right key in the wrong section (the first section that has it)
        return f" (did you mean {others[key]}.{key}?)"
    hint = _suggest(key, [f.name for f in fields(SECTIONS[section])], f"{section}.")
    if hint:
        return hint
    close = difflib.get_close_matches(key, list(others), n=1, cutoff=0.85)
    return f" (did you mean {others[close[0]]}.{close[0]}?)" if close else ""


def _allowed_types(hint) -> tuple[list, bool]:
    """(the non-None types a field accepts, whether null is allowed) from its annotation."""
    allowed = get_args(hint) if get_origin(hint) in (Union, type(int | None)) else (hint,)
    return [a for a in allowed if a is not type(None)], type(None) in allowed


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_NO = object()   # _coerce: the value is not of that type


def _coerce(value: Any, kind) -> Any:
    """`value` as a `kind` (bool, int, float, str or list[int|float]), or _NO when it is not one."""
    if kind is bool:
        return value if isinstance(value, bool) else _NO
    if kind is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if kind is float:
        if _is_number(value):
            return float(value)
        try:
            return float(value) if isinstance(value, str) else _NO   # PyYAML reads 1e-3 (no dot) as a string
        except ValueError:
            return _NO
    if kind is str:
        return value if isinstance(value, str) else _NO
    (item,) = get_args(kind)                                         # list[int] or list[float]
    if isinstance(value, list) and all(_is_number(v) and (item is float or isinstance(v, int)) for v in value):
        return [item(v) for v in value]
    return _NO


def _type_name(kind) -> str:
    return f"a list of {get_args(kind)[0].__name__}" if get_origin(kind) is list else kind.__name__


def _check_value(key: str, value: Any, f: dataclasses.Field, hint: Any) -> Any:
    """Coerce and validate one value against its field: null, type, finite, size, rule, choices, range."""
    meta = f.metadata
    rule = meta.get("rule")

    def fail(expected):
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")

    kinds, optional = _allowed_types(hint)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key}: a value is required, got null")
    result = next((r for r in (_coerce(value, k) for k in kinds) if r is not _NO), _NO)
    if result is _NO:
        fail(rule.expected if rule else " or ".join(_type_name(k) for k in kinds))
    if isinstance(result, float) and not math.isfinite(result):
        fail("a finite number")
    if any(isinstance(v, int) and abs(v) >= 2 ** 63 for v in (result if isinstance(result, list) else [result])):
        fail("a number below 2**63")
    if rule and not rule.ok(result):
        fail(rule.expected)
    choices = meta.get("choices")
    if callable(choices):
        choices = choices()
    if choices and result not in choices:
        raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}"
                          + _suggest(str(value), list(choices)))
    low, high = meta.get("low"), meta.get("high")
    if low is not None and isinstance(result, (int, float)):
        if result < low or (meta.get("low_open") and result == low):
            rel = ">" if meta.get("low_open") else ">="
            raise ConfigError(f"{key}: expected a value {rel} {low}, got {value!r}")
    if high is not None and isinstance(result, (int, float)) and result > high:
        raise ConfigError(f"{key}: expected a value <= {high}, got {value!r}")
    return result


def _build_section(name: str, values: dict, base_dir: str | None) -> Any:
    cls = SECTIONS[name]
    hints = get_type_hints(cls)
    by_name = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if not isinstance(key, str) or key not in by_name:
            raise ConfigError(f"unknown key '{name}.{key}'" + _suggest_key(name, str(key)))
        f = by_name[key]
        checked = _check_value(f"{name}.{key}", value, f, hints[key])
        if f.metadata.get("path") and isinstance(checked, str) and "\0" in checked:
            raise ConfigError(f"{name}.{key}: a path cannot contain a NUL character")
        if f.metadata.get("path") and checked and base_dir is not None:
            checked = os.path.normpath(os.path.join(base_dir, os.path.expanduser(checked)))
        kwargs[key] = checked
    return cls(**kwargs)


def _cross_checks(cfg: Config) -> None:
    """Rules that involve more than one key."""
    if cfg.train.bptt == "stream" and cfg.train.k2 and cfg.train.k2 < cfg.train.k1:
        raise ConfigError(f"train.k2 ({cfg.train.k2}) must be >= train.k1 ({cfg.train.k1}), or 0 for k2 = k1")
    if cfg.model.tie_weights and cfg.model.embedding_size != cfg.model.hidden_size:
        raise ConfigError(f"model.tie_weights needs model.embedding_size == model.hidden_size, "
                          f"got {cfg.model.embedding_size} and {cfg.model.hidden_size}")
    split = cfg.data.split
    if len(split) != 3 or any(r < 0 for r in split) or abs(sum(split) - 1.0) > 1e-6 or split[0] <= 0:
        raise ConfigError(f"data.split: expected three non-negative ratios summing to 1 with train > 0, got {split}")
    if any(k < 1 for k in cfg.diagnose.truncations):
        raise ConfigError(f"diagnose.truncations: expected positive integers, got {cfg.diagnose.truncations}")
    bins = cfg.probe.bins
    if not bins or bins[0] < 0 or any(a >= b for a, b in zip(bins, bins[1:])):
        raise ConfigError(f"probe.bins: expected strictly increasing distances >= 0, got {bins}")


def _split_key(full: str, where: str = "") -> tuple[str, str]:
    """'train.out' -> ('train', 'out'); ConfigError (prefixed with `where`) for an unknown key."""
    section, _, key = full.partition(".")
    if section not in SECTIONS:
        raise ConfigError(f"{where}unknown section '{section}'" + _suggest(section, list(SECTIONS)))
    if key not in {f.name for f in fields(SECTIONS[section])}:
        raise ConfigError(f"{where}unknown key '{full}'" + _suggest_key(section, key))
    return section, key


def _set_key(obj: Any, section: str, key: str, value: Any, base_dir: str) -> Any:
    """A copy of section object `obj` with one key validated and set (paths against base_dir)."""
    single = _build_section(section, {key: value}, base_dir)
    return dataclasses.replace(obj, **{key: getattr(single, key)})


def build_config(doc: dict, overrides: list[str] | tuple[str, ...] = (), base_dir: str | None = None) -> Config:
    """Validate a config mapping plus `--set` overrides into a Config.

    Paths in `doc` resolve against `base_dir` (the config file's folder); paths given with
    --set resolve against the current directory.
    """
    for name, values in doc.items():
        if not isinstance(name, str) or name not in SECTIONS:
            raise ConfigError(f"unknown section '{name}'" + _suggest(str(name), list(SECTIONS))
                              + f"; sections are {', '.join(SECTIONS)}")
        if values is not None and not isinstance(values, dict):
            raise ConfigError(f"section '{name}' must be a mapping of keys, got {type(values).__name__}")
    built = {name: _build_section(name, doc.get(name) or {}, base_dir) for name in SECTIONS}
    for text in overrides:
        (section, key), value = parse_override(text)
        section, key = _split_key(f"{section}.{key}", where=f"--set {text}: ")
        built[section] = _set_key(built[section], section, key, value, os.getcwd())
    cfg = Config(**built)
    _cross_checks(cfg)
    return cfg


def load_config(path: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read, override and validate a configuration. With no path, the built-in defaults."""
    if path is None:
        return build_config({}, overrides, base_dir=None)
    doc = _read_yaml(path)
    return build_config(doc, overrides, base_dir=os.path.dirname(os.path.abspath(path)))


# --------------------------------------------------------------------------- rendering

def to_yaml(cfg: Config, comments: bool = False) -> str:
    """The configuration as YAML; with comments, every key's meaning (used for default.yaml)."""
    if not comments:
        return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None)
    lines = ["# rnnlm configuration: every key, its default and its meaning.",
             "# Generated by `rnnlm config show --comments`; relative paths resolve against this file's folder.",
             ""]
    for section, cls in SECTIONS.items():
        lines.append(f"{section}:")
        obj = getattr(cfg, section)
        for f in fields(cls):
            value = yaml.safe_dump(getattr(obj, f.name), default_flow_style=True).strip()
            if value.endswith("\n...") or value.endswith("..."):
                value = value.replace("\n...", "").replace("...", "").strip()
            lines.append(f"  {f.name}: {value}  # {f.metadata['help']}")
        lines.append("")
    return "\n".join(lines)


def resolved_k2(cfg: Config) -> int:
    """Backpropagation length of stream mode (k2 = 0 means k2 = k1)."""
    return cfg.train.k2 or cfg.train.k1
