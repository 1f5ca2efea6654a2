"""metrics.jsonl: the one writer (MetricsLog) and the one reader (read_metrics)."""

from __future__ import annotations

import json
import os

import pytest

from rnnlm_cli.errors import DataError
from rnnlm_cli.train.metrics import MetricsLog, read_metrics


def test_append_writes_one_json_dumps_line_each_flushed(tmp_path):
    log = MetricsLog(str(tmp_path))
    entries = [{"step": 1, "loss": 2.5, "ppl": None, "clipped": False},
               {"step": 2, "loss": float("nan"), "param_grad_norms": {"cell.W_h": 0.25}},
               {"split": "valid", "step": 2, "loss": 1.0}]
    for i, entry in enumerate(entries, 1):
        log.append(entry)
        # flushed: another reader sees every line at once, before the log is closed
        assert (tmp_path / "metrics.jsonl").read_text().count("\n") == i
    log.close()
    # the format: json.dumps of each entry, one per line, nothing else; strict JSON (NaN as null)
    strict = [{**e, "loss": None} if e["loss"] != e["loss"] else e for e in entries]
    assert (tmp_path / "metrics.jsonl").read_text() == "".join(json.dumps(e) + "\n" for e in strict)
    got = read_metrics(str(tmp_path))
    assert [n for n, _ in got] == [1, 2, 3]
    assert got[0][1] == entries[0] and got[2][1] == entries[2]


def test_appending_continues_an_existing_log(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    log = MetricsLog(str(tmp_path))
    log.append({"step": 2})
    log.close()
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1}\n{"step": 2}\n'


def test_trim_after_keeps_earlier_lines_byte_for_byte(tmp_path):
    # odd spacing and key order show the kept lines are copied, not re-serialised
    lines = ['{"step":1,  "loss": 1.0}\n', '{"loss": 2.0, "step": 2}\n', '{"split": "valid", "step": 2}\n',
             '{"step": 3}\n', '{"split": "valid", "step": 3, "final": true}\n', '{"step": 4, "lo']
    (tmp_path / "metrics.jsonl").write_text("".join(lines))
    MetricsLog(str(tmp_path)).trim_after(2)
    assert (tmp_path / "metrics.jsonl").read_text() == "".join(lines[:3])
    MetricsLog(str(tmp_path / "none")).trim_after(2)              # no log yet: nothing to do
    assert not (tmp_path / "none").exists()


def test_trim_drops_final_evaluations_and_a_torn_line(tmp_path):
    lines = ['{"step": 5}\n', '{"split": "valid", "step": 5, "final": true}\n', '{"split": "test", "step": 5, "final": true}\n']
    (tmp_path / "metrics.jsonl").write_text("".join(lines) + '{"step"')
    MetricsLog(str(tmp_path)).trim_after(5)                       # a resume at the last step logs them again
    assert (tmp_path / "metrics.jsonl").read_text() == lines[0]
    assert [f for f in os.listdir(tmp_path)] == ["metrics.jsonl"]  # rewritten atomically, no temporary left


def test_the_reader_stops_at_a_torn_line_or_refuses_it_when_strict(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n\n[1, 2]\n{"step": 2}\n{"step": 3, "lo')
    # lenient (a log being written): blank lines and non-objects skipped, reading ends at the torn line
    assert read_metrics(str(tmp_path)) == [(1, {"step": 1}), (4, {"step": 2})]
    with pytest.raises(DataError, match=r"metrics.jsonl, line 3: expected a JSON object$"):
        read_metrics(str(tmp_path), strict=True)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 3, "lo\n{"step": 4}\n')
    assert read_metrics(str(tmp_path)) == [(1, {"step": 1})]
    with pytest.raises(DataError, match=r"metrics.jsonl, line 2: not valid JSON \("):
        read_metrics(str(tmp_path), strict=True)
    (tmp_path / "metrics.jsonl").write_bytes(b'{"step": 1}\n\xff\n')
    with pytest.raises(DataError, match=r"metrics.jsonl: not UTF-8 text"):
        read_metrics(str(tmp_path))
