"""A catalogue of bad inputs, command by command.

Every case asserts the exact one-line `Error: ...` on stderr, nothing on stdout, the exit code
(2 usage/configuration, 1 data/runtime), no traceback (the command ends in SystemExit), and that
no file was created, changed or removed anywhere under the test's folders (paths, sizes, mtimes
and contents are compared before and after).

Each case is a function `case(w, tmp) -> (argv, message, exit_code)`: it may write its own inputs
under `tmp` (before the snapshot is taken) and reads the shared, read-only fixtures in `w`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import meta_set

from rnnlm_cli import fileio
from rnnlm_cli.train import checkpoint
from rnnlm_cli.data import corpus
from rnnlm_cli.cli import cli

ROOT = Path(__file__).resolve().parents[1]
TRAIN_TEXT = "".join(f"the {n} {v} home\n" for n, v in [("dog", "runs"), ("dogs", "run"), ("cat", "runs"),
                                                          ("cats", "run")] * 15)


# --------------------------------------------------------------------------- shared fixtures

def small_model(*extra):
    """--set options of a tiny, fast model."""
    sets = ["model.hidden_size=8", "model.embedding_size=8", "train.batch_size=2", "train.k1=5",
            "train.log_every=1", *extra]
    return [a for s in sets for a in ("--set", s)]


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    """A corpus, its prepared folder, a finished run and a second vocabulary; treated as read-only."""
    root = tmp_path_factory.mktemp("world")
    (root / "train.txt").write_text(TRAIN_TEXT, encoding="utf-8")
    (root / "valid.txt").write_text("the dog runs home\nthe cats run home\n", encoding="utf-8")
    runner = CliRunner()
    ok = runner.invoke(cli, ["preprocess", "--train", str(root / "train.txt"), "--valid", str(root / "valid.txt"),
                             "--out", str(root / "prep"), "-q"])
    assert ok.exit_code == 0, ok.output
    ok = runner.invoke(cli, ["train", "--set", f"data.prepared={root / 'prep'}", "--out", str(root / "run"),
                             "--max-steps", "6", "-q", *small_model()])
    assert ok.exit_code == 0, ok.output
    # another corpus: a vocabulary of another size, and one of the same size with other tokens
    (root / "other.txt").write_text("a b c\n" * 20, encoding="utf-8")
    (root / "same.txt").write_text(TRAIN_TEXT.replace("home", "away"), encoding="utf-8")
    for name in ("other", "same"):
        ok = runner.invoke(cli, ["preprocess", "--train", str(root / f"{name}.txt"), "--out", str(root / f"prep-{name}"),
                                 "-q"])
        assert ok.exit_code == 0, ok.output
    return SimpleNamespace(root=root, prep=root / "prep", run=root / "run", ck=root / "run" / "checkpoint.npz",
                           train=root / "train.txt", other=root / "prep-other", same=root / "prep-same")


def snapshot(*folders) -> dict:
    """Every path under the folders: folders as None, files as (size, mtime_ns, sha256)."""
    seen = {}
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            for d in dirnames:
                seen[os.path.join(dirpath, d)] = None
            for f in filenames:
                path = os.path.join(dirpath, f)
                st = os.lstat(path)
                with open(path, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
                seen[path] = (st.st_size, st.st_mtime_ns, digest)
    return seen


def write_config(tmp, text, name="c.yaml"):
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def arrays_of(path):
    return checkpoint.load(str(path))


def copy_prep(w, tmp, name="prep"):
    dest = tmp / name
    shutil.copytree(w.prep, dest)
    return dest


def crafted_checkpoint(w, tmp, change, name="crafted.npz"):
    """A copy of the run's checkpoint with `change(arrays)` applied and a valid checksum."""
    arrays = arrays_of(w.ck)
    change(arrays)
    path = tmp / name
    checkpoint.save(str(path), arrays)
    return path


def prep_of(prep):
    return ["--set", f"data.prepared={prep}"]


# --------------------------------------------------------------------------- config

def c_yaml_tab(w, tmp):
    p = write_config(tmp, "model:\n\tcell: tanh\n")
    return (["config", "validate", "--config", p],
            f"{p}: invalid YAML (line 2, column 1): found character '\\t' that cannot start any token", 2)


def c_yaml_unclosed_quote(w, tmp):
    p = write_config(tmp, "model:\n  cell: 'tanh\n")
    return (["config", "validate", "--config", p],
            f"{p}: invalid YAML (line 3, column 1): found unexpected end of stream", 2)


def c_yaml_duplicate_key(w, tmp):
    p = write_config(tmp, "model:\n  cell: tanh\n  cell: gru\n")
    return ["config", "validate", "--config", p], f"{p}: duplicate key 'cell' (line 3)", 2


def c_yaml_list(w, tmp):
    p = write_config(tmp, "- model\n- train\n")
    return (["config", "show", "--config", p],
            f"{p}: the top level must be a mapping of sections (data, model, train, ...), not a list", 2)


def c_yaml_scalar(w, tmp):
    p = write_config(tmp, "hidden_size 128\n")
    return (["config", "show", "--config", p],
            f"{p}: the top level must be a mapping of sections (data, model, train, ...), not a str", 2)


def c_unknown_section(w, tmp):
    p = write_config(tmp, "modle:\n  cell: gru\n")
    return (["config", "validate", "--config", p],
            "unknown section 'modle' (did you mean model?); sections are "
            "data, model, train, diagnose, gradcheck, generate, evaluate, probe", 2)


def c_unknown_key(w, tmp):
    p = write_config(tmp, "train:\n  learning_rate: 0.1\n")
    return ["config", "validate", "--config", p], "unknown key 'train.learning_rate'", 2


def c_wrong_type(w, tmp):
    p = write_config(tmp, "model:\n  hidden_size: large\n")
    return ["config", "validate", "--config", p], "model.hidden_size: expected int, got 'large'", 2


def c_negative_size(w, tmp):
    p = write_config(tmp, "train:\n  batch_size: -4\n")
    return ["config", "validate", "--config", p], "train.batch_size: expected a value >= 1, got -4", 2


def c_zero_size(w, tmp):
    return ["config", "validate", "--set", "model.embedding_size=0"], \
        "model.embedding_size: expected a value >= 1, got 0", 2


def c_k2_below_k1(w, tmp):
    p = write_config(tmp, "train:\n  k1: 20\n  k2: 10\n")
    return ["config", "validate", "--config", p], "train.k2 (10) must be >= train.k1 (20), or 0 for k2 = k1", 2


def c_invalid_choice(w, tmp):
    return (["config", "validate", "--set", "train.optimizer=adamw"],
            "train.optimizer: expected one of sgd, adagrad, rmsprop, adam, got 'adamw' (did you mean adam?)", 2)


def c_set_without_equals(w, tmp):
    return ["config", "show", "--set", "train.lr"], "--set expects section.key=value, got 'train.lr'", 2


def c_set_unknown_key(w, tmp):
    return (["config", "show", "--set", "train.learning_rate=0.1"],
            "--set train.learning_rate=0.1: unknown key 'train.learning_rate'", 2)


def c_python_tag(w, tmp):
    p = write_config(tmp, "model: !!python/object/apply:os.system ['touch hacked']\n")
    return (["config", "validate", "--config", p],
            f"{p}: invalid YAML (line 1, column 8): could not determine a constructor for the tag "
            f"'tag:yaml.org,2002:python/object/apply:os.system'", 2)


def c_bad_int_tag(w, tmp):
    p = write_config(tmp, "model:\n  hidden_size: !!int many\n")
    return (["config", "validate", "--config", p],
            f"{p}: invalid YAML: invalid literal for int() with base 10: 'many'", 2)


def c_list_as_key(w, tmp):
    p = write_config(tmp, "model:\n  ? [cell]\n  : gru\n")
    return ["config", "validate", "--config", p], f"{p}: invalid YAML: unhashable type: 'list'", 2


def c_huge_int(w, tmp):
    return (["config", "validate", "--set", "model.hidden_size=1" + "0" * 30],
            f"model.hidden_size: expected a number below 2**63, got 1{'0' * 30}", 2)


def c_nul_in_path(w, tmp):
    p = write_config(tmp, 'data:\n  train: "corpus\\0.txt"\n')
    return ["config", "validate", "--config", p], "data.train: a path cannot contain a NUL character", 2


def c_config_missing(w, tmp):
    return ["config", "validate", "--config", tmp / "nope.yaml"], f"config file not found: {tmp / 'nope.yaml'}", 2


def c_config_not_utf8(w, tmp):
    p = tmp / "c.yaml"
    p.write_bytes(b"model:\n  cell: t\xe4nh\n")
    return ["config", "validate", "--config", p], f"{p}: not UTF-8 text (byte 16)", 2


def c_newline_in_key(w, tmp):
    p = write_config(tmp, 'model:\n  "hidden\\nsize": 3\n')
    return ["config", "validate", "--config", p], "unknown key 'model.hidden\\nsize' (did you mean model.hidden_size?)", 2


# --------------------------------------------------------------------------- preprocess

def p_corpus_missing(w, tmp):
    return (["preprocess", "--train", tmp / "nope.txt", "--out", tmp / "out"],
            f"training file not found: {tmp / 'nope.txt'}", 1)


def p_corpus_unreadable(w, tmp):
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading (see test_unreadable_corpus_simulated)")
    p = tmp / "secret.txt"
    p.write_text("a b\n")
    p.chmod(0)
    return (["preprocess", "--train", p, "--out", tmp / "out"],
            f"cannot read training file {p}: Permission denied", 1)


def p_corpus_empty(w, tmp):
    p = tmp / "empty.txt"
    p.write_bytes(b"")
    return ["preprocess", "--train", p, "--out", tmp / "out"], f"training file is empty: {p}", 1


def p_corpus_binary(w, tmp):
    p = tmp / "model.bin"
    p.write_bytes(bytes(range(256)) * 8)
    return (["preprocess", "--train", p, "--out", tmp / "out"],
            f"{p}: NUL byte at line 1, byte offset 0: not UTF-8 text (UTF-16 without a byte-order mark, or a binary "
            f"file?)", 1)


def p_corpus_invalid_utf8(w, tmp):
    p = tmp / "latin1.txt"
    p.write_bytes("the caf\u00e9 is open\n".encode("utf-8") + "na\u00efve\n".encode("latin-1"))
    return (["preprocess", "--train", p, "--out", tmp / "out"],
            f"{p}: invalid UTF-8 at line 2, byte offset 20 (set data.encoding_errors=replace to substitute U+FFFD)", 1)


def p_corpus_whitespace(w, tmp):
    p = tmp / "blank.txt"
    p.write_text(" \n\t\n\n")
    return (["preprocess", "--train", p, "--out", tmp / "out"],
            f"no tokens in the training text of {p} (level=word: only whitespace)", 1)


def p_corpus_folder(w, tmp):
    return (["preprocess", "--train", w.root, "--out", tmp / "out"],
            f"training file is a folder, not a file: {w.root}", 1)


def p_out_is_file(w, tmp):
    f = tmp / "taken"
    f.write_text("mine\n")
    return ["preprocess", "--train", w.train, "--out", f], f"output path exists and is not a folder: {f}", 1


def p_out_not_empty(w, tmp):
    out = tmp / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n")
    return ["preprocess", "--train", w.train, "--out", out], f"output folder is not empty: {out} (use --force to replace it)", 1


def p_no_train(w, tmp):
    return ["preprocess", "--out", tmp / "out"], "no training file configured: set data.train (or pass --train PATH)", 2


def p_bad_level(w, tmp):
    return (["preprocess", "--train", w.train, "--level", "byte"],
            "Invalid value for '--level': data.level: expected one of word, char, got 'byte' "
            "(see 'rnnlm preprocess -h')", 2)


# --------------------------------------------------------------------------- train

def t_args(w, tmp, *extra, out=None, prep=None, sets=()):
    return ["train", *prep_of(prep or w.prep), "--out", out or tmp / "run", "-q", *small_model(*sets), *extra]


def t_out_is_file(w, tmp):
    f = tmp / "run"
    f.write_text("not a folder\n")
    return t_args(w, tmp, out=f), f"output folder {f} is a file", 1


def t_out_under_a_file(w, tmp):
    f = tmp / "file"
    f.write_text("x\n")
    return t_args(w, tmp, out=f / "run"), f"cannot create output folder {f / 'run'}: {f} is a file", 1


def t_out_not_writable(w, tmp):
    if os.geteuid() == 0:
        pytest.skip("running as root: a read-only folder is still writable (see t_out_under_a_file)")
    ro = tmp / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return t_args(w, tmp, out=ro / "run"), f"cannot create output folder {ro / 'run'}: {ro} is not writable", 1


def t_prepared_missing(w, tmp):
    return (t_args(w, tmp, prep=tmp / "nope"),
            f"prepared-data folder not found: {tmp / 'nope'} (run 'rnnlm preprocess' first)", 1)


def t_prepared_no_vocab(w, tmp):
    prep = copy_prep(w, tmp)
    (prep / "vocab.txt").unlink()
    return (t_args(w, tmp, prep=prep),
            f"prepared-data folder {prep} has no vocab.txt (run 'rnnlm preprocess --force' to rebuild it)", 1)


def t_prepared_no_train_npy(w, tmp):
    prep = copy_prep(w, tmp)
    (prep / "train.npy").unlink()
    return (t_args(w, tmp, prep=prep),
            f"prepared-data folder {prep} has no train.npy (run 'rnnlm preprocess --force' to rebuild it)", 1)


def t_prepared_other_version(w, tmp):
    prep = copy_prep(w, tmp)
    meta = json.loads((prep / "meta.json").read_text())
    meta["format_version"] = 2
    (prep / "meta.json").write_text(json.dumps(meta))
    return (t_args(w, tmp, prep=prep),
            f"prepared-data folder {prep} has format_version 2, this rnnlm reads 1 (re-run 'rnnlm preprocess --force')", 1)


def t_prepared_meta_not_json(w, tmp):
    prep = copy_prep(w, tmp)
    (prep / "meta.json").write_text("{\"format_version\": 1,")
    return (t_args(w, tmp, prep=prep),
            f"{prep / 'meta.json'}: not readable JSON (Expecting property name enclosed in double quotes: "
            f"line 1 column 22 (char 21))", 1)


def t_prepared_ids_out_of_range(w, tmp):
    prep = copy_prep(w, tmp)
    ids = np.load(prep / "train.npy")
    ids[7] = 200
    np.save(prep / "train.npy", ids)
    return (t_args(w, tmp, prep=prep),
            f"{prep}/train.npy holds token id 200, outside the vocabulary of 9 (corrupted; re-run 'rnnlm preprocess --force')", 1)


def t_one_token_vocabulary(w, tmp):
    (tmp / "same.txt").write_text("la la la la la la\n" * 10)
    prep = tmp / "prep-la"
    ok = CliRunner().invoke(cli, ["preprocess", "--train", str(tmp / "same.txt"), "--set", "data.eos=false",
                                  "--out", str(prep), "-q"])
    assert ok.exit_code == 0, ok.output
    return (t_args(w, tmp, "--set", "data.eos=false", prep=prep),
            f"the vocabulary of {prep} has 1 type ('la'): there is nothing to predict; "
            f"a language model needs at least 2 distinct tokens", 1)


def t_corpus_missing(w, tmp):
    return (["train", "--set", f"data.train={tmp / 'nope.txt'}", "--set", f"data.prepared={tmp / 'prep'}",
             "--out", tmp / "run", "-q"], f"training file not found: {tmp / 'nope.txt'}", 1)


def t_too_few_tokens(w, tmp):
    return (t_args(w, tmp, "--set", "train.batch_size=500"),
            "the training split has 300 tokens, too few for train.batch_size=500 parallel streams (need at least 1000)", 1)


def t_existing_run(w, tmp):
    out = tmp / "run"
    shutil.copytree(w.run, out)
    return (t_args(w, tmp, out=out),
            f"{out} already holds a training run (checkpoint.npz); use --resume to continue it or --force to start over", 1)


def t_leftovers_without_checkpoint(w, tmp):
    out = tmp / "run"
    out.mkdir()
    shutil.copy(w.run / "metrics.jsonl", out)
    return (t_args(w, tmp, out=out),
            f"{out} holds files of an earlier run (metrics.jsonl) but no checkpoint.npz to resume from; "
            f"use --force to start over", 1)


def t_nothing_to_resume(w, tmp):
    return t_args(w, tmp, "--resume"), f"nothing to resume: {tmp / 'run' / 'checkpoint.npz'} does not exist", 1


def t_resume_and_force(w, tmp):
    return (t_args(w, tmp, "--resume", "--force"),
            "--resume and --force contradict each other (see 'rnnlm train -h')", 2)


def t_resume_truncated(w, tmp):
    out = tmp / "run"
    shutil.copytree(w.run, out)
    data = (out / "checkpoint.npz").read_bytes()
    (out / "checkpoint.npz").write_bytes(data[: len(data) // 2])
    return (t_args(w, tmp, "--resume", out=out),
            f"{out / 'checkpoint.npz'} is not a checkpoint (not an .npz archive; truncated?)", 1)


def t_resume_other_shape(w, tmp):
    out = tmp / "run"
    shutil.copytree(w.run, out)
    return (t_args(w, tmp, "--resume", "--set", "model.hidden_size=16", out=out),
            f"cannot resume from {out / 'checkpoint.npz'}: model.hidden_size is 8 in the checkpoint but 16 "
            f"in the configuration; resume with the checkpoint's value, or start over with --force", 1)


def t_resume_other_vocabulary(w, tmp):
    out = tmp / "run"
    shutil.copytree(w.run, out)
    return (t_args(w, tmp, "--resume", out=out, prep=w.same),
            f"{out / 'checkpoint.npz'} was trained on another vocabulary than {w.same} (same size, different tokens)", 1)


def t_bad_max_steps(w, tmp):
    return (t_args(w, tmp, "--max-steps", "-1"),
            "Invalid value for '--max-steps': train.max_steps: expected a value >= 0, got -1 (see 'rnnlm train -h')", 2)


def t_bad_config_value(w, tmp):
    return t_args(w, tmp, "--set", "train.lr=-1"), "train.lr: expected a value > 0.0, got -1", 2


# --------------------------------------------------------------------------- evaluate

def e_args(ck, *extra):
    return ["evaluate", "--checkpoint", ck, "--split", "valid", *extra]


def e_missing(w, tmp):
    return e_args(tmp / "nope.npz"), f"checkpoint not found: {tmp / 'nope.npz'}", 1


def e_truncated(w, tmp):
    p = tmp / "ck.npz"
    p.write_bytes(w.ck.read_bytes()[:-100])
    return e_args(p), f"{p} is not a checkpoint (not an .npz archive; truncated?)", 1


def e_zero_bytes(w, tmp):
    p = tmp / "ck.npz"
    p.write_bytes(b"")
    return e_args(p), f"checkpoint {p} is empty (0 bytes)", 1


def e_not_npz(w, tmp):
    return e_args(w.train), f"{w.train} is not a checkpoint (not an .npz archive; truncated?)", 1


def e_plain_npz(w, tmp):
    p = tmp / "weights.npz"
    np.savez(p, embedding=np.zeros((3, 3)))
    return e_args(p), f"{p} is not an rnnlm checkpoint (no meta/checksum entries)", 1


def e_corrupted_array(w, tmp):
    # flip one byte inside the stored parameter data: the archive's CRC catches it
    data = bytearray(w.ck.read_bytes())
    with zipfile.ZipFile(w.ck) as zf:
        info = zf.getinfo("param/cell.W_h.npy")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.file_size - 5] ^= 0xFF
    p = tmp / "ck.npz"
    p.write_bytes(bytes(data))
    return e_args(p), f"checkpoint {p} is corrupted: Bad CRC-32 for file 'param/cell.W_h.npy'", 1


def e_checksum_mismatch(w, tmp):
    members = arrays_of(w.ck)
    members["checksum"] = np.array(checkpoint._checksum(members))
    members["param/embedding"] = members["param/embedding"] * 2   # changed after the checksum was taken
    p = tmp / "ck.npz"
    np.savez(p, **members)
    return e_args(p), f"checkpoint {p} is corrupted: checksum mismatch", 1


def e_pickled(w, tmp):
    members = arrays_of(w.ck)
    members["param/evil"] = np.array([{"run": "os.system"}], dtype=object)
    p = tmp / "ck.npz"
    np.savez(p, **members)
    return e_args(p), f"checkpoint {p} holds pickled objects; refusing to load it (rnnlm never unpickles)", 1


def e_other_vocab_size(w, tmp):
    return (e_args(w.ck, *prep_of(w.other)),
            f"{w.ck} was trained with a vocabulary of 9 tokens, but {w.other} has 4", 1)


def e_other_vocab_tokens(w, tmp):
    return (e_args(w.ck, *prep_of(w.same)),
            f"{w.ck} was trained on another vocabulary than {w.same} (same size, different tokens)", 1)


def e_other_shape(w, tmp):
    def change(arrays):
        arrays["param/cell.W_h"] = np.zeros((4, 4), np.float32)
    p = crafted_checkpoint(w, tmp, change)
    return e_args(p), f"checkpoint {p} does not match its configuration: parameter cell.W_h: expected shape (8, 8), got (4, 4)", 1


def e_meta_not_json(w, tmp):
    def change(arrays):
        arrays["meta"] = np.array("{step: 3")
    p = crafted_checkpoint(w, tmp, change)
    return e_args(p), f"checkpoint {p}: entry 'meta' is not valid JSON", 1


def e_bad_config_inside(w, tmp):
    p = crafted_checkpoint(w, tmp, meta_set(["config", "model", "cell"], "transformer"))
    return (e_args(p), f"checkpoint {p} holds an unreadable configuration: model.cell: expected one of "
                       f"tanh, relu, gru, lstm, got 'transformer'", 1)


def e_integer_params(w, tmp):
    def change(arrays):
        arrays["param/embedding"] = arrays["param/embedding"].astype(np.int64)
    p = crafted_checkpoint(w, tmp, change)
    return e_args(p), f"checkpoint {p}: parameter embedding has dtype int64, expected float", 1


def e_nan_params(w, tmp):
    def change(arrays):
        arrays["param/cell.W_h"] = arrays["param/cell.W_h"].copy()
        arrays["param/cell.W_h"][1, 2] = np.nan
    p = crafted_checkpoint(w, tmp, change)
    return e_args(p), f"checkpoint {p}: parameter cell.W_h holds non-finite values (NaN or inf)", 1


def e_other_format_version(w, tmp):
    p = crafted_checkpoint(w, tmp, meta_set(["format_version"], 7))
    return e_args(p), "checkpoint format version 7 is not supported (this rnnlm reads version 1)", 1


def e_empty_split(w, tmp):
    return (["evaluate", "--checkpoint", w.ck, "--split", "test"],
            f"the test split of {w.prep} has 0 tokens: nothing to evaluate "
            f"(give a data.test file or data.split ratios when preprocessing)", 1)


def e_split_not_a_file(w, tmp):
    return (["evaluate", "--checkpoint", w.ck, "--split", "tset"],
            "--split: expected valid, test or a text file, got 'tset' (no such file)", 1)


def e_split_file_invalid_utf8(w, tmp):
    p = tmp / "t.txt"
    p.write_bytes(b"the dog \xff runs\n")
    return (["evaluate", "--checkpoint", w.ck, "--split", p],
            f"{p}: invalid UTF-8 at line 1, byte offset 8 (set data.encoding_errors=replace to substitute U+FFFD)", 1)


def e_per_token_folder_missing(w, tmp):
    return (e_args(w.ck, "--per-token", tmp / "no" / "tokens.tsv"),
            f"--per-token: the folder of {tmp / 'no' / 'tokens.tsv'} does not exist", 1)


def e_prepared_missing_valid(w, tmp):
    prep = copy_prep(w, tmp)
    (prep / "valid.npy").unlink()
    return (e_args(w.ck, *prep_of(prep)),
            f"prepared-data folder {prep} has no valid.npy (run 'rnnlm preprocess --force' to rebuild it)", 1)


def e_checkpoint_option_missing(w, tmp):
    return ["evaluate", "--split", "valid"], "Missing option '--checkpoint'. (see 'rnnlm evaluate -h')", 2


# --------------------------------------------------------------------------- generate

def g_truncated(w, tmp):
    p = tmp / "ck.npz"
    p.write_bytes(w.ck.read_bytes()[:1000])
    return ["generate", "--checkpoint", p], f"{p} is not a checkpoint (not an .npz archive; truncated?)", 1


def g_zero_temperature(w, tmp):
    return (["generate", "--checkpoint", w.ck, "--temperature", "0"],
            "Invalid value for '--temperature': generate.temperature: expected a value > 0.0, got 0.0 "
            "(see 'rnnlm generate -h')", 2)


def g_unknown_prime(w, tmp):
    return (["generate", "--checkpoint", w.ck, "--prime", "the zebra"],
            "token 'zebra' is not in the vocabulary, which has no <unk>", 1)


def g_prepared_gone(w, tmp):
    return (["generate", "--checkpoint", w.ck, *prep_of(tmp / "gone")],
            f"prepared-data folder not found: {tmp / 'gone'} (run 'rnnlm preprocess' first)", 1)


# --------------------------------------------------------------------------- gradcheck

def gc_conflicting_flags(w, tmp):
    return (["gradcheck", "--all", "--cell", "gru"],
            "--all checks every layer count, cell, mode, tying and the regularisers; do not combine it with "
            "--layers, --cell, --bptt, --tie-weights or --regularised (see 'rnnlm gradcheck -h')", 2)


def gc_zero_hidden(w, tmp):
    return (["gradcheck", "--hidden", "0"],
            "Invalid value for '--hidden': gradcheck.hidden_size: expected a value >= 1, got 0 "
            "(see 'rnnlm gradcheck -h')", 2)


def gc_vocab_one(w, tmp):
    return ["gradcheck", "--set", "gradcheck.vocab_size=1"], "gradcheck.vocab_size: expected a value >= 2, got 1", 2


def gc_bad_cell(w, tmp):
    return (["gradcheck", "--cell", "rnn"],
            "Invalid value for '--cell': 'rnn' is not one of 'tanh', 'relu', 'gru', 'lstm'. (see 'rnnlm gradcheck -h')", 2)


# --------------------------------------------------------------------------- diagnose-gradients, probe

def dg_checkpoint_truncated(w, tmp):
    p = tmp / "ck.npz"
    p.write_bytes(w.ck.read_bytes()[:-1])
    return ["diagnose-gradients", "--checkpoint", p], f"{p} is not a checkpoint (not an .npz archive; truncated?)", 1


def dg_sweep_without_values(w, tmp):
    return (["diagnose-gradients", "--sweep", "model.cell"],
            "--sweep expects section.key=value1,value2,..., got 'model.cell'", 2)


def dg_run_missing(w, tmp):
    return ["diagnose-gradients", "--run", tmp / "runs" / "nope"], f"run folder not found: {tmp / 'runs' / 'nope'}", 1


def dg_steps_one(w, tmp):
    return (["diagnose-gradients", "--steps", "1"],
            "Invalid value for '--steps': diagnose.steps: expected a value >= 2, got 1 "
            "(see 'rnnlm diagnose-gradients -h')", 2)


def pr_checkpoint_missing(w, tmp):
    return (["probe", "--checkpoint", tmp / "nope.npz"],
            f"Invalid value for '--checkpoint': File '{tmp / 'nope.npz'}' does not exist. (see 'rnnlm probe -h')", 2)


def pr_checkpoint_pickled(w, tmp):
    members = arrays_of(w.ck)
    members["param/evil"] = np.array([print], dtype=object)
    p = tmp / "ck.npz"
    np.savez(p, **members)
    return (["probe", "--checkpoint", p],
            f"checkpoint {p} holds pickled objects; refusing to load it (rnnlm never unpickles)", 1)


def pr_probe_file_malformed(w, tmp):
    (tmp / "items.jsonl").write_text('{"prefix": "the dog"\n')
    return (["probe", "--checkpoint", w.ck, "--data", tmp / "items.jsonl"],
            "items.jsonl:1: malformed probe record (Expecting ',' delimiter: line 2 column 1 (char 21))", 1)


def pr_bins_not_increasing(w, tmp):
    return (["probe", "--checkpoint", w.ck, "--set", "probe.bins=[4,2]"],
            "probe.bins: expected strictly increasing distances >= 0, got [4, 2]", 2)


def top_unknown_command(w, tmp):
    return ["trian"], "No such command 'trian'. Did you mean 'train'? (see 'rnnlm -h')", 2


CASES = [f for name, f in list(globals().items())
         if callable(f) and name.split("_")[0] in ("c", "p", "t", "e", "g", "gc", "dg", "pr", "top") and name != "t_args"
         and name != "e_args"]


@pytest.mark.parametrize("case", CASES, ids=[f.__name__ for f in CASES])
def test_bad_input(case, w, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, message, code = case(w, tmp_path)
    before = snapshot(tmp_path, w.root)
    result = CliRunner().invoke(cli, [str(a) for a in argv], prog_name="rnnlm")
    assert (result.exit_code, result.stderr) == (code, f"Error: {message}\n"), result.output
    assert result.stdout == ""
    assert isinstance(result.exception, SystemExit), result.exception   # no other exception escaped
    assert "Traceback" not in result.output
    assert snapshot(tmp_path, w.root) == before, "a refused command created, changed or removed files"


def test_catalogue_size():
    assert len(CASES) >= 30


# --------------------------------------------------------------------------- simulated failures

def test_unreadable_corpus_simulated(w, tmp_path, monkeypatch):
    """chmod 000 as a non-root user, simulated for root: open() raises EACCES for that one file."""
    secret = tmp_path / "secret.txt"
    secret.write_text("a b c\n")
    real_open = open

    def guarded(path, *args, **kwargs):
        if os.fspath(path) == str(secret):
            raise PermissionError(errno.EACCES, "Permission denied", str(secret))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(corpus, "open", guarded, raising=False)
    before = snapshot(tmp_path)
    result = CliRunner().invoke(cli, ["preprocess", "--train", str(secret), "--out", str(tmp_path / "out")])
    assert (result.exit_code, result.stderr) == (1, f"Error: cannot read training file {secret}: Permission denied\n")
    assert isinstance(result.exception, SystemExit)
    assert snapshot(tmp_path) == before


def test_disk_full_while_writing_a_checkpoint(w, tmp_path, monkeypatch):
    """ENOSPC on the third checkpoint write of a train run: a clean error, the previous checkpoint
    intact and loadable, no temporary files, the lock released, and --resume carries on."""
    out = tmp_path / "run"
    writes = []

    def disk_full(point, before=None):   # fileio.crash_point: fail the third checkpoint's rename
        if point.startswith("before-rename:") and point.endswith(".npz"):
            writes.append(point)
            if len(writes) == 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    saved = {}
    real_save = checkpoint.save

    def remember(path, arrays):   # the bytes of the last checkpoint.npz that made it to disk
        real_save(path, arrays)
        if path.endswith("checkpoint.npz"):
            saved["bytes"] = Path(path).read_bytes()

    real_crash_point = fileio.crash_point
    monkeypatch.setattr(fileio, "crash_point", disk_full)
    monkeypatch.setattr(checkpoint, "save", remember)
    args = ["train", *prep_of(w.prep), "--out", str(out), "-q", *small_model("train.checkpoint_every=2"),
            "--max-steps", "10"]
    result = CliRunner().invoke(cli, args)
    path = out / "checkpoint.npz"
    assert (result.exit_code, result.stderr) == (
        1, f"Error: could not write checkpoint {path}: No space left on device; the previous checkpoint is unchanged\n")
    assert isinstance(result.exception, SystemExit)
    assert path.read_bytes() == saved["bytes"]
    _, _, _, _, meta = checkpoint.read(str(path))
    assert meta["progress"]["step"] == 4
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "config.yaml", "metrics.jsonl"]
    # the disk has room again: resume finishes the run
    monkeypatch.setattr(fileio, "crash_point", real_crash_point)
    result = CliRunner().invoke(cli, args + ["--resume"])
    assert result.exit_code == 0, result.output
    assert checkpoint.read(str(path))[4]["progress"]["step"] == 10
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if "split" not in json.loads(line)]
    assert steps == list(range(1, 11))


# --------------------------------------------------------------------------- configuration family: resource
# bombs and bounded messages, one validator for options and keys, contradictory or ignored settings
# (cases `cf_*`, run by test_bad_config_input below with the machine's memory fixed at 16 GiB)

def _bomb(depth=8, width=9):
    """A flow list of nested aliases that stands for width**(depth+1) strings (billion laughs)."""
    text = "&a0 [" + ", ".join(['"lol"'] * width) + "]"
    for i in range(1, depth + 1):
        text = f"&a{i} [{text}, " + ", ".join([f"*a{i - 1}"] * (width - 1)) + "]"
    return text


def cf_alias_bomb_file(w, tmp):
    p = write_config(tmp, "data:\n  split: " + _bomb() + "\n")
    return (["config", "validate", "--config", p],
            f"{p}: YAML aliases expand to more than 10,000 values (line 2); write the values out instead", 2)


def cf_alias_bomb_mappings(w, tmp):
    lines = ["a0: &a0 {" + ", ".join(f"k{j}: lol" for j in range(9)) + "}"]
    lines += [f"a{i}: &a{i} {{" + ", ".join(f"k{j}: *a{i - 1}" for j in range(9)) + "}" for i in range(1, 9)]
    p = write_config(tmp, "\n".join(lines) + "\n")
    return (["train", "--config", p, "--out", tmp / "run"],
            f"{p}: YAML aliases expand to more than 10,000 values (line 4); write the values out instead", 2)


def cf_alias_bomb_set(w, tmp):
    text = "data.split=" + _bomb()
    return (["config", "show", "--set", text],
            f"--set {text[:60]}... ({len(text):,} characters): YAML aliases expand to more than 10,000 values "
            f"(line 1); write the values out instead", 2)


def cf_config_too_large(w, tmp):
    p = write_config(tmp, "# padding\n" * 120_000)
    return (["config", "validate", "--config", p],
            f"config {p} is larger than 1024 KiB; a configuration is a short YAML file", 2)


def cf_config_endless(w, tmp):
    return (["config", "validate", "--config", "/dev/zero"],
            "config /dev/zero is larger than 1024 KiB; a configuration is a short YAML file", 2)


def cf_long_choice_value(w, tmp):
    return (["config", "validate", "--set", "model.cell=" + "x" * 100_000],
            f"model.cell: expected one of tanh, relu, gru, lstm, got '{'x' * 59}... (100,000 characters)", 2)


def cf_long_unknown_key(w, tmp):
    p = write_config(tmp, "model:\n  " + "k" * 1000 + ": 3\n")
    return (["config", "validate", "--config", p], f"unknown key 'model.{'k' * 60}... (1,000 characters)'", 2)


def cf_long_number(w, tmp):
    return (["config", "validate", "--set", "model.hidden_size=" + "9" * 5000],
            f"model.hidden_size: expected int, got '{'9' * 59}... (5,000 characters)", 2)


def cf_long_list(w, tmp):
    return (["config", "validate", "--set", "data.split=[" + ", ".join(["0.5"] * 10_000) + "]"],
            "data.split: expected three non-negative ratios summing to 1 with train > 0, got "
            "[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, ...]", 2)


def cf_hidden_size_absurd(w, tmp):
    return (t_args(w, tmp, "--set", f"model.hidden_size={2 ** 62}"),
            f"training would need about 1.55e+26 TiB of memory, more than this machine's 16 GiB; reduce "
            f"model.hidden_size (now {2 ** 62})", 2)


def cf_batch_size_absurd_full(w, tmp):
    return (t_args(w, tmp, "--set", "train.bptt=full", "--set", f"train.batch_size={10 ** 17}"),
            "training would need about 1.2e+08 TiB of memory, more than this machine's 16 GiB; reduce "
            "train.batch_size (now 100000000000000000)", 2)


def cf_gradcheck_batch_absurd(w, tmp):
    return (["gradcheck", "--batch", str(10 ** 17)],
            "gradcheck would need about 3.89e+08 TiB of memory, more than this machine's 16 GiB; reduce "
            "gradcheck.batch_size (now 100000000000000000)", 2)


def cf_gradcheck_vocab_absurd(w, tmp):
    return (["gradcheck", "--vocab", str(2 ** 60)],
            "gradcheck would need about 5.79e+08 TiB of memory, more than this machine's 16 GiB; reduce "
            "gradcheck.vocab_size (now 1152921504606846976)", 2)


def cf_diagnose_steps_absurd(w, tmp):
    return (["diagnose-gradients", "--steps", str(10 ** 7)],
            "diagnose-gradients would need about 2.91e+03 TiB of memory, more than this machine's 16 GiB; "
            "reduce diagnose.steps (now 10000000)", 2)


def cf_generate_n_absurd(w, tmp):
    return (["generate", "--checkpoint", w.ck, "--n", str(10 ** 15)],
            "generate would need about 6.77e+05 TiB of memory, more than this machine's 16 GiB; reduce "
            "generate.n (now 1000000000000000)", 2)


def cf_evaluate_batch_absurd(w, tmp):
    return (e_args(w.ck, "--set", f"train.eval_batch_size={10 ** 15}"),
            "evaluate would need about 2.4e+06 TiB of memory, more than this machine's 16 GiB; reduce "
            "train.eval_batch_size (now 1000000000000000)", 2)


def cf_temperature_nan(w, tmp):
    return (["generate", "--checkpoint", w.ck, "--temperature", "nan"],
            "Invalid value for '--temperature': generate.temperature: expected a finite number, got nan "
            "(see 'rnnlm generate -h')", 2)


def cf_temperature_inf(w, tmp):
    return (["generate", "--checkpoint", w.ck, "--temperature", "inf"],
            "Invalid value for '--temperature': generate.temperature: expected a finite number, got inf "
            "(see 'rnnlm generate -h')", 2)


def cf_temperature_set_nan(w, tmp):
    return (["generate", "--checkpoint", w.ck, "--set", "generate.temperature=.nan"],
            "generate.temperature: expected a finite number, got nan", 2)


def cf_tolerance_nan(w, tmp):
    return (["gradcheck", "--tolerance", "NaN"],
            "Invalid value for '--tolerance': gradcheck.tolerance: expected a finite number, got nan "
            "(see 'rnnlm gradcheck -h')", 2)


def cf_threshold_inf(w, tmp):
    return (["diagnose-gradients", "--threshold", "-inf"],
            "Invalid value for '--threshold': diagnose.threshold: expected a finite number, got -inf "
            "(see 'rnnlm diagnose-gradients -h')", 2)


def cf_fail_if_exploding_nan(w, tmp):
    return (["diagnose-gradients", "--fail-if-exploding", "nan"],
            "Invalid value for '--fail-if-exploding': expected a finite number > 0.0, got nan "
            "(see 'rnnlm diagnose-gradients -h')", 2)


def cf_max_steps_not_int(w, tmp):
    return (t_args(w, tmp, "--max-steps", "1e3"),
            "Invalid value for '--max-steps': train.max_steps: expected int, got '1e3' (see 'rnnlm train -h')", 2)


def cf_split_nan(w, tmp):
    p = write_config(tmp, "data:\n  split: [.nan, 0.5, 0.5]\n")
    return ["config", "validate", "--config", p], "data.split[0]: expected a finite number, got nan", 2


def cf_split_inf(w, tmp):
    return (["preprocess", "--train", w.train, "--out", tmp / "p", "--set", "data.split=[.inf, 0, 0]"],
            "data.split[0]: expected a finite number, got inf", 2)


def cf_truncations_huge(w, tmp):
    return (["diagnose-gradients", "--set", f"diagnose.truncations=[1, {10 ** 30}]"],
            f"diagnose.truncations[1]: expected a number below 2**63, got {10 ** 30}", 2)


def cf_bins_nan(w, tmp):
    return (["probe", "--checkpoint", w.ck, "--set", "probe.bins=[1, .nan]"],
            "probe.bins: expected a list of int, got [1, nan]", 2)


def cf_min_lr_above_lr(w, tmp):
    return (t_args(w, tmp, "--set", "train.min_lr=0.5"),
            "train.min_lr (0.5) must be below train.lr (0.1): training stops once the rate falls below min_lr "
            "(0 = never)", 2)


def cf_min_lr_equal_lr(w, tmp):
    return (["config", "validate", "--set", "train.min_lr=0.1", "--set", "train.schedule=plateau"],
            "train.min_lr (0.1) must be below train.lr (0.1): training stops once the rate falls below min_lr "
            "(0 = never)", 2)


def cf_plateau_without_validation(w, tmp):
    return (["train", "--set", f"data.train={w.train}", "--set", "data.split=[1, 0, 0]", "--set",
             "train.schedule=plateau", "--out", tmp / "run"],
            "train.schedule=plateau needs validation data, but data.valid is not set and data.split gives it "
            "nothing ([1.0, 0.0, 0.0]); give data.valid or a validation ratio", 2)


def cf_reject_without_validation_data(w, tmp):
    prep = tmp / "prep-noval"
    ok = CliRunner().invoke(cli, ["preprocess", "--train", str(w.train), "--out", str(prep), "-q",
                                  "--set", "data.split=[1, 0, 0]"])
    assert ok.exit_code == 0, ok.output
    return (t_args(w, tmp, "--set", "train.reject_threshold=0.5", prep=prep),
            f"train.reject_threshold=0.5 acts on validation losses, but the valid split of {prep} has 0 tokens "
            f"(give data.valid or a validation ratio in data.split when preprocessing)", 1)


def cf_level_contradicts_checkpoint_data(w, tmp):
    return (["generate", "--checkpoint", w.ck, "--set", "data.level=char", "--prime", "the dog"],
            f"data.level is 'char' in the configuration, but the prepared folder {w.prep} was built with "
            f"'word'; set data.level=word or re-run preprocess", 2)


def cf_lowercase_contradicts_checkpoint_data(w, tmp):
    return (["evaluate", "--checkpoint", w.ck, "--split", w.train, "--set", "data.lowercase=true"],
            f"data.lowercase is True in the configuration, but the prepared folder {w.prep} was built with "
            f"False; set data.lowercase=False or re-run preprocess", 2)


def cf_level_contradicts_prepared_train(w, tmp):
    prep = tmp / "prep-char"
    ok = CliRunner().invoke(cli, ["preprocess", "--train", str(w.train), "--level", "char", "--out", str(prep), "-q"])
    assert ok.exit_code == 0, ok.output
    return (t_args(w, tmp, prep=prep),
            f"data.level is 'word' in the configuration, but the prepared folder {prep} was built with "
            f"'char'; set data.level=char or re-run preprocess", 2)


def _run_copy(w, tmp):
    run = tmp / "run"
    shutil.copytree(w.run, run)
    return run


def cf_resume_changed_lr(w, tmp):
    run = _run_copy(w, tmp)
    return (t_args(w, tmp, "--resume", "--set", "train.lr=0.5", out=run),
            f"cannot resume from {run / 'checkpoint.npz'}: train.lr is 0.1 in the checkpoint but 0.5 in the "
            f"configuration; resume with the checkpoint's value, or start over with --force", 1)


def cf_resume_changed_schedule(w, tmp):
    run = _run_copy(w, tmp)
    return (t_args(w, tmp, "--resume", "--set", "train.clip_threshold=1", out=run),
            f"cannot resume from {run / 'checkpoint.npz'}: train.clip_threshold is 5.0 in the checkpoint but 1.0 "
            f"in the configuration; resume with the checkpoint's value, or start over with --force", 1)


def cf_hidden_size_petabytes(w, tmp):
    # 2**50 hidden units: refused from the shapes, before numpy tries (and fails) to allocate
    return (["gradcheck", "--hidden", str(2 ** 50), "--vocab", "7"],
            f"gradcheck would need about 2.21e+20 TiB of memory, more than this machine's 16 GiB; reduce "
            f"gradcheck.hidden_size (now {2 ** 50})", 2)


CONFIG_FAMILY_CASES = [f for name, f in list(globals().items()) if name.startswith("cf_") and callable(f)]


@pytest.mark.parametrize("case", CONFIG_FAMILY_CASES, ids=[f.__name__ for f in CONFIG_FAMILY_CASES])
def test_bad_config_input(case, w, tmp_path, monkeypatch):
    from rnnlm_cli import config

    monkeypatch.setattr(config, "machine_memory", lambda: 16 * 2 ** 30)   # the same message on every machine
    test_bad_input(case, w, tmp_path, monkeypatch)


# --------------------------------------------------------------------------- outputs against inputs (paths family)
# One rule: an output may not be, contain or sit inside an input or another output of the same
# command (realpath: symlinks, `..` and `.` do not dodge it), nor write over what the tool keeps in
# a folder it owns; --force replaces only a prepared-data folder that holds nothing but its files.
# These are CASES too: their names start with the command prefixes above.

def p_force_onto_the_current_folder(w, tmp):
    corpus_file = tmp / "corpus.txt"
    corpus_file.write_text(TRAIN_TEXT)
    return (["preprocess", "--train", "corpus.txt", "--out", ".", "--force"],
            f"output folder {tmp} contains the training file {corpus_file}; choose another path", 2)


def p_force_onto_a_foreign_folder(w, tmp):
    out = tmp / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n")
    return (["preprocess", "--train", w.train, "--out", out, "--force"],
            f"{out} is not a prepared-data folder written by rnnlm preprocess (it has no meta.json of one), "
            f"so it is never replaced; choose another output folder", 2)


def p_force_onto_a_prepared_folder_holding_a_run(w, tmp):
    prep = copy_prep(w, tmp)
    shutil.copytree(w.run, prep / "run1")
    return (["preprocess", "--train", w.train, "--out", prep, "--force"],
            f"prepared-data folder {prep} also holds files that preprocess did not write (run1); rebuilding it "
            f"would delete them: move them out or choose another folder", 2)


def p_force_onto_a_run_folder(w, tmp):
    run = tmp / "run"
    shutil.copytree(w.run, run)
    return (["preprocess", "--train", w.train, "--out", run, "--force"],
            f"output folder {run} is a training run folder, not a prepared-data folder; choose another path", 2)


def p_out_through_a_symlink_to_the_corpus_folder(w, tmp):
    (tmp / "data").mkdir()
    (tmp / "data" / "train.txt").write_text(TRAIN_TEXT)
    (tmp / "link").symlink_to(tmp / "data")
    return (["preprocess", "--train", tmp / "data" / "train.txt", "--out", tmp / "link", "--force"],
            f"output folder {tmp / 'link'} contains the training file {tmp / 'data' / 'train.txt'}; "
            f"choose another path", 2)


def p_out_inside_the_corpus_path(w, tmp):
    return (["preprocess", "--train", w.train, "--out", f"{w.train}/prep"],
            f"output folder {w.train / 'prep'} is inside the training file {w.train}; choose another path", 2)


def p_out_contains_the_config_file(w, tmp):
    (tmp / "exp").mkdir()
    config = write_config(tmp / "exp", f"data:\n  train: {w.train}\n  prepared: .\n")
    return (["preprocess", "--config", config, "--force"],
            f"output folder {tmp / 'exp'} contains the config file {config}; choose another path", 2)


def p_out_holds_the_current_folder(w, tmp):
    prep = copy_prep(w, tmp)
    (prep / "sub").mkdir()
    os.chdir(prep / "sub")
    return (["preprocess", "--train", w.train, "--out", prep, "--force"],
            f"output folder {prep} is replaced whole when it is rebuilt, and it holds the current folder; "
            f"choose another path", 2)


def t_out_inside_the_prepared_folder(w, tmp):
    prep = copy_prep(w, tmp, "exp")
    return (t_args(w, tmp, out=prep / "run1", prep=prep),
            f"output folder {prep / 'run1'} is inside the prepared-data folder {prep}; choose another path", 2)


def t_out_is_the_prepared_folder(w, tmp):
    prep = copy_prep(w, tmp)
    return (t_args(w, tmp, out=prep, prep=prep),
            f"output folder {prep} is also the prepared-data folder {prep}; choose another path", 2)


def t_out_dot_dot_into_the_prepared_folder(w, tmp):
    prep = copy_prep(w, tmp)
    (tmp / "x").mkdir()
    return (t_args(w, tmp, out=f"{tmp}/x/../prep/./run", prep=prep),
            f"output folder {prep / 'run'} is inside the prepared-data folder {prep}; choose another path", 2)


def t_out_through_a_symlink_into_the_prepared_folder(w, tmp):
    prep = copy_prep(w, tmp)
    (tmp / "link").symlink_to(prep)
    return (t_args(w, tmp, out=tmp / "link" / "run", prep=prep),
            f"output folder {tmp / 'link' / 'run'} is inside the prepared-data folder {prep}; choose another path", 2)


def t_out_is_another_prepared_folder(w, tmp):
    prep = copy_prep(w, tmp, "other-prep")
    return (t_args(w, tmp, out=prep),
            f"output folder {prep} is a prepared-data folder, not a training run folder; choose another path", 2)


def t_prepared_built_inside_the_output(w, tmp):
    return (["train", "--set", f"data.train={w.train}", "--set", f"data.prepared={tmp / 'run' / 'prep'}",
             "--out", tmp / "run", "-q"],
            f"prepared-data folder {tmp / 'run' / 'prep'} is inside the output folder {tmp / 'run'}; "
            f"choose another path", 2)


def t_prepared_built_over_the_corpus_folder(w, tmp):
    (tmp / "corpus").mkdir()
    (tmp / "corpus" / "train.txt").write_text(TRAIN_TEXT)
    return (["train", "--set", f"data.train={tmp / 'corpus' / 'train.txt'}", "--set",
             f"data.prepared={tmp / 'corpus'}", "--out", tmp / "run", "-q"],
            f"prepared-data folder {tmp / 'corpus'} contains the training file {tmp / 'corpus' / 'train.txt'}; "
            f"choose another path", 2)


def t_record_is_the_checkpoint(w, tmp):
    out = tmp / "run"
    shutil.copytree(w.run, out)
    return (t_args(w, tmp, "--resume", "--record", out / "checkpoint.npz", out=out),
            f"--record file {out / 'checkpoint.npz'} is the checkpoint.npz of the training run folder {out}; "
            f"choose another path", 2)


def t_record_inside_the_output(w, tmp):
    return (t_args(w, tmp, "--record", tmp / "run" / "record.json"),
            f"--record file {tmp / 'run' / 'record.json'} is inside the output folder {tmp / 'run'}; "
            f"choose another path", 2)


def t_record_is_the_config_file(w, tmp):
    config = write_config(tmp, "train:\n  lr: 0.1\n")
    return (t_args(w, tmp, "--config", config, "--record", config),
            f"--record file {config} is also the config file {config}; choose another path", 2)


def t_record_is_the_corpus(w, tmp):
    corpus_file = tmp / "train.txt"
    corpus_file.write_text(TRAIN_TEXT)
    return (["train", "--set", f"data.train={corpus_file}", "--set", f"data.prepared={tmp / 'prep'}",
             "--out", tmp / "run", "--record", corpus_file, "-q"],
            f"--record file {corpus_file} is also the training file {corpus_file}; choose another path", 2)


def t_record_is_a_prepared_file(w, tmp):
    return (t_args(w, tmp, "--record", w.other / "meta.json"),
            f"--record file {w.other / 'meta.json'} is the meta.json of the prepared-data folder {w.other}; "
            f"choose another path", 2)


def t_out_contains_the_config_file(w, tmp):
    (tmp / "exp").mkdir()
    config = write_config(tmp / "exp", "train:\n  lr: 0.1\n")
    return (t_args(w, tmp, "--config", config, out=tmp / "exp"),
            f"output folder {tmp / 'exp'} contains the config file {config}; choose another path", 2)


def e_per_token_is_the_checkpoint(w, tmp):
    ck = tmp / "ck.npz"
    shutil.copy(w.ck, ck)
    return e_args(ck, "--per-token", ck), f"--per-token file {ck} is also the checkpoint {ck}; choose another path", 2


def e_per_token_is_the_text_file(w, tmp):
    text = tmp / "t.txt"
    text.write_text("the dog runs home\n")
    return (["evaluate", "--checkpoint", w.ck, "--split", text, "--per-token", text],
            f"--per-token file {text} is also the text file {text}; choose another path", 2)


def e_per_token_is_the_vocabulary(w, tmp):
    prep = copy_prep(w, tmp)
    return (e_args(w.ck, *prep_of(prep), "--per-token", prep / "vocab.txt"),
            f"--per-token file {prep / 'vocab.txt'} is inside the prepared-data folder {prep}; choose another path", 2)


def e_per_token_is_a_new_file_in_the_prepared_folder(w, tmp):
    prep = copy_prep(w, tmp)
    return (e_args(w.ck, *prep_of(prep), "--per-token", prep / "tokens.tsv"),
            f"--per-token file {prep / 'tokens.tsv'} is inside the prepared-data folder {prep}; choose another path", 2)


def e_per_token_symlink_to_the_checkpoint(w, tmp):
    ck = tmp / "ck.npz"
    shutil.copy(w.ck, ck)
    (tmp / "tokens.tsv").symlink_to(ck)
    return (e_args(ck, "--per-token", tmp / "tokens.tsv"),
            f"--per-token file {tmp / 'tokens.tsv'} is also the checkpoint {ck}; choose another path", 2)


def e_per_token_hard_link_to_the_checkpoint(w, tmp):
    ck = tmp / "ck.npz"
    shutil.copy(w.ck, ck)
    os.link(ck, tmp / "tokens.tsv")
    return (e_args(ck, "--per-token", tmp / "tokens.tsv"),
            f"--per-token file {tmp / 'tokens.tsv'} is also the checkpoint {ck}; choose another path", 2)


def e_per_token_is_a_file_of_another_run(w, tmp):
    ck = tmp / "ck.npz"
    shutil.copy(w.ck, ck)
    return (e_args(ck, "--per-token", w.run / "summary.json"),
            f"--per-token file {w.run / 'summary.json'} is the summary.json of the training run folder {w.run}; "
            f"choose another path", 2)


def dg_plot_unsupported_extension(w, tmp):
    return (["diagnose-gradients", "--plot", tmp / "lags.jpg"],
            f"--plot {tmp / 'lags.jpg'}: unsupported figure format; the file name must end in .png, .pdf, .svg", 2)


def dg_plot_without_extension(w, tmp):
    return (["diagnose-gradients", "--plot", "lags"],
            "--plot lags: unsupported figure format; the file name must end in .png, .pdf, .svg", 2)


def dg_plot_onto_the_config_file(w, tmp):
    config = write_config(tmp, "model:\n  hidden_size: 4\n", name="c.png")
    return (["diagnose-gradients", "--config", config, "--plot", config],
            f"--plot file {config} is also the config file {config}; choose another path", 2)


def dg_plot_onto_the_checkpoint(w, tmp):
    ck = tmp / "ck.png"
    shutil.copy(w.ck, ck)
    return (["diagnose-gradients", "--checkpoint", ck, "--plot", ck],
            f"--plot file {ck} is also the checkpoint {ck}; choose another path", 2)


def pr_plot_unsupported_extension(w, tmp):
    return (["probe", "--checkpoint", w.ck, "--plot", tmp / "acc.txt"],
            f"--plot {tmp / 'acc.txt'}: unsupported figure format; the file name must end in .png, .pdf, .svg", 2)


def pr_plot_onto_the_probe_data(w, tmp):
    data = tmp / "items.svg"
    data.write_text('{"prefix": "the dog", "verb": "runs", "wrong": "run", "distance": 1}\n')
    return (["probe", "--checkpoint", w.ck, "--data", data, "--plot", data],
            f"--plot file {data} is also the probe data {data}; choose another path", 2)


def top_results_plot_unsupported_extension(w, tmp):
    record = tmp / "r.json"
    record.write_text("{}")
    return (["results", record, "--plot", tmp / "curves.gif"],
            f"--plot {tmp / 'curves.gif'}: unsupported figure format; the file name must end in .png, .pdf, .svg", 2)


def top_results_plot_onto_a_record(w, tmp):
    record = tmp / "r.pdf"
    record.write_text("{}")
    return (["results", record, "--plot", record],
            f"--plot file {record} is also the result record {record}; choose another path", 2)


PATH_CASES = [f for name, f in list(globals().items()) if callable(f) and f not in CASES
              and name.split("_")[0] in ("p", "t", "e", "dg", "pr", "top") and name not in ("t_args", "e_args")]


@pytest.mark.parametrize("case", PATH_CASES, ids=[f.__name__ for f in PATH_CASES])
def test_output_against_input(case, w, tmp_path, monkeypatch):
    test_bad_input(case, w, tmp_path, monkeypatch)


# --------------------------------------------------------------------------- checks that measure, crafted checkpoints, text that is text, probe items, generate

def x_gradcheck_tolerance_one(w, tmp):
    return (["gradcheck", "--tolerance", "1"],
            "gradcheck.tolerance: a relative error |a - n| / (|a| + |n|) is at most 1, so a tolerance of 1 would "
            "pass every check; expected a value in (0, 1)", 2)


def x_gate_without_a_model(w, tmp):
    return (["diagnose-gradients", "--run", w.run, "--fail-if-vanishing", "3"],
            "--fail-if-vanishing and --fail-if-exploding gate a model's gradients: add --checkpoint (with --run "
            "alone nothing is measured) (see 'rnnlm diagnose-gradients -h')", 2)


def x_crafted_vocab_size_string(w, tmp):
    p = crafted_checkpoint(w, tmp, meta_set(["vocab_size"], "9"))
    return e_args(p), f"checkpoint {p}: meta entry 'vocab_size' is '9', expected a positive integer", 1


def x_crafted_progress_negative(w, tmp):
    p = crafted_checkpoint(w, tmp, meta_set(["progress", "step"], -1))
    return ["generate", "--checkpoint", p], f"checkpoint {p}: meta entry 'progress.step' is -1, expected an integer >= 0", 1


def x_crafted_float64_overflow(w, tmp):
    def change(arrays):
        arrays["param/cell.W_x"] = np.full(arrays["param/cell.W_x"].shape, -5e38)
    p = crafted_checkpoint(w, tmp, change)
    return (e_args(p), f"checkpoint {p}: parameter cell.W_x holds 5e+38, beyond the 3.4e+38 of float32 (train.dtype) "
                       f"it is cast to", 1)


def x_crafted_rng(w, tmp):
    def change(arrays):
        arrays["rng"] = np.array(json.dumps({"bit_generator": "PCG64", "state": {"state": -1, "inc": "x"}}))
    p = crafted_checkpoint(w, tmp, change)
    return ["probe", "--checkpoint", p], f"checkpoint {p}: entry 'rng' is not a state of numpy's PCG64 generator", 1


def x_crafted_state_shape(w, tmp):
    def change(arrays):
        arrays["state/0"] = np.zeros((7, 3), np.float32)
    p = crafted_checkpoint(w, tmp, change)
    return (["diagnose-gradients", "--checkpoint", p],
            f"checkpoint {p}: the carried hidden state has shapes [(7, 3)], expected [(2, 8)] (has_state true, "
            f"train.batch_size x model.hidden_size per part)", 1)


def x_crafted_resume_optimizer_dtype(w, tmp):
    out = tmp / "run"
    shutil.copytree(w.run, out)

    def change(arrays):
        arrays["optim/t"] = np.array(2.5)
    p = crafted_checkpoint(w, out, change, name="checkpoint.npz")
    return (t_args(w, tmp, "--resume", out=out),
            f"checkpoint {p}: optimizer entry t is 2.5 of dtype float64, expected an integer step count >= 0", 1)


def x_crafted_progress_missing_on_resume(w, tmp):
    out = tmp / "run"
    shutil.copytree(w.run, out)

    def change(arrays):
        meta = json.loads(str(arrays["meta"]))
        del meta["progress"]["tokens"]
        arrays["meta"] = np.array(json.dumps(meta))
    p = crafted_checkpoint(w, out, change, name="checkpoint.npz")
    return t_args(w, tmp, "--resume", out=out), f"checkpoint {p}: meta entry 'progress' lacks tokens", 1


def x_corpus_nul(w, tmp):
    p = tmp / "nul.txt"
    p.write_bytes(b"the dog\nthe \x00cat\n")
    return (["preprocess", "--train", p, "--out", tmp / "out"],
            f"{p}: NUL byte at line 2, byte offset 12: not UTF-8 text (UTF-16 without a byte-order mark, or a binary "
            f"file?)", 1)


def x_corpus_utf16_without_bom(w, tmp):
    p = tmp / "u16.txt"
    p.write_bytes("the dog\n".encode("utf-16-le"))
    return (["preprocess", "--train", p, "--out", tmp / "out"],
            f"{p}: NUL byte at line 1, byte offset 1: not UTF-8 text (UTF-16 without a byte-order mark, or a binary "
            f"file?)", 1)


def x_corpus_utf16_with_bom(w, tmp):
    p = tmp / "u16.txt"
    p.write_bytes("the dog\n".encode("utf-16"))
    return (["preprocess", "--train", p, "--out", tmp / "out"],
            f"{p}: UTF-16 (little-endian) text (it starts with that byte-order mark); rnnlm reads UTF-8: convert it "
            f"first, e.g. iconv -f UTF-16 -t UTF-8", 1)


def x_train_corpus_nul(w, tmp):
    p = tmp / "nul.txt"
    p.write_bytes(TRAIN_TEXT.encode() + b"\x00")
    return (["train", "--set", f"data.train={p}", "--set", f"data.prepared={tmp / 'prep'}", "--out", tmp / "run", "-q"],
            f"{p}: NUL byte at line 61, byte offset {len(TRAIN_TEXT)}: not UTF-8 text (UTF-16 without a byte-order "
            f"mark, or a binary file?)", 1)


def x_evaluate_split_utf32(w, tmp):
    p = tmp / "t.txt"
    p.write_bytes("the dog runs\n".encode("utf-32"))
    return (["evaluate", "--checkpoint", w.ck, "--split", p],
            f"{p}: UTF-32 (little-endian) text (it starts with that byte-order mark); rnnlm reads UTF-8: convert it "
            f"first, e.g. iconv -f UTF-32 -t UTF-8", 1)


def _probe_file(tmp, **fields):
    item = {"prefix": "the dog near the cats", "verb": "runs", "wrong": "run", "distance": 3, "plural": False}
    item.update(fields)
    p = tmp / "items.jsonl"
    p.write_text(json.dumps({"prefix": "the dog", "verb": "runs", "wrong": "run", "distance": 1, "plural": False})
                 + "\n" + json.dumps(item) + "\n", encoding="utf-8")
    return p


def x_probe_distance_zero(w, tmp):
    p = _probe_file(tmp, distance=0)
    return (["probe", "--checkpoint", w.ck, "--data", p],
            "items.jsonl:2: distance is 0, expected an integer >= 1 (the words between the subject and the verb)", 1)


def x_probe_distance_boolean(w, tmp):
    p = _probe_file(tmp, distance=True)
    return (["probe", "--checkpoint", w.ck, "--data", p],
            "items.jsonl:2: distance is True, expected an integer >= 1 (the words between the subject and the verb)", 1)


def x_probe_distance_fraction(w, tmp):
    p = _probe_file(tmp, distance=2.5)
    return (["probe", "--checkpoint", w.ck, "--data", p],
            "items.jsonl:2: distance is 2.5, expected an integer >= 1 (the words between the subject and the verb)", 1)


def x_probe_verb_is_its_wrong_form(w, tmp):
    p = _probe_file(tmp, wrong="runs")
    return (["probe", "--checkpoint", w.ck, "--data", p],
            "items.jsonl:2: verb and wrong are both 'runs': the item cannot tell right from wrong", 1)


def x_probe_empty_prefix(w, tmp):
    p = _probe_file(tmp, prefix=" ")
    return (["probe", "--checkpoint", w.ck, "--data", p],
            "items.jsonl:2: prefix is ' ', expected the words before the verb (non-empty text)", 1)


def x_probe_extra_field(w, tmp):
    p = _probe_file(tmp, subject="dog")
    return ["probe", "--checkpoint", w.ck, "--data", p], "items.jsonl:2: unknown field subject", 1


def x_probe_not_utf8(w, tmp):
    p = tmp / "items.jsonl"
    p.write_bytes(b'{"prefix": "the d\xf6g"}\n')
    return ["probe", "--checkpoint", w.ck, "--data", p], "items.jsonl: invalid UTF-8 at line 1, byte offset 17", 1


def x_probe_empty_file(w, tmp):
    p = tmp / "items.jsonl"
    p.write_bytes(b"")
    return ["probe", "--checkpoint", w.ck, "--data", p], "probe file items.jsonl holds no items", 1


def x_generate_greedy_with_top_k(w, tmp):
    return (["generate", "--checkpoint", w.ck, "--greedy", "--top-k", "3"],
            "generate.top_k (3) restricts sampling; generate.strategy=greedy always takes the most likely token: "
            "set one of them", 2)


def x_generate_negative_top_k(w, tmp):
    return (["generate", "--checkpoint", w.ck, "--top-k", "-1"],
            "Invalid value for '--top-k': -1 is not in the range x>=0. (see 'rnnlm generate -h')", 2)


def x_generate_prime_nul(w, tmp):
    p = write_config(tmp, 'generate:\n  prime: "the\\0dog"\n')
    return ["generate", "--checkpoint", w.ck, "--config", p, *prep_of(w.prep)], "generate.prime: a NUL character is not text", 2


CHECKS_CASES = [f for name, f in list(globals().items()) if callable(f) and name.startswith("x_")]


@pytest.mark.parametrize("case", CHECKS_CASES, ids=[f.__name__ for f in CHECKS_CASES])
def test_bad_input_checks(case, w, tmp_path, monkeypatch):
    test_bad_input(case, w, tmp_path, monkeypatch)


# --------------------------------------------------------------------------- fresh-eyes pass: outputs that are not files, folders a command does not own, absurd sizes, crafted records

def _outside_fifo():
    """A FIFO outside the snapshotted folders (reading one there would block the snapshot)."""
    import tempfile
    path = Path(tempfile.mkdtemp(prefix="rnnlm-fifo-")) / "out.fifo"
    os.mkfifo(path)
    return path


def _not_a_file(label, path, what="a FIFO (named pipe)"):
    return (f"{label} {path} is {what}, not a regular file; rnnlm writes its outputs to files (a temporary file "
            f"renamed into place): choose a file path")


def f_per_token_fifo(w, tmp):
    p = _outside_fifo()
    return e_args(w.ck, "--per-token", p), _not_a_file("--per-token file", p), 2


def f_record_fifo(w, tmp):
    p = _outside_fifo()
    return t_args(w, tmp, "--record", p), _not_a_file("--record file", p), 2


def f_plot_fifo(w, tmp):
    p = Path(str(_outside_fifo()) + ".png")
    os.mkfifo(p)
    return (["diagnose-gradients", "--random-tokens", "--steps", "3", "--plot", p, "-q"],
            _not_a_file("--plot file", p), 2)


_CORPUS_RULE = ("it writes into a new or empty folder, or over an earlier corpus (train.txt, valid.txt, test.txt, "
                "probe.jsonl and nothing else): choose another folder")


def f_corpus_over_user_files(w, tmp):
    out = tmp / "mine"
    out.mkdir()
    (out / "train.txt").write_text("my own corpus\n")
    (out / "notes.txt").write_text("notes\n")
    return (["corpus", "agreement", "--out", out],
            f"--out folder {out} holds files this command did not write (notes.txt); {_CORPUS_RULE}", 2)


def f_corpus_into_current_folder(w, tmp):
    (tmp / "train.txt").write_text("my own corpus\n")
    (tmp / "data.csv").write_text("1,2\n")
    return (["corpus", "agreement", "--out", "."],
            f"--out folder . holds files this command did not write (data.csv); {_CORPUS_RULE}", 2)


def f_corpus_into_prepared_folder(w, tmp):
    prep = copy_prep(w, tmp)
    return (["corpus", "agreement", "--out", prep],
            f"--out folder {prep} holds files this command did not write (config.yaml, meta.json, test.npy, ...); "
            f"{_CORPUS_RULE}", 2)


def f_corpus_path_too_long(w, tmp):
    from rnnlm_cli.paths import shown
    out = "/".join(["d" * 200] * 25)
    return (["corpus", "agreement", "--out", out],
            f"cannot write the agreement corpus to {shown(out)}: File name too long", 1)


def f_preprocess_path_too_long(w, tmp):
    from rnnlm_cli.paths import shown
    out = tmp.joinpath(*["d" * 200] * 25)
    return (["preprocess", "--train", w.train, "--out", out],
            f"cannot create the output folder {shown(str(out))}: File name too long", 1)


def f_train_path_too_long(w, tmp):
    from rnnlm_cli.paths import shown
    out = tmp.joinpath(*["d" * 200] * 25)
    return t_args(w, tmp, out=out), f"cannot create output folder {shown(str(out))}: File name too long", 1


def f_train_out_empty(w, tmp):
    return ["train", *prep_of(w.prep), "--out", "", "-q"], "train.out: expected a path, got ''", 2


def f_preprocess_out_empty(w, tmp):
    return ["preprocess", "--train", w.train, "--out", ""], "data.prepared: expected a path, got ''", 2


def f_train_zero_epochs(w, tmp):
    return t_args(w, tmp, "--set", "train.epochs=0"), "train.epochs: expected a value >= 1, got 0", 2


def f_sweep_key_twice(w, tmp):
    return (["diagnose-gradients", "--sweep", "model.cell=tanh,gru", "--sweep", "model.cell=lstm"],
            "--sweep model.cell is given twice; give all its values in one --sweep model.cell=V1,V2,...", 2)


def f_sweep_grid_bomb(w, tmp):
    values = ",".join(str(i) for i in range(1, 101))
    return (["diagnose-gradients", "--sweep", f"model.hidden_size={values}", "--sweep", f"model.embedding_size={values}"],
            "--sweep: a grid of 10,000 models; diagnose-gradients compares at most 1,000 side by side "
            "(sweep fewer values)", 2)


def _crafted_record(tmp, change):
    record = {"name": "x", "summary": {"epochs": 1, "wall_time_s": 1.0, "tokens_per_sec": 10.0, "valid_loss": 2.0,
                                       "valid_ppl": 7.4},
              "config": {"model": {"cell": "tanh", "embedding_size": 8, "hidden_size": 8}, "data": {"level": "word"}},
              "curve": [{"elapsed": 1.0, "loss": 2.0, "ppl": 7.4}]}
    change(record)
    p = tmp / "record.json"
    p.write_text(json.dumps(record))
    return p


def f_results_model_not_an_object(w, tmp):
    p = _crafted_record(tmp, lambda r: r["config"].update(model="x"))
    return ["results", p], f"{p}: entry config.model is 'x', expected an object", 1


def f_results_curve_not_a_list(w, tmp):
    p = _crafted_record(tmp, lambda r: r.update(curve="x"))
    return ["results", p, "--plot", tmp / "c.png"], f"{p}: entry curve is 'x', expected a list", 1


def f_results_epochs_string(w, tmp):
    p = _crafted_record(tmp, lambda r: r["summary"].update(epochs="1"))
    return ["results", p], f"{p}: entry summary.epochs is '1', expected a number", 1


def f_prepared_meta_vocab_size_string(w, tmp):
    prep = copy_prep(w, tmp)
    meta = json.loads((prep / "meta.json").read_text())
    meta["vocab_size"] = str(meta["vocab_size"])
    (prep / "meta.json").write_text(json.dumps(meta))
    return (e_args(w.ck, *prep_of(prep)),
            f"prepared-data folder {prep}: meta.json entry vocab_size is '9', expected a positive integer "
            f"(re-run 'rnnlm preprocess --force')", 1)


def f_prepared_meta_level_unknown(w, tmp):
    prep = copy_prep(w, tmp)
    meta = json.loads((prep / "meta.json").read_text())
    meta["level"] = "bytes"
    (prep / "meta.json").write_text(json.dumps(meta))
    return (e_args(w.ck, *prep_of(prep)),
            f"prepared-data folder {prep}: meta.json entry level is 'bytes', expected word or char "
            f"(re-run 'rnnlm preprocess --force')", 1)


FRESH_CASES = [f for name, f in list(globals().items()) if callable(f) and name.startswith("f_")]


@pytest.mark.parametrize("case", FRESH_CASES, ids=[f.__name__ for f in FRESH_CASES])
def test_bad_input_fresh_eyes(case, w, tmp_path, monkeypatch):
    test_bad_input(case, w, tmp_path, monkeypatch)


# --------------------------------------------------------------------------- settings a checkpoint decides
# A reading command cannot change the model its checkpoint holds, and the probe takes only probe.*
# keys: such a --set would be ignored, so it is refused instead.

def _decided(key_text, have):
    from rnnlm_cli.errors import brief_path

    def message(w):
        return (f"--set {key_text}: the checkpoint {brief_path(w.ck)} decides the model ({key_text.split('=')[0]} "
                f"is {have} there); a command that reads a checkpoint cannot change it")
    return message


def s_evaluate_sets_the_model(w, tmp):
    return (["evaluate", "--checkpoint", w.ck, "--set", "model.hidden_size=16", *prep_of(w.prep)],
            _decided("model.hidden_size=16", 8)(w), 2)


def s_generate_sets_the_cell(w, tmp):
    return (["generate", "--checkpoint", w.ck, "--set", "model.cell=lstm", *prep_of(w.prep)],
            _decided("model.cell=lstm", "'tanh'")(w), 2)


def s_diagnose_sets_the_model(w, tmp):
    return (["diagnose-gradients", "--checkpoint", w.ck, "--set", "model.embedding_size=4"],
            _decided("model.embedding_size=4", 8)(w), 2)


def s_probe_sets_the_data(w, tmp):
    return (["probe", "--checkpoint", w.ck, "--set", "data.prepared=elsewhere"],
            "--set data.prepared=elsewhere: probe takes only probe.* keys; each checkpoint brings "
            "its own model, data and training settings (see 'rnnlm probe -h')", 2)


DECIDED_CASES = [f for name, f in list(globals().items()) if callable(f) and name.startswith("s_")]


@pytest.mark.parametrize("case", DECIDED_CASES, ids=[f.__name__ for f in DECIDED_CASES])
def test_settings_a_checkpoint_decides(case, w, tmp_path, monkeypatch):
    test_bad_input(case, w, tmp_path, monkeypatch)


# --------------------------------------------------------------------------- stacked layers, regularisers, dynamic evaluation

def l_zero_layers(w, tmp):
    return t_args(w, tmp, sets=("model.num_layers=0",)), "model.num_layers: expected a value >= 1, got 0", 2


def l_negative_layers(w, tmp):
    return t_args(w, tmp, sets=("model.num_layers=-2",)), "model.num_layers: expected a value >= 1, got -2", 2


def l_fractional_layers(w, tmp):
    return t_args(w, tmp, sets=("model.num_layers=1.5",)), "model.num_layers: expected int, got 1.5", 2


def l_dropout_between_one(w, tmp):
    return (t_args(w, tmp, sets=("model.num_layers=2", "model.dropout_between=1")),
            "model.dropout_between: expected a value <= 0.95, got 1", 2)


def l_tied_stacked_sizes_differ(w, tmp):
    return (t_args(w, tmp, sets=("model.num_layers=2", "model.tie_weights=true", "model.hidden_size=12")),
            "model.tie_weights needs model.embedding_size == model.hidden_size, got 8 and 12", 2)


def l_resume_two_layers_as_one(w, tmp):
    out = tmp / "two"
    ok = CliRunner().invoke(cli, ["train", "--set", f"data.prepared={w.prep}", "--out", str(out), "--max-steps", "3",
                                  "-q", *small_model("model.num_layers=2")])
    assert ok.exit_code == 0, ok.output
    return (["train", "--set", f"data.prepared={w.prep}", "--out", out, "--resume", "--max-steps", "6",
             *small_model("model.num_layers=1")],
            f"cannot resume from {out / 'checkpoint.npz'}: model.num_layers is 2 in the checkpoint but 1 in the "
            f"configuration; resume with the checkpoint's value, or start over with --force", 1)


def l_evaluate_sets_layers(w, tmp):
    return (["evaluate", "--checkpoint", w.ck, "--set", "model.num_layers=2", *prep_of(w.prep)],
            _decided("model.num_layers=2", 1)(w), 2)


def r_negative_ar(w, tmp):
    return t_args(w, tmp, sets=("model.ar=-0.5",)), "model.ar: expected a value >= 0.0, got -0.5", 2


def r_negative_tar(w, tmp):
    return t_args(w, tmp, sets=("model.tar=-1",)), "model.tar: expected a value >= 0.0, got -1", 2


def r_word_dropout_one(w, tmp):
    return t_args(w, tmp, sets=("model.dropout_words=1",)), "model.dropout_words: expected a value <= 0.95, got 1", 2


def r_weight_drop_above_one(w, tmp):
    return t_args(w, tmp, sets=("model.weight_drop=1.5",)), "model.weight_drop: expected a value <= 0.95, got 1.5", 2


def r_locked_not_a_boolean(w, tmp):
    return t_args(w, tmp, sets=("model.dropout_locked=maybe",)), "model.dropout_locked: expected bool, got 'maybe'", 2


def r_dynamic_lr_zero(w, tmp):
    return (["evaluate", "--checkpoint", w.ck, "--dynamic", "--set", "evaluate.dynamic_lr=0",
             "--set", f"data.prepared={w.prep}"], "evaluate.dynamic_lr: expected a value > 0.0, got 0", 2)


LAYER_CASES = [f for name, f in list(globals().items()) if callable(f) and name.split("_")[0] in ("l", "r")]


@pytest.mark.parametrize("case", LAYER_CASES, ids=[f.__name__ for f in LAYER_CASES])
def test_bad_model_option(case, w, tmp_path, monkeypatch):
    test_bad_input(case, w, tmp_path, monkeypatch)


# --------------------------------------------------------------------------- weight averaging and random chunk lengths

def avg_unknown_mode(w, tmp):
    return (t_args(w, tmp, sets=("train.average=sometimes",)),
            "train.average: expected one of none, nt, always, got 'sometimes'", 2)


def avg_nonmono_zero(w, tmp):
    return (t_args(w, tmp, sets=("train.average=nt", "train.average_nonmono=0")),
            "train.average_nonmono: expected a value >= 1, got 0", 2)


def avg_nt_without_a_validation_split(w, tmp):
    return (t_args(w, tmp, prep=tmp / "prep", sets=("train.average=nt", f"data.train={w.train}",
                                                    "data.split=[1.0, 0.0, 0.0]")),
            "train.average=nt needs validation data, but data.valid is not set and data.split gives it nothing "
            "([1.0, 0.0, 0.0]); give data.valid or a validation ratio", 2)


def avg_nt_validates_after_max_steps(w, tmp):
    return (t_args(w, tmp, sets=("train.average=nt", "train.eval_every=50", "train.max_steps=10")),
            "train.average=nt starts averaging after a validation, but train.eval_every (50) exceeds "
            "train.max_steps (10): no validation would run", 2)


def avg_nt_run_shorter_than_an_epoch(w, tmp):
    return (t_args(w, tmp, sets=("train.average=nt", "train.max_steps=10")),
            "train.average=nt starts averaging after a validation, but this run validates at the end of the first "
            "epoch (30 updates) and makes only 10 updates: no validation would run (lower train.eval_every or "
            "raise train.epochs / train.max_steps)", 2)


def spread_negative(w, tmp):
    return t_args(w, tmp, sets=("train.k1_spread=-1",)), "train.k1_spread: expected a value >= 0.0, got -1", 2


def spread_in_full_mode(w, tmp):
    return (t_args(w, tmp, sets=("train.k1_spread=2", "train.bptt=full")),
            "train.k1_spread (2.0) draws the chunk lengths of stream mode; train.bptt is full (set "
            "train.k1_spread=0 or train.bptt=stream)", 2)


def spread_with_k2_auto(w, tmp):
    return (t_args(w, tmp, sets=("train.k1_spread=2", "train.k2=auto")),
            "train.k1_spread (2.0) needs train.k2 = 0 or k1 (5), got 'auto': the drawn length is the truncation", 2)


def spread_with_k2_beyond_k1(w, tmp):
    return (t_args(w, tmp, sets=("train.k1_spread=2", "train.k2=12")),
            "train.k1_spread (2.0) needs train.k2 = 0 or k1 (5), got 12: the drawn length is the truncation", 2)


AVERAGING_CASES = [f for name, f in list(globals().items()) if callable(f) and name.startswith(("avg_", "spread_"))]


@pytest.mark.parametrize("case", AVERAGING_CASES, ids=[f.__name__ for f in AVERAGING_CASES])
def test_bad_averaging_or_spread_option(case, w, tmp_path, monkeypatch):
    test_bad_input(case, w, tmp_path, monkeypatch)
