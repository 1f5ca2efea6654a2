"""docs/reference.md describes every output, and only what the commands emit.

Every command runs once on small data (the agreement corpus, models of 8 units, 4 updates) and
everything it writes or prints is walked against the schema of rnnlm_cli/render/reference.py:
a key, entry, file or column the schema does not describe fails; so does a field the schema
describes that no run emitted, a field without `when` missing from a document, and a value of
another type than declared (null only where the schema says what null means, or for a
non-finite number).
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from rnnlm_cli.cli import cli
from rnnlm_cli.render.reference import OUTPUTS, fields_of, render_reference
from rnnlm_cli.values import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpora" / "agreement"
SMALL = ["model.hidden_size=8", "model.embedding_size=8", "train.batch_size=4", "train.k1=5", "train.max_steps=4",
         "train.eval_every=2", "train.log_every=1", "train.log_param_norms_every=2", "train.optimizer=adam",
         "train.lr=0.01"]
DIAG = ["--steps", "6", "--batches", "1", "--batch-size", "2"]


def sets(*items) -> list[str]:
    return [a for s in items for a in ("--set", s)]


def run(*args, code: int = 0) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, f"rnnlm {' '.join(map(str, args))}: {result.output}"
    return result.stdout


# --------------------------------------------------------------------------- what the commands emit

@pytest.fixture(scope="module")
def emitted(tmp_path_factory) -> list[tuple[str, object]]:
    """(output name, document) for everything the commands wrote or printed. Documents: JSON
    values; for folders, npz files and CSV/TSV, the list of their names (files, entries, columns)."""
    tmp = tmp_path_factory.mktemp("reference")
    docs: list[tuple[str, object]] = []
    prep, runs = tmp / "prep", tmp / "runs"
    docs.append(("meta", json.loads(run("preprocess", "--train", CORPUS / "train.txt", "--valid", CORPUS / "valid.txt",
                                        "--test", CORPUS / "test.txt", "--out", prep, "--format", "json", "-q"))))
    docs.append(("meta", json.loads((prep / "meta.json").read_text(encoding="utf-8"))))
    docs.append(("prepared-folder", sorted(p.name for p in prep.iterdir())))
    docs.append(("config", yaml.safe_load((prep / "config.yaml").read_text(encoding="utf-8"))))

    # six runs: tanh with two seeds (adam, a record), a tied GRU (sgd with momentum), an LSTM (class
    # softmax, dynamic figures after training), two stacked layers (tanh, with dropout between them),
    # weight averaging that fires (adam at lr 0.2 makes the 3rd validation worse than the 1st) with
    # drawn chunk lengths
    common = sets(f"data.prepared={prep}", *SMALL)
    trained = {"tanh/seed1": ["train.seed=1"], "tanh/seed2": ["train.seed=2", "train.k2=auto", "train.k2_every=3", "train.k2_max=40"],
               "gru": ["model.cell=gru", "model.tie_weights=true", "train.optimizer=sgd", "train.momentum=0.5"],
               "lstm": ["model.cell=lstm", "model.softmax=class", "evaluate.dynamic_after_training=true",
                        "evaluate.dynamic_method=rms", "evaluate.dynamic_ms_batches=2"],
               "stacked": ["model.num_layers=2", "model.dropout_between=0.2"],
               "averaged": ["train.average=nt", "train.average_nonmono=1", "train.eval_every=1", "train.max_steps=6",
                            "train.lr=0.2", "train.k1_spread=2"]}
    record = tmp / "record.json"
    for name, extra in trained.items():
        more = ["--record", record] if name == "tanh/seed1" else []
        docs.append(("summary", json.loads(run("train", *common, *sets(*extra), "--out", runs / name, "--format",
                                               "json", "-q", *more))))
    a, l = runs / "tanh" / "seed1", runs / "lstm"
    docs.append(("record", json.loads(record.read_text(encoding="utf-8"))))
    docs.append(("run-folder", sorted(p.name for p in a.iterdir())))
    docs.append(("summary", json.loads((a / "summary.json").read_text(encoding="utf-8"))))
    docs.append(("config", yaml.safe_load((a / "config.yaml").read_text(encoding="utf-8"))))
    averaged = json.loads((runs / "averaged" / "summary.json").read_text(encoding="utf-8"))
    assert averaged["averaging_started_step"] == 3, "the averaged run must fire its trigger to show its fields"
    for folder in (a, runs / "tanh" / "seed2", runs / "averaged"):   # seed2 chooses its k2 (train.k2: auto)
        docs += [("metrics", json.loads(line)) for line in (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    for name in trained:
        for ck in ("checkpoint.npz", "best.npz"):
            with np.load(runs / name / ck, allow_pickle=False) as npz:
                docs.append(("checkpoint", list(npz.files)))
                docs.append(("checkpoint:meta", json.loads(str(npz["meta"]))))

    # commands that read a checkpoint
    best = a / "best.npz"
    tokens = tmp / "tokens.tsv"
    docs.append(("evaluate", json.loads(run("evaluate", "--checkpoint", best, "--split", "valid", "--per-token", tokens,
                                            "--format", "json"))))
    rows = [line.split("\t") for line in tokens.read_text(encoding="utf-8").splitlines()]
    assert rows and all(len(r) == 2 and float(r[1]) <= 0 for r in rows)
    docs.append(("per-token", ["token", "logp"]))
    for method in ("sgd", "rms"):
        docs.append(("evaluate", json.loads(run("evaluate", "--checkpoint", best, "--split", "valid", "--dynamic",
                                                "--set", f"evaluate.dynamic_method={method}",
                                                "--set", "evaluate.dynamic_ms_batches=2", "--format", "json"))))
    docs.append(("generate", json.loads(run("generate", "--checkpoint", best, "--n", "2", "--max-tokens", "5",
                                            "--format", "json"))))

    # gradcheck: one that passes, one whose eps is too small to measure (it fails, with reasons)
    docs.append(("gradcheck", json.loads(run("gradcheck", "--samples", "1", "--format", "json"))))
    docs.append(("gradcheck", json.loads(run("gradcheck", "--samples", "1", "--set", "gradcheck.eps=1e-300",
                                             "--format", "json", code=1))))

    # diagnose-gradients: fresh models side by side, random tokens, a checkpoint with its run, the run alone
    fresh = sets(f"data.prepared={prep}", "model.hidden_size=8", "model.embedding_size=8")
    docs.append(("diagnose", json.loads(run("diagnose-gradients", *fresh, "--sweep", "model.cell=tanh,lstm,relu",
                                            *DIAG, "--format", "json", "-q"))))
    docs.append(("diagnose", json.loads(run("diagnose-gradients", *fresh, "--random-tokens", *DIAG,
                                            "--format", "json", "-q"))))
    docs.append(("diagnose", json.loads(run("diagnose-gradients", "--checkpoint", best, "--run", a, *DIAG,
                                            "--format", "json", "-q"))))
    docs.append(("diagnose", json.loads(run("diagnose-gradients", "--run", a, "--format", "json"))))
    text = run("diagnose-gradients", "--checkpoint", l / "best.npz", "--run", a, *DIAG, "--format", "csv", "-q")
    table = list(csv.reader(io.StringIO(text)))
    docs.append(("diagnose-csv", table[0] + sorted({f"quantity={row[1]}" for row in table[1:]})))
    stacked = runs / "stacked"                   # per-layer fields and the per-layer training history
    docs.append(("diagnose", json.loads(run("diagnose-gradients", "--checkpoint", stacked / "best.npz", "--run",
                                            stacked, *DIAG, "--format", "json", "-q"))))
    text = run("diagnose-gradients", "--checkpoint", stacked / "best.npz", "--run", stacked, *DIAG, "--format", "csv",
               "-q")
    table = list(csv.reader(io.StringIO(text)))
    docs.append(("diagnose-csv", table[0] + sorted({f"quantity={row[1]}" for row in table[1:]})))

    # probe, over seeds, and probe-horizons on each
    seeds = [runs / "tanh" / f"seed{s}" / "best.npz" for s in (1, 2)]
    for folder in (a, runs / "tanh" / "seed2"):
        (folder / "diagnose.json").write_text(run("diagnose-gradients", "--checkpoint", folder / "best.npz", *DIAG,
                                                  "--format", "json", "-q"), encoding="utf-8")
    plain = run("probe", "--checkpoint", best, "--checkpoint", l / "best.npz", "--format", "json")
    over = run("probe", "--over-seeds", *[a for p in seeds for a in ("--checkpoint", p)],
               "--checkpoint", runs / "gru" / "best.npz", "--format", "json")
    docs += [("probe", json.loads(plain)), ("probe-seeds", json.loads(over))]
    for name, result in (("probe", plain), ("probe-seeds", over)):
        (tmp / f"{name}.json").write_text(result, encoding="utf-8")
        docs.append((name, json.loads(run("probe-horizons", tmp / f"{name}.json", a / "diagnose.json",
                                          runs / "tanh" / "seed2" / "diagnose.json", "--format", "json"))))
    docs.append(("probe-csv", next(csv.reader(io.StringIO(run("probe", "--checkpoint", best, "--format", "csv"))))))
    docs.append(("probe-seeds-csv", next(csv.reader(io.StringIO(
        run("probe", "--over-seeds", *[a for p in seeds for a in ("--checkpoint", p)], "--format", "csv"))))))

    # the rest: the configuration as JSON, the agreement corpus's probe items
    docs.append(("config", json.loads(run("config", "show", "--format", "json"))))
    agreement = tmp / "agreement"
    run("corpus", "agreement", "--out", agreement)
    docs += [("probe-items", json.loads(line))
             for line in (agreement / "probe.jsonl").read_text(encoding="utf-8").splitlines()[:50]]
    shutil.rmtree(agreement)

    # a sweep of two points, a run that is stopped, compared; a tune study of three trials, reported
    studies = sets(f"data.prepared={prep}", *SMALL)
    run("sweep", *studies, "--grid", "model.cell=tanh,gru", "--out", tmp / "sweep", "-q")
    docs.append(("sweep-folder", sorted(p.name for p in (tmp / "sweep").iterdir())))
    docs.append(("sweep-manifest", json.loads((tmp / "sweep" / "sweep.json").read_text(encoding="utf-8"))))
    (tmp / "sweep" / "stopped").mkdir()
    (tmp / "sweep" / "stopped" / "metrics.jsonl").write_text("", encoding="utf-8")
    docs.append(("compare", json.loads(run("compare", tmp / "sweep", runs / "gru", "--format", "json"))))
    docs.append(("compare-csv", next(csv.reader(io.StringIO(run("compare", tmp / "sweep", "--format", "csv"))))))
    space = tmp / "space.yaml"
    space.write_text("train.lr: loguniform(1e-3, 1e-1)\nmodel.cell: [tanh, gru]\n", encoding="utf-8")
    storage = f"sqlite:///{tmp / 'tune.db'}"
    run("tune", *studies, "--space", space, "--trials", "3", "--storage", storage, "--study", "s",
        "--out", tmp / "tune", "-q")
    docs.append(("tune-folder", sorted(p.name for p in (tmp / "tune").iterdir())))
    docs.append(("tune-report", json.loads(run("tune", "--report", "--storage", storage, "--study", "s",
                                               "--format", "json"))))
    # the long-range study: a copy corpus, and a tiny study with both tasks and a k2 auto run
    run("corpus", "copy", "--out", tmp / "copy", "-m", "2", "-a", "3", "-T", "1", "--train", "5")
    docs.append(("copy-task", json.loads((tmp / "copy" / "task.json").read_text(encoding="utf-8"))))
    study = tmp / "study.yaml"
    study.write_text(TINY_STUDY, encoding="utf-8")
    docs.append(("longrange", json.loads(run("longrange", "--config", study, "--out", tmp / "lr", "-j", "1",
                                             "--format", "json", "-q"))))
    return docs


TINY_STUDY = """
common: [model.hidden_size=4, model.embedding_size=4, train.batch_size=4, train.epochs=1, train.log_every=1]
models: {tanh: [model.cell=tanh], lstm: [model.cell=lstm]}
truncations:
  full: [train.bptt=full]
  auto: [train.bptt=stream, train.k1=3, train.k2=auto, train.k2_every=2, train.k2_max=6]
only: {auto: [lstm]}
copy: {symbols: 2, alphabet: 3, delays: [1], train: 12, valid: 4, test: 4}
agreement: {distances: [1], train: 12, valid: 4, test: 4}
"""


# --------------------------------------------------------------------------- walking a document

def lookup(output: str, path: str):
    """(the output that describes `path`, its Field) or None; an output's own fields replace its
    base's at that path and under it."""
    out = OUTPUTS[output]
    own = {f.path: f for f in out.fields}
    if path in own:
        return output, own[path]
    if out.base and not any(path.startswith((p + ".", p + "[]")) for p in own):
        return lookup(out.base, path)
    return None


def join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def children(output: str, prefix: str) -> dict:
    """The fields directly under `prefix` (an object's keys), by key."""
    start = prefix + "." if prefix else ""
    return {p[len(start):]: f for p, f in fields_of(output).items()
            if p.startswith(start) and re.fullmatch(r"[A-Za-z_0-9]+", p[len(start):])}


ELEMENT = {"integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
           "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
           "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
           "object": lambda v: isinstance(v, dict), "mapping": lambda v: isinstance(v, dict)}


LIST_ITEMS = {"objects": "object", "numbers": "number", "integers": "integer", "strings": "string",
              "booleans": "boolean", "lists of numbers": "list of numbers"}


def type_ok(value, kind: str, nullable: bool) -> bool:
    """Whether a JSON value is of the declared type; null where the field says what it means,
    and for numbers (a non-finite number is written as null); list items likewise."""
    if value is None:
        return nullable or kind == "number"
    if kind.startswith("list of "):
        item = LIST_ITEMS[kind[len("list of "):]]
        return isinstance(value, list) and all(type_ok(v, item, nullable) for v in value)
    return any(ELEMENT[k](value) for k in kind.split(" or "))


class Walker:
    def __init__(self):
        self.seen: set[tuple[str, str]] = set()
        self.problems: list[str] = []

    def document(self, output: str, doc) -> None:
        if ":" in output:                                           # e.g. checkpoint:meta
            output, prefix = output.split(":")
            self.seen.add((output, prefix))
            self.object(doc, [(output, prefix)], f"{output}:{prefix}")
        elif OUTPUTS[output].kind in ("folder", "npz", "csv", "tsv"):
            self.names(output, doc)
        else:
            self.object(doc, [(output, "")], output)

    def names(self, output: str, names: list[str]) -> None:
        """Files, npz entries, CSV columns: each must match a field (<...> matches one name part)."""
        fields = [f for f in OUTPUTS[output].fields]
        for name in names:
            match = [f for f in fields if re.fullmatch(re.sub(r"<[^>]+>", "[^/]+", re.escape(f.path)), name)]
            if not match:
                self.problems.append(f"{output}: `{name}` is not described")
            self.seen.update((output, f.path) for f in match)
        required = [f.path for f in fields if not f.when and "<" not in f.path and "=" not in f.path]
        missing = [p for p in required if p not in names and not p.startswith("meta.")]
        if missing:
            self.problems.append(f"{output}: missing {missing}")

    def object(self, doc, scopes: list[tuple[str, str]], where: str) -> None:
        if not isinstance(doc, dict):
            self.problems.append(f"{where}: expected an object, got {type(doc).__name__}")
            return
        for output, prefix in scopes:
            for key, f in children(output, prefix).items():
                if not f.when and key not in doc:
                    self.problems.append(f"{where}: `{key}` ({output}:{join(prefix, key)}) is missing")
        for key, value in doc.items():
            found = next((r for o, p in scopes if (r := lookup(o, join(p, key)))), None)
            if found is None:
                self.problems.append(f"{where}: `{key}` is not described "
                                     f"(looked in {', '.join(f'{o}:{join(p, key)}' for o, p in scopes)})")
                continue
            output, f = found
            self.seen.add((output, f.path))
            self.value(value, output, f, f"{where}.{key}")

    def value(self, value, output: str, f, where: str) -> None:
        if not type_ok(value, f.type, bool(f.null)):
            self.problems.append(f"{where}: {json.dumps(value)[:60]} is not of type {f.type!r}"
                                 + ("" if f.null else " (and the field says nothing of null)"))
            return
        extra = []
        if f.see:
            name, _, path = f.see.partition(":")
            extra = [(name, path)]
        if isinstance(value, dict) and f.keys:
            for item in value.values():
                if isinstance(item, dict):
                    self.object(item, [(output, f"{f.path}.*")], f"{where}.*")
        elif isinstance(value, dict):
            self.object(value, [(output, f.path)] + extra, where)
        elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
            for v in value:
                self.object(v, [(output, f"{f.path}[]")] + extra, f"{where}[]")


@pytest.fixture(scope="module")
def walked(emitted) -> Walker:
    walker = Walker()
    for output, doc in emitted:
        walker.document(output, doc)
    return walker


# --------------------------------------------------------------------------- the tests

def test_every_emitted_field_is_described_with_its_type_and_presence(walked):
    assert not walked.problems, "\n".join(walked.problems[:40])


def test_every_described_field_is_emitted_by_some_command(walked):
    described = {(name, f.path) for name, out in OUTPUTS.items() for f in out.fields}
    # the spread shape's fields are seen through `see`
    never = sorted(f"{o}: {p}" for o, p in described - walked.seen)
    assert not never, "described but emitted by no command:\n" + "\n".join(never)


def test_every_json_output_carries_the_schema_version(emitted):
    # every JSON document but the metrics lines, the configuration (a config file) and the
    # probe items (an input format), which the reference says carry none
    unversioned = {"metrics", "config", "probe-items"}
    checked = 0
    for output, doc in emitted:
        if isinstance(doc, dict) and output not in unversioned:
            assert doc.get("schema_version") == SCHEMA_VERSION, output
            assert next(iter(doc)) == "schema_version" or output == "checkpoint:meta", output
            checked += 1
    assert checked >= 20


def test_the_walker_refuses_what_the_schema_does_not_say():
    # the checks themselves: an extra key, a missing required key, a wrong type, a null that
    # the field does not allow, and a key inside a `see` shape
    walker = Walker()
    walker.document("evaluate", {"schema_version": 1, "split": "valid", "tokens": 3.5, "loss": 1.0, "bits": None,
                                 "ppl": 2.7, "protocol": "static", "extra": 1})
    walker.document("evaluate", {"schema_version": 1, "split": None, "tokens": 3, "loss": 1.0, "ppl": 2.7,
                                 "bits": 1.4, "protocol": "static"})
    walker.document("spread", {"mean": 1, "min": 1, "max": 1, "per_seed": [1], "sd": 0})
    text = "\n".join(walker.problems)
    assert "`extra` is not described" in text
    assert "tokens: 3.5 is not of type 'integer'" in text
    assert "bits" not in text                                       # a number may be null (non-finite)
    assert "split: null is not of type 'string'" in text
    assert "`sd` is not described" in text
    assert len(walker.problems) == 4


def test_the_reference_document_is_the_rendered_schema():
    # docs/reference.md holds render_reference() between its cog markers (the staleness test of
    # tests/test_docs.py regenerates it); every output has its section and anchor
    text = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    assert render_reference() in text
    for name, out in OUTPUTS.items():
        assert f'<a id="output-{name}"></a>\n### {out.title}\n' in text
