"""paths: the one rule between what a command reads and what it writes, folders the tool owns,
and preprocess replacing only its own folders (the data-loss cases of the bad-input catalogue,
end to end: tests/test_bad_inputs.py, block "outputs against inputs")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rnnlm_cli import fileio, paths
from rnnlm_cli.cli import cli
from rnnlm_cli.config import Config, DataConfig
from rnnlm_cli.data import corpus
from rnnlm_cli.errors import ConfigError
from rnnlm_cli.paths import In, Out, check_paths

ROOT = Path(__file__).resolve().parents[1]
TEXT = "".join(f"the {n} {v} home\n" for n, v in [("dog", "runs"), ("dogs", "run"), ("cat", "runs")] * 10)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="rnnlm")


def refused(match):
    return pytest.raises(ConfigError, match=match)


# --------------------------------------------------------------------------- the rule

def test_relations_between_outputs_and_inputs(tmp_path):
    (tmp_path / "data").mkdir()
    corpus_file = tmp_path / "data" / "train.txt"
    corpus_file.write_text(TEXT)
    inputs = [In("training file", str(corpus_file)), In("data folder", str(tmp_path / "data"), "folder")]
    with refused(r"^out .*train.txt is also the training file .*train.txt; choose another path$"):
        check_paths(inputs, [Out("out", str(corpus_file))])
    with refused(r"^out .*data/new is inside the data folder .*data; choose another path$"):
        check_paths(inputs, [Out("out", str(tmp_path / "data" / "new"))])
    with refused(r"^out .*contains the training file"):
        check_paths(inputs[:1], [Out("out", str(tmp_path), "prepared")])
    # beside the inputs is fine; so is a prefix that is not a parent folder
    check_paths(inputs, [Out("out", str(tmp_path / "elsewhere")), Out("out2", str(tmp_path / "data2"))])


def test_spellings_cannot_dodge_the_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prep").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "prep")
    prep = [In("prepared-data folder", "prep", "folder")]
    for spelling in ("prep", "./prep", "x/../prep", "prep/.", "link", f"{tmp_path}/link/", "link/run"):
        with refused(r"^output folder .* (is also|is inside) the prepared-data folder prep; choose another path$"):
            check_paths(prep, [Out("output folder", spelling, "run")])
    f = tmp_path / "ck.npz"
    f.write_bytes(b"x")
    os.link(f, tmp_path / "hard.tsv")
    with refused(r"^--per-token file hard.tsv is also the checkpoint ck.npz"):
        check_paths([In("checkpoint", "ck.npz")], [Out("--per-token file", "hard.tsv")])


def test_outputs_against_each_other_say_which_is_inside(tmp_path):
    run = str(tmp_path / "run")
    with refused(r"^--record file .*run/r.json is inside the output folder .*run; choose another path$"):
        check_paths([], [Out("output folder", run, "run"), Out("--record file", os.path.join(run, "r.json"))])
    with refused(r"^--record file .*run/r.json is inside the output folder .*run; choose another path$"):
        check_paths([], [Out("--record file", os.path.join(run, "r.json")), Out("output folder", run, "run")])


def test_what_the_tool_owns_in_an_output_folder_may_be_read(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("train: {}\n")
    (run / "mine.yaml").write_text("train: {}\n")
    out = Out("output folder", str(run), "run", owns=paths.RUN_FILES)
    check_paths([In("config file", str(run / "config.yaml"))], [out])       # train --config RUN/config.yaml --resume
    with refused("contains the config file"):
        check_paths([In("config file", str(run / "mine.yaml"))], [out])


def test_missing_inputs_are_left_to_their_own_checks(tmp_path):
    check_paths([In("training file", str(tmp_path / "nope.txt")), In("training file", str(tmp_path), "file"),
                 In("prepared-data folder", str(tmp_path / "nope"), "folder"), None, In("config file", None)],
                [Out("output folder", str(tmp_path / "nope.txt")), None, Out("--plot file", None)])


def test_own_files_of_owned_folders_are_never_outputs(tmp_path):
    prep = tmp_path / "prep"
    corpus.preprocess(DataConfig(train=str(_write(tmp_path / "t.txt")), prepared=str(prep)))
    for name in paths.PREPARED_FILES:
        with refused(f"^--plot file .*{name} is the {name} of the prepared-data folder .*prep; choose another path$"):
            check_paths([], [Out("--plot file", str(prep / name))])
    check_paths([], [Out("--plot file", str(prep / "figure.png"))])    # a new file beside them: the user's choice
    with refused(r"^output folder .*prep is a prepared-data folder, not a training run folder"):
        check_paths([], [Out("output folder", str(prep), "run")])


def test_a_long_path_is_cut_in_the_message(tmp_path):
    long = str(tmp_path / ("x" * 5000))
    with pytest.raises(ConfigError) as info:
        check_paths([In("config file", str(_write(tmp_path / "c.yaml")))],
                    [Out("output folder", long + "/..", "prepared"), Out("--record file", long + "/../c.yaml")])
    assert len(str(info.value)) < 600 and "..." in str(info.value)


def _write(path: Path, text: str = TEXT) -> Path:
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- folders the tool owns

def test_folder_kinds(tmp_path):
    prep, run, other = tmp_path / "prep", tmp_path / "run", tmp_path / "other"
    meta = corpus.preprocess(DataConfig(train=str(_write(tmp_path / "t.txt")), prepared=str(prep)))
    assert meta["format"] == paths.PREPARED_MARKER
    assert sorted(os.listdir(prep)) == sorted(paths.PREPARED_FILES)
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    other.mkdir()
    (other / "meta.json").write_text('{"format_version": 1}')          # a meta.json, but not ours
    assert [paths.folder_kind(p) for p in (prep, run, other, tmp_path / "nope", tmp_path / "t.txt")] == \
        ["prepared", "run", None, None, None]
    # a folder written before the marker existed is still recognised
    legacy = json.loads((prep / "meta.json").read_text())
    del legacy["format"]
    (prep / "meta.json").write_text(json.dumps(legacy))
    assert paths.is_prepared_folder(prep)


# --------------------------------------------------------------------------- preprocess replaces only its own

def test_force_replaces_only_a_prepared_folder_holding_nothing_else(tmp_path):
    train, prep = _write(tmp_path / "t.txt"), tmp_path / "prep"
    cfg = DataConfig(train=str(train), prepared=str(prep))
    corpus.preprocess(cfg)
    (prep / "run1").mkdir()
    (prep / "run1" / "checkpoint.npz").write_bytes(b"weeks of training")
    with refused(r"also holds files that preprocess did not write \(run1\); rebuilding it would delete them"):
        corpus.preprocess(cfg, force=True)
    assert (prep / "run1" / "checkpoint.npz").read_bytes() == b"weeks of training"
    shutil.rmtree(prep / "run1")
    (prep / ".vocab.txt-abc.tmp").write_text("a killed write")             # the tool's own leftovers go
    corpus.preprocess(cfg, force=True)
    assert sorted(os.listdir(prep)) == sorted(paths.PREPARED_FILES)
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n or ".old-" in n]


def test_rebuild_by_train_never_deletes_a_run_kept_in_the_prepared_folder(tmp_path):
    """The data-loss case: a run inside the prepared folder, the corpus edited, train again."""
    train, prep = _write(tmp_path / "t.txt"), tmp_path / "exp"
    small = ["--set", "model.hidden_size=4", "--set", "model.embedding_size=4", "--set", "train.batch_size=2",
             "--max-steps", "2", "-q"]
    ok = invoke("train", "--set", f"data.train={train}", "--set", f"data.prepared={prep}", "--out", tmp_path / "r",
                *small)
    assert ok.exit_code == 0, ok.output
    shutil.copytree(tmp_path / "r", prep / "run1")                         # kept there by hand (or by an old rnnlm)
    before = {p: p.read_bytes() for p in (prep / "run1").iterdir()}
    train.write_text(TEXT + "a new line\n")
    result = invoke("train", "--set", f"data.train={train}", "--set", f"data.prepared={prep}",
                    "--out", tmp_path / "r2", *small)
    assert result.exit_code == 2 and result.stderr == (
        f"Error: prepared-data folder {prep} also holds files that preprocess did not write (run1); "
        f"rebuilding it would delete them: move them out or choose another folder\n")
    assert {p: p.read_bytes() for p in (prep / "run1").iterdir()} == before
    assert not (tmp_path / "r2").exists()
    # and that command is refused before any work
    result = invoke("train", "--set", f"data.train={train}", "--set", f"data.prepared={prep}",
                    "--out", prep / "run1", "--resume", *small)
    assert result.exit_code == 2 and "is inside the prepared-data folder" in result.stderr


def test_ensure_prepared_refuses_a_foreign_meta_json(tmp_path):
    prep = tmp_path / "prep"
    prep.mkdir()
    (prep / "meta.json").write_text('{"my": "own file"}')
    cfg = Config(data=DataConfig(train=str(_write(tmp_path / "t.txt")), prepared=str(prep)))
    with refused("is not a prepared-data folder written by rnnlm preprocess"):
        corpus.ensure_prepared(cfg)
    assert os.listdir(prep) == ["meta.json"]


# --------------------------------------------------------------------------- leftovers of killed runs

def _preprocess(tmp_path, *extra, env=None):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RNNLM_FAULT")}, **(env or {})}
    return subprocess.run([sys.executable, "-m", "rnnlm_cli", "preprocess", "--train", str(tmp_path / "t.txt"),
                           "--out", str(tmp_path / "prep"), *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_leftovers_of_a_killed_preprocess_are_removed_by_the_next_one(tmp_path):
    _write(tmp_path / "t.txt")
    killed = _preprocess(tmp_path, env={fileio.FAULT_ENV: "before-rename:prep"})
    assert killed.returncode == -9
    (left,) = [n for n in os.listdir(tmp_path) if n.startswith(".prep.tmp-")]
    pid = left.split("-")[1]
    # a live process's temporary folder, and one holding anything else, are left alone
    live = tmp_path / f".prep.tmp-{os.getpid()}-abc"
    foreign = tmp_path / ".prep.tmp-999999999-xyz"
    for folder in (live, foreign):
        folder.mkdir()
    (foreign / "notes.txt").write_text("not the tool's")
    done = _preprocess(tmp_path, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(f"removed {tmp_path / left}, left behind by preprocess process {pid}, "
                                  f"which is no longer running\n")
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith(".")) == sorted([live.name, foreign.name])


def test_force_through_a_symlink_replaces_the_folder_it_names(tmp_path):
    train = _write(tmp_path / "t.txt")
    corpus.preprocess(DataConfig(train=str(train), prepared=str(tmp_path / "real")))
    (tmp_path / "link").symlink_to(tmp_path / "real")
    meta = corpus.preprocess(DataConfig(train=str(train), prepared=str(tmp_path / "link"), level="char"), force=True)
    assert meta["level"] == "char" and os.path.islink(tmp_path / "link")
    assert corpus.load_prepared(str(tmp_path / "real")).level == "char"
    assert sorted(os.listdir(tmp_path)) == ["link", "real", "t.txt"]


def test_a_run_may_be_resumed_from_its_own_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "t.txt")
    small = ["--set", "model.hidden_size=4", "--set", "model.embedding_size=4", "--set", "train.batch_size=2", "-q"]
    ok = invoke("train", "--set", "data.train=t.txt", "--set", "data.prepared=prep", "--out", "run",
                "--max-steps", "2", *small)
    assert ok.exit_code == 0, ok.output
    for flags in (["--resume", "--max-steps", "3"], ["--force", "--max-steps", "2"]):
        result = invoke("train", "--config", "run/config.yaml", "--out", "run", "-q", *flags)
        assert result.exit_code == 0, result.output
    # but a file of the user's in the output folder is an input the run must not sit on
    (tmp_path / "run" / "mine.yaml").write_text((tmp_path / "run" / "config.yaml").read_text())
    result = invoke("train", "--config", "run/mine.yaml", "--out", "run", "--resume", "-q")
    assert result.exit_code == 2
    assert result.stderr == (f"Error: output folder {tmp_path / 'run'} contains the config file run/mine.yaml; "
                             f"choose another path\n")
