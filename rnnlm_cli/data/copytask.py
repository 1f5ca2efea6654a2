"""The copy (memory) task as a word-level corpus: m symbols, T blanks, a delimiter, the m again.

Hochreiter & Schmidhuber (1997) and Arjovsky et al. (2016) test how far a recurrent network
carries information with it. Here each line is one sequence:

    s3 s0 s7 ... s5  _ _ ... _  :  s3 s0 s7 ... s5
    m symbols        T blanks   delimiter  the m symbols again

The symbols s0 .. s{a-1} are drawn uniformly (independently per position); `_` is the blank and
`:` the delimiter. The trainer reads it like any corpus (data.eos adds <eos> at every line end),
so train, evaluate and diagnose-gradients work on it unchanged. A recalled symbol lies
T + m + 1 tokens after the symbol it repeats (its *delay*).

The memoryless baseline. The lines are scored as the trainer's full mode and the recall scoring
see them (`batching.split_sentences`): inputs <eos> w_1 .. w_L, targets w_1 .. w_L <eos>, so
L + 1 = T + 2m + 2 positions a line. A model that knows the format but keeps no memory of the
content predicts blanks, delimiter and <eos> exactly and each symbol with probability 1/a: the
first m symbols are random for every model, the recalled m too for this one. Its loss is
2m log(a) per line, 2m log(a) / (T + 2m + 2) per position; a model that recalls perfectly pays
only the first m: m log(a) per line. On the recalled symbols alone the memoryless loss is log(a)
per symbol (`memoryless_baseline`). Arjovsky et al.'s m log(a) / (T + 2m) counts the recall's
excess over T + 2m output steps of their input/output formulation (no <eos>, nothing predicted
for the first m inputs); it is given for reference as "arjovsky".

Same parameters and seed, same bytes (`write_copy_corpus`); task.json records the parameters.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnlm_cli.errors import ConfigError, DataError
from rnnlm_cli.fileio import atomic_write_text, make_folders, remove_folders
from rnnlm_cli.paths import shown
from rnnlm_cli.values import SCHEMA_VERSION

BLANK = "_"
DELIMITER = ":"
TASK_FILE = "task.json"
COPY_FILES = {"train": "train.txt", "valid": "valid.txt", "test": "test.txt", "task": TASK_FILE}
MAX_TOKENS = 50_000_000          # all splits together: a typo (--train 10000000000), not a corpus


def symbol(i: int) -> str:
    """The spelling of symbol i (0-based)."""
    return f"s{i}"


@dataclass(frozen=True)
class CopyTask:
    """m symbols from an alphabet of a, T blanks (the delay is T + m + 1)."""

    symbols: int = 10
    alphabet: int = 8
    delay: int = 20                # T, the blanks between the symbols and the delimiter

    def check(self) -> None:
        if self.symbols <= 0:
            raise ConfigError(f"copy task: --symbols (m) must be >= 1, got {self.symbols}")
        if self.alphabet < 2:
            raise ConfigError(f"copy task: --alphabet (a) must be >= 2 (one symbol carries no information), "
                              f"got {self.alphabet}")
        if self.delay < 0:
            raise ConfigError(f"copy task: --delay (T) must be >= 0, got {self.delay}")

    @property
    def line_length(self) -> int:
        """Tokens in a line (without <eos>): m + T + 1 + m."""
        return 2 * self.symbols + self.delay + 1

    @property
    def recall_positions(self) -> list[int]:
        """Indices (in the line, 0-based) of the recalled symbols."""
        return list(range(self.symbols + self.delay + 1, self.line_length))

    def line(self, rng: np.random.Generator) -> str:
        content = [symbol(int(i)) for i in rng.integers(0, self.alphabet, size=self.symbols)]
        return " ".join(content + [BLANK] * self.delay + [DELIMITER] + content)


def memoryless_baseline(symbols: int, alphabet: int, delay: int) -> dict:
    """The losses (nats) of a model that knows the format but not the content, and of a perfect
    one, over exactly the positions a line is scored on (see the module docstring)."""
    positions = delay + 2 * symbols + 2                      # L + 1: the line's tokens and its <eos>
    log_a = math.log(alphabet)
    return {"positions_per_line": positions,
            "per_token": 2 * symbols * log_a / positions,      # memoryless: both halves random
            "perfect_per_token": symbols * log_a / positions,  # only the first m are unpredictable
            "per_recalled_symbol": log_a,
            "arjovsky": symbols * log_a / (delay + 2 * symbols)}


def check_parameters(task: CopyTask, seed: int, counts: dict[str, int]) -> None:
    """ConfigError for a parameter no copy corpus can have (before anything is written)."""
    task.check()
    if seed < 0:
        raise ConfigError(f"copy task: --seed must be >= 0, got {seed}")
    for name, n in counts.items():
        if n < 0 or (name == "train" and n < 1):
            raise ConfigError(f"copy task: --{name} must be >= {1 if name == 'train' else 0}, got {n}")
    total = sum(counts.values()) * (task.line_length + 1)
    if total > MAX_TOKENS:
        raise ConfigError(f"copy task: {total:,} tokens in all, more than {MAX_TOKENS:,}; write fewer or "
                          f"shorter lines")


def generate_lines(task: CopyTask, seed: int, counts: dict[str, int]) -> dict[str, list[str]]:
    """Lines of each split (in the order of `counts`) from one generator seeded by `seed`."""
    check_parameters(task, seed, counts)
    rng = np.random.default_rng([seed, 2])
    return {name: [task.line(rng) for _ in range(n)] for name, n in counts.items()}


def write_copy_corpus(out_dir: str | Path, task: CopyTask, seed: int = 1, n_train: int = 2000,
                      n_valid: int = 200, n_test: int = 200) -> dict[str, Path]:
    """Write train/valid/test.txt and task.json under out_dir, all or nothing; returns the paths."""
    counts = {"train": n_train, "valid": n_valid, "test": n_test}
    lines = generate_lines(task, seed, counts)
    texts = {name: "".join(row + "\n" for row in rows) for name, rows in lines.items()}
    texts["task"] = json.dumps({"schema_version": SCHEMA_VERSION, "task": "copy", "symbols": task.symbols, "alphabet": task.alphabet,
                                "delay": task.delay, "seed": seed, **{f"lines_{k}": v for k, v in counts.items()},
                                "blank": BLANK, "delimiter": DELIMITER,
                                "baseline": memoryless_baseline(task.symbols, task.alphabet, task.delay)},
                               indent=1) + "\n"
    return write_files(out_dir, texts, COPY_FILES, "copy corpus")


def write_files(out_dir: str | Path, texts: dict[str, str], names: dict[str, str], what: str) -> dict[str, Path]:
    """Write texts[name] to out_dir/names[name] each atomically; on failure remove what this
    call created (folders and new files) and raise DataError."""
    out = Path(out_dir)
    paths = {name: out / names[name] for name in texts}
    created, written = [], []
    try:
        created = make_folders(out)
        for name, text in texts.items():
            existed = paths[name].exists()
            atomic_write_text(paths[name], text)
            if not existed:
                written.append(paths[name])
    except BaseException as exc:
        for path in written:
            path.unlink(missing_ok=True)
        remove_folders(created)
        if isinstance(exc, OSError):
            raise DataError(f"cannot write the {what} to {shown(out)}: {getattr(exc, 'strerror', None) or exc}") \
                from None
        raise
    return paths


def parse_line(words: list[str], task: CopyTask) -> list[str] | None:
    """The m symbols a well-formed line of `task` recalls, or None when the line is not one."""
    m, T = task.symbols, task.delay
    if len(words) != task.line_length:
        return None
    content, blanks, delim, recalled = words[:m], words[m:m + T], words[m + T], words[m + T + 1:]
    if content != recalled or delim != DELIMITER or any(b != BLANK for b in blanks):
        return None
    return content
