"""The generated sections of README.md and docs/*.md, for cog (`make docs`).

Every table, figure and sample output in the docs sits between cog markers that call one
function of this module:

    <!-- [[[cog import docgen; docgen.gradcheck_excerpt()]]] -->
    ...generated text...
    <!-- [[[end]]] -->

`make docs` rewrites those sections (`cog -r -I scripts README.md docs/*.md`); tests/test_docs.py
runs cog with --check and fails when a committed section differs from what its source gives
now. Sources: results/*.json (result records, the bench report), the configuration schema,
Click's own help, and deterministic commands run in a scratch copy of configs/ and corpora/
(paths in their output are shown relative to that copy, never absolute, and nothing timed is
shown). Sections that need Penn Treebank are regenerated only when RNNLM_DOCS_FULL=1
(`make docs-check`, `make docs`) and the corpus exists; otherwise they keep their text.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cog

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
QUALITY = ("ptb-rnn", "ptb-lstm", "ptb-gru", "shakespeare-char", "ptb-lstm2")   # the Makefile's reference configs

_workspace: Path | None = None
_outputs: dict[str, str] = {}


# --------------------------------------------------------------------------- running commands

def workspace() -> Path:
    """A scratch copy of configs/ and corpora/ (made once per process), beside a link to ../shared."""
    global _workspace
    if _workspace is None:
        top = Path(tempfile.mkdtemp(prefix="rnnlm-docs-"))
        atexit.register(shutil.rmtree, top, True)
        _workspace = top / "repo"
        _workspace.mkdir()
        shutil.copytree(ROOT / "configs", _workspace / "configs")
        shutil.copytree(ROOT / "corpora", _workspace / "corpora")
        if SHARED.is_dir():
            (top / "shared").symlink_to(SHARED)
    return _workspace


def run(command: str) -> str:
    """The stdout of a shell command run in the workspace (once per process), with the workspace's
    absolute path taken out so the text is the same on every machine."""
    if command not in _outputs:
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        done = subprocess.run(["bash", "-c", command], cwd=workspace(), env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"docs: `{command}` exited {done.returncode}: {done.stderr.strip()[-2000:]}")
        _outputs[command] = done.stdout.replace(f"{workspace()}{os.sep}", "").replace(str(workspace()), ".")
    return _outputs[command]


def fenced(text: str, lang: str = "") -> None:
    cog.outl(f"```{lang}")
    cog.outl(text.rstrip("\n"))
    cog.outl("```")


def keep_previous(why: str) -> None:
    """Leave a section as it is (its source is not here); say why on stderr."""
    print(f"docgen: kept a section unchanged: {why}", file=sys.stderr)
    cog.out(cog.previous)


def full_run() -> bool:
    return os.environ.get("RNNLM_DOCS_FULL") == "1"


# --------------------------------------------------------------------------- gradcheck

def gradcheck_excerpt(head: int = 3, tail: int = 2) -> None:
    """`rnnlm gradcheck --all`: the header, the first and last rows, and the verdict."""
    lines = run("rnnlm gradcheck --all").rstrip("\n").split("\n")
    rows, verdict = lines[1:-1], lines[-1]
    fenced("\n".join([lines[0]] + rows[:head] + ["..."] + rows[-tail:] + [verdict]))


# --------------------------------------------------------------------------- diagnostics

AGREEMENT = ("rnnlm diagnose-gradients --config configs/diagnose/tanh.yaml --config configs/diagnose/irnn.yaml "
             "--config configs/diagnose/gru.yaml --config configs/diagnose/lstm.yaml")
PTB = AGREEMENT.replace("configs/diagnose/", "configs/diagnose/ptb-")
TRAINED = "runs/diagnose/tiny-trained"


def diagnosis(command: str) -> dict:
    """The JSON of a diagnose-gradients command (run once), after preparing the agreement corpus
    (diagnose-gradients only reads prepared data)."""
    run("rnnlm preprocess --config configs/tiny.yaml --quiet")
    return json.loads(run(f"{command} --format json --quiet"))


def _text_parts(result: dict) -> list[str]:
    """The command's text report, in its paragraphs: data line, summary, chart, side-by-side
    lags, then one section per model. It is what the command prints: the same renderer the
    command uses (render.report.diagnostics_text) applied to its JSON."""
    from rnnlm_cli.render.report import diagnostics_text
    return diagnostics_text(result).split("\n\n")


def diagnose_readme() -> None:
    """README: the agreement corpus's summary table and lag chart."""
    parts = _text_parts(diagnosis(AGREEMENT))
    fenced("\n\n".join(parts[1:3]))


def diagnose_start(corpus: str = "agreement") -> None:
    """docs/diagnostics.md: the start of the output, up to the side-by-side lag table."""
    if corpus == "ptb":
        if not _ptb_available():
            return keep_previous("Penn Treebank part (needs RNNLM_DOCS_FULL=1 and ../shared/corpora/ptb)")
        parts = _text_parts(_ptb_diagnosis())
    else:
        parts = _text_parts(diagnosis(AGREEMENT))
    fenced("\n\n".join(parts[:4]))


def diagnose_summary(corpus: str = "agreement") -> None:
    """docs/diagnostics.md: one Markdown row per model, from the JSON."""
    from rnnlm_cli.render.docs import diagnostics_summary
    if corpus == "ptb":
        if not _ptb_available():
            return keep_previous("Penn Treebank table (needs RNNLM_DOCS_FULL=1 and ../shared/corpora/ptb)")
        cog.outl(diagnostics_summary(_ptb_diagnosis()["models"]))
    else:
        cog.outl(diagnostics_summary(diagnosis(AGREEMENT)["models"]))


def _ptb_available() -> bool:
    return full_run() and (SHARED / "corpora" / "ptb" / "ptb.train.txt").is_file()


def _ptb_diagnosis() -> dict:
    run("rnnlm preprocess --config configs/diagnose/ptb-tanh.yaml --quiet")
    return diagnosis(PTB)


DEPTH = ("rnnlm diagnose-gradients --config configs/diagnose/ptb-tanh3.yaml "
         "--config configs/diagnose/ptb-lstm3.yaml")


def _depth_diagnosis() -> dict:
    run("rnnlm preprocess --config configs/diagnose/ptb-tanh.yaml --quiet")      # the same prepared folder
    return diagnosis(DEPTH)


def depth_heatmaps() -> None:
    """The per-layer part of the fresh 3-layer models' reports: per-layer table, text heat map
    of the depth x time matrix and its numbers (what `make diagnose` prints)."""
    if not _ptb_available():
        return keep_previous("3-layer heat maps on Penn Treebank (needs RNNLM_DOCS_FULL=1 and ../shared/corpora/ptb)")
    sections = []
    for part in _text_parts(_depth_diagnosis()):
        if part.startswith("== "):
            lines = part.split("\n")
            start = next(i for i, line in enumerate(lines) if line.startswith("per layer, top first"))
            sections.append("\n".join([lines[0]] + lines[start:]))
    fenced("\n\n".join(sections))


def depth_text() -> None:
    """The two sentences on what the 3-layer models' depth x time matrices show."""
    from rnnlm_cli.render.docs import depth_sentences
    if not _ptb_available():
        return keep_previous("3-layer sentences on Penn Treebank (needs RNNLM_DOCS_FULL=1 and ../shared/corpora/ptb)")
    cog.outl(depth_sentences(_depth_diagnosis()["models"]))


def _trained() -> dict:
    run(f"rnnlm train --config configs/tiny.yaml --set train.out={TRAINED} --force --quiet")
    return diagnosis(f"rnnlm diagnose-gradients --checkpoint {TRAINED}/best.npz --config configs/diagnose/tanh.yaml")


def trained_sentence() -> None:
    """The sentence that introduces the trained model, with its validation perplexity."""
    _trained()
    summary = json.loads((workspace() / TRAINED / "summary.json").read_text(encoding="utf-8"))
    epochs = summary["epochs"]
    cog.outl(f"The demo's tanh RNN (`tiny.yaml`: the sizes and initialisation scheme of `tanh.yaml`) after "
             f"{epochs} epochs\n(validation perplexity {summary['valid_ppl']:.1f}), measured on the same sequences "
             f"as the fresh `tanh` above:")


def trained_summary() -> None:
    """The fresh tanh RNN against the trained one, one Markdown row each."""
    from rnnlm_cli.render.docs import diagnostics_summary
    fresh = diagnosis(AGREEMENT)["models"][0]
    trained = _trained()["models"][0]
    epochs = json.loads((workspace() / TRAINED / "summary.json").read_text(encoding="utf-8"))["epochs"]
    cog.outl(diagnostics_summary([fresh, trained], ["tanh, fresh", f"tanh, trained {epochs} epochs (best.npz)"]))


def trained_jacobians() -> None:
    """The trained model's step Jacobians, their products, the bound and the saturation."""
    detail = _text_parts(_trained())[-1].split("\n")
    start = next(i for i, line in enumerate(detail) if line.startswith("step Jacobian"))
    end = next(i for i, line in enumerate(detail) if line.startswith("saturation:"))
    fenced("\n".join(detail[start:end + 1]))


# --------------------------------------------------------------------------- results and performance

def _records() -> list[dict]:
    return [json.loads((ROOT / "results" / f"{name}.json").read_text(encoding="utf-8")) for name in QUALITY
            if (ROOT / "results" / f"{name}.json").is_file()]


def results_table() -> None:
    """README: the results table, as `rnnlm results results/*.json` prints it."""
    from rnnlm_cli.render.results import ANCHORS
    from rnnlm_cli.render.results import results_table as render
    cog.outl(render(_records(), ANCHORS))


def _lead_sentence(records: list[dict]) -> str:
    """After which epochs the second model (two layers) had the lower validation perplexity."""
    one, two = ({point["epoch"]: point["ppl"] for point in r["curve"]} for r in records)   # the last point per epoch
    epochs = sorted(one.keys() & two.keys())
    ahead = [epoch for epoch in epochs if two[epoch] < one[epoch]]
    if not ahead:
        return "The two-layer model is behind after every epoch."
    if ahead == epochs:
        return "The two-layer model is ahead after every epoch."
    if ahead == epochs[epochs.index(ahead[0]):]:
        behind = f"epoch {epochs[0]}" if ahead[0] == epochs[1] else f"epochs {epochs[0]}-{ahead[0] - 1}"
        return f"The two-layer model is behind after {behind} and ahead from epoch {ahead[0]} on."
    return f"The two-layer model is ahead after epoch(s) {', '.join(map(str, ahead))}."


def depth_table(one_layer: str, two_layers: str) -> None:
    """README: one layer against two, as `rnnlm results` prints the two records (results/NAME.json)."""
    from rnnlm_cli.render.results import results_table as render
    from rnnlm_cli.render.results import curves_table

    paths = [ROOT / "results" / f"{name}.json" for name in (one_layer, two_layers)]
    if not all(p.is_file() for p in paths):
        keep_previous(f"{' and '.join(str(p.relative_to(ROOT)) for p in paths)} are not both there")
        return
    records = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    for record, layers in zip(records, ("1 layer", "2 layers")):     # both are named after configs/ptb-lstm2.yaml
        record["name"] = f"{record['name']}, {layers}"
    cog.outl(render(records))
    cog.outl()
    one, two = (r["summary"] for r in records)
    epochs = {one["epochs"], two["epochs"]}
    better = "lower" if two["test_ppl"] < one["test_ppl"] else "higher"
    line = (f"After {' / '.join(str(e) for e in sorted(epochs))} epoch(s) each, two layers reach test perplexity "
            f"{two['test_ppl']:.1f} against one layer's {one['test_ppl']:.1f} ({better} by "
            f"{abs(round(two['test_ppl'], 1) - round(one['test_ppl'], 1)):.1f}; "
            f"validation {two['valid_ppl']:.1f} against {one['valid_ppl']:.1f})")
    if one.get("dynamic") and two.get("dynamic"):
        line += (f"; with dynamic evaluation, test {two['dynamic']['test_ppl']:.1f} against "
                 f"{one['dynamic']['test_ppl']:.1f}")
    if one.get("params") and two.get("params"):
        line += f", with {two['params'] / 1e6:.1f}M parameters against {one['params'] / 1e6:.1f}M"
    cog.outl(line + f". {_lead_sentence(records)} Validation perplexity after each epoch:")
    cog.outl()
    fenced(curves_table(records))


def _ptb_unigram_test_ppl() -> float:
    """The unigram model of PTB's training split, scored on its test split, tokenised as ptb-lstm2 reads them."""
    from rnnlm_cli.config import load_config
    from rnnlm_cli.data.corpus import read_text, tokenize
    from rnnlm_cli.render.compare import unigram_perplexity

    data = load_config(str(ROOT / "configs" / "ptb-lstm2.yaml")).data
    return unigram_perplexity(tokenize(read_text(data.train), data), tokenize(read_text(data.test), data))


def ablation_table() -> None:
    """README: the ablation over seeds (results/ablation-seedS.json, `make ablation`), its runs stuck
    at the unigram model's perplexity marked (needs Penn Treebank for that reference)."""
    from rnnlm_cli.render.compare import STUCK_FRACTION, ablation_seed_rows, ablation_seeds_markdown, changed_text

    results = {int(p.stem.removeprefix("ablation-seed")): json.loads(p.read_text(encoding="utf-8"))
               for p in (ROOT / "results").glob("ablation-seed*.json")}     # ablation_seed_rows orders the seeds
    if not results or not _ptb_available():
        return keep_previous("results/ablation-seed*.json or ../shared/corpora/ptb (with RNNLM_DOCS_FULL=1) is not there")
    unigram = _ptb_unigram_test_ppl()
    cog.outl(ablation_seeds_markdown(results, unigram))
    cog.outl()
    cog.outl(f"† stuck: test perplexity above {STUCK_FRACTION:.0%} of the unigram model's ({unigram:.1f}: every word "
             "predicted by its frequency in the training split, whatever came before).")
    lower, higher, mixed, same = ("lower in every seed (the model did better without it within this budget)",
                                  "higher in every seed (it helped)", "lower in some seeds and higher in others",
                                  "identical to the base's in every seed, to the last digit (the change never took "
                                  "effect within this budget)")
    groups: dict[str, list[str]] = {lower: [], higher: [], mixed: [], same: []}
    base, *rows = ablation_seed_rows(results)
    for row in rows:
        if row["change_range"] is None:
            continue
        low, high = row["change_range"]
        kind = same if row["test_ppl"] == base["test_ppl"] else lower if high < 0 else higher if low > 0 else mixed
        groups[kind].append(changed_text(row["changed"]))
    cog.outl()
    cog.outl("Removing a part made the test perplexity:")
    cog.outl()
    for kind, named in groups.items():
        if named:
            cog.outl(f"- {kind}: {'; '.join(named)}")


def results_curves() -> None:
    """README: validation perplexity against wall time, as `rnnlm results` prints it."""
    from rnnlm_cli.render.results import curves_table
    fenced(curves_table(_records()))


def longrange_result() -> dict:
    return json.loads((ROOT / "results" / "longrange.json").read_text(encoding="utf-8"))


def longrange_tables() -> None:
    """README: the long-range study's per-model table and the k2 comparison, from results/longrange.json."""
    from rnnlm_cli.render.longrange import readme_section
    cog.outl(readme_section(longrange_result()))


def longrange_facts() -> None:
    """README: the figures the study's findings rest on, computed from results/longrange.json."""
    r = longrange_result()
    runs = [x for x in r["runs"] if not x.get("failed")]
    copy = [x for x in runs if x["task"] == "copy"]
    agr = [x for x in runs if x["task"] == "agreement"]
    wall = sum(x["wall_time_s"] for x in r["runs"])
    failed = [x["key"] for x in r["runs"] if x.get("failed")]
    lines = [f"- {len(r['runs'])} runs, {wall / 60:.0f} process-minutes in all (each run's `wall_time_s`)"
             + (f"; {len(failed)} diverged ({', '.join(failed)})" if failed else "") + "."]
    if copy:
        best = max(copy, key=lambda x: x["accuracy"])
        a = r["study"]["copy"]["alphabet"]
        loss = [x["scores"]["loss_per_recalled_symbol"] for x in copy]
        lines.append(f"- copy: recall accuracy {min(x['accuracy'] for x in copy):.2f}-"
                     f"{max(x['accuracy'] for x in copy):.2f} (chance 1/{a} = {1 / a:.3f}), the best {best['key']}; "
                     f"loss per recalled symbol {min(loss):.2f}-{max(loss):.2f} nats against the memoryless "
                     f"log({a}) = {__import__('math').log(a):.2f}.")
    for d in sorted({x["length"] for x in agr}):
        acc = [x["accuracy"] for x in agr if x["length"] == d]
        solved = sum(x["solved"] for x in agr if x["length"] == d)
        lines.append(f"- agreement at d = {d}: accuracy {min(acc):.2f}-{max(acc):.2f}, {solved} of {len(acc)} "
                     f"runs solved.")
    by_cell = {}
    for row in r["summary"]:
        by_cell.setdefault(row["model"], []).append(row)
    parts = [f"{m} {rows[0]['horizon_init']} -> "
             + "/".join("-" if x["horizon_trained"] is None else str(x["horizon_trained"]) for x in rows)
             for m, rows in by_cell.items()]
    lines.append(f"- gradient horizon on the longest copy delay (window {r['summary'][0]['horizon_window']}), "
                 f"at initialisation -> after training per truncation ({', '.join(r['study']['truncations'])}): "
                 + "; ".join(parts) + ".")
    cog.outl("\n".join(lines))


K2_PTB = ("ptb-lstm-k2-fixed", "ptb-lstm-k2-auto")


def k2_ptb_table() -> None:
    """README: fixed k2 = k1 against k2 auto on Penn Treebank, from their result records."""
    from rnnlm_cli.render.longrange import k2_records_table
    records = [json.loads((ROOT / "results" / f"{n}.json").read_text(encoding="utf-8")) for n in K2_PTB]
    cog.outl(k2_records_table(records))
    fixed, auto = (r["summary"] for r in records)
    cog.outl("")
    cog.outl(f"The adaptive run trained at {auto['tokens_per_sec'] / fixed['tokens_per_sec']:.2f}x the fixed run's "
             f"tokens/s; its test perplexity differs by {auto['test_ppl'] - fixed['test_ppl']:+.1f}.")


def bench_report(name: str = "bench.json") -> dict:
    return json.loads((ROOT / "results" / name).read_text(encoding="utf-8"))


def bench_table() -> None:
    """README: the throughput table from results/bench.json."""
    from rnnlm_cli.render.docs import bench_table as render
    cog.outl(render(bench_report()))


def bench_conditions() -> None:
    """README and docs/performance.md: the sgemm rate, load and other processes of the bench run."""
    from rnnlm_cli.render.docs import bench_conditions as render
    cog.outl(render(bench_report()))


def bench_targets() -> None:
    """README and docs/performance.md: the stacked-layer targets of the bench run, met or missed."""
    from rnnlm_cli.render.docs import bench_targets as render
    cog.outl(render(bench_report()))


def bench_quiet_bounds(name: str = "bench-650-quiet.json") -> None:
    """README: the stacked-layer speed targets on a quiet machine against the matrix-multiply bound."""
    from rnnlm_cli.render.docs import bench_bound_check, bench_conditions
    report = bench_report(name)
    cog.outl(f"Conditions: {bench_conditions(report)}")
    cog.outl()
    cog.outl(bench_bound_check(report))


def bench_peers() -> None:
    """README: the peers' times and how many times faster the time-to-quality run was."""
    from rnnlm_cli.render.docs import bench_speedups
    report = bench_report()
    ttq = next(t for t in report["time_to_quality"] if t.get("seconds"))
    peers, speedups = ttq["peers"], bench_speedups(report)
    mikolov, torch = peers["mikolov_rnnlm_0.3e"], peers["pytorch_cpu_tanh"]
    cog.outl(f"The peers need {mikolov['seconds']:.0f} s for the same tokens (Mikolov's toolkit at its "
             f"{mikolov['tokens_per_s']:,.0f} words/s) and\n{torch['seconds']:.0f} s (PyTorch's tanh step, "
             f"{torch['tokens_per_s']:,.0f} tokens/s on two threads, measured in the same run), so the run is\n"
             f"{speedups['mikolov_rnnlm_0.3e']:.1f}x and {speedups['pytorch_cpu_tanh']:.1f}x faster.")


def bench_printed(name: str = "bench.json") -> None:
    """docs/performance.md: results/<name> (a bench report) through the bench's own table renderer."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench
    fenced(bench.render_table(bench_report(name)))


# --------------------------------------------------------------------------- configuration and CLI

def config_sections() -> None:
    """README: the configuration's sections and keys, from the schema."""
    from rnnlm_cli.render.docs import config_sections as render
    cog.outl(render())


def _commands(group, path):
    import click
    yield path, group
    if isinstance(group, click.Group):
        for name in sorted(group.commands):
            yield from _commands(group.commands[name], path + [name])


def cli_reference() -> None:
    """docs/cli.md: every command's --help, as Click prints it at a width of 100 columns."""
    import click
    from rnnlm_cli.cli import cli
    for path, command in _commands(cli, ["rnnlm"]):
        ctx = None
        for i, name in enumerate(path):
            target = cli if i == 0 else ctx.command.commands[name]
            ctx = click.Context(target, info_name=name, parent=ctx, terminal_width=100, max_content_width=100)
        title = " ".join(path)
        cog.outl(f"## {title}\n")
        cog.outl(f"```\n$ {title} --help\n{command.get_help(ctx)}\n```\n")


def package_layout() -> None:
    """The package's modules, one line each, from their docstrings."""
    from rnnlm_cli.render.docs import package_layout as layout
    fenced(layout(ROOT / "rnnlm_cli"))


# --------------------------------------------------------------------------- output reference

def output_reference() -> None:
    """docs/reference.md: every output's fields, from the schema (rnnlm_cli/render/reference.py)."""
    from rnnlm_cli.render.reference import render_reference
    cog.outl(render_reference())
