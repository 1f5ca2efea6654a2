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


def set_meta(key_path, value):
    def change(arrays):
        meta = json.loads(str(arrays["meta"]))
        target = meta
        for key in key_path[:-1]:
            target = target[key]
        target[key_path[-1]] = value
        arrays["meta"] = np.array(json.dumps(meta))
    return change


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
            "data, model, train, diagnose, gradcheck, generate, probe", 2)


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
            "Invalid value for '--level': 'byte' is not one of 'word', 'char'. (see 'rnnlm preprocess -h')", 2)


# --------------------------------------------------------------------------- train

def t_args(w, tmp, *extra, out=None, prep=None):
    return ["train", *prep_of(prep or w.prep), "--out", out or tmp / "run", "-q", *small_model(), *extra]


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
    return (t_args(w, tmp, prep=prep),
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
            f"in the configuration", 1)


def t_resume_other_vocabulary(w, tmp):
    out = tmp / "run"
    shutil.copytree(w.run, out)
    return (t_args(w, tmp, "--resume", out=out, prep=w.same),
            f"{out / 'checkpoint.npz'} was trained on another vocabulary than {w.same} (same size, different tokens)", 1)


def t_bad_max_steps(w, tmp):
    return (t_args(w, tmp, "--max-steps", "0"),
            "Invalid value for '--max-steps': 0 is not in the range x>=1. (see 'rnnlm train -h')", 2)


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
    p = crafted_checkpoint(w, tmp, set_meta(["config", "model", "cell"], "transformer"))
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
    p = crafted_checkpoint(w, tmp, set_meta(["format_version"], 7))
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
            "Invalid value for '--temperature': 0.0 is not in the range x>0. (see 'rnnlm generate -h')", 2)


def g_unknown_prime(w, tmp):
    return (["generate", "--checkpoint", w.ck, "--prime", "the zebra"],
            "token 'zebra' is not in the vocabulary, which has no <unk>", 1)


def g_prepared_gone(w, tmp):
    return (["generate", "--checkpoint", w.ck, *prep_of(tmp / "gone")],
            f"prepared-data folder not found: {tmp / 'gone'} (run 'rnnlm preprocess' first)", 1)


# --------------------------------------------------------------------------- gradcheck

def gc_conflicting_flags(w, tmp):
    return (["gradcheck", "--all", "--cell", "gru"],
            "--all checks every cell, mode and tying; do not combine it with --cell, --bptt or --tie-weights "
            "(see 'rnnlm gradcheck -h')", 2)


def gc_zero_hidden(w, tmp):
    return (["gradcheck", "--hidden", "0"],
            "Invalid value for '--hidden': 0 is not in the range x>=1. (see 'rnnlm gradcheck -h')", 2)


def gc_vocab_one(w, tmp):
    return ["gradcheck", "--set", "gradcheck.vocab_size=1"], "gradcheck.vocab_size: expected a value >= 2, got 1", 2


def gc_bad_cell(w, tmp):
    return (["gradcheck", "--cell", "rnn"],
            "Invalid value for '--cell': 'rnn' is not one of 'tanh', 'relu', 'gru', 'lstm'. (see 'rnnlm gradcheck -h')", 2)


def gc_out_of_memory(w, tmp):
    # 2**50 hidden units: petabytes, beyond any address space, so the allocation fails at once
    return (["gradcheck", "--hidden", str(2 ** 50), "--vocab", "7"],
            "out of memory: Unable to allocate 56.0 PiB for an array with shape (7, 1125899906842624) and data type "
            "float64 (reduce the model or batch sizes)", 1)


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
            "Invalid value for '--steps': 1 is not in the range x>=2. (see 'rnnlm diagnose-gradients -h')", 2)


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
    p = crafted_checkpoint(w, tmp, set_meta(["vocab_size"], "9"))
    return e_args(p), f"checkpoint {p}: meta entry 'vocab_size' is '9', expected a positive integer", 1


def x_crafted_progress_negative(w, tmp):
    p = crafted_checkpoint(w, tmp, set_meta(["progress", "step"], -1))
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
