"""rnnlm sweep: points, names, a sweep killed mid-way and completed on rerun with no run trained
twice, --print-commands run verbatim under bash, and bad input refused before anything is written."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rnnlm_cli import grid
from rnnlm_cli.cli import cli
from rnnlm_cli.errors import ConfigError
from rnnlm_cli.studies import sweep

ROOT = Path(__file__).resolve().parents[1]
AGREEMENT = ROOT / "corpora" / "agreement"
VENV_BIN = Path(sys.executable).parent


def base_config(folder: Path, epochs: int = 1, max_steps: int = 0, eval_every: int = 10) -> Path:
    """A tiny model on the shipped agreement corpus (a few hundred updates a second)."""
    path = folder / "base.yaml"
    path.write_text(f"""
data:
  train: {AGREEMENT / 'train.txt'}
  valid: {AGREEMENT / 'valid.txt'}
  test: {AGREEMENT / 'test.txt'}
  prepared: {folder / 'data'}
model: {{cell: tanh, embedding_size: 8, hidden_size: 8}}
train: {{batch_size: 16, k1: 10, epochs: {epochs}, max_steps: {max_steps}, eval_every: {eval_every},
         log_every: 5, optimizer: adam, lr: 0.01}}
""", encoding="utf-8")
    return path


def rnnlm(*args, cwd, **kw):
    return subprocess.run([sys.executable, "-m", "rnnlm_cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, **kw)


# --------------------------------------------------------------------------- planning

def test_points_names_and_hashes(tmp_path):
    cfg = base_config(tmp_path)
    points = sweep.plan_sweep(str(cfg), [], ["model.cell=tanh,gru", "train.lr=0.003,0.01"], [], None, 0,
                              str(tmp_path / "s"))
    assert [p.values for p in points] == [{"model.cell": c, "train.lr": lr} for c in ("tanh", "gru")
                                          for lr in ("0.003", "0.01")]
    assert [(p.cfg.model.cell, p.cfg.train.lr) for p in points] == [("tanh", 0.003), ("tanh", 0.01),
                                                                    ("gru", 0.003), ("gru", 0.01)]
    for p in points:
        assert re.fullmatch(r"cell-(tanh|gru)_lr-0\.0(03|1)-[0-9a-f]{8}", p.name), p.name
        assert p.cfg.train.out == os.path.abspath(tmp_path / "s" / p.name)
    assert len({p.config_hash for p in points}) == 4
    # the hash is the configuration's: the same point planned again (another --out) has the same name
    again = sweep.plan_sweep(str(cfg), [], ["train.lr=0.01,0.003", "model.cell=gru,tanh"], [], None, 0, "elsewhere")
    assert sorted(p.config_hash for p in again) == sorted(p.config_hash for p in points)
    # a --set that changes the base changes every hash
    other = sweep.plan_sweep(str(cfg), ["train.seed=7"], ["model.cell=tanh,gru", "train.lr=0.003,0.01"], [],
                             None, 0, "s")
    assert not {p.config_hash for p in other} & {p.config_hash for p in points}


def test_an_ablation_is_the_base_and_the_base_with_each_change(tmp_path):
    cfg = base_config(tmp_path)
    sets = ["model.dropout_output=0.3", "model.weight_drop=0.2", "model.ar=1.0", "model.tar=2.0"]
    points = sweep.plan_sweep(str(cfg), sets, [], [], None, 0, str(tmp_path / "a"),
                              ablations=["model.dropout_output=0", "model.ar=0 model.tar=0"])
    assert [p.values for p in points] == [{}, {"model.dropout_output": "0"}, {"model.ar": "0", "model.tar": "0"}]
    base, no_drop, no_reg = (p.cfg.model for p in points)
    assert (base.dropout_output, base.weight_drop, base.ar, base.tar) == (0.3, 0.2, 1.0, 2.0)
    assert (no_drop.dropout_output, no_drop.weight_drop, no_drop.ar, no_drop.tar) == (0.0, 0.2, 1.0, 2.0)
    assert (no_reg.dropout_output, no_reg.weight_drop, no_reg.ar, no_reg.tar) == (0.3, 0.2, 0.0, 0.0)
    assert re.fullmatch(r"base-[0-9a-f]{8}", points[0].name)
    assert re.fullmatch(r"dropout_output-0-[0-9a-f]{8}", points[1].name)
    assert re.fullmatch(r"ar-0_tar-0-[0-9a-f]{8}", points[2].name)
    # every point is the base with its own changes only: the same configuration as a plain --set of them
    for p in points:
        alone = sweep.plan_sweep(str(cfg), sets + [f"{k}={v}" for k, v in p.values.items()], [], [], None, 0,
                                 "b", ablations=["model.cell=gru"])[0]
        assert alone.config_hash == p.config_hash


def test_grid_and_ablation_values_read_as_set_reads_them(tmp_path):
    """Booleans, exponents and lists: each value means what `--set KEY=VALUE` makes of it."""
    cfg = base_config(tmp_path)
    points = sweep.plan_sweep(str(cfg), ["model.embedding_size=8"], ["model.tie_weights=true,false",
                                                                     "train.lr=1e-3,2.5e-2"], [], None, 0, "s")
    assert [(p.cfg.model.tie_weights, p.cfg.train.lr) for p in points] == [(True, 0.001), (True, 0.025),
                                                                          (False, 0.001), (False, 0.025)]
    ablation = sweep.plan_sweep(str(cfg), ["model.tie_weights=true"], [], [], None, 0, "a",
                                ablations=["model.tie_weights=false", "diagnose.truncations=[1,2,3]"])
    assert [p.cfg.model.tie_weights for p in ablation] == [True, False, True]
    assert ablation[2].cfg.diagnose.truncations == [1, 2, 3]
    with pytest.raises(ConfigError, match="model.tie_weights: expected bool, got 0"):
        sweep.plan_sweep(str(cfg), [], ["model.tie_weights=0,1"], [], None, 0, "s")


def test_random_points_are_drawn_within_their_ranges_and_repeat_with_the_seed(tmp_path):
    cfg = str(base_config(tmp_path))
    ranges = ["train.lr=loguniform(1e-4,1e-2)", "model.hidden_size=int(4,9)", "model.cell=choice(tanh,gru)",
              "train.momentum=uniform(0,0.5)"]
    points = sweep.plan_sweep(cfg, [], ["train.optimizer=sgd"], ranges, 30, 3, "s")
    assert 25 <= len(points) <= 30                         # coinciding draws are one run
    for p in points:
        assert 1e-4 <= p.cfg.train.lr <= 1e-2 and 4 <= p.cfg.model.hidden_size <= 9
        assert p.cfg.model.cell in ("tanh", "gru") and 0 <= p.cfg.train.momentum <= 0.5
    assert {p.cfg.model.hidden_size for p in points} == set(range(4, 10))     # int(a,b) includes b
    lrs = sorted(p.cfg.train.lr for p in points)
    assert lrs[0] < 1e-3 < lrs[-1]                          # log-uniform: both decades are visited
    same = sweep.plan_sweep(cfg, [], ["train.optimizer=sgd"], ranges, 30, 3, "s")
    assert [p.name for p in same] == [p.name for p in points]
    assert [p.name for p in sweep.plan_sweep(cfg, [], [], ranges, 30, 4, "s")] != [p.name for p in points]


def test_range_parsing():
    assert grid.parse_range("train.lr=loguniform(1e-4, 1e-2)") == grid.Range("train.lr", "loguniform", (1e-4, 1e-2))
    assert grid.parse_range("model.hidden_size=int(8,64)").args == (8, 64)
    assert grid.parse_range("model.cell=choice(tanh,gru)").args == ("tanh", "gru")
    for bad, words in [("train.lr=loguniform(0,1)", "low bound above 0"), ("train.lr=uniform(1,1)", "low < high"),
                       ("train.lr=normal(0,1)", "unknown distribution"), ("train.lr=uniform(a,b)", "numbers"),
                       ("train.lr=uniform(1e-3", "expects"), ("train.lr", "expects"),
                       ("model.hidden_size=uniform(1,4)", "integer values"),
                       ("model.cell=int(1,3)", "text values"), ("model.cell=choice(tanh,bogus)", "model.cell"),
                       ("train.lrr=uniform(0.1,0.2)", "unknown key 'train.lrr' (did you mean train.lr?)"),
                       ("train.lr=uniform(-1,0.5)", "train.lr")]:
        with pytest.raises(ConfigError, match=re.escape(words)):
            grid.parse_range(bad)


# --------------------------------------------------------------------------- running, killing, resuming

def _train_steps(log_text: str) -> list[int]:
    """The update numbers a run's trainer reported, in the order of the log (all launches)."""
    return [int(m) for m in re.findall(r"^epoch \d+/\d+, step (\d+):", log_text, re.M)]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_killed_sweep_completes_on_rerun_and_trains_no_run_twice(tmp_path, sig):
    cfg = base_config(tmp_path, epochs=3, eval_every=50)
    args = ["sweep", "--config", cfg, "--grid", "model.cell=tanh,gru", "--grid", "train.lr=0.003,0.01",
            "--out", "s", "-j", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "rnnlm_cli", *map(str, args)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = tmp_path / "s"
    deadline = time.monotonic() + 120
    # kill once one run has finished and another is part-way: it has written a checkpoint to resume
    # from (logged updates alone are not enough: a run killed before its first checkpoint starts over),
    # and is in the first half of its updates (one near its end could finish before the signal lands)
    def early(run, total):
        try:
            steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        except (OSError, ValueError, KeyError):
            return False
        return bool(steps) and steps[-1] <= total // 2

    while time.monotonic() < deadline and proc.poll() is None:
        runs = [d for d in out.glob("*-*") if d.is_dir()]
        done = [d for d in runs if (d / "summary.json").exists()]
        total = json.loads((done[0] / "summary.json").read_text())["steps"] if done else 0
        busy = [d for d in runs if not (d / "summary.json").exists() and (d / "checkpoint.npz").exists()
                and early(d, total)]
        if done and busy:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the sweep ended before it could be killed (runs too short?)"
    proc.send_signal(sig)        # SIGINT: as Ctrl-C, though only to the sweep (the children get SIGTERM from it)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err
    assert err.rstrip().endswith("Error: interrupted (SIGTERM)" if sig == signal.SIGTERM else "Error: interrupted")
    logs = {p.stem: p.read_text() for p in (out / "logs").glob("*.log")}
    for name, text in logs.items():        # every child launched was waited for: no orphan
        assert text.count("# sweep launch ") == text.count("# sweep exit "), text
        assert not (out / name / "train.lock").exists(), f"{name} left its lock:\n{text}"
    finished_first = {d.name for d in out.iterdir() if (d / "summary.json").exists()}
    interrupted = {d.name for d in out.iterdir() if (d / "checkpoint.npz").exists()} - finished_first
    assert finished_first and interrupted and len(finished_first) < 4

    again = rnnlm(*args, cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr
    names = sorted(line.split()[0] for line in again.stdout.splitlines())
    assert len(names) == 4 and all((out / n / "summary.json").exists() for n in names)
    for name in names:
        text = (out / "logs" / f"{name}.log").read_text()
        launches = re.findall(r"^# sweep launch \d+: (\w+)", text, re.M)
        steps = _train_steps(text)
        # no update trained twice: the steps the trainer reported, over all launches, rise strictly
        total = json.loads((out / name / "summary.json").read_text())["steps"]
        assert steps == sorted(set(steps)) == list(range(5, total + 1, 5))
        if name in finished_first:
            assert launches == ["fresh"]                       # not launched again
        elif name in interrupted:
            assert launches == ["fresh", "resume"]          # (stopped after an update: it saved a checkpoint)
            assert re.search(r"^resumed from .*checkpoint\.npz at step [1-9]", text, re.M)
        else:
            assert launches[-1] == "fresh" or launches[-1] == "force"
        metrics = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
        logged = [m["step"] for m in metrics if "split" not in m]
        assert logged == steps
    # a resumed run ends where an uninterrupted one does, bit for bit
    name = sorted(interrupted)[0]
    point = next(p for p in sweep.plan_sweep(str(cfg), [], args[4:7:2], [], None, 0, "s") if p.name == name)
    straight = rnnlm("train", "--config", cfg, *[a for o in point.overrides for a in ("--set", o)], "--out", "straight",
                     "-q", cwd=tmp_path, timeout=300)
    assert straight.returncode == 0, straight.stderr
    with np.load(out / name / "checkpoint.npz") as a, np.load(tmp_path / "straight" / "checkpoint.npz") as b:
        params = [k for k in a.files if k.startswith("param/")]
        assert params and all(np.array_equal(a[k], b[k]) for k in params)


def test_print_commands_run_verbatim_under_bash(tmp_path):
    cfg = base_config(tmp_path, max_steps=10)
    args = ["sweep", "--config", "base.yaml", "--grid", "model.cell=tanh,gru", "--out", "s"]
    printed = rnnlm(*args, "--print-commands", cwd=tmp_path, timeout=60)
    assert printed.returncode == 0 and printed.stderr.startswith("preparing ")
    lines = printed.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("OMP_NUM_THREADS=1 ") for line in lines)
    assert not (tmp_path / "s").exists() and (tmp_path / "data" / "meta.json").exists()  # the data, no run
    assert cfg.exists()
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    for line in lines:
        ran = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert ran.returncode == 0, ran.stderr
    assert len(list((tmp_path / "s").glob("*/summary.json"))) == 2
    assert rnnlm(*args, "--print-commands", cwd=tmp_path, timeout=60).stdout == ""     # nothing left to run
    done = rnnlm(*args, cwd=tmp_path, timeout=60)
    assert done.returncode == 0 and done.stdout.split()[1::2] == ["finished", "finished"]


# --------------------------------------------------------------------------- bad input

def _tree(folder: Path) -> list:
    return sorted((str(p), p.stat().st_size if p.is_file() else None) for p in folder.rglob("*"))


BAD = [
    (["--grid", "model.cel=tanh,gru"], "--grid model.cel: unknown key 'model.cel' (did you mean model.cell?)", 2),
    (["--grid", "model.cell="], "--grid expects section.key=value1,value2,..., got 'model.cell='", 2),
    ([], "nothing to sweep: give --grid KEY=V1,V2,..., --random N with --range KEY=DIST(a,b), or --ablate "
         "KEY=VALUE", 2),
    (["--ablate", "model.dropout_output=0"], "--ablate model.dropout_output=0 changes nothing: the base "
     "configuration already has this value", 2),
    (["--ablate", "model.dropout_outptu=0"], "--ablate model.dropout_outptu=0: unknown key 'model.dropout_outptu' "
     "(did you mean model.dropout_output?)", 2),
    (["--ablate", "model.cell"], "--ablate model.cell: expected KEY=VALUE, got 'model.cell'", 2),
    (["--ablate", "model.cell=bogus"], None, 2),
    (["--ablate", "model.cell=gru model.cell=lstm"], "--ablate model.cell=gru model.cell=lstm: model.cell is given "
     "twice", 2),
    (["--ablate", "model.cell=gru", "--ablate", "model.cell=gru"], "--ablate model.cell=gru gives the same "
     "configuration as --ablate model.cell=gru", 2),
    (["--ablate", "model.cell=gru", "--grid", "train.lr=0.1,0.2"], "--ablate runs the base configuration and one "
     "run per --ablate; it does not combine with --grid or --random (run those as a sweep of their own)", 2),
    (["--ablate", "train.out=x"], "--ablate train.out=x: the sweep sets train.out itself, for each run OUT/NAME "
     "(use --out)", 2),
    (["--random", "3", "--range", "train.lr=loguniform(1e-3)"], "--range train.lr=loguniform(1e-3): loguniform() "
     "takes two bounds, got 1", 2),
    (["--random", "3", "--range", "train.lr=log(1,2)"], "--range train.lr=log(1,2): unknown distribution 'log'; "
     "use one of uniform, loguniform, int, choice", 2),
    (["--range", "train.lr=uniform(0.1,0.2)"], "--range needs --random N (how many points to draw)", 2),
    (["--random", "2"], "--random needs at least one --range KEY=DIST(a,b)", 2),
    (["--grid", "model.cell=tanh", "-j", "0"], "Invalid value for '-j': must be at least 1, got 0 "
     "(see 'rnnlm sweep -h')", 2),
    (["--grid", "model.cell=tanh", "--random", "0", "--range", "train.lr=uniform(0.1,0.2)"],
     "Invalid value for '--random': must be at least 1, got 0 (see 'rnnlm sweep -h')", 2),
    (["--grid", "model.cell=tanh,bogus"], None, 2),
    (["--grid", "train.out=a,b"], "--grid train.out: the sweep sets train.out itself, for each run OUT/NAME "
     "(use --out)", 2),
    (["--grid", "model.cell=tanh", "--grid", "model.cell=gru"], "model.cell is swept twice; give all its values in "
     "one --grid or --range", 2),
]


@pytest.mark.parametrize("extra,message,code", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_sweep_input(tmp_path, monkeypatch, extra, message, code):
    monkeypatch.chdir(tmp_path)
    base_config(tmp_path)
    before = _tree(tmp_path)
    result = CliRunner().invoke(cli, ["sweep", "--config", "base.yaml", "--out", "s", *extra], prog_name="rnnlm")
    assert result.exit_code == code and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith("Error: ") and result.stdout == ""
    if message:
        assert result.stderr == f"Error: {message}\n"
    assert isinstance(result.exception, SystemExit)
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("where", ["input", "foreign", "run", "file"])
def test_bad_sweep_folder(tmp_path, monkeypatch, where):
    monkeypatch.chdir(tmp_path)
    base_config(tmp_path)
    out = {"input": tmp_path, "foreign": tmp_path / "mine", "run": tmp_path / "run", "file": tmp_path / "f"}[where]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    (tmp_path / "f").write_text("x")
    before = _tree(tmp_path)
    result = CliRunner().invoke(cli, ["sweep", "--config", "base.yaml", "--out", str(out), "--grid",
                                      "model.cell=tanh"], prog_name="rnnlm")
    words = {"input": "contains the config file", "foreign": "holds files a sweep did not write",
             "run": "is a training run folder", "file": "is a file"}[where]
    assert result.exit_code == 2 and words in result.stderr and result.stderr.count("\n") == 1, result.output
    assert _tree(tmp_path) == before


def test_each_child_runs_with_one_blas_thread_and_its_output_in_its_log(tmp_path):
    points = sweep.plan_sweep(str(base_config(tmp_path)), [], ["model.cell=tanh,gru"], [], None, 0,
                              str(tmp_path / "s"))
    probe = "import os; print(os.environ['OMP_NUM_THREADS'], os.environ['OPENBLAS_NUM_THREADS'])"
    outcome = sweep.run_sweep(points, str(tmp_path / "s"), 2, lambda p, state: [sys.executable, "-c", probe])
    assert outcome == {p.name: "done" for p in points}
    for p in points:
        log = (tmp_path / "s" / "logs" / f"{p.name}.log").read_text()
        assert re.fullmatch(r"# sweep launch 1: fresh \(.*\)\n1 1\n# sweep exit 0\n", log), log
    failing = sweep.run_sweep(points[:1], str(tmp_path / "s"), 1, lambda p, state: [sys.executable, "-c", "exit(3)"])
    assert failing == {points[0].name: "failed (exit 3)"}


def test_points_with_other_data_settings_may_not_share_a_prepared_folder(tmp_path):
    cfg = str(base_config(tmp_path))
    with pytest.raises(ConfigError, match="have different data settings but share the prepared-data folder"):
        sweep.plan_sweep(cfg, [], ["data.min_count=1,2"], [], None, 0, "s")
    # one data setting, two folders (a copy each): allowed
    points = sweep.plan_sweep(cfg, ["data.min_count=2"], [f"data.prepared={tmp_path / 'a'},{tmp_path / 'b'}"],
                              [], None, 0, "s")
    assert [p.cfg.data.prepared for p in points] == [str(tmp_path / "a"), str(tmp_path / "b")]


def test_an_ablation_sweep_runs_and_compare_reads_it_as_one(tmp_path):
    """`sweep --ablate` trains the base and each change; the ablation table built from `compare`
    names each run's changes against the base and its test perplexity minus the base's, both read
    back here from the runs' own summary.json files."""
    from rnnlm_cli.render.compare import ablation_rows, ablation_seeds_markdown

    base_config(tmp_path, max_steps=12, eval_every=6)
    done = rnnlm("sweep", "--config", "base.yaml", "--set", "model.dropout_output=0.3", "--set", "model.ar=1",
                 "--ablate", "model.dropout_output=0", "--ablate", "model.ar=0 model.dropout_output=0.1",
                 "--out", "abl", "-j", "2", "-q", cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "abl").glob("*/summary.json"))) == 3
    compared = rnnlm("compare", "abl", "--format", "json", cwd=tmp_path, timeout=60)
    assert compared.returncode == 0, compared.stderr
    rows = ablation_rows(json.loads(compared.stdout))
    test = {p.parent.name: json.loads(p.read_text())["test_ppl"] for p in (tmp_path / "abl").glob("*/summary.json")}
    base = rows[0]
    assert base["name"].startswith("base-") and base["changed"] == {} and base["test_change"] is None
    assert [r["changed"] for r in rows[1:]] in ([{"model.dropout_output": 0.0}, {"model.ar": 0.0, "model.dropout_output": 0.1}],
                                                [{"model.ar": 0.0, "model.dropout_output": 0.1}, {"model.dropout_output": 0.0}])
    for r in rows[1:]:
        assert r["test_change"] == pytest.approx(test[r["name"]] - test[base["name"]], abs=1e-9)
    table = ablation_seeds_markdown({1: json.loads(compared.stdout)}).splitlines()
    assert len(table) == 5 and "(the base)" in table[2] and "`model.dropout_output: 0`" in "\n".join(table[3:])


def _ablation_result(runs: dict[str, tuple[dict, float | None]]) -> dict:
    """compare's result for an ablation sweep, built by hand: name -> (config keys, test ppl or None
    for a run that did not finish)."""
    keys = sorted({k for config, _ in runs.values() for k in config})
    return {"differing_keys": keys,
            "runs": [{"name": name, "status": "finished" if test is not None else "unfinished",
                      "config": config, "test_ppl": test, "valid_ppl": test, "epochs": 1, "wall_time_s": 60.0}
                     for name, (config, test) in runs.items()]}


def test_an_ablation_over_seeds_gives_each_change_its_runs_median_and_change():
    """Hand-built: three seeds; the hash in a run's name differs per seed, its changes do not. The
    median of 3 is the middle value, of 2 their mean; a run that did not finish counts as missing;
    a change is measured against the base of the same seed."""
    from rnnlm_cli.render.compare import ablation_seed_rows, ablation_seeds_markdown

    base = {"model.weight_drop": 0.2, "model.dropout_words": 0.1}
    wd, words = {**base, "model.weight_drop": 0.0}, {**base, "model.dropout_words": 0.0}
    results = {1: _ablation_result({"base-aa": (base, 100.0), "weight_drop-0-ab": (wd, 110.0), "w-ac": (words, 90.0)}),
               2: _ablation_result({"weight_drop-0-cd": (wd, 700.0), "base-cc": (base, 120.0), "w-cd": (words, 115.0)}),
               3: _ablation_result({"base-ee": (base, 90.0), "weight_drop-0-ef": (wd, None), "w-ef": (words, 89.0)})}
    rows = ablation_seed_rows(results)
    # the changes in the order of their median change: dropout_words (-5, -10, -1) before weight_drop (+10, +580)
    assert [r["changed"] for r in rows] == [{}, {"model.dropout_words": 0.0}, {"model.weight_drop": 0.0}]
    assert rows[0]["test_ppl"] == {1: 100.0, 2: 120.0, 3: 90.0} and rows[0]["median"] == 100.0
    assert rows[0]["change_median"] is None
    assert rows[1]["change"] == {1: -10.0, 2: -5.0, 3: -1.0} and rows[1]["change_median"] == -5.0
    assert rows[1]["change_range"] == (-10.0, -1.0)
    assert rows[2]["test_ppl"] == {1: 110.0, 2: 700.0, 3: None} and rows[2]["median"] == 405.0
    assert rows[2]["change"] == {1: 10.0, 2: 580.0, 3: None} and rows[2]["change_median"] == 295.0
    table = ablation_seeds_markdown(results, unigram_ppl=700.0).splitlines()
    assert table[0] == ("| changed against the base | seed 1 | seed 2 | seed 3 | median "
                        "| change against the same seed's base: median (range) |")
    assert table[2] == "| (the base) | 100.0 | 120.0 | 90.0 | 100.0 |  |"
    assert table[3] == "| `model.dropout_words: 0` | 90.0 | 115.0 | 89.0 | 90.0 | -5.0 (-10.0 to -1.0) |"
    # 700 is above 0.9 x the unigram model's 700 (stuck, marked), 110 is not
    assert table[4] == "| `model.weight_drop: 0` | 110.0 | 700.0 † | - | 405.0 | +295.0 (+10.0 to +580.0) |"
    assert "†" not in ablation_seeds_markdown(results)


def test_an_ablation_names_its_changes_as_yaml_writes_them():
    from rnnlm_cli.render.compare import changed_text

    assert changed_text({"model.dropout_locked": False, "model.ar": 0.0}) == "`model.dropout_locked: false`, `model.ar: 0`"
    assert changed_text({}) == "(the base)"


def test_the_unigram_perplexity_is_the_inverse_geometric_mean_of_training_frequencies():
    """Closed form: train a a a b (p(a) = 3/4, p(b) = 1/4); on a b the perplexity is
    (3/4 * 1/4) ** -1/2 = sqrt(16/3). A held-out token never seen in training is an error."""
    from rnnlm_cli.render.compare import unigram_perplexity

    assert unigram_perplexity(list("aaab"), list("ab")) == pytest.approx((16 / 3) ** 0.5, rel=1e-12)
    assert unigram_perplexity(list("ab"), list("abab")) == pytest.approx(2.0, rel=1e-12)
    with pytest.raises(ValueError, match="'c' does not occur"):
        unigram_perplexity(list("ab"), list("ac"))
