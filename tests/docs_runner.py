"""Collect and run the shell examples of README.md and docs/*.md.

The convention (README, "Development"):

- ```sh blocks hold commands, one per line (a trailing `\\` continues a line); each must exit 0.
- ```console blocks hold `$ command` lines followed by the output they show; the command must
  exit 0 and every shown line (except `...`) must appear in what it prints (stdout and stderr).
- Tags in a command's trailing comment: `[exit N]` expects exit code N; `[slow]` (minutes) and
  `[corpora]` (reads ../shared/corpora) run only under `make docs-check` (RNNLM_DOCS_FULL=1),
  and a `[corpora]` command is skipped there when the corpora are absent.
- Other fenced blocks (no language, ```text, ```yaml) are output or text and are not run.

How the runner keeps them quick (`quick_form`): `make TARGET` becomes `make -n TARGET` (the target
must exist; nothing runs), `rnnlm train` gets
`--set train.max_steps=3 --set train.eval_every=3 --set train.log_every=1` (three logged updates,
then an evaluation, so best.npz exists), `rnnlm gradcheck --all` gets `--samples 2`
and `rnnlm diagnose-gradients` with a model gets `--steps 10 --batches 1 --batch-size 4`. Each block
runs in its own copy of a workspace (configs/, corpora/, scripts/ and the agreement corpus prepared
once per test run); a run folder a command names but no earlier command made (e.g.
runs/demo/tanh, runs/probe/MODEL/seedS) is trained first, shortened the same way (PROVIDERS).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))

TAG = re.compile(r"\[(slow|corpora|exit \d+)\]")
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")

# added to every `rnnlm train`: three updates, then one evaluation (so best.npz is written)
TRAIN_SHORT = "--set train.max_steps=3 --set train.eval_every=3 --set train.log_every=1"
GRADCHECK_SHORT = "--samples 2"
DIAGNOSE_SHORT = "--steps 10 --batches 1 --batch-size 4"

# run folders the docs read but only `make` targets write: how the runner makes them
PROVIDERS = {
    "runs/demo/tanh": "rnnlm train --config configs/tiny.yaml --quiet",
    "runs/probe/lstm/seed1": "rnnlm train --config configs/probe/lstm.yaml --set train.seed=1 "
                              "--set train.out=runs/probe/lstm/seed1 --quiet",
    "runs/probe/tanh-k5/seed1": "rnnlm train --config configs/probe/tanh-k5.yaml --set train.seed=1 "
                              "--set train.out=runs/probe/tanh-k5/seed1 --quiet",
    "runs/probe/gru/seed1": "rnnlm train --config configs/probe/gru.yaml --set train.seed=1 "
                              "--set train.out=runs/probe/gru/seed1 --quiet",
    "runs/probe/gru/seed2": "rnnlm train --config configs/probe/gru.yaml --set train.seed=2 "
                              "--set train.out=runs/probe/gru/seed2 --quiet",
    "runs/probe/gru/seed3": "rnnlm train --config configs/probe/gru.yaml --set train.seed=3 "
                              "--set train.out=runs/probe/gru/seed3 --quiet",
}


@dataclass
class Command:
    doc: str
    line: int
    text: str                                       # the command as written, continuations joined
    output: list[str] = field(default_factory=list)  # lines a console block shows after it
    tags: set[str] = field(default_factory=set)

    @property
    def exit_code(self) -> int:
        return next((int(t.split()[1]) for t in self.tags if t.startswith("exit ")), 0)

    @property
    def full_only(self) -> bool:
        return bool(self.tags & {"slow", "corpora"})


@dataclass
class Block:
    doc: str
    line: int
    lang: str
    commands: list[Command]

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


# --------------------------------------------------------------------------- parsing

def strip_comment(line: str) -> str:
    """A shell line without its trailing comment (a `#` after a blank, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _join(lines: list[tuple[int, str]]) -> list[tuple[int, str, set[str]]]:
    """Logical commands (first line number, text, tags) from physical lines with `\\` continuations."""
    out, current, start, tags = [], "", 0, set()
    for number, raw in lines:
        tags |= set(TAG.findall(raw))
        code = strip_comment(raw)
        if not current:
            start = number
        if code.endswith("\\"):
            current += code[:-1].rstrip() + " "
            continue
        current += code.strip()
        if current.strip():
            out.append((start, current.strip(), tags))
        current, tags = "", set()
    return out


def parse_blocks(path: Path) -> list[Block]:
    """The ```sh and ```console blocks of a Markdown file, in order."""
    name = str(path.relative_to(ROOT))
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start, body = m.group(2), i + 1, []
        i += 1
        while i < len(lines) and not FENCE.match(lines[i]):
            body.append((i + 1, lines[i]))
            i += 1
        i += 1
        if lang == "sh":
            commands = [Command(name, n, text, tags=tags) for n, text, tags in _join(body)]
        elif lang == "console":
            commands = _console(name, body)
        else:
            continue
        blocks.append(Block(name, start, lang, commands))
    return blocks


def _console(doc: str, body: list[tuple[int, str]]) -> list[Command]:
    commands: list[Command] = []
    pending: list[tuple[int, str]] = []
    for number, raw in body:
        if raw.startswith("$ ") or pending:
            pending.append((number, raw[2:] if raw.startswith("$ ") else raw))
            if not raw.rstrip().endswith("\\"):
                (n, text, tags), = _join(pending)
                commands.append(Command(doc, n, text, tags=tags))
                pending = []
        elif commands and raw.strip() and raw.strip() != "...":
            commands[-1].output.append(raw.rstrip())
    return commands


def inline_make_targets(path: Path) -> list[str]:
    """`make TARGET ...` spans in a doc's prose (inline code), for the existence check."""
    prose, fenced = [], False
    for line in path.read_text(encoding="utf-8").split("\n"):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            prose.append(line)
    text = "\n".join(prose)
    return sorted(set(re.findall(r"`(make [a-z][\w.-]*(?: [A-Z_]+=(?:\"[^\"]*\"|\S+))*)`", text)))


# --------------------------------------------------------------------------- running

def quick_form(command: str) -> tuple[str, bool]:
    """(the command as the tests run it, whether it runs in the repository root)."""
    if command.startswith("make "):
        return "make -n " + command[5:], True
    if command.startswith("rnnlm train"):
        return f"{command} {TRAIN_SHORT}", False
    if command.startswith("rnnlm gradcheck") and "--all" in command.split():
        return f"{command} {GRADCHECK_SHORT}", False
    if command.startswith("rnnlm diagnose-gradients") and ("--config" in command or "--checkpoint" in command):
        return f"{command} {DIAGNOSE_SHORT}", False
    return command, False


def environment() -> dict:
    """The tests' environment with the venv's `rnnlm` and `python` first on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "OPENBLAS_NUM_THREADS": "1"}


def shell(command: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=environment(), capture_output=True, text=True,
                          timeout=timeout)


def make_template(folder: Path) -> Path:
    """The workspace every block starts from: configs/, corpora/, scripts/, docs/, the agreement
    corpus prepared for the demo and probe configs, and ../shared linked to the real one when it
    exists. It is built where the blocks run (folder/ws/repo) and kept in folder/template: a
    prepared folder records its sources' absolute paths, so a copy elsewhere would be rebuilt."""
    repo = folder / "ws" / "repo"
    repo.mkdir(parents=True)
    if SHARED.is_dir():
        (folder / "ws" / "shared").symlink_to(SHARED)
    for name in ("configs", "corpora", "scripts", "docs"):
        shutil.copytree(ROOT / name, repo / name)
    for config in ("configs/tiny.yaml", "configs/probe/lstm.yaml"):
        done = shell(f"rnnlm preprocess --config {config} --quiet", repo)
        assert done.returncode == 0, done.stderr
    shutil.copytree(repo, folder / "template", symlinks=True)
    return folder


def new_workspace(base: Path) -> Path:
    """The workspace reset to the template (same path every time); returns its repo folder."""
    repo = base / "ws" / "repo"
    shutil.rmtree(repo)
    shutil.copytree(base / "template", repo, symlinks=True)
    return repo


def provide(command: str, repo: Path) -> None:
    """Train the run folders `command` reads when no earlier command made them."""
    words = set(re.findall(r"[\w./-]+", command))
    for folder, maker in PROVIDERS.items():
        if any(w == folder or w.startswith(folder + "/") for w in words) and not (repo / folder).exists():
            done = shell(quick_form(maker)[0], repo)
            assert done.returncode == 0, f"making {folder}: {done.stderr}"


def run_command(cmd: Command, repo: Path) -> None:
    """Run one documented command and check its exit code and shown output; AssertionError if not."""
    text, in_root = quick_form(cmd.text)
    if not in_root:
        provide(cmd.text, repo)
    done = shell(text, ROOT if in_root else repo)
    where = f"{cmd.doc}:{cmd.line}: `{cmd.text}` (run as `{text}`)"
    assert done.returncode == cmd.exit_code, (
        f"{where} exited {done.returncode}, the doc expects {cmd.exit_code}\n"
        f"stdout: {done.stdout[-1500:]}\nstderr: {done.stderr[-1500:]}")
    printed = done.stdout + done.stderr
    missing = [line for line in cmd.output if line.strip() not in printed]
    assert not missing, f"{where}: the doc shows lines it does not print: {missing}\nprinted:\n{printed[-3000:]}"
