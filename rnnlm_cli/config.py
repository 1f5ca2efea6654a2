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

import numpy as np
import yaml

from rnnlm_cli.errors import ConfigError, brief, brief_path


@dataclass(frozen=True)
class Rule:
    """A check beyond type, choices and range: `ok(value)` must hold for the coerced value, and
    `expected` is what the error message says was expected (also when the type is wrong)."""

    expected: str
    ok: Callable[[Any], bool]


POSITIVE_INT_OR_EPOCH = Rule("a positive integer or 'epoch'",
                             lambda v: v == "epoch" if isinstance(v, str) else v >= 1)


NON_NEGATIVE_INT_OR_AUTO = Rule("a non-negative integer or 'auto'",
                                lambda v: v == "auto" if isinstance(v, str) else v >= 0)


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
    num_layers: int = _opt(1, "stacked recurrent layers; layer l reads layer l-1's h at the same step", low=1)
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
    dropout_between: float = _opt(0.0, "inverted dropout on the hidden states passed from one layer to the next "
                                  "(training only; no effect with one layer)", low=0.0, high=0.95)
    dropout_locked: bool = _opt(False, "variational dropout: one mask per sequence, shared over time, for "
                                "dropout_embedding, dropout_between and dropout_output (Gal & Ghahramani 2016)")
    dropout_words: float = _opt(0.0, "embedding dropout: drop whole word types for a batch (training only)",
                                low=0.0, high=0.95)
    weight_drop: float = _opt(0.0, "DropConnect on every recurrent matrix W_h, one mask per batch (training only; "
                              "Merity et al. 2018)", low=0.0, high=0.95)
    ar: float = _opt(0.0, "activation regularisation: ar * mean of the squared (dropped) top-layer outputs, added "
                     "to the training loss", low=0.0)
    tar: float = _opt(0.0, "temporal activation regularisation: tar * mean of the squared step-to-step change of "
                      "the top layer's outputs, added to the training loss", low=0.0)
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
    k2: Union[int, str] = _opt(0, "stream: steps each chunk backpropagates (>= k1; 0 = k1), or 'auto': the measured "
                               "gradient horizon, re-measured every k2_every updates", rule=NON_NEGATIVE_INT_OR_AUTO)
    k2_every: int = _opt(100, "k2 auto: updates between measurements of the lag profile", low=1)
    k2_max: int = _opt(200, "k2 auto: the longest backpropagation it may choose (also the measured window)", low=1)
    k2_threshold: float = _opt(1e-3, "k2 auto: the horizon is the largest lag whose normalised gradient norm stays "
                               "above this", low=0.0, low_open=True)
    k1_spread: float = _opt(0.0, "stream: random chunk lengths (AWD-LSTM): each chunk's length is drawn around k1 "
                            "(k1/2 with chance 0.05) with this standard deviation, within [min(5, k1), 2 k1], and "
                            "its update's rate is scaled by length / k1 (0 = every chunk k1; needs k2 0 or k1)",
                            low=0.0)
    window: int = _opt(5, "window: every output backpropagates through at most this many states", low=1)
    state_reset: float = _opt(0.0, "stream: chance that a stream starts its next chunk from the zero state, as "
                              "evaluation and generation start (0 = only at epoch starts)", low=0.0, high=1.0)
    max_len: int = _opt(0, "full: longest sentence kept, longer ones are cut (0 = no limit)", low=0)
    epochs: int = _opt(1, "passes over the training data", low=1)
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
    average: str = _opt("none", "weight averaging (Polyak) of the iterates after each update: none, nt (from the "
                        "first validation worse than the best of those more than average_nonmono before it, "
                        "Merity et al. 2018) or always (from the first update); validation, checkpoints and every "
                        "reader use the average", choices=("none", "nt", "always"))
    average_nonmono: int = _opt(5, "average=nt: n, the validations a loss is compared over (it must be worse than "
                                "the best of those before the last n)", low=1)
    eval_every: Union[int, str] = _opt("epoch", "validate every N updates, or 'epoch'", rule=POSITIVE_INT_OR_EPOCH)
    eval_batch_size: int = _opt(10, "parallel streams during evaluation", low=1)
    log_every: int = _opt(10, "updates between metrics.jsonl lines", low=1)
    log_param_norms_every: int = _opt(0, "updates between per-parameter gradient norms in the log (0 = never)", low=0)
    checkpoint_every: int = _opt(0, "updates between checkpoints besides evaluations (0 = only at evaluations)", low=0)
    tensorboard: str | None = _opt(None, "also write the metrics as TensorBoard event files into this folder (needs "
                                   "the tensorboard extra; metrics.jsonl stays the record)", path=True)


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
class EvaluateConfig:
    dynamic_method: str = _opt("sgd", "evaluate --dynamic: sgd (theta -= lr g) or rms (the step divided by the RMS "
                               "of training gradients, Krause et al. 2018)", choices=("sgd", "rms"))
    dynamic_lr: float = _opt(0.01, "evaluate --dynamic: the learning rate of the update after each chunk",
                             low=0.0, low_open=True)
    dynamic_decay: float = _opt(0.0, "evaluate --dynamic: pull toward the trained weights per update, "
                                "theta += decay (theta_0 - theta) (rms: per weight, scaled by its RMS)",
                                low=0.0, high=1.0)
    dynamic_chunk: int = _opt(20, "evaluate --dynamic: tokens scored between two updates", low=1)
    dynamic_ms_batches: int = _opt(20, "evaluate --dynamic with rms: training batches (train.batch_size x "
                                   "train.k1) whose mean squared gradients normalise the steps", low=1)
    dynamic_eps: float = _opt(1e-5, "evaluate --dynamic with rms: added to the RMS before dividing",
                              low=0.0, low_open=True)
    dynamic_after_training: bool = _opt(False, "train: also score the final checkpoint on valid and test with "
                                        "dynamic evaluation (these settings), reported beside the static figures "
                                        "(summary.json `dynamic`); needs train.bptt stream or window")


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
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
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

MAX_CONFIG_BYTES = 1 << 20      # a configuration file is a few hundred bytes; refuse anything over 1 MiB
MAX_ALIAS_VALUES = 10_000       # values that YAML aliases may expand to, all aliases of a document together


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys (plain YAML keeps the last silently) and
    aliases that expand to more than MAX_ALIAS_VALUES values (a "billion laughs" bomb: nine
    lines of nested aliases stand for a billion strings).

    Each alias adds the expanded size of what it refers to, counted on the node graph (shared
    nodes are measured once), so the bomb is refused at the alias that crosses the bound, before
    anything is expanded; an alias to the collection that contains it is refused too."""

    def __init__(self, stream):
        super().__init__(stream)
        self._alias_values = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent, index):
        if not self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)
        line = self.peek_event().start_mark.line + 1
        node = super().compose_node(parent, index)
        self._alias_values += self._expanded_size(node, set(), line)
        if self._alias_values > MAX_ALIAS_VALUES:
            raise ConfigError(f"YAML aliases expand to more than {MAX_ALIAS_VALUES:,} values (line {line}); "
                              f"write the values out instead")
        return node

    def _expanded_size(self, node, open_nodes: set, line: int) -> int:
        """How many values `node` stands for once every alias inside it is expanded."""
        key = id(node)
        if key in self._sizes:
            return self._sizes[key]
        if key in open_nodes:
            raise ConfigError(f"a YAML alias refers to the collection that contains it (line {line})")
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            return 1
        open_nodes.add(key)
        size = 1
        for child in children:
            size += self._expanded_size(child, open_nodes, line)
            if size > MAX_ALIAS_VALUES:
                break                      # enough to refuse; the exact size does not matter
        open_nodes.discard(key)
        self._sizes[key] = size
        return size


def _construct_mapping(loader, node, deep=False):
    keys = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in keys:
            raise ConfigError(f"duplicate key '{brief(key, quote=False)}' (line {key_node.start_mark.line + 1})")
        keys.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: str) -> dict:
    """Parse a YAML config file into a dict; every failure is a one-line ConfigError."""
    shown = brief_path(path)
    if not os.path.exists(path):
        raise ConfigError(f"config file not found: {shown}")
    if os.path.isdir(path):
        raise ConfigError(f"config path is a folder, not a file: {shown}")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)       # at most that much, also from /dev/zero or a pipe
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"config {shown} is larger than {MAX_CONFIG_BYTES // 1024} KiB; "
                              f"a configuration is a short YAML file")
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{shown}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {shown}: {exc.strerror}") from None
    try:
        doc = yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as exc:
        raise ConfigError(f"{shown}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"{shown}: invalid YAML{where}: {brief(exc.problem or exc.context, 200, quote=False)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown}: invalid YAML: {brief(' '.join(str(exc).split()), 200, quote=False)}") from None
    except RecursionError:
        raise ConfigError(f"{shown}: invalid YAML: nested too deeply") from None
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:  # e.g. `!!int abc`, a list as a key
        raise ConfigError(f"{shown}: invalid YAML: {brief(str(exc), 200, quote=False)}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{shown}: the top level must be a mapping of sections (data, model, train, ...), "
                          f"not a {type(doc).__name__}")
    return doc


def parse_override(text: str) -> tuple[list[str], Any]:
    """'model.hidden_size=128' -> (['model', 'hidden_size'], 128); the value is a YAML scalar."""
    if "=" not in text:
        raise ConfigError(f"--set expects section.key=value, got '{brief(text, quote=False)}'")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"--set expects section.key=value, got '{brief(text, quote=False)}'")
    try:
        value = yaml.load(raw, Loader=_UniqueKeyLoader) if raw.strip() else ""
    except ConfigError as exc:       # an alias bomb or a duplicate key in a flow collection
        raise ConfigError(f"--set {brief(text, quote=False)}: {exc}") from None
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


def _check_number(key: str, number: Any, given: Any = _NO) -> None:
    """A number must be finite and, as an integer, below 2**63 (numpy's int64)."""
    shown = brief(number if given is _NO else given)
    if isinstance(number, float) and not math.isfinite(number):
        raise ConfigError(f"{key}: expected a finite number, got {shown}")
    if isinstance(number, int) and abs(number) >= 2 ** 63:
        raise ConfigError(f"{key}: expected a number below 2**63, got {shown}")


def _check_value(key: str, value: Any, f: dataclasses.Field, hint: Any) -> Any:
    """Coerce and validate one value against its field: null, type, finite, size, rule, choices, range."""
    meta = f.metadata
    rule = meta.get("rule")

    def fail(expected):
        raise ConfigError(f"{key}: expected {expected}, got {brief(value)}")

    kinds, optional = _allowed_types(hint)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key}: a value is required, got null")
    result = next((r for r in (_coerce(value, k) for k in kinds) if r is not _NO), _NO)
    if result is _NO:
        fail(rule.expected if rule else " or ".join(_type_name(k) for k in kinds))
    if isinstance(result, list):               # each item is a number, checked like a scalar value
        for i, item in enumerate(result):
            _check_number(f"{key}[{i}]", item)
    else:
        _check_number(key, result, value)
    if rule and not rule.ok(result):
        fail(rule.expected)
    choices = meta.get("choices")
    if callable(choices):
        choices = choices()
    if choices and result not in choices:
        raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {brief(value)}"
                          + _suggest(str(value)[:100], list(choices)))
    low, high = meta.get("low"), meta.get("high")
    if low is not None and isinstance(result, (int, float)):
        if result < low or (meta.get("low_open") and result == low):
            rel = ">" if meta.get("low_open") else ">="
            raise ConfigError(f"{key}: expected a value {rel} {low}, got {brief(value)}")
    if high is not None and isinstance(result, (int, float)) and result > high:
        raise ConfigError(f"{key}: expected a value <= {high}, got {brief(value)}")
    return result


def _build_section(name: str, values: dict, base_dir: str | None) -> Any:
    cls = SECTIONS[name]
    hints = get_type_hints(cls)
    by_name = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if not isinstance(key, str) or key not in by_name:
            raise ConfigError(f"unknown key '{name}.{brief(key, quote=False)}'" + _suggest_key(name, str(key)[:100]))
        f = by_name[key]
        checked = _check_value(f"{name}.{key}", value, f, hints[key])
        if f.metadata.get("path") and isinstance(checked, str) and "\0" in checked:
            raise ConfigError(f"{name}.{key}: a path cannot contain a NUL character")
        if f.metadata.get("path") and f.default is not None and checked == "":
            raise ConfigError(f"{name}.{key}: expected a path, got {brief(checked)}")   # '' would mean the current folder
        if f.metadata.get("path") and checked and base_dir is not None:
            checked = os.path.normpath(os.path.join(base_dir, os.path.expanduser(checked)))
        kwargs[key] = checked
    return cls(**kwargs)


def _cross_checks(cfg: Config) -> None:
    """Rules that involve more than one key: settings that contradict each other or the data
    the configuration names. (A key that only applies in another mode, such as train.window
    outside window mode or train.k2 outside stream mode, is not a contradiction: a sweep over
    modes shares one configuration.)"""
    tc = cfg.train
    if tc.bptt == "stream" and tc.k2 == "auto" and tc.k2_max < tc.k1:
        raise ConfigError(f"train.k2_max ({tc.k2_max}) must be >= train.k1 ({tc.k1}): k2 auto chooses between them")
    if tc.bptt == "stream" and tc.k2 != "auto" and tc.k2 and tc.k2 < tc.k1:
        raise ConfigError(f"train.k2 ({tc.k2}) must be >= train.k1 ({tc.k1}), or 0 for k2 = k1")
    if tc.k1_spread and tc.bptt != "stream":
        raise ConfigError(f"train.k1_spread ({tc.k1_spread}) draws the chunk lengths of stream mode; "
                          f"train.bptt is {tc.bptt} (set train.k1_spread=0 or train.bptt=stream)")
    if tc.k1_spread and (tc.k2 == "auto" or tc.k2 not in (0, tc.k1)):
        raise ConfigError(f"train.k1_spread ({tc.k1_spread}) needs train.k2 = 0 or k1 ({tc.k1}), got "
                          f"{brief(tc.k2)}: the drawn length is the truncation")
    if tc.average == "nt" and isinstance(tc.eval_every, int) and tc.max_steps and tc.eval_every > tc.max_steps:
        raise ConfigError(f"train.average=nt starts averaging after a validation, but train.eval_every "
                          f"({tc.eval_every}) exceeds train.max_steps ({tc.max_steps}): no validation would run")
    if tc.min_lr and tc.min_lr >= tc.lr:
        raise ConfigError(f"train.min_lr ({tc.min_lr}) must be below train.lr ({tc.lr}): training stops once the "
                          f"rate falls below min_lr (0 = never)")
    if no_validation_data(cfg.data):
        needs = validation_users(tc)
        if needs:
            raise ConfigError(f"{needs} needs validation data, but data.valid is not set and data.split gives "
                              f"it nothing ({brief(cfg.data.split)}); give data.valid or a validation ratio")
    if cfg.evaluate.dynamic_after_training and tc.bptt == "full":
        raise ConfigError("evaluate.dynamic_after_training reads the text as one stream with the state carried, "
                          "but train.bptt=full trains on sentences from the zero state; use stream or window")
    if cfg.model.tie_weights and cfg.model.embedding_size != cfg.model.hidden_size:
        raise ConfigError(f"model.tie_weights needs model.embedding_size == model.hidden_size, "
                          f"got {cfg.model.embedding_size} and {cfg.model.hidden_size}")
    split = cfg.data.split
    if len(split) != 3 or any(r < 0 for r in split) or abs(sum(split) - 1.0) > 1e-6 or split[0] <= 0:
        raise ConfigError(f"data.split: expected three non-negative ratios summing to 1 with train > 0, got {brief(split)}")
    if any(k < 1 for k in cfg.diagnose.truncations):
        raise ConfigError(f"diagnose.truncations: expected positive integers, got {brief(cfg.diagnose.truncations)}")
    bins = cfg.probe.bins
    if not bins or bins[0] < 0 or any(a >= b for a, b in zip(bins, bins[1:])):
        raise ConfigError(f"probe.bins: expected strictly increasing distances >= 0, got {brief(bins)}")


def no_validation_data(data: DataConfig) -> bool:
    """Whether the configuration itself says there is no validation split: it names the corpus
    (data.train), no data.valid, and a split ratio of 0 for validation. Without data.train the
    prepared folder decides (see validation_users)."""
    return bool(data.train) and not data.valid and len(data.split) == 3 and data.split[1] == 0


def validation_users(tc: TrainConfig) -> str:
    """The training settings that act only on validation losses ('' when none is set)."""
    users = []
    if tc.schedule == "plateau":
        users.append("train.schedule=plateau")
    if tc.reject_threshold:
        users.append(f"train.reject_threshold={tc.reject_threshold}")
    if tc.average == "nt":
        users.append("train.average=nt")
    return " and ".join(users)


def _split_key(full: str, where: str = "") -> tuple[str, str]:
    """'train.out' -> ('train', 'out'); ConfigError (prefixed with `where`) for an unknown key."""
    section, _, key = full.partition(".")
    if section not in SECTIONS:
        raise ConfigError(f"{where}unknown section '{brief(section, quote=False)}'"
                          + _suggest(section[:100], list(SECTIONS)))
    if key not in {f.name for f in fields(SECTIONS[section])}:
        raise ConfigError(f"{where}unknown key '{brief(full, quote=False)}'" + _suggest_key(section, key[:100]))
    return section, key


def _set_key(obj: Any, section: str, key: str, value: Any, base_dir: str) -> Any:
    """A copy of section object `obj` with one key validated and set (paths against base_dir)."""
    single = _build_section(section, {key: value}, base_dir)
    return dataclasses.replace(obj, **{key: getattr(single, key)})


def option_value(full: str, text: str) -> Any:
    """The value of a command-line option that sets the key `full` ("generate.temperature"):
    the text read as the key's type (int, float or str; never as YAML) and validated like a
    YAML or --set value of that key, so option and key accept the same values and refuse the
    rest with the same message (ConfigError naming the key). Paths resolve against the cwd."""
    section, key = _split_key(full)
    kinds, _ = _allowed_types(get_type_hints(SECTIONS[section])[key])
    value: Any = text
    for kind in kinds:
        if kind in (int, float) and isinstance(text, str):
            try:
                value = kind(text.strip())
                break
            except (ValueError, OverflowError):
                continue
    return _validated(section, key, value)


def set_value(full: str, text: str) -> Any:
    """The value `--set full=text` gives key `full`: the text read as a YAML scalar (as --set reads
    it: `false`, `1e-3`, `[0.8, 0.1, 0.1]`) and validated like any value of the key (ConfigError
    naming the key). Paths resolve against the cwd."""
    section, key = _split_key(full)
    return _validated(section, key, parse_override(f"{full}={text}")[1])


def _validated(section: str, key: str, value: Any) -> Any:
    """`value` checked (and converted) by key section.key's own validator, paths against the cwd."""
    return getattr(_build_section(section, {key: value}, os.getcwd()), key)


def option_kind(full: str) -> str:
    """The type name of key `full` for a command-line metavar: INTEGER, FLOAT or TEXT."""
    section, key = _split_key(full)
    kinds, _ = _allowed_types(get_type_hints(SECTIONS[section])[key])
    return {int: "INTEGER", float: "FLOAT"}.get(kinds[0], "TEXT")


def build_config(doc: dict, overrides: list[str] | tuple[str, ...] = (), base_dir: str | None = None) -> Config:
    """Validate a config mapping plus `--set` overrides into a Config.

    Paths in `doc` resolve against `base_dir` (the config file's folder); paths given with
    --set resolve against the current directory.
    """
    for name, values in doc.items():
        if not isinstance(name, str) or name not in SECTIONS:
            raise ConfigError(f"unknown section '{brief(name, quote=False)}'" + _suggest(str(name)[:100], list(SECTIONS))
                              + f"; sections are {', '.join(SECTIONS)}")
        if values is not None and not isinstance(values, dict):
            raise ConfigError(f"section '{name}' must be a mapping of keys, got {type(values).__name__}")
    built = {name: _build_section(name, doc.get(name) or {}, base_dir) for name in SECTIONS}
    for text in overrides:
        (section, key), value = parse_override(text)
        section, key = _split_key(f"{section}.{key}", where=f"--set {brief(text, quote=False)}: ")
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
    """Backpropagation length of stream mode (k2 = 0 means k2 = k1); with k2 auto, the longest
    it may become (train.k2_max)."""
    tc = cfg.train
    return tc.k2_max if tc.k2 == "auto" else (tc.k2 or tc.k1)


def longest_chunk(cfg: Config) -> int:
    """The most steps one training chunk of stream mode may hold: k1, or 2 k1 with k1_spread
    (data.batching.chunk_lengths caps each drawn length there)."""
    return 2 * cfg.train.k1 if cfg.train.k1_spread else cfg.train.k1


# --------------------------------------------------------------------------- memory, from the shapes

def machine_memory() -> int | None:
    """This machine's physical memory in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gates(cell: str | None) -> int:
    """G, the gate blocks of a cell (4, the most, for None: any cell)."""
    from rnnlm_cli.nn.cells import CELLS
    if cell in CELLS:
        return CELLS[cell](1).gates
    return max(CELLS[name](1).gates for name in CELLS)


def model_values(V: int, E: int, H: int, G: int, L: int = 1) -> int:
    """Numbers in a model's parameters: embedding (V, E), cell W_x (E, GH), W_h (H, GH), biases,
    output layer (H, V) and its bias; each further layer adds W_x (H, GH), W_h and biases."""
    return V * E + G * H * (E + H + 2) + (L - 1) * G * H * (2 * H + 2) + H * V + V


def batch_values(T: int, B: int, V: int, E: int, H: int, G: int, L: int = 1) -> int:
    """Numbers held for one forward and backward pass over T steps of B streams: logits and
    their gradient (T, B, V) twice, gate caches (T, B, GH) three times, embeddings, states;
    each further layer adds its gate caches, states and input gradient."""
    return T * B * (2 * V + 3 * G * H + E + 2 * H + (L - 1) * (3 * G * H + 3 * H))


def _default_of(key: str):
    section, name = key.split(".")
    return getattr(getattr(Config(), section), name)


def check_memory(what: str, sizes: dict[str, int], need: Callable[[dict[str, int]], int]) -> int:
    """Refuse, before anything is allocated, a computation that could never fit in this machine.

    sizes: the configuration keys that shape the arrays (plus fixed sizes such as "V", the
    vocabulary) and their values; need(sizes): the bytes they call for, from the shapes. When
    that is more than the machine's memory, ConfigError names the estimate and the key whose
    value weighs most (the one that, put back to its default, saves the most). Returns the
    estimate in bytes."""
    needed = need(sizes)
    have = machine_memory()
    if have is None or needed <= have:
        return needed
    keys = [k for k in sizes if "." in k]
    key = min(keys, key=lambda k: need({**sizes, k: min(sizes[k], _default_of(k))})) if keys else None
    culprit = f"; reduce {key} (now {brief(sizes[key])})" if key else ""
    raise ConfigError(f"{what} would need about {_human_bytes(needed)} of memory, more than this machine's "
                      f"{_human_bytes(have)}{culprit}")


def _human_bytes(n: int) -> str:
    for unit, size in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:,} bytes"


def check_training_memory(cfg: Config, vocab_size: int) -> int:
    """Parameters, gradients, optimizer state and one batch's buffers of a training run
    (and of its evaluations), before the model is built."""
    tc, m = cfg.train, cfg.model
    slots = {"sgd": 1 if tc.momentum else 0, "adagrad": 1, "rmsprop": 1, "adam": 2}[tc.optimizer]
    sizes = {"model.embedding_size": m.embedding_size, "model.hidden_size": m.hidden_size,
             "model.num_layers": m.num_layers,
             "train.batch_size": tc.batch_size, "train.eval_batch_size": tc.eval_batch_size,
             "train.k1": tc.k1, "train.k2": resolved_k2(cfg), "train.max_len": tc.max_len, "V": vocab_size}
    G, item = _gates(m.cell), np.dtype(tc.dtype).itemsize

    def need(s):
        T = max(s["train.k1"] * (2 if tc.k1_spread else 1), s["train.k2"], s["train.max_len"])   # longest_chunk
        E, H, L = s["model.embedding_size"], s["model.hidden_size"], s["model.num_layers"]
        B = max(s["train.batch_size"], s["train.eval_batch_size"])
        return item * ((2 + slots) * model_values(s["V"], E, H, G, L) + batch_values(T, B, s["V"], E, H, G, L))

    return check_memory("training", sizes, need)


def check_gradcheck_memory(cfg: Config) -> int:
    """The float64 model and batch of `rnnlm gradcheck` (any cell)."""
    g = cfg.gradcheck
    sizes = {"gradcheck.hidden_size": g.hidden_size, "gradcheck.vocab_size": g.vocab_size,
             "gradcheck.steps": g.steps, "gradcheck.batch_size": g.batch_size}

    def need(s):
        V, H, T, B, G = s["gradcheck.vocab_size"], s["gradcheck.hidden_size"], s["gradcheck.steps"], \
            s["gradcheck.batch_size"], _gates(None)
        return 8 * (3 * model_values(V, H, H, G) + batch_values(T, B, V, H, H, G))

    return check_memory("gradcheck", sizes, need)


def check_diagnose_memory(cfg: Config, vocab_size: int | None = None) -> int:
    """The float64 model, T-step batches and the (T, T) and (T, H, GH) tables of
    diagnose-gradients; vocab_size: the model's, or diagnose.random_vocab when None."""
    d, m = cfg.diagnose, cfg.model
    sizes = {"model.embedding_size": m.embedding_size, "model.hidden_size": m.hidden_size,
             "model.num_layers": m.num_layers,
             "diagnose.steps": d.steps, "diagnose.batch_size": d.batch_size, "diagnose.batches": d.batches,
             "diagnose.random_vocab": d.random_vocab, "V": vocab_size or 0}
    G = _gates(m.cell)

    def need(s):
        V = s["V"] or s["diagnose.random_vocab"]
        E, H, T, B = s["model.embedding_size"], s["model.hidden_size"], s["diagnose.steps"], s["diagnose.batch_size"]
        above = s["model.num_layers"] - 1                # layers above the first: their cells, caches and tables
        tokens = 2 * s["diagnose.batches"] * T * B       # inputs and targets of every batch (random tokens are drawn up front)
        per_layer = 4 * T * T + T * H * G * H + 2 * T * B * H
        return 8 * (2 * (model_values(V, E, H, G) + above * G * H * (2 * H + 2)) + batch_values(T, B, V, E, H, G)
                    + above * T * B * 3 * G * H + (1 + above) * per_layer + tokens)

    return check_memory("diagnose-gradients", sizes, need)


def check_reading_memory(cfg: Config, vocab_size: int, embedding_size: int, hidden_size: int,
                         cell: str, generate: bool, num_layers: int = 1) -> int:
    """What evaluate (train.eval_batch_size streams of train.k1 steps) or generate (generate.n
    samples of generate.max_tokens tokens) allocates beside a model read from a checkpoint."""
    G = _gates(cell)
    if generate:
        sizes = {"generate.n": cfg.generate.n, "generate.max_tokens": cfg.generate.max_tokens}

        def need(s):
            n = s["generate.n"]
            return 8 * n * (3 * vocab_size + 2 * G * hidden_size * num_layers + s["generate.max_tokens"])

        return check_memory("generate", sizes, need)
    sizes = {"train.eval_batch_size": cfg.train.eval_batch_size, "train.k1": cfg.train.k1}

    def need(s):
        return 8 * batch_values(s["train.k1"], s["train.eval_batch_size"], vocab_size, embedding_size,
                                hidden_size, G, num_layers)

    return check_memory("evaluate", sizes, need)
