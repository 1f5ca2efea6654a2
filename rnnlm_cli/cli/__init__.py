"""Command-line interface: a thin Click layer.

Each command: parse options -> load the configuration -> call one library function -> render.
Library errors (`RnnlmError`) become one `Error: ...` line on stderr and the error's exit code
(2 usage/configuration, 1 data/runtime); `--debug` shows the traceback instead.
"""

from __future__ import annotations

import functools
import json
import sys

import click
import numpy as np

from rnnlm_cli import __version__
from rnnlm_cli.config import load_config, to_yaml
from rnnlm_cli.errors import RnnlmError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class RnnlmGroup(click.Group):
    """A Click group that turns every library error into one line and an exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            # one line, like every other mistake; the hint names the help command
            if exc.ctx is not None and exc.ctx.command is not self:
                hint = f" (see '{exc.ctx.command_path} -h')"
            else:
                hint = " (see 'rnnlm -h')"
            click.echo(f"Error: {_one_line(exc.format_message())}{hint}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            sys.exit(130)
        except RnnlmError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {_one_line(str(exc))}", err=True)
            sys.exit(exc.exit_code)
        except MemoryError as exc:   # e.g. a hidden_size typo with three zeros too many
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: out of memory: {_one_line(str(exc)) or 'allocation failed'} "
                       f"(reduce the model or batch sizes)", err=True)
            sys.exit(1)


def _one_line(message: str) -> str:
    """An error message as one line: a newline or CR inside it (a key, a path) is shown escaped."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def common_options(func):
    """--config FILE and repeatable --set section.key=value, shared by every command."""

    @click.option("--config", "config_path", type=click.Path(), default=None,
                  help="YAML configuration file (defaults are built in).")
    @click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                  help="Override one configuration key (repeatable); the value is a YAML scalar.")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def format_option(choices=("table", "json")):
    """--format for machine-readable output on stdout."""
    return click.option("--format", "fmt", type=click.Choice(choices), default=choices[0], show_default=True,
                        help="Output format on stdout.")


def quiet_option(func):
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars or log lines on stderr.")(func)


def load_cfg(config_path, overrides):
    """Load and validate the configuration (raises ConfigError, exit 2)."""
    return load_config(config_path, list(overrides))


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


def emit(result, fmt: str, table, csv=None) -> None:
    """Print a result in the chosen --format: json, csv (csv(result)) or text (table(result))."""
    if fmt == "json":
        echo_json(result)
    elif fmt == "csv":
        click.echo(csv(result), nl=False)
    else:
        click.echo(table(result))


@click.group(cls=RnnlmGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="rnnlm")
@click.option("--debug", is_flag=True, help="Show a traceback instead of a one-line error.")
@click.pass_context
def cli(ctx, debug):
    """Train recurrent neural network language models in numpy, and measure what
    backpropagation through time does to their gradients.

    \b
    Example:
      rnnlm preprocess --config configs/tiny.yaml
      rnnlm train --config configs/tiny.yaml
      rnnlm diagnose-gradients --config configs/tiny.yaml
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


# --------------------------------------------------------------------------- config

@cli.group(context_settings=CONTEXT_SETTINGS)
def config():
    """Show or validate a configuration.

    \b
    Example:
      rnnlm config show --config configs/tiny.yaml --set model.cell=lstm
      rnnlm config validate --config configs/tiny.yaml
    """


@config.command("show")
@common_options
@click.option("--comments", is_flag=True, help="Annotate every key with its meaning (this is configs/default.yaml).")
@format_option(("yaml", "json"))
def config_show(config_path, overrides, comments, fmt):
    """Print the resolved configuration (defaults, file, then --set overrides).

    \b
    Example:
      rnnlm config show --config configs/tiny.yaml --set train.lr=0.5
      rnnlm config show --comments > configs/default.yaml
    """
    cfg = load_cfg(config_path, overrides)
    if fmt == "json":
        echo_json(cfg.to_dict())
    else:
        click.echo(to_yaml(cfg, comments=comments), nl=False)


@config.command("validate")
@common_options
def config_validate(config_path, overrides):
    """Check a configuration; exit 0 if valid, 2 with one error line if not.

    \b
    Example:
      rnnlm config validate --config configs/tiny.yaml
    """
    load_cfg(config_path, overrides)
    click.echo(f"OK: {config_path or 'built-in defaults'} is a valid configuration")


# --------------------------------------------------------------------------- preprocess

@cli.command("preprocess", context_settings=CONTEXT_SETTINGS)
@common_options
@click.option("--train", "train_path", type=click.Path(), default=None, help="Training text (overrides data.train).")
@click.option("--valid", "valid_path", type=click.Path(), default=None, help="Validation text (overrides data.valid).")
@click.option("--test", "test_path", type=click.Path(), default=None, help="Test text (overrides data.test).")
@click.option("--level", type=click.Choice(("word", "char")), default=None, help="Tokenisation (overrides data.level).")
@click.option("--out", "out_dir", type=click.Path(), default=None, help="Output folder (overrides data.prepared).")
@click.option("--force", is_flag=True, help="Replace an existing, non-empty output folder.")
@quiet_option
@format_option()
def preprocess_cmd(config_path, overrides, train_path, valid_path, test_path, level, out_dir, force, quiet, fmt):
    """Tokenise a corpus, build the vocabulary and write the prepared-data folder.

    \b
    Example:
      rnnlm preprocess --config configs/tiny.yaml
      rnnlm preprocess --train ptb.train.txt --valid ptb.valid.txt --test ptb.test.txt --out data/ptb
      rnnlm preprocess --train input.txt --level char --set data.split=[0.9,0.1,0.0] --out data/shakespeare
    """
    import os
    import time

    from rnnlm_cli.data import corpus

    cfg = load_cfg(config_path, overrides)
    # command-line paths are relative to the current directory
    changes = {key: os.path.abspath(value) for key, value in
               (("train", train_path), ("valid", valid_path), ("test", test_path), ("prepared", out_dir))
               if value is not None}
    if level is not None:
        changes["level"] = level
    if changes:
        cfg = cfg.replace(data=changes)
    start = time.perf_counter()
    meta = corpus.preprocess(cfg.data, cfg, force=force, progress=not quiet)
    seconds = time.perf_counter() - start
    if not quiet:
        mb = sum(s["bytes"] for s in meta["sources"]) / 1e6
        click.echo(f"preprocessed {mb:.1f} MB in {seconds:.2f} s ({mb / max(seconds, 1e-9):.1f} MB/s)", err=True)
    if fmt == "json":
        echo_json(meta)
    else:
        click.echo(corpus.summary_table(meta, os.path.abspath(cfg.data.prepared)))


# --------------------------------------------------------------------------- gradcheck

@cli.command("gradcheck", context_settings=CONTEXT_SETTINGS)
@common_options
@click.option("--all", "check_all", is_flag=True, help="Every cell x every BPTT mode x tying on/off.")
@click.option("--cell", "cells", multiple=True, type=click.Choice(("tanh", "relu", "gru", "lstm")),
              help="Cell to check (repeatable; default model.cell).")
@click.option("--bptt", "modes", multiple=True, type=click.Choice(("full", "window", "stream")),
              help="BPTT mode to check (repeatable; default train.bptt).")
@click.option("--tie-weights/--no-tie-weights", "tie", default=None, help="Tied output weights (default model.tie_weights).")
@click.option("--hidden", type=click.IntRange(min=1), default=None, help="Hidden/embedding size (gradcheck.hidden_size).")
@click.option("--vocab", type=click.IntRange(min=2), default=None, help="Vocabulary size (gradcheck.vocab_size).")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Sequence length (gradcheck.steps).")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Batch size (gradcheck.batch_size).")
@click.option("--samples", type=click.IntRange(min=0), default=None,
              help="Elements checked per parameter, 0 = all (gradcheck.samples).")
@click.option("--tolerance", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Largest relative error that passes (gradcheck.tolerance).")
@format_option()
def gradcheck_cmd(config_path, overrides, check_all, cells, modes, tie, hidden, vocab, steps, batch, samples,
                  tolerance, fmt):
    """Compare analytic gradients with finite differences (float64); exit 1 if any check fails.

    \b
    Example:
      rnnlm gradcheck
      rnnlm gradcheck --all
      rnnlm gradcheck --cell lstm --bptt stream --steps 8 --format json
    """
    from rnnlm_cli.analysis.gradcheck import all_combinations, render_table, run_gradcheck

    if check_all and (cells or modes or tie is not None):
        raise click.UsageError("--all checks every cell, mode and tying; do not combine it with "
                               "--cell, --bptt or --tie-weights")
    cfg = load_cfg(config_path, overrides)
    sizes = {k: v for k, v in (("hidden_size", hidden), ("vocab_size", vocab), ("steps", steps),
                               ("batch_size", batch)) if v is not None}
    if sizes:
        cfg = cfg.replace(gradcheck=sizes)
    if check_all:
        what = all_combinations()
    else:
        what = {"cells": list(cells) or None, "modes": list(modes) or None,
                "tying": None if tie is None else [tie]}
    result = run_gradcheck(cfg, samples=samples, tolerance=tolerance, **what)
    emit(result, fmt, render_table)
    if not result["passed"]:
        sys.exit(1)


# --------------------------------------------------------------------------- train / evaluate / generate

@cli.command("train", context_settings=CONTEXT_SETTINGS)
@common_options
@click.option("--out", "out_dir", type=click.Path(), default=None, help="Output folder (overrides train.out).")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.npz (bit-identical to an uninterrupted run).")
@click.option("--force", is_flag=True, help="Start over in an output folder that holds a previous run.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after N updates in all (train.max_steps).")
@click.option("--record", "record_path", type=click.Path(dir_okay=False), default=None,
              help="Also write a result record (config hash, commit, machine, summary, learning curve) as JSON.")
@quiet_option
@format_option()
def train_cmd(config_path, overrides, out_dir, resume, force, max_steps, record_path, quiet, fmt):
    """Train a language model; writes checkpoints, metrics.jsonl and summary.json to OUT.

    Progress goes to stderr (a bar on a terminal); the summary goes to stdout. SIGINT/SIGTERM
    save a checkpoint and exit 130/143; `--resume` continues from it.

    \b
    Example:
      rnnlm train --config configs/tiny.yaml
      rnnlm train --config configs/ptb-rnn.yaml --set train.lr=0.5 --out runs/ptb-lr05
      rnnlm train --config configs/ptb-rnn.yaml --resume
    """
    from rnnlm_cli.train.trainer import Interrupted, train

    if resume and force:
        raise click.UsageError("--resume and --force contradict each other")
    extra = list(overrides)
    if out_dir:
        extra.append(f"train.out={out_dir}")
    if max_steps:
        extra.append(f"train.max_steps={max_steps}")
    cfg = load_cfg(config_path, extra)
    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    try:
        summary = train(cfg, resume=resume, force=force, progress=not quiet, log=log)
    except Interrupted as exc:
        again = " ".join(["rnnlm train"] + (["--config", config_path] if config_path else [])
                         + [f"--set {o}" for o in extra] + ["--resume"])
        click.echo(f"Interrupted: checkpoint saved to {exc.path}; resume with: {again}", err=True)
        sys.exit(exc.code)
    if record_path:
        import os

        from rnnlm_cli.render.results import make_record, write_record
        name = os.path.splitext(os.path.basename(config_path or "default"))[0]
        write_record(record_path, make_record(name, cfg, summary, cfg.train.out))
    if fmt == "json":
        echo_json(summary)
    else:
        for key, value in summary.items():
            click.echo(f"{key:<20}{value:.4f}" if isinstance(value, float) else f"{key:<20}{value}")


def _checkpoint_context(checkpoint_path, config_path, overrides):
    """(model, cfg, prepared) for commands that read a trained checkpoint."""
    from rnnlm_cli.runs import open_checkpoint

    run = open_checkpoint(checkpoint_path, config_path, overrides)
    return run.model, run.cfg, run.prepared


@cli.command("evaluate", context_settings=CONTEXT_SETTINGS)
@common_options
@click.option("--checkpoint", "checkpoint_path", required=True, type=click.Path(), help="A checkpoint (.npz) from train.")
@click.option("--split", default="test", show_default=True, help="valid, test, or the path of a text file.")
@click.option("--per-token", "per_token", type=click.Path(dir_okay=False), default=None,
              help="Write every token with its log-probability (TSV) to this file.")
@format_option()
def evaluate_cmd(config_path, overrides, checkpoint_path, split, per_token, fmt):
    """Perplexity and cross-entropy (nats and bits per token) of a checkpoint on a split.

    The standard protocol: the hidden state is carried across chunks, every chunk is weighted
    by its token count and end-of-sentence tokens are counted.

    \b
    Example:
      rnnlm evaluate --checkpoint runs/demo/tanh/best.npz --split test
      rnnlm evaluate --checkpoint runs/demo/tanh/best.npz --split my.txt --format json
    """
    import os

    from rnnlm_cli.data.corpus import tokenize
    from rnnlm_cli.errors import DataError
    from rnnlm_cli.data.corpus import separator_id
    from rnnlm_cli.evaluate import evaluate_tokens

    if per_token and not os.path.isdir(os.path.dirname(os.path.abspath(per_token))):
        raise DataError(f"--per-token: the folder of {per_token} does not exist")
    model, cfg, prepared = _checkpoint_context(checkpoint_path, config_path, overrides)
    if split in ("train", "valid", "test"):
        tokens = prepared.split(split)
        label = split
        if len(tokens) < 2:
            raise DataError(f"the {split} split of {prepared.folder} has {len(tokens)} tokens: nothing to evaluate "
                            f"(give a data.{split} file or data.split ratios when preprocessing)")
    else:
        if not os.path.isfile(split):
            raise DataError(f"--split: expected valid, test or a text file, got '{split}' (no such file)")
        try:
            with open(split, encoding="utf-8") as fh:
                text = fh.read()
        except UnicodeDecodeError as exc:
            raise DataError(f"{split}: not valid UTF-8 (byte {exc.start})") from None
        tokens = np.asarray([prepared.vocab.id(t) for t in tokenize(text, cfg.data)], dtype=np.int64)
        label = split
    result = evaluate_tokens(model, tokens, cfg, separator_id(prepared), per_token=bool(per_token))
    if per_token:
        sep = separator_id(prepared)
        ids = np.asarray(tokens, dtype=np.int64)
        scored = ids if sep is not None or cfg.train.bptt == "full" else ids[1:]   # the first token has no context
        try:
            with open(per_token, "w", encoding="utf-8") as fh:
                for tok, lp in zip(scored, result.pop("logp")):
                    text = prepared.vocab.tokens[tok].replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
                    fh.write(f"{text}\t{lp:.6f}\n")
        except OSError as exc:
            raise DataError(f"cannot write --per-token file {per_token}: {exc.strerror}") from None
    out = {"split": label, "tokens": result["tokens"], "loss": result["loss"], "bits": result["bits"],
           "ppl": result["ppl"]}
    if fmt == "json":
        echo_json(out)
    else:
        click.echo(f"split {label}: {out['tokens']:,} tokens, cross-entropy {out['loss']:.4f} nats "
                   f"({out['bits']:.4f} bits) per token, perplexity {out['ppl']:.2f}")


@cli.command("generate", context_settings=CONTEXT_SETTINGS)
@common_options
@click.option("--checkpoint", "checkpoint_path", required=True, type=click.Path(), help="A checkpoint (.npz) from train.")
@click.option("--n", type=click.IntRange(min=1), default=None, help="Number of samples (generate.n).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None, help="Tokens per sample (generate.max_tokens).")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Softmax temperature (generate.temperature).")
@click.option("--prime", default=None, help="Text the model reads first (generate.prime).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Sampling seed (generate.seed).")
@click.option("--allow-unk", is_flag=True, default=None, help="Allow <unk> to be sampled.")
@format_option()
def generate_cmd(config_path, overrides, checkpoint_path, n, max_tokens, temperature, prime, seed, allow_unk, fmt):
    """Sample text from a trained checkpoint, one sample per line.

    \b
    Example:
      rnnlm generate --checkpoint runs/demo/tanh/best.npz --n 3 --prime "the man"
      rnnlm generate --checkpoint runs/shakespeare/best.npz --max-tokens 300 --temperature 0.8
    """
    from rnnlm_cli.sample import generate

    model, cfg, prepared = _checkpoint_context(checkpoint_path, config_path, overrides)
    g = cfg.generate
    texts = generate(model, prepared, cfg, n=n or g.n, max_tokens=max_tokens or g.max_tokens,
                     temperature=temperature or g.temperature, prime=g.prime if prime is None else prime,
                     seed=g.seed if seed is None else seed, allow_unk=bool(allow_unk or g.allow_unk))
    if fmt == "json":
        echo_json({"samples": texts})
    else:
        for text in texts:
            click.echo(text)


# --------------------------------------------------------------------------- probe

@cli.command("probe", context_settings=CONTEXT_SETTINGS)
@common_options
@click.option("--checkpoint", "checkpoints", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False),
              help="A checkpoint (.npz) from train (repeatable: one column group each, named by its run folder).")
@click.option("--data", "data_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Probe items, JSON lines (probe.data; default corpora/agreement/probe.jsonl).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also draw accuracy against distance to this PNG (needs the plot extra).")
@format_option(("table", "json", "csv"))
def probe_cmd(config_path, overrides, checkpoints, data_path, plot_path, fmt):
    """Long-range agreement accuracy by distance: does the model prefer the verb form that
    agrees with the subject d words back?

    Each model reads <eos> + prefix from the zero state (what full-BPTT training sees at a
    sentence start; stream-trained models normally carry a state there) and an item is
    correct when log p(verb) > log p(wrong); a tie counts as wrong. Per distance bin
    (probe.bins): items, accuracy with a Wilson 95% interval, and the mean margin
    log p(verb) - log p(wrong). --config/--set give the probe section only; each checkpoint
    brings its own model and vocabulary.

    \b
    JSON (--format json): {data, items, distance_range, bin_edges, confidence, interval, rule,
    models: [{label, path, cell, recurrent_init, hidden_size, embedding_size, bptt, k1, k2,
    valid_ppl, oov_prefix_tokens, bins: [{bin, lo, hi, n, correct, accuracy, ci_low, ci_high,
    mean_margin}], distances: [{distance, n, ...}], overall: {n, ...}}]}.
    CSV (--format csv): label,bin,lo,hi,n,correct,accuracy,ci_low,ci_high,mean_margin; one row
    per model and bin, then one `all` row per model.

    \b
    Example:
      rnnlm probe --checkpoint runs/probe/tanh/best.npz
      rnnlm probe --checkpoint runs/probe/gru/best.npz --checkpoint runs/probe/lstm/best.npz --format json
      rnnlm probe --checkpoint runs/demo/tanh/best.npz --set probe.bins=[2,5,10,30] --plot probe.png
    """
    from rnnlm_cli.analysis import probe

    cfg = load_cfg(config_path, overrides)
    if plot_path:
        probe.check_plotting()
    result = probe.probe_checkpoints(list(checkpoints), data=data_path or cfg.probe.data, edges=cfg.probe.bins)
    if plot_path:
        probe.plot(result, plot_path)
    emit(result, fmt, probe.render_table, probe.render_csv)


# --------------------------------------------------------------------------- diagnose-gradients

@cli.command("diagnose-gradients", context_settings=CONTEXT_SETTINGS)
@click.option("--config", "config_paths", type=click.Path(), multiple=True,
              help="YAML configuration file; repeat it to compare several models side by side.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one configuration key (repeatable); the value is a YAML scalar.")
@click.option("--sweep", "sweeps", multiple=True, metavar="SECTION.KEY=V1,V2,...",
              help="One model per value, as --set on top of each config (repeatable: the grid).")
@click.option("--checkpoint", "checkpoints", type=click.Path(), multiple=True,
              help="Diagnose a trained checkpoint (repeatable) instead of a fresh model.")
@click.option("--run", "run_dir", type=click.Path(), default=None,
              help="Report the gradient norms logged in RUN/metrics.jsonl by a training run.")
@click.option("--steps", type=click.IntRange(min=2), default=None, help="T: sequence length (diagnose.steps).")
@click.option("--batches", type=click.IntRange(min=1), default=None, help="Batches of sequences (diagnose.batches).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Sequences per batch (diagnose.batch_size).")
@click.option("--threshold", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Horizon threshold on the normalised norm (diagnose.threshold).")
@click.option("--random-tokens", is_flag=True, help="Random tokens even when prepared data exists.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also draw the lag profiles and the (t, k) heat map into a PNG (needs matplotlib).")
@click.option("--fail-if-vanishing", "min_horizon", type=click.IntRange(min=0), default=None, metavar="HORIZON",
              help="Exit 1 when any model's horizon is below HORIZON.")
@click.option("--fail-if-exploding", "max_ratio", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="NORM", help="Exit 1 when any model's max norm ratio g(t,t-d)/g(t,t) exceeds NORM.")
@quiet_option
@format_option(("table", "json", "csv"))
def diagnose_gradients_cmd(config_paths, overrides, sweeps, checkpoints, run_dir, steps, batches, batch_size,
                           threshold, random_tokens, plot_path, min_horizon, max_ratio, quiet, fmt):
    """Measure vanishing/exploding gradients per time step, by lag, for configs or checkpoints.

    For each model (fresh from the config, seeded, or --checkpoint) on B contiguous length-T
    windows of the validation split (training split if none; random tokens when there is no
    prepared data, said on stderr), in float64 without dropout, with the training BPTT code:
    g(t, k) = ||dE_t/ds_k|| (E_t: the loss of output t), its profile by lag d = t - k (raw,
    and normalised per t by g(t, t)), decay rate, half-life and horizon; step-Jacobian spectral
    norms and their products (on the first diagnose.jacobian_sequences sequences, by Lanczos);
    sigma_max(W_h) against the Pascanu et al. bound; saturated units;
    each lag's share of dE/dW_h; and the bias of window truncation k against full BPTT.
    --run RUN reports the logged gradient norms of a training run instead (add --checkpoint for both).

    \b
    JSON (--format json): {data, steps, batches, batch_size, threshold, models: [{label,
    model {cell, hidden_size, ...}, data, steps, lag_profile {raw, normalised, matrix[t][k]
    (+ h, c for lstm)}, decay_rate, half_life, horizon, horizon_is_lower_bound,
    max_norm_ratio, jacobian {sequences, spectral_norm {mean,min,max}[T], overall,
    products [{span,..}], recurrent {blocks [{block, sigma_max, gamma, bound, below_bound}],
    verdict}},
    saturation {tanh|sigmoid|relu_zero: {per_step, mean, ...}}, lag_contribution {norm,
    fraction, total_norm}, truncation_bias [{k, cosine, norm_ratio, W_h_cosine,
    W_h_norm_ratio}]}], history (with --run)}; NaN/inf are null. Full schema: the docstring
    of rnnlm_cli/analysis/diagnostics.py.
    CSV (--format csv): model,quantity,i,j,value; grad_norm has i=t, j=k; lag_profile_*,
    lag_contribution* have i=lag; jacobian_norm_* and saturation_* i=step;
    jacobian_product_* i=span; sigma_* i=block; truncation_* i=k; scalars no i/j.

    \b
    Example:
      rnnlm diagnose-gradients
      rnnlm diagnose-gradients --config configs/tiny.yaml --sweep model.cell=tanh,relu,gru,lstm
      rnnlm diagnose-gradients --checkpoint runs/demo/tanh/best.npz --format json
      rnnlm diagnose-gradients --run runs/demo/tanh
      rnnlm diagnose-gradients --config configs/tiny.yaml --fail-if-vanishing 10
    """
    from rnnlm_cli.analysis import diagnostics
    from rnnlm_cli.analysis import history
    from rnnlm_cli.render import report

    # refuse impossible combinations and a missing matplotlib before any work starts
    if checkpoints and (sweeps or len(config_paths) > 1):
        raise click.UsageError("--checkpoint diagnoses a trained model: it takes at most one --config "
                               "(for the data and diagnose settings) and no --sweep")
    if run_dir and not checkpoints and (config_paths or sweeps or random_tokens):
        raise click.UsageError("--run reports a training log; add --checkpoint to diagnose a model as well")
    models_wanted = bool(checkpoints) or not run_dir
    if plot_path and not models_wanted:
        raise click.UsageError("--plot draws lag profiles: it needs a model (--checkpoint or a config)")
    if plot_path:
        report.require_matplotlib("--plot")
    for text in sweeps:
        diagnostics.parse_sweep(text)
    result = {}
    if run_dir:
        result["history"] = history.history_report(run_dir)
    if models_wanted:
        if checkpoints:
            specs = [diagnostics.checkpoint_spec(p, config_paths[0] if config_paths else None, overrides, load_cfg)
                     for p in checkpoints]
        else:
            specs = diagnostics.config_specs(config_paths, overrides, sweeps, load_cfg)
        diagnosis = diagnostics.diagnose(specs, steps=steps, batches=batches, batch_size=batch_size,
                                         threshold=threshold, random_tokens=random_tokens, progress=not quiet)
        result = {**diagnosis, **result}
        for m in diagnosis["models"]:
            if m["data"] == diagnostics.RANDOM:
                click.echo(f"note: {m['label']}: measured on random tokens (vocabulary {m['model']['vocab_size']}), "
                           f"not real text ({m['data_note']})", err=True)
        if plot_path:
            report.plot_diagnostics(diagnosis, plot_path)
    emit(result, fmt, report.diagnostics_text, report.diagnostics_csv)
    failures = diagnostics.gate_failures(result, min_horizon, max_ratio)
    for line in failures:
        click.echo(f"FAILED: {line}", err=True)
    if failures:
        sys.exit(1)


def main() -> None:
    cli(prog_name="rnnlm")
