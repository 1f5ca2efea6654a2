"""Commands that read a trained checkpoint: rnnlm evaluate and rnnlm generate."""

from __future__ import annotations

import click
import numpy as np

from rnnlm_cli.cli.common import (CONTEXT_SETTINGS, common_options, echo_json, format_option, given, key_option,
                                  versioned)
from rnnlm_cli.fileio import atomic_write
from rnnlm_cli.paths import In, Out, check_paths, data_inputs


def _checkpoint_context(checkpoint_path, config_path, overrides):
    """(model, cfg, prepared) for commands that read a trained checkpoint."""
    from rnnlm_cli.runs import open_checkpoint

    run = open_checkpoint(checkpoint_path, config_path, overrides)
    return run.model, run.cfg, run.prepared


def _check_memory(model, cfg, prepared, generate: bool) -> None:
    """Refuse sizes (generate.n, train.eval_batch_size, ...) that could never fit, before allocating."""
    from rnnlm_cli.config import check_reading_memory

    check_reading_memory(cfg, model.V, model.E, model.H, model.cfg.cell, generate=generate, num_layers=model.L)


@click.command("evaluate", context_settings=CONTEXT_SETTINGS)
@common_options
@click.option("--checkpoint", "checkpoint_path", required=True, type=click.Path(), help="A checkpoint (.npz) from train.")
@click.option("--split", default="test", show_default=True, help="valid, test, or the path of a text file.")
@click.option("--per-token", "per_token", type=click.Path(dir_okay=False), default=None,
              help="Write every token with its log-probability (TSV) to this file.")
@click.option("--dynamic", is_flag=True,
              help="Dynamic evaluation: score each chunk, then take a gradient step on it before the next "
                   "(evaluate.dynamic_* keys); the checkpoint is not changed.")
@format_option()
def evaluate_cmd(config_path, overrides, checkpoint_path, split, per_token, dynamic, fmt):
    """Perplexity and cross-entropy (nats and bits per token) of a checkpoint on a split.

    The standard (static) protocol: the hidden state is carried across chunks, every chunk is
    weighted by its token count and end-of-sentence tokens are counted. With --dynamic the text
    is read as one stream in chunks of evaluate.dynamic_chunk tokens, each scored with the
    current weights and then learned from (sgd, or rms: steps normalised by the RMS of
    training gradients), so no token is scored after an update has seen it.

    \b
    Example:
      rnnlm evaluate --checkpoint runs/demo/tanh/best.npz --split test
      rnnlm evaluate --checkpoint runs/demo/tanh/best.npz --split my.txt --format json
      rnnlm evaluate --checkpoint runs/demo/tanh/best.npz --dynamic --set evaluate.dynamic_lr=0.05
    """
    import os

    from rnnlm_cli.data.corpus import read_text, separator_id, tokenize
    from rnnlm_cli.errors import DataError
    from rnnlm_cli.evaluate import dynamic_splits, evaluate_tokens

    if per_token and not os.path.isdir(os.path.dirname(os.path.abspath(per_token))):
        raise DataError(f"--per-token: the folder of {per_token} does not exist")
    model, cfg, prepared = _checkpoint_context(checkpoint_path, config_path, overrides)
    text_file = None if split in ("train", "valid", "test") else split
    check_paths([In("checkpoint", checkpoint_path), In("config file", config_path), In("text file", text_file),
                 *data_inputs(cfg.data, with_prepared=True)],
                [Out("--per-token file", per_token)])
    _check_memory(model, cfg, prepared, generate=False)
    if split in ("train", "valid", "test"):
        tokens = prepared.split(split)
        label = split
        if len(tokens) < 2:
            raise DataError(f"the {split} split of {prepared.folder} has {len(tokens)} tokens: nothing to evaluate "
                            f"(give a data.{split} file or data.split ratios when preprocessing)")
    else:
        if not os.path.isfile(split):
            raise DataError(f"--split: expected valid, test or a text file, got '{split}' (no such file)")
        text = read_text(split, cfg.data.encoding_errors, "--split")
        tokens = np.asarray([prepared.vocab.id(t) for t in tokenize(text, cfg.data)], dtype=np.int64)
        label = split
    if dynamic:
        results, protocol = dynamic_splits(model, {label: tokens}, prepared.split("train"), cfg,
                                           separator_id(prepared), per_token=bool(per_token))
        result = results[label]
    else:
        result = evaluate_tokens(model, tokens, cfg, separator_id(prepared), per_token=bool(per_token))
        protocol = None
    if per_token:
        sep = separator_id(prepared)
        ids = np.asarray(tokens, dtype=np.int64)
        scored = ids if sep is not None or cfg.train.bptt == "full" else ids[1:]   # the first token has no context
        logp = result.pop("logp")

        def write(fh):
            for tok, lp in zip(scored, logp):
                text = prepared.vocab.tokens[tok].replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
                fh.write(f"{text}\t{lp:.6f}\n".encode("utf-8"))

        atomic_write(per_token, write)      # whole or not at all; a failure is one line naming the file
    out = {"split": label, "tokens": result["tokens"], "loss": result["loss"], "bits": result["bits"],
           "ppl": result["ppl"], "protocol": "dynamic" if dynamic else "static"}
    if protocol is not None:
        out["dynamic"] = protocol
    if fmt == "json":
        echo_json(versioned(out))
    else:
        how = "" if protocol is None else (
            f" (dynamic evaluation: {protocol['method']}, lr {protocol['lr']:g}, decay {protocol['decay']:g}, "
            f"chunks of {protocol['chunk']}, {protocol['updates']:,} updates)")
        click.echo(f"split {label}{how}: {out['tokens']:,} tokens, cross-entropy {out['loss']:.4f} nats "
                   f"({out['bits']:.4f} bits) per token, perplexity {out['ppl']:.2f}")


@click.command("generate", context_settings=CONTEXT_SETTINGS)
@common_options
@click.option("--checkpoint", "checkpoint_path", required=True, type=click.Path(), help="A checkpoint (.npz) from train.")
@key_option("--n", key="generate.n", help="Number of samples")
@key_option("--max-tokens", key="generate.max_tokens", help="Tokens per sample")
@key_option("--temperature", key="generate.temperature", help="Softmax temperature")
@key_option("--prime", key="generate.prime", help="Text the model reads first")
@key_option("--seed", key="generate.seed", help="Sampling seed")
@click.option("--allow-unk", is_flag=True, default=None, help="Allow <unk> to be sampled.")
@click.option("--greedy", is_flag=True, default=None,
              help="Always take the most likely token (generate.strategy=greedy).")
@click.option("--top-k", "top_k", type=click.IntRange(min=0), default=None,
              help="Sample only among the k most likely tokens, 0 = all (generate.top_k).")
@format_option()
def generate_cmd(config_path, overrides, checkpoint_path, n, max_tokens, temperature, prime, seed, allow_unk,
                 greedy, top_k, fmt):
    """Sample text from a trained checkpoint, one sample per line.

    A newline inside a sample (char level) is printed as \\n and a backslash as \\\\, so each
    sample stays on its own line; --format json ({"samples": [...]}) keeps the raw text. Prime
    tokens that are not in the vocabulary are read as <unk>, with a warning on stderr.

    \b
    Example:
      rnnlm generate --checkpoint runs/demo/tanh/best.npz --n 3 --prime "the man"
      rnnlm generate --checkpoint runs/shakespeare/best.npz --max-tokens 300 --temperature 0.8
      rnnlm generate --checkpoint runs/shakespeare/best.npz --top-k 5
      rnnlm generate --checkpoint runs/demo/tanh/best.npz --greedy --prime "the man"
    """
    from rnnlm_cli.sample import generate

    model, cfg, prepared = _checkpoint_context(checkpoint_path, config_path, overrides)
    cfg = cfg.with_values(given({"generate.n": n, "generate.max_tokens": max_tokens,
                                 "generate.temperature": temperature, "generate.prime": prime,
                                 "generate.seed": seed, "generate.allow_unk": allow_unk,
                                 "generate.strategy": "greedy" if greedy else None, "generate.top_k": top_k}))
    _check_memory(model, cfg, prepared, generate=True)
    g = cfg.generate
    texts = generate(model, prepared, cfg, n=g.n, max_tokens=g.max_tokens, temperature=g.temperature,
                     prime=g.prime, seed=g.seed, allow_unk=g.allow_unk, strategy=g.strategy, top_k=g.top_k,
                     log=lambda message: click.echo(message, err=True))
    if fmt == "json":
        echo_json(versioned({"samples": texts}))
    else:
        for text in texts:
            click.echo(one_line(text))


def one_line(text: str) -> str:
    """A sample on one line: backslash, newline and CR written as \\\\, \\n and \\r."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
