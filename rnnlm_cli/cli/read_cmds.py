"""Commands that read a trained checkpoint: rnnlm evaluate and rnnlm generate."""

from __future__ import annotations

import click
import numpy as np

from rnnlm_cli.cli.common import CONTEXT_SETTINGS, common_options, echo_json, format_option, given


def _checkpoint_context(checkpoint_path, config_path, overrides):
    """(model, cfg, prepared) for commands that read a trained checkpoint."""
    from rnnlm_cli.runs import open_checkpoint

    run = open_checkpoint(checkpoint_path, config_path, overrides)
    return run.model, run.cfg, run.prepared


@click.command("evaluate", context_settings=CONTEXT_SETTINGS)
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

    from rnnlm_cli.data.corpus import read_text, separator_id, tokenize
    from rnnlm_cli.errors import DataError
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
        text = read_text(split, cfg.data.encoding_errors, "--split")
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


@click.command("generate", context_settings=CONTEXT_SETTINGS)
@common_options
@click.option("--checkpoint", "checkpoint_path", required=True, type=click.Path(), help="A checkpoint (.npz) from train.")
@click.option("--n", type=click.IntRange(min=1), default=None, help="Number of samples (generate.n).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None, help="Tokens per sample (generate.max_tokens).")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Softmax temperature (generate.temperature).")
@click.option("--prime", default=None, help="Text the model reads first (generate.prime).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Sampling seed (generate.seed).")
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
    g = cfg.generate
    texts = generate(model, prepared, cfg, n=g.n, max_tokens=g.max_tokens, temperature=g.temperature,
                     prime=g.prime, seed=g.seed, allow_unk=g.allow_unk, strategy=g.strategy, top_k=g.top_k,
                     log=lambda message: click.echo(message, err=True))
    if fmt == "json":
        echo_json({"samples": texts})
    else:
        for text in texts:
            click.echo(one_line(text))


def one_line(text: str) -> str:
    """A sample on one line: backslash, newline and CR written as \\\\, \\n and \\r."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
