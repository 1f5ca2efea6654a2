"""The documentation is true by construction: its commands run, its generated sections are fresh,
and what README's "Data" and "Training" sections promise is what the tool does.

Commands: tests/docs_runner.py collects the ```sh / ```console blocks of README.md and docs/*.md
and runs each block in a fresh workspace, shortened as its docstring says (rnnlm train gets
`--set train.max_steps=3 --set train.eval_every=3 --set train.log_every=1`; `make TARGET` runs as
`make -n TARGET`).
Commands tagged [slow] or [corpora] run only under `make docs-check` (RNNLM_DOCS_FULL=1).

Generated sections: cog --check over the same files (scripts/docgen.py); run `make docs` to
rewrite them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import numpy as np
import pytest

import docs_runner as runner

FULL = os.environ.get("RNNLM_DOCS_FULL") == "1"
BLOCKS = [block for doc in runner.DOCS for block in runner.parse_blocks(doc)]


@pytest.fixture(scope="session")
def template(tmp_path_factory):
    return runner.make_template(tmp_path_factory.mktemp("docs-template"))


@pytest.fixture
def workspace(template):
    return runner.new_workspace(template)


# --------------------------------------------------------------------------- the convention itself

def test_the_docs_have_runnable_blocks_and_no_unmarked_shell_fences():
    # every shell example is in a ```sh or ```console block, so none escapes the tests
    assert len(BLOCKS) >= 10
    for doc in runner.DOCS:
        langs = set(re.findall(r"^\s*```(\S+)\s*$", doc.read_text(encoding="utf-8"), flags=re.M))
        assert langs <= {"sh", "console", "text", "yaml", "json"}, f"{doc.name}: fences {langs}"


def test_parser_joins_continuations_reads_tags_and_console_output(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("```sh\nrnnlm a --x 1 \\\n    --y 2   # note [slow]\n# only a comment\nmake demo\n```\n"
                   "```console\n$ rnnlm b   # [exit 2]\nError: one line\n...\n```\n```\nnot run\n```\n",
                   encoding="utf-8")
    runner.ROOT, saved = tmp_path, runner.ROOT
    try:
        sh, console = runner.parse_blocks(doc)
    finally:
        runner.ROOT = saved
    assert [(c.text, c.tags) for c in sh.commands] == [("rnnlm a --x 1 --y 2", {"slow"}), ("make demo", set())]
    (b,) = console.commands
    assert (b.text, b.exit_code, b.output) == ("rnnlm b", 2, ["Error: one line"])


def test_quick_forms_are_the_documented_ones():
    assert runner.quick_form("make probe") == ("make -n probe", True)
    assert runner.quick_form("rnnlm train --config c.yaml")[0] == (
        "rnnlm train --config c.yaml --set train.max_steps=3 --set train.eval_every=3 --set train.log_every=1")
    assert runner.quick_form("rnnlm evaluate --checkpoint x")[0] == "rnnlm evaluate --checkpoint x"


# --------------------------------------------------------------------------- every command runs

@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_documented_commands_run(block, workspace):
    ran = 0
    for cmd in block.commands:
        if cmd.full_only and not FULL:
            continue
        if "corpora" in cmd.tags and not (runner.SHARED / "corpora").is_dir():
            continue
        runner.run_command(cmd, workspace)
        ran += 1
    if not ran:
        pytest.skip("only [slow]/[corpora] commands: `make docs-check` runs them")


@pytest.mark.parametrize("target", sorted({t for doc in runner.DOCS for t in runner.inline_make_targets(doc)}))
def test_make_targets_named_in_prose_exist(target):
    done = runner.shell(f"make -n {target[5:]}", runner.ROOT)
    assert done.returncode == 0, f"`{target}` in the docs: {done.stderr}"


def test_set_examples_in_the_shipped_configs_run(workspace, tmp_path):
    # each config that reads ../shared/corpora shows how to point elsewhere, one --set per key;
    # the example runs as written with DIR = a folder holding copies of the agreement corpus
    corpus = tmp_path / "elsewhere"
    corpus.mkdir()
    agreement = runner.ROOT / "corpora" / "agreement"
    for split in ("train", "valid", "test"):
        text = (agreement / f"{split}.txt").read_text(encoding="utf-8")
        (corpus / f"ptb.{split}.txt").write_text(text, encoding="utf-8")
    (corpus / "input.txt").write_text((agreement / "valid.txt").read_text(encoding="utf-8"), encoding="utf-8")
    examples = []
    for config in sorted((runner.ROOT / "configs").rglob("*.yaml")):
        for line in config.read_text(encoding="utf-8").split("\n"):
            if line.startswith("#") and "--set data.train=" in line:
                examples.append((config.name, line.lstrip("# ").strip()))
    assert len(examples) >= 8, examples
    for name, example in examples:
        assert example.startswith("rnnlm preprocess"), f"{name}: {example}"
        for prepared in ("ptb", "shakespeare"):                 # the PTB configs share one folder
            __import__("shutil").rmtree(workspace / "runs" / prepared, ignore_errors=True)
        done = runner.shell(example.replace("DIR", str(corpus)) + " --quiet", workspace)
        assert done.returncode == 0, f"{name}: `{example}`: {done.stderr}"


# --------------------------------------------------------------------------- generated sections

def test_generated_sections_are_fresh():
    from cogapp import Cog
    files = [str(p.relative_to(runner.ROOT)) for p in runner.DOCS]
    done = subprocess.run(["cog", "--check", "-I", "scripts"] + files, cwd=runner.ROOT, env=runner.environment(),
                          capture_output=True, text=True)
    assert Cog  # cogapp is installed (the dev extra)
    assert done.returncode == 0, ("a generated section of the docs is stale; run `make docs`\n"
                                  + done.stdout[-3000:] + done.stderr[-3000:])


def test_cli_reference_covers_every_command():
    import click
    from rnnlm_cli.cli import cli
    text = (runner.ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    names = [name for name, cmd in cli.commands.items()]
    names += [f"{name} {sub}" for name, cmd in cli.commands.items() if isinstance(cmd, click.Group)
              for sub in cmd.commands]
    for name in names:
        assert f"## rnnlm {name}\n" in text, name


def test_bench_ratios_follow_from_the_figures():
    # the ratios the README quotes are peer time / our time for the same tokens
    from rnnlm_cli.render.docs import bench_speedups
    report = json.loads((runner.ROOT / "results" / "bench.json").read_text(encoding="utf-8"))
    ttq = report["time_to_quality"][0]
    speed = bench_speedups(report)
    assert speed["mikolov_rnnlm_0.3e"] == pytest.approx(ttq["tokens"] / 10_900 / ttq["seconds"])
    readme = (runner.ROOT / "README.md").read_text(encoding="utf-8")
    assert f"{speed['mikolov_rnnlm_0.3e']:.1f}x and {speed['pytorch_cpu_tanh']:.1f}x faster" in readme


# --------------------------------------------------------------------------- README's promises

def _rnnlm(args: str, repo):
    return runner.shell(f"rnnlm {args}", repo)


def test_data_section_prepared_folder(workspace):
    # "vocab.txt (token and training count per line, count descending then token), train.npy,
    # valid.npy, test.npy (smallest unsigned dtype), meta.json (...), config.yaml"
    prepared = workspace / "runs" / "demo" / "data"
    assert {p.name for p in prepared.iterdir()} == {"vocab.txt", "train.npy", "valid.npy", "test.npy",
                                                    "meta.json", "config.yaml"}
    pairs = [line.split("\t") for line in (prepared / "vocab.txt").read_text(encoding="utf-8").splitlines()]
    keys = [(-int(count), token) for token, count in pairs]
    assert keys == sorted(keys)
    # the vocabulary has fewer than 256 types, so uint8 is the smallest unsigned dtype that holds every id
    assert len(pairs) < 256 and np.load(prepared / "train.npy").dtype == np.uint8
    meta = json.loads((prepared / "meta.json").read_text(encoding="utf-8"))
    assert {"level", "vocab_size", "tokens", "oov_rate", "sources"} <= set(meta)
    assert {"bytes", "sha256"} <= set(meta["sources"][0])


def test_training_builds_a_missing_prepared_folder_and_rebuilds_changed_sources(workspace):
    # "`rnnlm train` runs preprocessing itself when the prepared folder is missing or its sources changed"
    prepared = workspace / "runs" / "demo" / "data"
    short = runner.TRAIN_SHORT
    __import__("shutil").rmtree(prepared)
    done = _rnnlm(f"train --config configs/tiny.yaml {short} --quiet", workspace)
    assert done.returncode == 0 and (prepared / "train.npy").is_file(), done.stderr
    before = json.loads((prepared / "meta.json").read_text(encoding="utf-8"))["tokens"]["train"]
    with open(workspace / "corpora" / "agreement" / "train.txt", "a", encoding="utf-8") as fh:
        fh.write("the man goes home\n")                       # 4 words + <eos>
    done = _rnnlm(f"train --config configs/tiny.yaml {short} --force --quiet", workspace)
    assert done.returncode == 0, done.stderr
    after = json.loads((prepared / "meta.json").read_text(encoding="utf-8"))["tokens"]["train"]
    assert after == before + 5


def test_training_refuses_an_incomplete_prepared_folder_naming_the_file(workspace):
    (workspace / "runs" / "demo" / "data" / "valid.npy").unlink()
    done = _rnnlm(f"train --config configs/tiny.yaml {runner.TRAIN_SHORT} --quiet", workspace)
    assert done.returncode == 1
    assert "valid.npy" in done.stderr and "rnnlm preprocess --force" in done.stderr
    assert not (workspace / "runs" / "demo" / "data" / "valid.npy").exists()   # not silently rebuilt
    assert not (workspace / "runs" / "demo" / "tanh").exists()


def test_training_output_folder_and_checkpoint_entries(workspace):
    # the Training section's tables: the files of train.out and the checkpoint's entries
    done = _rnnlm(f"train --config configs/tiny.yaml {runner.TRAIN_SHORT} --quiet", workspace)
    assert done.returncode == 0, done.stderr
    out = workspace / "runs" / "demo" / "tanh"
    assert {"config.yaml", "metrics.jsonl", "checkpoint.npz", "best.npz", "summary.json"} <= {
        p.name for p in out.iterdir()}
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    step = next(m for m in lines if "split" not in m)
    assert {"step", "epoch", "tokens", "lr", "loss", "ppl", "grad_norm", "grad_norm_clipped", "clipped",
            "nonfinite_skipped", "tokens_per_sec"} <= set(step)
    evaluation = next(m for m in lines if "split" in m)
    assert {"split", "loss", "ppl", "tokens", "elapsed"} <= set(evaluation)
    with np.load(out / "checkpoint.npz", allow_pickle=False) as ck:
        names = set(ck.files)
    # tiny.yaml: tanh, untied, full softmax, Adam (slots m and v)
    assert {"param/embedding", "param/cell.W_x", "param/cell.W_h", "param/cell.b", "param/output.W",
            "param/output.b", "optim/t", "state/0", "rng", "meta", "checksum"} <= names
    assert {"optim/m/cell.W_h", "optim/v/cell.W_h"} <= names


def test_resuming_with_another_model_shape_is_refused_naming_it(workspace):
    assert _rnnlm(f"train --config configs/tiny.yaml {runner.TRAIN_SHORT} --quiet", workspace).returncode == 0
    done = _rnnlm(f"train --config configs/tiny.yaml {runner.TRAIN_SHORT} --set model.hidden_size=32 --resume "
                  f"--quiet", workspace)
    assert done.returncode != 0 and "hidden_size" in done.stderr
