"""The reference of every file rnnlm writes and every JSON/CSV it prints: one declarative schema,
rendered into docs/reference.md (`make docs`, through scripts/docgen.py).

Each output is an `Output`: what it is, who writes it, and its fields. A `Field` names a place
in the document by a path, with its type, unit, meaning, what null means and when it is present:

    models                     a key of the top-level object
    models[].label             a key of every object in the list `models`
    param_grad_norms.*         the values of a mapping whose keys vary (parameter names, ...);
                               the field with `keys` says what the keys are
    param/<name>               (npz entries, files, CSV rows) <...> matches any one name part

`see` names the output (and path inside it, "probe:models[]") that describes a value further,
so a shape is described once (the summary inside a result record, the entries of --over-seeds
`runs`, the {mean, min, max, per_seed} of a statistic over seeds). `base` gives an output all the
fields of another except the ones it describes itself (a field of its own replaces the base's
field at that path and everything under it).

A field without `when` is present in every document (in every item of its list); a number may
be null when it is NaN or infinite (strict JSON); other types are null only where `null` says
what null means. tests/test_reference.py runs every command on small data and walks what it
emits against this schema, both ways: nothing undescribed, nothing described that no command
emits, and the types and presence as declared.
"""

from __future__ import annotations

from dataclasses import dataclass, fields as dataclass_fields
from typing import Union, get_args, get_origin, get_type_hints

from rnnlm_cli.config import SECTIONS
from rnnlm_cli.render.report import table
from rnnlm_cli.values import SCHEMA_VERSION


@dataclass(frozen=True)
class Field:
    path: str
    type: str             # integer, number, string, boolean, object, list of ..., mapping, file, ...
    meaning: str
    unit: str = ""
    null: str = ""        # what null means; "" = never null (numbers: null only when non-finite)
    when: str = ""        # present only when ...; "" = always
    see: str = ""         # "OUTPUT" or "OUTPUT:PATH": described there
    keys: str = ""        # a mapping: what its keys are


@dataclass(frozen=True)
class Output:
    name: str             # the id other outputs `see` it by
    title: str            # the heading: a file name or a command
    kind: str             # json, jsonl, npz, folder, tsv, csv, yaml, shape
    writers: str          # which commands write or print it
    about: str
    fields: tuple[Field, ...]
    base: str = ""


F = Field
VERSION = F("schema_version", "integer", f"the version of this output's fields ({SCHEMA_VERSION} now); see "
            "[Versions](#versions)")
SPREAD = "a statistic over seeds: {mean, min, max, per_seed}"


# --------------------------------------------------------------------------- training

RUN_FOLDER = Output(
    "run-folder", "The run folder (`train.out`)", "folder", "`rnnlm train`",
    "What a training run leaves in its output folder. `train` also holds `train.lock` there while it runs "
    "(the PID of the run, under an exclusive `flock`); it is removed when the run ends.",
    (F("config.yaml", "file", "the resolved configuration, as `rnnlm config show` prints it", see="config"),
     F("metrics.jsonl", "file", "the training log: one JSON object per line", see="metrics"),
     F("checkpoint.npz", "file", "the latest state; `--resume` continues from it bit-identically", see="checkpoint"),
     F("best.npz", "file", "the parameters with the best validation loss (the same entries as checkpoint.npz; "
                           "with `train.average`, the averaged ones once averaging holds an iterate)",
       when="a validation ran", see="checkpoint"),
     F("summary.json", "file", "the final figures", when="training ended", see="summary")))

SUMMARY = Output(
    "summary", "summary.json", "json",
    "`rnnlm train` (`OUT/summary.json`; printed by `--format json`; also the `summary` of a result record)",
    "The final figures of a training run, written when it ends. The final validation and test figures are "
    "those of the best parameters (`best.npz`) when a validation ran, else of the last.",
    (VERSION,
     F("steps", "integer", "updates made in all (skipped non-finite updates included)"),
     F("epochs", "integer", "epochs completed"),
     F("batches_into_epoch", "integer", "batches of the unfinished epoch (0 after a completed epoch)"),
     F("tokens", "integer", "training tokens the applied updates scored", "tokens"),
     F("wall_time_s", "number", "training time, summed over resumed parts", "s"),
     F("tokens_per_sec", "number", "tokens / wall_time_s", "tokens/s"),
     F("clip_rate", "number", "the fraction of updates whose gradient clipping shrank"),
     F("nonfinite_skipped", "integer", "updates skipped for a NaN/inf loss or gradient (`train.nonfinite: skip`)"),
     F("stopped", "string", "why training stopped, e.g. `completed 2 epoch(s)`, `reached train.max_steps=6`"),
     F("lr", "number", "the learning rate at the end"),
     F("best_valid_loss", "number", "the best validation loss seen during training", "nats/token",
       when="a validation ran"),
     F("best_valid_ppl", "number", "exp(best_valid_loss)", when="a validation ran"),
     F("checkpoints", "object", "the checkpoint files, named inside the run folder"),
     F("checkpoints.last", "string", "`checkpoint.npz`"),
     F("checkpoints.best", "string", "`best.npz`", null="no validation ran, so there is no best.npz"),
     F("checkpoints.evaluated", "string", "the file whose parameters the final figures used"),
     F("valid_loss", "number", "final cross-entropy on the validation split", "nats/token",
       when="the validation split has 2 tokens or more"),
     F("valid_ppl", "number", "exp(valid_loss)", when="the validation split has 2 tokens or more"),
     F("valid_bits", "number", "valid_loss / ln 2", "bits/token", when="the validation split has 2 tokens or more"),
     F("k2_auto", "object", "what `train.k2: auto` chose (from metrics.jsonl)", when="`train.k2: auto` runs"),
     F("k2_auto.measurements", "integer", "lag-profile measurements made"),
     F("k2_auto.targets", "list of integers", "the k2 each measurement chose, in order", "steps"),
     F("k2_auto.last", "integer", "the k2 chosen last", "steps"),
     F("k2_auto.mean_k2", "number", "mean k2 in force over the logged updates", "steps",
       null="no update line was logged"),
     F("averaging_started_step", "integer", "the update count when weight averaging started (0: before the first "
       "update); the average holds the iterates after each later update", null="`train.average: nt` never fired",
       when="`train.average` is `nt` or `always`"),
     F("averaged_updates", "integer", "iterates in the final weight average (0: the raw weights were used)",
       when="`train.average` is `nt` or `always`"),
     F("test_loss", "number", "final cross-entropy on the test split", "nats/token",
       when="the test split has 2 tokens or more"),
     F("test_ppl", "number", "exp(test_loss)", when="the test split has 2 tokens or more"),
     F("test_bits", "number", "test_loss / ln 2", "bits/token", when="the test split has 2 tokens or more"),
     F("params", "integer", "trainable parameters of the model"),
     F("dynamic", "object", "the same checkpoint's figures under dynamic evaluation, never mixed with the static "
                            "ones above", when="`evaluate.dynamic_after_training`"),
     F("dynamic.protocol", "object", "the settings that produced them (as `rnnlm evaluate --dynamic` reports "
                                     "them; `updates` counts both splits)"),
     F("dynamic.protocol.method", "string", "`sgd` or `rms`"),
     F("dynamic.protocol.lr", "number", "`evaluate.dynamic_lr`"),
     F("dynamic.protocol.decay", "number", "`evaluate.dynamic_decay`"),
     F("dynamic.protocol.chunk", "integer", "`evaluate.dynamic_chunk`", "tokens"),
     F("dynamic.protocol.updates", "integer", "gradient steps taken over both splits"),
     F("dynamic.protocol.ms_batches", "integer", "`evaluate.dynamic_ms_batches`", when="method `rms`"),
     F("dynamic.protocol.eps", "number", "`evaluate.dynamic_eps`", when="method `rms`"),
     F("dynamic.valid_loss", "number", "dynamic cross-entropy on the validation split", "nats/token",
       when="the validation split has 2 tokens or more"),
     F("dynamic.valid_ppl", "number", "exp(dynamic.valid_loss)", when="the validation split has 2 tokens or more"),
     F("dynamic.valid_bits", "number", "dynamic.valid_loss / ln 2", "bits/token",
       when="the validation split has 2 tokens or more"),
     F("dynamic.test_loss", "number", "dynamic cross-entropy on the test split", "nats/token",
       when="the test split has 2 tokens or more"),
     F("dynamic.test_ppl", "number", "exp(dynamic.test_loss)", when="the test split has 2 tokens or more"),
     F("dynamic.test_bits", "number", "dynamic.test_loss / ln 2", "bits/token",
       when="the test split has 2 tokens or more"),
     F("dynamic.wall_time_s", "number", "time the dynamic evaluations took (not in wall_time_s)", "s")))

UPDATE, EVAL, FINAL = "update lines", "evaluation lines", "final evaluation lines"
METRICS = Output(
    "metrics", "metrics.jsonl", "jsonl", "`rnnlm train` (`OUT/metrics.jsonl`)",
    "The training log, one JSON object per line, flushed line by line, in three kinds: an *update line* "
    "every `train.log_every` updates (and every `train.log_param_norms_every`), an *evaluation line* (with "
    "`split`) after each validation during training, and at the end one *final evaluation line* per split "
    "(`final: true`). On `--resume` the lines logged after the checkpoint are dropped and logged again. "
    "The lines carry no `schema_version`: they belong to a run whose `summary.json` and checkpoints carry "
    "it, and a version key on every line of a long log would only repeat it.",
    (F("step", "integer", "the update count when the line was written"),
     F("epoch", "integer", "update and evaluation lines: the epoch in progress, counted from 1; final lines: "
                           "epochs completed"),
     F("tokens", "integer", "update lines: training tokens scored so far; evaluation lines: tokens evaluated",
       "tokens"),
     F("loss", "number", "update lines: mean training loss since the previous update line; evaluation lines: "
                         "the split's cross-entropy", "nats/token"),
     F("ppl", "number", "exp(loss)", null="the loss is NaN or infinite"),
     F("lr", "number", "the learning rate", when=f"{UPDATE} and {EVAL} (not final ones)"),
     F("grad_norm", "number", "global L2 norm of the gradient before clipping", when=UPDATE),
     F("grad_norm_clipped", "number", "global L2 norm after clipping", when=UPDATE),
     F("clipped", "boolean", "whether clipping shrank this update's gradient", when=UPDATE),
     F("nonfinite_skipped", "integer", "non-finite updates skipped so far", when=UPDATE),
     F("tokens_per_sec", "number", "training throughput since the previous update line", "tokens/s", when=UPDATE),
     F("param_grad_norms", "mapping", "each parameter's gradient L2 norm before clipping", keys="parameter name "
       "(as in the checkpoint's `param/<name>`) -> number", when="update lines, every train.log_param_norms_every "
                                                                "updates"),
     F("k2", "integer", "the backpropagation length in force for this update (its window starts k2 - k1 "
                        "steps before the chunk)", "steps", when="update lines of `train.k2: auto` runs"),
     F("k2_measured", "object", "the lag profile was measured before this update", when="update lines of "
       "`train.k2: auto` runs, every `train.k2_every` updates"),
     F("k2_measured.horizon", "integer", "the measured gradient horizon (largest lag whose normalised gradient "
                                         "norm stays above `train.k2_threshold`)", "steps"),
     F("k2_measured.horizon_is_lower_bound", "boolean", "the profile never fell below the threshold within the "
                                                        "measured window"),
     F("k2_measured.window", "integer", "steps of the measured window (`train.k2_max` once the data allows)",
       "steps"),
     F("k2_measured.target", "integer", "the k2 chosen: horizon + 1 within [k1, k2_max]; k2 grows towards it by "
                                        "at most k1 per update", "steps"),
     F("k2_measured.changed", "boolean", "whether the target differs from the previous one"),
     F("chunk_len", "integer", "steps of this update's chunk, drawn around `train.k1` (the rate applied was "
       "`lr` x chunk_len / k1)", "steps", when="update lines of `train.k1_spread` > 0 runs"),
     F("averaged", "boolean", "whether the evaluated weights were the weight average (false: the raw weights, "
       "before averaging holds an iterate)", when=f"{EVAL} and {FINAL} of `train.average` nt or always runs"),
     F("averaging_started", "boolean", "true: this validation fired the non-monotone trigger; averaging starts "
       "with the next update", when="the one evaluation line of a `train.average: nt` run that fired it"),
     F("split", "string", "`valid` or `test`", when=f"{EVAL} and {FINAL}"),
     F("elapsed", "number", "training wall time so far", "s", when=f"{EVAL} and {FINAL}"),
     F("final", "boolean", "true: an evaluation of the final parameters", when=FINAL),
     F("checkpoint", "string", "the file (in the run folder) whose parameters were evaluated", when=FINAL)))

CHECKPOINT = Output(
    "checkpoint", "checkpoint.npz and best.npz", "npz", "`rnnlm train`",
    "A plain `.npz` of named arrays, written atomically and loadable with `numpy.load(path, allow_pickle=False)`; "
    "every reader verifies `checksum` and validates every entry. Shapes use V (vocabulary), E (embedding size), "
    "H (hidden size), B (`train.batch_size`) and G, the cell's gate count: 1 (tanh, relu), 3 (GRU: r, z, n), "
    "4 (LSTM: i, f, g, o). Parameters, optimizer slots and the state have the dtype `train.dtype`.",
    (F("param/embedding", "array (V, E)", "the embedding (also the output matrix, transposed, with `tie_weights`). "
       "Every param/ entry holds the weights to use: with `train.average`, the weight average once it holds an "
       "iterate (meta.progress.avg_count > 0), so every reader uses it"),
     F("param/cell.W_x", "array (E, G·H)", "the cell's input matrix, the gate blocks side by side",
       when="one layer"),
     F("param/cell.W_h", "array (H, G·H)", "the cell's recurrent matrix, the gate blocks side by side",
       when="one layer"),
     F("param/cell.b", "array (G·H,)", "the cell's bias", when="one layer"),
     F("param/cell.b_h", "array (H,)", "the candidate's recurrent bias, inside the reset gate",
       when="GRU, one layer"),
     F("param/cell.<l>.<name>", "array", "layer l's W_x ((E, G·H) for l = 0, (H, G·H) above), W_h, b and "
       "b_h, as for one layer (l = 0 is the layer that reads the embedding)", when="`model.num_layers` >= 2"),
     F("param/output.W", "array (H, V)", "the output matrix; (V, H) with the class softmax (a class's words are a "
                                         "row block)", when="the weights are not tied"),
     F("param/output.b", "array (V,)", "the output bias"),
     F("param/output.class_W", "array (H, C)", "the class softmax's class matrix (C = `model.num_classes`, or "
                                               "round(sqrt(V)))", when="`model.softmax: class`"),
     F("param/output.class_b", "array (C,)", "the class softmax's class bias", when="`model.softmax: class`"),
     F("optim/<slot>/<param>", "array, shaped like param/<param>", "the optimizer's state per parameter: "
       "`m` and `v` (adam), `v` (sgd with momentum), `G` (adagrad), `E` (rmsprop)",
       when="an optimizer with state"),
     F("optim/t", "integer array ()", "the optimizer's update count"),
     F("raw/<param>", "array, shaped like param/<param>", "the raw iterate that training (and `--resume`) goes on "
       "from, while param/<param> holds the weight average", when="meta.progress.avg_count > 0"),
     F("state/<i>", "array (B, H)", "the hidden state carried between chunks: h, then c for the LSTM, "
       "layer by layer from the bottom (i = l·P + j, P = 1, or 2 for the LSTM)",
       when="stream or window training (meta has_state)"),
     F("rng", "JSON text", "the random generator's state (numpy's PCG64)"),
     F("meta", "JSON text", "the run's position and settings, below"),
     F("checksum", "text", "sha256 over every other entry's name, dtype, shape and bytes", "hex"),
     F("meta.format_version", "integer", "the checkpoint format; a reader refuses another"),
     F("meta.schema_version", "integer", f"the version of these fields ({SCHEMA_VERSION} now)",
         when="checkpoints written since schema versions exist"),
     F("meta.progress", "object", "everything an exact resume needs besides the arrays"),
     F("meta.progress.step", "integer", "updates made"),
     F("meta.progress.epoch", "integer", "epochs completed"),
     F("meta.progress.batch", "integer", "the next batch of the current epoch"),
     F("meta.progress.tokens", "integer", "training tokens scored", "tokens"),
     F("meta.progress.lr", "number", "the learning rate"),
     F("meta.progress.best_loss", "number", "the best validation loss so far (`Infinity` before the first)",
       "nats/token"),
     F("meta.progress.nonfinite_skipped", "integer", "non-finite updates skipped"),
     F("meta.progress.nonfinite_run", "integer", "non-finite updates skipped in a row, up to now"),
     F("meta.progress.clipped", "integer", "updates whose gradient was clipped"),
     F("meta.progress.wall", "number", "training time so far", "s"),
     F("meta.progress.stopped", "string", "why training stopped (empty while it goes on)"),
     F("meta.progress.log_loss", "number", "loss summed since the last update line", "nats"),
     F("meta.progress.log_count", "number", "tokens summed since the last update line", "tokens"),
     F("meta.progress.k2", "integer", "`train.k2: auto`: the k2 of the next chunk's window, where the carried "
                                      "state lies (0: k1, and in other modes)", "steps",
       when="checkpoints written since `train.k2: auto` exists"),
     F("meta.progress.k2_target", "integer", "`train.k2: auto`: the k2 the last measurement chose (0: none yet, "
                                             "and in other modes)", "steps",
       when="checkpoints written since `train.k2: auto` exists"),
     F("meta.progress.avg_started", "boolean", "`train.average`: whether averaging has started",
       when="checkpoints written since `train.average` exists"),
     F("meta.progress.avg_start_step", "integer", "the update count when it started (0 before the first update, "
                                                  "and while it has not)", when="checkpoints written since "
                                                                                "`train.average` exists"),
     F("meta.progress.avg_count", "integer", "iterates in the weight average (0: none; param/ holds the raw "
                                             "weights)", when="checkpoints written since `train.average` exists"),
     F("meta.progress.valid_history", "list of numbers", "`train.average: nt`: the validation losses up to the "
       "trigger, which the non-monotone rule compares with", "nats/token",
       when="checkpoints written since `train.average` exists"),
     F("meta.config", "object", "the resolved configuration", see="config"),
     F("meta.vocab_size", "integer", "V"),
     F("meta.vocab_sha256", "string", "sha256 of the vocabulary; readers refuse prepared data with another", "hex"),
     F("meta.has_state", "boolean", "whether `state/<i>` entries are there"),
     F("meta.class_bounds", "list of integers", "the class softmax's word-id boundaries, from 0 to V",
       null="full softmax")))


# --------------------------------------------------------------------------- data

PREPARED_FOLDER = Output(
    "prepared-folder", "The prepared-data folder (`data.prepared`)", "folder",
    "`rnnlm preprocess`, and `rnnlm train` when it builds it",
    "Written to a temporary sibling and renamed into place, so it exists whole or not at all.",
    (F("vocab.txt", "file", "one `token<TAB>count` line per id (count descending, then token); `\\`, tab, "
                            "newline and CR in a token are written `\\\\`, `\\t`, `\\n`, `\\r`"),
     F("train.npy", "file", "the training split's token ids, 1-D, the smallest unsigned dtype that holds V"),
     F("valid.npy", "file", "the validation split's token ids (empty when there is none)"),
     F("test.npy", "file", "the test split's token ids (empty when there is none)"),
     F("meta.json", "file", "what the folder holds and how it was built", see="meta"),
     F("config.yaml", "file", "the resolved configuration used", see="config")))

SPLIT_MAP = "`train`, `valid`, `test` -> "
META = Output(
    "meta", "meta.json", "json",
    "`rnnlm preprocess` (written to the prepared folder; printed by `--format json`)",
    "The prepared folder's description; `train`, `evaluate --split FILE`, `generate --prime` and the probe "
    "read text the way it says.",
    (VERSION,
     F("format", "string", "`rnnlm prepared data`: the marker by which rnnlm knows its own folders"),
     F("format_version", "integer", "the folder format; readers refuse another"),
     F("level", "string", "`word` or `char`"),
     F("vocab_size", "integer", "V, `<unk>` included"),
     F("dtype", "string", "the dtype of the .npy files: `uint8`, `uint16` or `uint32`"),
     F("tokens", "mapping", "tokens per split", "tokens", keys=SPLIT_MAP + "integer"),
     F("oov_rate", "mapping", "the fraction of a split's tokens whose type is not in the vocabulary "
                              "(mapped to `<unk>`; a literal `<unk>` is not counted)",
       keys=SPLIT_MAP + "number, null for an empty split"),
     F("special", "object", "the ids of the special tokens"),
     F("special.unk", "integer", "the id of `<unk>`", null="no `<unk>` in the vocabulary"),
     F("special.eos", "integer", "the id of `<eos>`", null="no `<eos>` (char level, or `data.eos: false`)"),
     F("split_mode", "string", "`files` (one file per split) or `ratios` (one file cut by `data.split`)"),
     F("sources", "list of objects", "the input files"),
     F("sources[].path", "string", "absolute path"),
     F("sources[].bytes", "integer", "size", "bytes"),
     F("sources[].sha256", "string", "content hash; `train` rebuilds the folder when it changes", "hex"),
     F("sources[].splits", "list of strings", "the splits taken from this file"),
     F("config", "object", "the `data` section it was built with (paths absolute)", see="config:data")))

PROBE_ITEMS = Output(
    "probe-items", "probe.jsonl", "jsonl",
    "`rnnlm corpus agreement` (read by `rnnlm probe --data`)",
    "One agreement item per line (corpora/README.md describes the grammar).",
    (F("prefix", "string", "the sentence up to the verb, words separated by single spaces"),
     F("verb", "string", "the verb form that agrees with the subject"),
     F("wrong", "string", "the other form"),
     F("distance", "integer", "words from the subject's head noun to the verb", "words"),
     F("plural", "boolean", "whether the subject is plural")))


def _type_name(hint) -> tuple[str, bool]:
    """(type as the reference writes it, whether null is allowed) of a config annotation."""
    args = [a for a in get_args(hint) if a is not type(None)]
    nullable = type(None) in get_args(hint)
    if get_origin(hint) is Union or (nullable and args):
        names = [_type_name(a)[0] for a in args]
        return " or ".join(names), nullable
    if get_origin(hint) is list:
        return f"list of {_type_name(get_args(hint)[0])[0]}s", False
    return {str: "string", int: "integer", float: "number", bool: "boolean"}[hint], False


def _config_fields() -> tuple[Field, ...]:
    """One field per section and key, from the configuration schema itself (config.py)."""
    out = []
    for section, cls in SECTIONS.items():
        out.append(F(section, "object", f"the `{section}` section"))
        hints = get_type_hints(cls)
        for f in dataclass_fields(cls):
            kind, nullable = _type_name(hints[f.name])
            out.append(F(f"{section}.{f.name}", kind, f.metadata["help"], null="not set" if nullable else ""))
    return tuple(out)


CONFIG = Output(
    "config", "config.yaml and `rnnlm config show`", "yaml",
    "`rnnlm config show` (YAML, or JSON with `--format json`); config.yaml in run and prepared folders; "
    "`config` in checkpoints and result records",
    "The resolved configuration: every key of every section, from the built-in defaults, the file and the "
    "`--set` overrides ([configs/default.yaml](../configs/default.yaml) shows the defaults). Written files hold "
    "absolute paths. `config show --format json` carries no `schema_version`: its output is a configuration "
    "that `--config` reads back, and the keys are versioned by the configuration schema itself (an unknown "
    "key is refused).",
    _config_fields())


# --------------------------------------------------------------------------- records and commands

RECORD = Output(
    "record", "Result records (`rnnlm train --record FILE`)", "json", "`rnnlm train --record FILE`",
    "What a later change needs to be compared with one training run; `rnnlm results` reads them.",
    (VERSION,
     F("name", "string", "the config file's stem (`default` without one)"),
     F("command", "string", "the command that trains the run from scratch (the options as given, without "
                            "`--resume` and `--force`)", null="written by a caller other than `rnnlm train`"),
     F("date", "string", "when training ended, ISO 8601 in UTC"),
     F("commit", "string", "the git commit the code ran at", null="not run from a git checkout"),
     F("config_sha256", "string", "sha256 of the resolved configuration as YAML", "hex"),
     F("machine", "object", "where it ran"),
     F("machine.cpu", "string", "the CPU model", null="unknown"),
     F("machine.cores", "integer", "CPU cores", null="unknown"),
     F("machine.python", "string", "Python version"),
     F("machine.numpy", "string", "numpy version"),
     F("summary", "object", "the run's summary.json", see="summary"),
     F("curve", "list of objects", "every validation during training, in order"),
     F("curve[].step", "integer", "the update count"),
     F("curve[].epoch", "integer", "the epoch in progress, from 1"),
     F("curve[].elapsed", "number", "training wall time so far", "s"),
     F("curve[].loss", "number", "validation cross-entropy", "nats/token"),
     F("curve[].ppl", "number", "exp(loss)"),
     F("curve[].lr", "number", "the learning rate"),
     F("config", "object", "the resolved configuration", see="config")))

EVALUATE = Output(
    "evaluate", "`rnnlm evaluate --format json`", "json", "`rnnlm evaluate --format json`",
    "One checkpoint on one split or text file, by the static protocol (the hidden state carried across "
    "chunks, every token scored) or, with `--dynamic`, by dynamic evaluation (one stream; each chunk scored, "
    "then learned from). `protocol` says which produced the numbers.",
    (VERSION,
     F("split", "string", "`valid`, `test`, or the text file's path as given"),
     F("tokens", "integer", "tokens scored", "tokens"),
     F("loss", "number", "cross-entropy", "nats/token"),
     F("bits", "number", "loss / ln 2", "bits/token"),
     F("ppl", "number", "perplexity, exp(loss)"),
     F("protocol", "string", "`static` (the weights as trained) or `dynamic` (`--dynamic`)"),
     F("dynamic", "object", "the dynamic evaluation's settings", when="`--dynamic`"),
     F("dynamic.method", "string", "`sgd` or `rms` (`evaluate.dynamic_method`)"),
     F("dynamic.lr", "number", "`evaluate.dynamic_lr`"),
     F("dynamic.decay", "number", "`evaluate.dynamic_decay`"),
     F("dynamic.chunk", "integer", "tokens scored between two updates (`evaluate.dynamic_chunk`)", "tokens"),
     F("dynamic.updates", "integer", "gradient steps taken (one after every chunk but the last)"),
     F("dynamic.ms_batches", "integer", "training batches of the RMS normaliser (`evaluate.dynamic_ms_batches`)",
       when="method `rms`"),
     F("dynamic.eps", "number", "`evaluate.dynamic_eps`", when="method `rms`")))

PER_TOKEN = Output(
    "per-token", "`rnnlm evaluate --per-token FILE`", "tsv", "`rnnlm evaluate --per-token FILE`",
    "One line per scored token, in order, two tab-separated columns, no header.",
    (F("token", "string", "the token (`\\`, tab and newline written `\\\\`, `\\t`, `\\n`); out-of-vocabulary "
                          "words as `<unk>`"),
     F("logp", "number", "log-probability of the token given what came before, 6 decimals", "nats")))

GENERATE = Output(
    "generate", "`rnnlm generate --format json`", "json", "`rnnlm generate --format json`",
    "The samples as raw text (the text output writes newlines inside a sample as `\\n`).",
    (VERSION,
     F("samples", "list of strings", "one text per sample (the prime included)")))

GRADCHECK = Output(
    "gradcheck", "`rnnlm gradcheck --format json`", "json", "`rnnlm gradcheck --format json`",
    "Analytic gradients against centred finite differences in float64; the command exits 1 unless `passed`.",
    (VERSION,
     F("passed", "boolean", "whether every check passed"),
     F("tolerance", "number", "the largest relative error that passes (`gradcheck.tolerance`)"),
     F("checks", "list of objects", "one per (layers, cell, BPTT mode, tying, softmax) and parameter, "
                                    "plus the directional check"),
     F("checks[].cell", "string", "the cell"),
     F("checks[].bptt", "string", "the BPTT mode"),
     F("checks[].tie_weights", "boolean", "whether the output weights are tied"),
     F("checks[].softmax", "string", "`full` or `class`"),
     F("checks[].num_layers", "integer", "the stacked layers of the checked model"),
     F("checks[].setting", "string", "the mode's setting, e.g. `padded`, `window=3`, `k1=3,k2=6`"),
     F("checks[].param", "string", "the parameter, or `direction` for the check of v·∇E along a random unit v"),
     F("checks[].max_rel_error", "number", "the largest |a - n| / max(|a| + |n|, floor) over the checked elements",
       null="NaN or inf met (the check fails)"),
     F("checks[].checked", "integer", "elements checked"),
     F("checks[].passed", "boolean", "max_rel_error <= tolerance, and the check could measure"),
     F("checks[].reason", "string", "why the check could not measure (it fails)", when="a check cannot measure")))


# --------------------------------------------------------------------------- diagnose-gradients

MODELS, JAC, HIST, LAYERS = "models[]", "models[].jacobian", "history", "models[].layers[]"
DIAGNOSE = Output(
    "diagnose", "`rnnlm diagnose-gradients --format json`", "json", "`rnnlm diagnose-gradients --format json`",
    "One object, keys in this order. Definitions ([docs/diagnostics.md](diagnostics.md)): s_k is the state after "
    "input k, E_t the loss of output t, g(t, k) = ‖dE_t/ds_k‖ per sequence, then the mean over the N·B "
    "sequences (N batches of B); lag d = t - k. Gradients of several batches are summed before they are "
    "compared.",
    (VERSION,
     F("data", "string", "the split the sequences come from: `valid`, `train` or `random tokens`; `mixed` when "
                         "the models differ", when="a model is diagnosed (not `--run` alone)"),
     F("steps", "integer", "T, the sequence length", null="the models differ", when="a model is diagnosed"),
     F("batches", "integer", "N", null="the models differ", when="a model is diagnosed"),
     F("batch_size", "integer", "B", null="the models differ", when="a model is diagnosed"),
     F("threshold", "number", "the horizon threshold", null="the models differ", when="a model is diagnosed"),
     F("models", "list of objects", "one entry per model, in the order given", when="a model is diagnosed"),
     F(f"{MODELS}.label", "string", "the name in tables: a config file's stem, `defaults`, a sweep value such as "
                                    "`cell=gru`, a checkpoint's file name"),
     F(f"{MODELS}.model", "object", "the model"),
     F(f"{MODELS}.model.cell", "string", "`model.cell`"),
     F(f"{MODELS}.model.hidden_size", "integer", "H"),
     F(f"{MODELS}.model.num_layers", "integer", "L, the stacked recurrent layers (`model.num_layers`)"),
     F(f"{MODELS}.model.embedding_size", "integer", "E"),
     F(f"{MODELS}.model.vocab_size", "integer", "V"),
     F(f"{MODELS}.model.init", "string", "`model.init`"),
     F(f"{MODELS}.model.recurrent_init", "string", "`model.recurrent_init`"),
     F(f"{MODELS}.model.init_scale", "number", "`model.init_scale`"),
     F(f"{MODELS}.model.recurrent_scale", "number", "`model.recurrent_scale`"),
     F(f"{MODELS}.model.forget_bias", "number", "`model.forget_bias`", when="LSTM"),
     F(f"{MODELS}.model.source", "string", "where the model comes from: `config FILE`, `defaults`, `checkpoint "
                                           "FILE`, with any sweep setting"),
     F(f"{MODELS}.data", "string", "`valid`, `train` or `random tokens`"),
     F(f"{MODELS}.data_folder", "string", "the prepared-data folder", null="random tokens"),
     F(f"{MODELS}.data_note", "string", "why random tokens were used", null="real text"),
     F(f"{MODELS}.steps", "integer", "T"),
     F(f"{MODELS}.batches", "integer", "N"),
     F(f"{MODELS}.batch_size", "integer", "B"),
     F(f"{MODELS}.threshold", "number", "the horizon threshold"),
     F(f"{MODELS}.sequences", "integer", "N·B"),
     F(f"{MODELS}.lag_profile", "object", "g by lag"),
     F(f"{MODELS}.lag_profile.raw", "list of numbers", "raw[d]: mean over t = d..T-1 of g(t, t-d), d = 0..T-1"),
     F(f"{MODELS}.lag_profile.normalised", "list of numbers", "normalised[d]: mean over t of g(t, t-d) / g(t, t) "
                                                              "(normalised per output first)"),
     F(f"{MODELS}.lag_profile.matrix", "list of lists of numbers", "matrix[t][k] = g(t, k); null for k > t"),
     F(f"{MODELS}.lag_profile.h", "object", "{raw, normalised, matrix} of ‖dE_t/dh_k‖, normalised by its own "
                                            "g(t, t)", when="LSTM", see="diagnose:models[].lag_profile"),
     F(f"{MODELS}.lag_profile.c", "object", "{raw, normalised, matrix} of ‖dE_t/dc_k‖", when="LSTM",
       see="diagnose:models[].lag_profile"),
     F(f"{MODELS}.decay_rate", "number", "least-squares slope of ln normalised[d] against d over the finite "
                                         "positive values (< 0: decaying)", "per step"),
     F(f"{MODELS}.half_life", "number", "ln 2 / -decay_rate", "steps", null="nothing decays (decay_rate >= 0)"),
     F(f"{MODELS}.horizon", "integer", "the largest d with normalised[d'] > threshold for every d' <= d", "steps"),
     F(f"{MODELS}.horizon_is_lower_bound", "boolean", "true when the profile never fell below the threshold "
                                                       "(horizon = T-1)"),
     F(f"{MODELS}.max_norm_ratio", "number", "the largest g(t, t-d) / g(t, t) over all t, d (> 1: the gradient "
                                             "grows somewhere)", null="no finite ratio"),
     F(f"{JAC}", "object", "step Jacobians ds_j/ds_(j-1), by Lanczos through the cell's backward step; with L "
                           "layers of the whole stacked state s_j = (s^0_j, ..., s^(L-1)_j)"),
     F(f"{JAC}.state_size", "integer", "P: H, or 2H for the LSTM; L times that with L layers"),
     F(f"{JAC}.sequences", "integer", "sequences the Jacobians are measured on (the first "
                                      "`diagnose.jacobian_sequences`)"),
     F(f"{JAC}.spectral_norm", "object", "‖ds_j/ds_(j-1)‖₂ per step j = 0..T-1 (j = 0: w.r.t. the initial state)"),
     F(f"{JAC}.spectral_norm.mean", "list of numbers", "mean over the sequences, per step"),
     F(f"{JAC}.spectral_norm.min", "list of numbers", "smallest over the sequences, per step"),
     F(f"{JAC}.spectral_norm.max", "list of numbers", "largest over the sequences, per step"),
     F(f"{JAC}.overall", "object", "the same over all steps and sequences"),
     F(f"{JAC}.overall.mean", "number", "mean"),
     F(f"{JAC}.overall.min", "number", "smallest"),
     F(f"{JAC}.overall.max", "number", "largest"),
     F(f"{JAC}.products", "list of objects", "‖ds_(T-1)/ds_(T-1-span)‖₂, span 1, 2, 4, ... and T"),
     F(f"{JAC}.products[].span", "integer", "how many step Jacobians are multiplied", "steps"),
     F(f"{JAC}.products[].mean", "number", "mean over the sequences"),
     F(f"{JAC}.products[].min", "number", "smallest"),
     F(f"{JAC}.products[].max", "number", "largest"),
     F(f"{JAC}.recurrent", "object", "σ_max(W_h) against the Pascanu et al. (2013) bound (the top layer's W_h; every "
                                    "layer's: layers[].recurrent)"),
     F(f"{JAC}.recurrent.blocks", "list of objects", "one per gate block of W_h"),
     F(f"{JAC}.recurrent.blocks[].block", "string", "the gate (`h` for tanh/relu)"),
     F(f"{JAC}.recurrent.blocks[].sigma_max", "number", "the block's largest singular value"),
     F(f"{JAC}.recurrent.blocks[].gamma", "number", "γ, the bound of |f'|: 1 for tanh/relu, 1/4 for sigmoid"),
     F(f"{JAC}.recurrent.blocks[].bound", "number", "1/γ"),
     F(f"{JAC}.recurrent.blocks[].below_bound", "boolean", "sigma_max < bound"),
     F(f"{JAC}.recurrent.verdict", "string", "`vanishing guaranteed` (a tanh/relu cell below the bound) or "
                                             "`not excluded`"),
     F(f"{JAC}.recurrent.applies", "boolean", "whether the bound applies (tanh/relu cells only)"),
     F(f"{JAC}.recurrent.note", "string", "what the verdict rests on"),
     F(f"{MODELS}.saturation", "mapping", "saturated units of the forward pass", keys="the kind of "
       "nonlinearity: `tanh` (|s| > 0.99: tanh's h; GRU n; LSTM g and tanh(c)), `sigmoid` (gates within 0.01 of "
       "0 or 1), `relu_zero` (ReLU units exactly 0) -> object"),
     F(f"{MODELS}.saturation.*.units", "list of strings", "the units of this kind"),
     F(f"{MODELS}.saturation.*.criterion", "string", "the test, e.g. `|s| > 0.99`"),
     F(f"{MODELS}.saturation.*.per_step", "list of numbers", "the saturated fraction at each step t"),
     F(f"{MODELS}.saturation.*.mean", "number", "the saturated fraction over all steps"),
     F(f"{MODELS}.saturation.*.by_unit", "mapping", "the saturated fraction per unit", keys="unit name -> number"),
     F(f"{MODELS}.lag_contribution", "object", "what each lag adds to dE/dW_h: C_d = h_prevᵀ · (recurrent "
                                               "gradient at lag d), Σ_d C_d = dE/dW_h"),
     F(f"{MODELS}.lag_contribution.norm", "list of numbers", "‖C_d‖_F per lag d"),
     F(f"{MODELS}.lag_contribution.fraction", "list of numbers", "norm / ‖dE/dW_h‖_F"),
     F(f"{MODELS}.lag_contribution.total_norm", "number", "‖dE/dW_h‖_F"),
     F(f"{MODELS}.truncation_bias", "list of objects", "the window-k gradient against full BPTT, for k in "
                                                       "`diagnose.truncations` below T, plus T (cosine and ratios 1 by "
                                                       "construction)"),
     F(f"{MODELS}.truncation_bias[].k", "integer", "the truncation", "steps"),
     F(f"{MODELS}.truncation_bias[].cosine", "number", "cosine to the full gradient, all parameters"),
     F(f"{MODELS}.truncation_bias[].norm_ratio", "number", "‖window-k gradient‖ / ‖full gradient‖"),
     F(f"{MODELS}.truncation_bias[].W_h_cosine", "number", "the cosine for the top layer's W_h alone"),
     F(f"{MODELS}.truncation_bias[].W_h_norm_ratio", "number", "the norm ratio for the top layer's W_h alone"),
     F(f"{MODELS}.layers", "list of objects", "every layer, bottom first (one entry with one layer, equal to the "
                                              "model's own fields). g^l(t, k) = ‖dE_t/ds^l_k‖, s^l the state of "
                                              "layer l; the model's lag profile, saturation, lag contribution and "
                                              "W_h fields are its top layer's (l = L-1)"),
     F(f"{LAYERS}.layer", "integer", "l: 0 is the bottom layer (reads the embedding), L-1 the top (feeds the output)"),
     F(f"{LAYERS}.lag_profile", "object", "g^l by lag, normalised by the layer's own g^l(t, t)",
       see="diagnose:models[].lag_profile"),
     F(f"{LAYERS}.decay_rate", "number", "as the model's, of the layer's normalised profile", "per step"),
     F(f"{LAYERS}.half_life", "number", "ln 2 / -decay_rate", "steps", null="nothing decays (decay_rate >= 0)"),
     F(f"{LAYERS}.horizon", "integer", "as the model's, of the layer's normalised profile", "steps"),
     F(f"{LAYERS}.horizon_is_lower_bound", "boolean", "true when the layer's profile never fell below the threshold"),
     F(f"{LAYERS}.max_norm_ratio", "number", "the largest g^l(t, t-d) / g^l(t, t)", null="no finite ratio"),
     F(f"{LAYERS}.attenuation", "number", "mean over t of g^l(t, t) / g^(L-1)(t, t): the gradient left L-1-l "
                                          "layers below the top, at lag 0 (1 for the top layer) = depth_time[l][0]"),
     F(f"{LAYERS}.recurrent", "object", "σ_max of the layer's W_h against the Pascanu et al. bound",
       see="diagnose:models[].jacobian.recurrent"),
     F(f"{LAYERS}.saturation", "mapping", "the layer's saturated units", keys="the kind of nonlinearity -> object, "
       "as the model's"),
     F(f"{LAYERS}.saturation.*.units", "list of strings", "the units of this kind"),
     F(f"{LAYERS}.saturation.*.criterion", "string", "the test"),
     F(f"{LAYERS}.saturation.*.per_step", "list of numbers", "the saturated fraction at each step t"),
     F(f"{LAYERS}.saturation.*.mean", "number", "the saturated fraction over all steps"),
     F(f"{LAYERS}.saturation.*.by_unit", "mapping", "the saturated fraction per unit", keys="unit name -> number"),
     F(f"{LAYERS}.lag_contribution", "object", "what each lag adds to the layer's dE/dW_h",
       see="diagnose:models[].lag_contribution"),
     F(f"{LAYERS}.truncation_bias", "list of objects", "the window-k gradient of the layer's W_h against full BPTT"),
     F(f"{LAYERS}.truncation_bias[].k", "integer", "the truncation", "steps"),
     F(f"{LAYERS}.truncation_bias[].W_h_cosine", "number", "cosine to the full gradient of the layer's W_h"),
     F(f"{LAYERS}.truncation_bias[].W_h_norm_ratio", "number", "‖window-k gradient‖ / ‖full gradient‖ of that W_h"),
     F(f"{MODELS}.depth_time", "list of lists of numbers", "[l][d] = mean over t = d..T-1 of g^l(t, t-d) / "
                                                           "g^(L-1)(t, t): every layer's lag profile on the top "
                                                           "layer's lag-0 scale ([L-1][0] = 1), the heat map of "
                                                           "`--plot`"),
     F(HIST, "object", "the gradient norms a training run logged (`--run OUT`, from OUT/metrics.jsonl)",
       when="`--run`"),
     F(f"{HIST}.file", "string", "the metrics.jsonl read"),
     F(f"{HIST}.step_lines", "integer", "update lines"),
     F(f"{HIST}.evaluation_lines", "integer", "evaluation lines"),
     F(f"{HIST}.first_step", "integer", "the first update line's step"),
     F(f"{HIST}.last_step", "integer", "the last update line's step"),
     F(f"{HIST}.grad_norm", "object", "percentiles of the finite pre-clip norms (null when there is none)"),
     F(f"{HIST}.grad_norm.p5", "number", "5th percentile"),
     F(f"{HIST}.grad_norm.p25", "number", "25th percentile"),
     F(f"{HIST}.grad_norm.p50", "number", "median"),
     F(f"{HIST}.grad_norm.p75", "number", "75th percentile"),
     F(f"{HIST}.grad_norm.p95", "number", "95th percentile"),
     F(f"{HIST}.grad_norm.max", "number", "largest"),
     F(f"{HIST}.nonfinite", "object", "non-finite events"),
     F(f"{HIST}.nonfinite.grad_norm_lines", "integer", "update lines whose norm is null (NaN/inf)"),
     F(f"{HIST}.nonfinite.skipped", "integer", "the last logged count of skipped updates",
       null="never logged"),
     F(f"{HIST}.nonfinite.steps", "list of integers", "the steps at which that count went up"),
     F(f"{HIST}.clip_rate", "number", "the fraction of update lines with `clipped: true`", null="never logged"),
     F(f"{HIST}.spikes", "list of objects", "the 5 largest ratios of a norm to the median of the previous 50, "
                                            "largest first"),
     F(f"{HIST}.spikes[].step", "integer", "the update"),
     F(f"{HIST}.spikes[].grad_norm", "number", "its pre-clip norm"),
     F(f"{HIST}.spikes[].running_median", "number", "the median of the previous norms"),
     F(f"{HIST}.spikes[].ratio", "number", "grad_norm / running_median"),
     F(f"{HIST}.by_epoch", "list of objects", "one per epoch"),
     F(f"{HIST}.by_epoch[].epoch", "integer", "the epoch, from 1"),
     F(f"{HIST}.by_epoch[].lines", "integer", "update lines"),
     F(f"{HIST}.by_epoch[].median_grad_norm", "number", "median finite pre-clip norm", null="no finite norm"),
     F(f"{HIST}.by_epoch[].clip_rate", "number", "fraction of lines clipped", null="never logged"),
     F(f"{HIST}.param_grad_norms", "mapping", "per-parameter norms, from the lines that carry them",
       keys="parameter name -> object"),
     F(f"{HIST}.param_grad_norms.*.lines", "integer", "lines carrying this parameter's norm"),
     F(f"{HIST}.param_grad_norms.*.p50", "number", "median", null="no finite value"),
     F(f"{HIST}.param_grad_norms.*.max", "number", "largest", null="no finite value"),
     F(f"{HIST}.layers", "list of objects", "per-layer norms of a stacked model (logged names `cell.<l>.*`), bottom "
                                            "first; a layer's norm on a line is √(Σ its parameters' squared norms), "
                                            "over the lines that carry all of them; empty with one layer"),
     F(f"{HIST}.layers[].layer", "integer", "l, 0 = bottom"),
     F(f"{HIST}.layers[].params", "list of strings", "the layer's logged parameters"),
     F(f"{HIST}.layers[].lines", "integer", "lines carrying all of them"),
     F(f"{HIST}.layers[].p50", "number", "median", null="no finite value"),
     F(f"{HIST}.layers[].max", "number", "largest", null="no finite value"),
     F(f"{HIST}.layers[].by_epoch", "list of objects", "one per epoch"),
     F(f"{HIST}.layers[].by_epoch[].epoch", "integer", "the epoch, from 1"),
     F(f"{HIST}.layers[].by_epoch[].lines", "integer", "lines"),
     F(f"{HIST}.layers[].by_epoch[].median", "number", "median layer norm", null="no finite value")))

DIAGNOSE_CSV = Output(
    "diagnose-csv", "`rnnlm diagnose-gradients --format csv`", "csv", "`rnnlm diagnose-gradients --format csv`",
    "The JSON's numbers in long format, a header line then one row per number. The `quantity` column takes the "
    "values below (the rows' `quantity=` fields); `i` and `j` are empty where a field says nothing of them.",
    (F("model", "string", "the model's label, or `history`"),
     F("quantity", "string", "what the row holds, below"),
     F("i", "integer or string", "the first index (see each quantity)"),
     F("j", "integer", "the second index (`grad_norm` only)"),
     F("value", "number", "the number (empty for null)"),
     F("layer", "integer", "the layer of a per-layer quantity (0 = bottom; the model's own rows: the top layer); "
                           "empty for the whole model's (Jacobians, truncation cosine and norm_ratio) and history"),
     F("quantity=grad_norm", "row", "g(t, k): i = t, j = k"),
     F("quantity=grad_norm_<part>", "row", "LSTM: the same for part h or c", when="LSTM"),
     F("quantity=lag_profile_raw", "row", "raw[d], i = d"),
     F("quantity=lag_profile_normalised", "row", "normalised[d], i = d"),
     F("quantity=lag_profile_<part>_normalised", "row", "LSTM: normalised[d] of part h or c", when="LSTM"),
     F("quantity=decay_rate", "row", "the scalar"),
     F("quantity=half_life", "row", "the scalar"),
     F("quantity=horizon", "row", "the scalar"),
     F("quantity=max_norm_ratio", "row", "the scalar"),
     F("quantity=jacobian_norm_<stat>", "row", "spectral_norm.<stat>[j] (mean, min, max), i = step"),
     F("quantity=jacobian_product_<stat>", "row", "products[].<stat>, i = span"),
     F("quantity=sigma_max", "row", "σ_max of a W_h block, i = block"),
     F("quantity=sigma_bound", "row", "that block's bound 1/γ, i = block"),
     F("quantity=saturation_<kind>", "row", "saturation.<kind>.per_step, i = step"),
     F("quantity=lag_contribution", "row", "lag_contribution.norm, i = lag"),
     F("quantity=lag_contribution_fraction", "row", "lag_contribution.fraction, i = lag"),
     F("quantity=truncation_<measure>", "row", "truncation_bias[] cosine, norm_ratio, W_h_cosine, "
                                               "W_h_norm_ratio; i = k"),
     F("quantity=attenuation", "row", "layers[].attenuation, layer = l"),
     F("quantity=depth_time", "row", "depth_time[l][d], i = d, layer = l"),
     F("quantity=grad_norm_<stat>", "row", "history: grad_norm percentile (p5 ... max)", when="`--run`"),
     F("quantity=clip_rate", "row", "history: clip_rate", when="`--run`"),
     F("quantity=nonfinite_skipped", "row", "history: nonfinite.skipped", when="`--run`"),
     F("quantity=spike_ratio", "row", "history: spikes[].ratio, i = step", when="`--run`"),
     F("quantity=epoch_median_grad_norm", "row", "history: by_epoch[].median_grad_norm, i = epoch",
       when="`--run`"),
     F("quantity=layer_grad_norm_<stat>", "row", "history: layers[].p50 and max, layer = l",
       when="`--run` of a stacked model"),
     F("quantity=layer_epoch_median_grad_norm", "row", "history: layers[].by_epoch[].median, i = epoch, layer = l",
       when="`--run` of a stacked model")))


# --------------------------------------------------------------------------- probe

STATS = ("n", "correct", "accuracy", "ci_low", "ci_high", "mean_margin")


def _counts(prefix: str) -> tuple[Field, ...]:
    """The counts of one group of probe items."""
    empty = "no items"
    return (F(f"{prefix}.n", "integer", "items"),
            F(f"{prefix}.correct", "integer", "items with log p(verb) > log p(wrong)"),
            F(f"{prefix}.accuracy", "number", "correct / n", null=empty),
            F(f"{prefix}.ci_low", "number", "Wilson 95% interval, low end", null=empty),
            F(f"{prefix}.ci_high", "number", "Wilson 95% interval, high end", null=empty),
            F(f"{prefix}.mean_margin", "number", "mean of log p(verb) - log p(wrong)", "nats", null=empty))


HORIZONS = "written by `rnnlm probe-horizons`"
PROBE = Output(
    "probe", "`rnnlm probe --format json` and `rnnlm probe-horizons`", "json",
    "`rnnlm probe --format json`; `rnnlm probe-horizons --format json` prints the probe result it reads with "
    "each run's gradient horizon added",
    "Long-range agreement accuracy by subject-verb distance, one entry per checkpoint. Each model reads `<eos>` "
    "+ prefix from the zero state; an item is correct when log p(verb) > log p(wrong) (a tie is wrong).",
    (VERSION,
     F("data", "string", "the probe items file", null="not recorded"),
     F("items", "integer", "probe items"),
     F("distance_range", "list of integers", "[shortest, longest] distance in the items", "words"),
     F("bin_edges", "list of integers", "`probe.bins`: ascending upper edges of the distance bins"),
     F("confidence", "number", "0.95: the intervals' level"),
     F("interval", "string", "`wilson`: the Wilson score interval"),
     F("rule", "string", "when an item counts as correct, in words"),
     F("horizon_steps", "integer", "T of the diagnoses the horizons come from", null="no diagnosis given",
       when=HORIZONS),
     F("horizon_threshold", "number", "their horizon threshold", null="no diagnosis given", when=HORIZONS),
     F("models", "list of objects", "one per checkpoint, in the order given"),
     F(f"{MODELS}.label", "string", "the run folder's name (the path where two share a name)"),
     F(f"{MODELS}.path", "string", "the checkpoint, as given"),
     F(f"{MODELS}.seed", "integer", "`train.seed` of the run", when="the runs of `--over-seeds`"),
     F(f"{MODELS}.cell", "string", "`model.cell`"),
     F(f"{MODELS}.recurrent_init", "string", "`model.recurrent_init`"),
     F(f"{MODELS}.hidden_size", "integer", "H"),
     F(f"{MODELS}.embedding_size", "integer", "E"),
     F(f"{MODELS}.bptt", "string", "`train.bptt`"),
     F(f"{MODELS}.k1", "integer", "`train.k1`", null="full BPTT"),
     F(f"{MODELS}.k2", "integer", "k2 (k1 when `train.k2` is 0, `train.k2_max` when it is auto)", null="not stream mode"),
     F(f"{MODELS}.valid_ppl", "number", "the run's validation perplexity from its summary.json (best_valid_ppl, "
                                        "else valid_ppl)", null="no summary.json beside the checkpoint"),
     F(f"{MODELS}.oov_prefix_tokens", "integer", "prefix words read as `<unk>`"),
     F(f"{MODELS}.bins", "list of objects", "one per distance bin that holds items"),
     F(f"{MODELS}.bins[].bin", "string", "the label, e.g. `3-4`"),
     F(f"{MODELS}.bins[].lo", "integer", "the shortest distance in the bin", "words"),
     F(f"{MODELS}.bins[].hi", "integer", "the longest distance in the bin", "words"),
     *_counts(f"{MODELS}.bins[]"),
     F(f"{MODELS}.distances", "list of objects", "one per distance that occurs"),
     F(f"{MODELS}.distances[].distance", "integer", "the distance", "words"),
     *_counts(f"{MODELS}.distances[]"),
     F(f"{MODELS}.overall", "object", "all items"),
     *_counts(f"{MODELS}.overall"),
     F(f"{MODELS}.horizon", "integer", "the run's gradient horizon from its diagnosis", "steps",
       null="no diagnosis for this run", when=HORIZONS),
     F(f"{MODELS}.horizon_is_lower_bound", "boolean", "the diagnosis's horizon_is_lower_bound",
       null="no diagnosis for this run", when=HORIZONS),
     F(f"{MODELS}.half_life", "number", "the diagnosis's half_life", "steps", null="no diagnosis, or no decay",
       when=HORIZONS)))

PROBE_SEEDS = Output(
    "probe-seeds", "`rnnlm probe --over-seeds --format json`", "json",
    "`rnnlm probe --over-seeds --format json`; `rnnlm probe-horizons` on such a result",
    "Checkpoints whose configurations differ only in `train.seed` (and `train.out`) are one model, named by the "
    "folder that holds its run folders; every statistic is reported over its seeds. The top-level fields are "
    "those of the plain probe result, and:",
    (F("over_seeds", "boolean", "true"),
     F("models", "list of objects", "one per model, in the order of its first checkpoint"),
     F(f"{MODELS}.label", "string", "the folder that holds the model's run folders"),
     F(f"{MODELS}.cell", "string", "`model.cell`"),
     F(f"{MODELS}.recurrent_init", "string", "`model.recurrent_init`"),
     F(f"{MODELS}.hidden_size", "integer", "H"),
     F(f"{MODELS}.embedding_size", "integer", "E"),
     F(f"{MODELS}.bptt", "string", "`train.bptt`"),
     F(f"{MODELS}.k1", "integer", "`train.k1`", null="full BPTT"),
     F(f"{MODELS}.k2", "integer", "k2", null="not stream mode"),
     F(f"{MODELS}.seeds", "list of integers", "the seeds, ascending (the order of every per_seed)"),
     F(f"{MODELS}.valid_ppl", "object", "validation perplexity over seeds", see="spread"),
     F(f"{MODELS}.bins", "list of objects", "one per distance bin"),
     F(f"{MODELS}.bins[].bin", "string", "the label"),
     F(f"{MODELS}.bins[].lo", "integer", "the shortest distance", "words"),
     F(f"{MODELS}.bins[].hi", "integer", "the longest distance", "words"),
     F(f"{MODELS}.bins[].n", "integer", "items"),
     F(f"{MODELS}.bins[].accuracy", "object", "accuracy over seeds", see="spread"),
     F(f"{MODELS}.bins[].mean_margin", "object", "mean margin over seeds", "nats", see="spread"),
     F(f"{MODELS}.distances", "list of objects", "one per distance"),
     F(f"{MODELS}.distances[].distance", "integer", "the distance", "words"),
     F(f"{MODELS}.distances[].n", "integer", "items"),
     F(f"{MODELS}.distances[].accuracy", "object", "accuracy over seeds", see="spread"),
     F(f"{MODELS}.distances[].mean_margin", "object", "mean margin over seeds", "nats", see="spread"),
     F(f"{MODELS}.overall", "object", "all items"),
     F(f"{MODELS}.overall.n", "integer", "items"),
     F(f"{MODELS}.overall.accuracy", "object", "accuracy over seeds", see="spread"),
     F(f"{MODELS}.overall.mean_margin", "object", "mean margin over seeds", "nats", see="spread"),
     F(f"{MODELS}.runs", "list of objects", "each seed's plain probe entry (with its `seed`), by seed",
       see="probe:models[]"),
     F(f"{MODELS}.horizon", "object", "the gradient horizon over seeds", "steps", see="spread", when=HORIZONS),
     F(f"{MODELS}.horizon_is_lower_bound", "list of booleans", "each seed's horizon_is_lower_bound",
       null="(an item) no diagnosis for that seed", when=HORIZONS),
     F(f"{MODELS}.half_life", "object", "the half-life over seeds", "steps", see="spread", when=HORIZONS)),
    base="probe")

SPREAD_SHAPE = Output(
    "spread", "A statistic over seeds", "shape", "`rnnlm probe --over-seeds`, `rnnlm probe-horizons`",
    "The shape of every statistic of a model over its seeds. With 3-5 seeds the range is the honest summary.",
    (F("mean", "number", "the mean over seeds", null="a seed's value is null"),
     F("min", "number", "the lowest seed's value", null="a seed's value is null"),
     F("max", "number", "the highest seed's value", null="a seed's value is null"),
     F("per_seed", "list of numbers", "each seed's value, in the order of `seeds`")))

PROBE_CSV = Output(
    "probe-csv", "`rnnlm probe --format csv`", "csv", "`rnnlm probe --format csv`",
    "A header line, then one row per model and bin, then one `all` row per model (every item).",
    (F("label", "string", "the model"),
     F("bin", "string", "the bin's label, or `all`"),
     F("lo", "integer", "the shortest distance", "words"),
     F("hi", "integer", "the longest distance", "words"),
     *(F(name, "integer" if name in ("n", "correct") else "number", f"as `{name}` in the JSON's bins")
       for name in STATS)))

PROBE_SEEDS_CSV = Output(
    "probe-seeds-csv", "`rnnlm probe --over-seeds --format csv`", "csv", "`rnnlm probe --over-seeds --format csv`",
    "A header line, then one row per model and bin, then one `all` row per model.",
    (F("label", "string", "the model"),
     F("bin", "string", "the bin's label, or `all`"),
     F("lo", "integer", "the shortest distance", "words"),
     F("hi", "integer", "the longest distance", "words"),
     F("n", "integer", "items"),
     F("seeds", "string", "the seeds, separated by spaces"),
     F("accuracy_mean", "number", "accuracy: mean over seeds"),
     F("accuracy_min", "number", "accuracy: the lowest seed"),
     F("accuracy_max", "number", "accuracy: the highest seed"),
     F("margin_mean", "number", "mean margin: mean over seeds", "nats"),
     F("margin_min", "number", "mean margin: the lowest seed", "nats"),
     F("margin_max", "number", "mean margin: the highest seed", "nats")))



# --------------------------------------------------------------------------- sweeps, tuning, comparing runs

FIGURE_FIELDS = (
    F("best_valid_ppl", "number", "the best validation perplexity (a finished run: summary.json's; else the best "
      "evaluation logged so far)", null="no validation ran"),
    F("valid_ppl", "number", "the final validation perplexity (summary.json)", null="not finished, or no valid split"),
    F("test_ppl", "number", "the final test perplexity (summary.json)", null="not finished, or no test split"),
    F("epochs", "integer", "epochs completed (unfinished: the epoch of the last evaluation)", null="nothing logged"),
    F("steps", "integer", "updates (unfinished: the last logged one)", null="nothing logged"),
    F("wall_time_s", "number", "training wall time (unfinished: at the last evaluation)", "s", null="nothing logged"),
    F("tokens_per_sec", "number", "training tokens per second (unfinished: the mean of the logged lines)", "tokens/s",
      null="nothing logged"),
    F("clip_rate", "number", "the fraction of updates whose gradient was clipped (unfinished: of the logged ones)",
      null="nothing logged"))

COMPARE = Output(
    "compare", "`rnnlm compare --format json`", "json", "`rnnlm compare --format json`",
    "Training runs side by side, in the order of `--sort`. A run's `status`: `finished` (summary.json exists), "
    "`running` (a live process holds its train.lock), `crashed` (train.lock left by a process that is gone, or a "
    "sweep's log shows an error exit) or `unfinished` (stopped by a signal or an error the trainer reported, or "
    "pruned by `rnnlm tune`).",
    (VERSION,
     F("differing_keys", "list of strings", "the configuration keys whose values differ between the runs "
       "(`train.out` left out)"),
     F("runs", "list of objects", "one per run"),
     F("runs[].run", "string", "the run folder, as found"),
     F("runs[].name", "string", "the run folder relative to the runs' common folder"),
     F("runs[].status", "string", "`finished`, `running`, `crashed` or `unfinished`"),
     F("runs[].config", "mapping", "the run's values of `differing_keys`", keys="config key -> its value (null: "
       "the run's config.yaml lacks it)"),
     *(F(f"runs[].{f.path}", f.type, f.meaning, f.unit, f.null) for f in FIGURE_FIELDS),
     F("runs[].curve", "list of objects", "the validation evaluations during training, in order"),
     F("runs[].curve[].step", "integer", "the update"),
     F("runs[].curve[].elapsed", "number", "training wall time then", "s"),
     F("runs[].curve[].ppl", "number", "validation perplexity")))

COMPARE_CSV = Output(
    "compare-csv", "`rnnlm compare --format csv`", "csv", "`rnnlm compare --format csv`",
    "A header line, then one row per run, in the order of `--sort`; an empty cell is a null of the JSON.",
    (F("run", "string", "as `name` in the JSON"),
     F("status", "string", "as in the JSON"),
     F("<key>", "string", "one column per differing configuration key"),
     *(F(f.path, f.type, f.meaning, f.unit) for f in FIGURE_FIELDS)))

SWEEP_FOLDER = Output(
    "sweep-folder", "The sweep folder (`rnnlm sweep --out`)", "folder", "`rnnlm sweep`",
    "One ordinary run folder per point, named by the point's values and the first 8 hex digits of the SHA-256 of "
    "its resolved configuration (without `train.out`); a rerun of the same sweep finds its runs by these names.",
    (F("sweep.json", "file", "the sweep's plan", see="sweep-manifest"),
     F("logs", "folder", "`NAME.log` per run: a `# sweep launch N: MODE` line per launch (fresh, resume, force), "
       "the trainer's output, and a `# sweep exit CODE` line"),
     F("<name>", "folder", "a training run", see="run-folder")))

SWEEP_MANIFEST = Output(
    "sweep-manifest", "sweep.json", "json", "`rnnlm sweep` (`OUT/sweep.json`)",
    "The plan of the last `rnnlm sweep` run in this folder.",
    (VERSION,
     F("config", "string", "the base configuration file, as given", null="the built-in defaults"),
     F("set", "list of strings", "the `--set` overrides of every run"),
     F("grid", "list of strings", "the `--grid` options"),
     F("range", "list of strings", "the `--range` options"),
     F("random", "integer", "`--random`", null="no random points"),
     F("seed", "integer", "`--seed` of the random draws"),
     F("ablate", "list of strings", "the `--ablate` options (empty for a grid or random sweep)"),
     F("runs", "list of objects", "one per point"),
     F("runs[].name", "string", "the run's folder name"),
     F("runs[].values", "mapping", "the point's values (an ablation's base: empty)",
       keys="config key -> the value, as --set text"),
     F("runs[].config_hash", "string", "8 hex digits of the resolved configuration's hash")))

TUNE_FOLDER = Output(
    "tune-folder", "The tune folder (`rnnlm tune --out`)", "folder", "`rnnlm tune`",
    "The runs of a study's trials and its best configuration (shared by every worker).",
    (F("trial-<number>", "folder", "the training run of trial NUMBER (5 digits)", see="run-folder"),
     F("best.yaml", "file", "the best trial's resolved configuration, `train.out` set to OUT/best, ready for "
       "`rnnlm train --config`", when="a trial completed", see="config")))

TUNE_REPORT = Output(
    "tune-report", "`rnnlm tune --report --format json`", "json", "`rnnlm tune --report --format json`",
    "A study's trials (the objective: the best validation loss of the trial's run, lower is better) and "
    "Optuna's fANOVA parameter importances.",
    (VERSION,
     F("study", "string", "the study's name"),
     F("trials", "list of objects", "one per trial, by number"),
     F("trials[].number", "integer", "the trial's number in the study"),
     F("trials[].state", "string", "`complete`, `pruned`, `running`, `waiting` (queued) or `fail`"),
     F("trials[].value", "number", "the best validation loss (pruned: the last reported)", "nats",
       null="failed, running or waiting"),
     F("trials[].params", "mapping", "the sampled values (a waiting trial's: those queued)",
       keys="config key -> value"),
     F("trials[].last_step", "integer", "the update of the last validation loss reported", null="none reported"),
     F("trials[].duration_s", "number", "how long it ran", "s", null="running or waiting"),
     F("trials[].run", "string", "the trial's run folder", null="not started"),
     F("importances", "mapping", "each parameter's importance (they sum to 1)", keys="config key -> number"),
     F("importances_unavailable", "string", "why there are no importances", null="there are"),
     F("best", "object", "the best completed trial", null="no trial completed"),
     F("best.number", "integer", "its number"),
     F("best.value", "number", "its best validation loss", "nats"),
     F("best.params", "mapping", "its values", keys="config key -> value"),
     F("best.run", "string", "its run folder")))
# --------------------------------------------------------------------------- the long-range study

COPY_TASK = Output(
    "copy-task", "task.json of a copy corpus", "json", "`rnnlm corpus copy` (`OUT/task.json`)",
    "The parameters of a copy-task corpus and its memoryless baseline; beside it train.txt, valid.txt and test.txt, "
    "one sequence a line: m symbols, T blanks (`_`), the delimiter (`:`), the m symbols again.",
    (VERSION,
     F("task", "string", "`copy`"),
     F("symbols", "integer", "m, symbols to remember per line"),
     F("alphabet", "integer", "a, distinct symbols (`s0` .. `s{a-1}`)"),
     F("delay", "integer", "T, blanks between the symbols and the delimiter"),
     F("seed", "integer", "the generator's seed"),
     *(F(f"lines_{split}", "integer", f"lines of {split}.txt") for split in ("train", "valid", "test")),
     F("blank", "string", "the blank token"),
     F("delimiter", "string", "the delimiter token"),
     F("baseline", "object", "losses over exactly the positions a line is scored on: inputs `<eos>` w_1..w_L, "
                             "targets w_1..w_L `<eos>`"),
     F("baseline.positions_per_line", "integer", "T + 2m + 2"),
     F("baseline.per_token", "number", "a model that knows the format but not the content: 2m log(a) / (T + 2m + 2)",
       "nats/token"),
     F("baseline.perfect_per_token", "number", "a model that recalls perfectly: m log(a) / (T + 2m + 2)", "nats/token"),
     F("baseline.per_recalled_symbol", "number", "the memoryless loss on a recalled symbol: log(a)", "nats"),
     F("baseline.arjovsky", "number", "m log(a) / (T + 2m), Arjovsky et al.'s baseline of their input/output "
                                      "formulation, for reference", "nats/step")))


def _horizon_fields(prefix: str, when: str) -> tuple:
    return (F(f"{prefix}.horizon", "integer", "the largest lag whose normalised gradient norm stays above the "
                                               "study's threshold", "steps"),
            F(f"{prefix}.horizon_is_lower_bound", "boolean", "it never fell below within the window"),
            F(f"{prefix}.decay_rate", "number", "slope of ln(normalised norm) against the lag (< 0: decaying)",
              "1/step", null="fewer than two positive lags"),
            F(f"{prefix}.window", "integer", f"steps measured: the task's sequence length ({when})", "steps"))


COPY_ONLY, AGREEMENT_ONLY = "copy runs", "agreement runs"
RUNS = "runs[]"
LONGRANGE = Output(
    "longrange", "`rnnlm longrange --format json` and results/longrange.json", "json",
    "`rnnlm longrange` (`--record FILE`, `--format json`)",
    "The long-range memory study: every model x truncation trained on each copy delay and agreement distance. "
    "Each run's entry is also kept as `OUT/TASK-LENGTH/MODEL-TRUNCATION/result.json` (the cache a rerun reads).",
    (VERSION,
     F("study", "object", "the study file, with its defaults filled in"),
     F("study.seed", "integer", "seed of the corpora"),
     F("study.threshold", "number", "the gradient-horizon threshold"),
     F("study.solved", "number", "the test recall accuracy that counts as solved"),
     F("study.common", "list of strings", "settings of every run (section.key=value)"),
     F("study.models", "mapping", "settings per model", keys="model name -> list of settings"),
     F("study.truncations", "mapping", "settings per truncation", keys="truncation name -> list of settings"),
     F("study.only", "mapping", "truncations that run only with some models",
       keys="truncation name -> list of model names"),
     F("study.copy", "object", "the copy task (empty: no copy runs)"),
     *(F(f"study.copy.{k}", t, m, when="copy runs") for k, t, m in (
         ("symbols", "integer", "m"), ("alphabet", "integer", "a"), ("delays", "list of integers", "the delays T"),
         ("train", "integer", "training lines"), ("valid", "integer", "validation lines"),
         ("test", "integer", "test lines"))),
     F("study.agreement", "object", "the agreement task (empty: no agreement runs)"),
     *(F(f"study.agreement.{k}", t, m, when="agreement runs") for k, t, m in (
         ("distances", "list of integers", "the subject-verb distances d"), ("train", "integer", "training sentences"),
         ("valid", "integer", "validation sentences"), ("test", "integer", "test sentences"))),
     F("jobs", "integer", "runs at a time"),
     F("wall_time_s", "number", "the command's time (cached runs cost nothing)", "s"),
     F("runs_computed", "integer", "runs trained by this command (the rest came from the cache)"),
     F("runs", "list of objects", "one per run, by task, length, truncation and model"),
     F(f"{RUNS}.key", "string", "task/length/model/truncation"),
     F(f"{RUNS}.hash", "string", "hash of everything that shapes the run (the cache key)"),
     F(f"{RUNS}.task", "string", "`copy` or `agreement`"),
     F(f"{RUNS}.length", "integer", "the delay T (copy) or the distance d (agreement)"),
     F(f"{RUNS}.model", "string", "the model's name in the study"),
     F(f"{RUNS}.truncation", "string", "the truncation's name in the study"),
     F(f"{RUNS}.settings", "list of strings", "the run's settings (common, model, truncation)"),
     F(f"{RUNS}.accuracy", "number", "test recall accuracy: the model's argmax after the true prefix",
       null="training failed"),
     F(f"{RUNS}.solved", "boolean", "accuracy >= study.solved"),
     F(f"{RUNS}.scores", "object", "the recall scoring (analysis/recall.py)", null="training failed"),
     F(f"{RUNS}.scores.task", "string", "`copy` or `agreement`"),
     F(f"{RUNS}.scores.sequences", "integer", "test lines (copy) or items (agreement) scored"),
     F(f"{RUNS}.scores.accuracy", "number", "as `accuracy`"),
     F(f"{RUNS}.scores.per_position", "list of numbers", "accuracy per recalled position, 1..m", when=COPY_ONLY),
     F(f"{RUNS}.scores.sequences_all_recalled", "number", "share of lines with every symbol recalled", when=COPY_ONLY),
     F(f"{RUNS}.scores.loss_per_token", "number", "test loss over every position of a line", "nats/token",
       when=COPY_ONLY),
     F(f"{RUNS}.scores.loss_per_recalled_symbol", "number", "test loss on the recalled symbols", "nats",
       when=COPY_ONLY),
     F(f"{RUNS}.scores.baseline", "object", "the memoryless baseline", see="copy-task:baseline", when=COPY_ONLY),
     F(f"{RUNS}.scores.excess_recovered", "number", "(memoryless - loss) / (memoryless - perfect): 0 at the "
                                                    "baseline, 1 at perfect recall", when=COPY_ONLY),
     F(f"{RUNS}.scores.per_distance", "mapping", "accuracy per distance", keys="distance -> number",
       when=AGREEMENT_ONLY),
     F(f"{RUNS}.scores.baseline_accuracy", "number", "chance: 0.5", when=AGREEMENT_ONLY),
     F(f"{RUNS}.horizon_init", "object", "the lag profile of the fresh model (the trainer's initialisation)"),
     *_horizon_fields(f"{RUNS}.horizon_init", "at most 8 test sequences, from the zero state"),
     F(f"{RUNS}.horizon_trained", "object", "the lag profile of the trained model (best.npz)",
       null="training failed"),
     *_horizon_fields(f"{RUNS}.horizon_trained", "the same sequences"),
     F(f"{RUNS}.clip_rate", "number", "fraction of updates whose gradient was clipped"),
     F(f"{RUNS}.steps", "integer", "updates made", null="training failed"),
     F(f"{RUNS}.tokens_per_sec", "number", "training throughput", "tokens/s"),
     F(f"{RUNS}.train_wall_s", "number", "training time", "s"),
     F(f"{RUNS}.valid_loss", "number", "final validation loss", "nats/token"),
     F(f"{RUNS}.k2_history", "list of objects", "the measurements of `train.k2: auto` (empty for other runs)"),
     F(f"{RUNS}.k2_history[].step", "integer", "the update whose metrics line logged it"),
     F(f"{RUNS}.k2_history[].horizon", "integer", "as metrics.jsonl's `k2_measured`", "steps"),
     F(f"{RUNS}.k2_history[].horizon_is_lower_bound", "boolean", "as metrics.jsonl's `k2_measured`"),
     F(f"{RUNS}.k2_history[].window", "integer", "as metrics.jsonl's `k2_measured`", "steps"),
     F(f"{RUNS}.k2_history[].target", "integer", "the k2 chosen", "steps"),
     F(f"{RUNS}.k2_history[].changed", "boolean", "whether it differs from the previous target"),
     F(f"{RUNS}.failed", "string", "why training failed (a non-finite loss under `train.nonfinite: error`, ...): "
                                   "the run has no scores, trained horizon or training figures",
       null="it trained to the end"),
     F(f"{RUNS}.wall_time_s", "number", "the run's time: measurements, training, scoring", "s"),
     F("summary", "list of objects", "one per model x truncation"),
     F("summary[].model", "string", "the model"),
     F("summary[].truncation", "string", "the truncation"),
     *(f for task, what in (("copy", "delay T"), ("agreement", "distance d")) for f in (
         F(f"summary[].{task}_longest_solved", "integer", f"the longest {what} solved", null="none solved"),
         F(f"summary[].{task}_lengths", "integer", f"{task} runs of this model and truncation"),
         F(f"summary[].{task}_accuracy", "mapping", "test recall accuracy per length", keys=f"{what} -> number (null: training failed)"))),
     F("summary[].horizon_task", "string", "the run the horizons come from: the longest copy delay (the widest "
                                           "window), else the longest agreement distance"),
     F("summary[].horizon_init", "integer", "its horizon at initialisation", "steps"),
     F("summary[].horizon_trained", "integer", "its horizon after training", "steps", null="that run failed"),
     F("summary[].horizon_window", "integer", "its measured window", "steps"),
     F("summary[].train_wall_s", "number", "training time of all its runs", "s")))


OUTPUTS: dict[str, Output] = {o.name: o for o in (
    RUN_FOLDER, SUMMARY, METRICS, CHECKPOINT, CONFIG, RECORD, PREPARED_FOLDER, META, EVALUATE, PER_TOKEN, GENERATE,
    GRADCHECK, DIAGNOSE, DIAGNOSE_CSV, PROBE, PROBE_SEEDS, SPREAD_SHAPE, PROBE_CSV, PROBE_SEEDS_CSV, PROBE_ITEMS,
    COMPARE, COMPARE_CSV, SWEEP_FOLDER, SWEEP_MANIFEST, TUNE_FOLDER, TUNE_REPORT, COPY_TASK, LONGRANGE)}


def fields_of(name: str) -> dict[str, Field]:
    """An output's fields by path, its base's included (its own replace the base's at that path
    and under it)."""
    out = OUTPUTS[name]
    own = {f.path: f for f in out.fields}
    if not out.base:
        return own
    inherited = {p: f for p, f in fields_of(out.base).items()
                 if not any(p == q or p.startswith((q + ".", q + "[]")) for q in own)}
    return {**inherited, **own}


# --------------------------------------------------------------------------- rendering

VERSIONS = f"""Every JSON document rnnlm writes or prints carries `schema_version`, an integer
(now **{SCHEMA_VERSION}**), as its first key: summary.json, meta.json, result records, the checkpoint's `meta`
entry and the `--format json` output of every command. It is bumped when a field changes meaning or is
removed; new fields do not bump it, so a script should ignore keys it does not know. Three carry none: the
lines of metrics.jsonl (the run's summary.json and checkpoints carry it), `rnnlm config show --format json` (a
configuration, which `--config` reads back) and the items of probe.jsonl (an input format, whose bytes the
seed fixes). Files written before the key existed lack it; read them as version 1."""


def _anchor(output: Output) -> str:
    return "output-" + output.name


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _meaning(f: Field) -> str:
    more = f.keys or f.when or f.null or f.see
    parts = [f.meaning + "." if more and not f.meaning.endswith(".") else f.meaning]
    if f.keys:
        parts.append(f"Keys: {f.keys}.")
    if f.when:
        parts.append(f"*Only: {f.when}.*")
    if f.null:
        parts.append(f"null: {f.null}.")
    if f.see:
        name, _, path = f.see.partition(":")
        target = OUTPUTS[name]
        where = f" (`{path}`)" if path else ""
        parts.append(f"See [{target.title}](#{_anchor(target)}){where}.")
    return " ".join(parts)


def render_output(output: Output) -> str:
    """One output as a Markdown section: its heading (with an anchor), what it is, its fields."""
    lines = [f'<a id="{_anchor(output)}"></a>', f"### {output.title}", "",
             f"Written by {output.writers}.", "", output.about, ""]
    if output.base:
        base = OUTPUTS[output.base]
        lines += [f"Besides the fields of [{base.title}](#{_anchor(base)}) (except those replaced here):", ""]
    head = {"folder": "file", "npz": "entry", "csv": "column", "tsv": "column"}.get(output.kind, "field")
    rows = [[f"`{f.path}`", f.type, f.unit, _cell(_meaning(f))] for f in output.fields]
    lines.append(table([head, "type", "unit", "meaning"], rows, markdown=True))
    return "\n".join(lines)


def render_reference() -> str:
    """The generated body of docs/reference.md: versions, a contents list, every output."""
    out = ["## Versions", "", VERSIONS, "", "## Contents", ""]
    out += [f"- [{o.title}](#{_anchor(o)})" for o in OUTPUTS.values()]
    out += ["", "## Outputs", ""]
    out += [render_output(o) + "\n" for o in OUTPUTS.values()]
    return "\n".join(out).rstrip("\n")
