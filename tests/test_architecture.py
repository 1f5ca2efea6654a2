"""The package's architecture, checked from its source: floors, arrows that only point down,
no import cycle, a library that never talks to the terminal.

Every `import` of an rnnlm_cli module anywhere in a file counts (also inside functions), so a
lazy import cannot hide an upward arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rnnlm_cli"

# lowest floor first; a module may import modules of its own floor or of lower floors only
FLOORS = [
    ("base", ["rnnlm_cli.errors", "rnnlm_cli.fileio", "rnnlm_cli.paths", "rnnlm_cli.progress", "rnnlm_cli.machine",
              "rnnlm_cli.values"]),
    ("network", ["rnnlm_cli.nn"]),
    ("one training step", ["rnnlm_cli.train.step"]),
    ("configuration", ["rnnlm_cli.config", "rnnlm_cli.grid"]),
    ("data", ["rnnlm_cli.data"]),
    ("training parts", ["rnnlm_cli.train.optim", "rnnlm_cli.train.checkpoint",
                        "rnnlm_cli.train.lock", "rnnlm_cli.train.schedule", "rnnlm_cli.train.metrics"]),
    ("reading runs", ["rnnlm_cli.runs", "rnnlm_cli.evaluate", "rnnlm_cli.sample"]),
    ("trainer", ["rnnlm_cli.train.trainer", "rnnlm_cli.train"]),
    ("analysis", ["rnnlm_cli.analysis"]),
    ("orchestration", ["rnnlm_cli.studies"]),    # sweeps, tuning, the long-range study: they launch trainings
    ("rendering", ["rnnlm_cli.render"]),
    ("command line", ["rnnlm_cli.cli", "rnnlm_cli.__main__"]),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    name = ".".join(parts)
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """The rnnlm_cli modules `name` imports (a `from pkg import mod` counts as pkg.mod)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rnnlm_cli":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "rnnlm_cli")
    found.discard(name)
    found.discard("rnnlm_cli")          # the version string
    return found


def floor_of(name: str) -> int:
    """The floor of a module: the longest matching prefix wins (train.step before train)."""
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    return best


def test_every_module_has_a_floor():
    homeless = [m for m in MODULES if m != "rnnlm_cli" and floor_of(m) is None]
    assert not homeless, f"modules on no floor: {homeless}"


def test_arrows_only_point_down():
    upward = []
    for name in MODULES:
        if name == "rnnlm_cli":
            continue
        for dep in imports_of(name):
            if dep in MODULES and floor_of(dep) > floor_of(name):
                upward.append(f"{name} ({FLOORS[floor_of(name)][0]}) imports {dep} ({FLOORS[floor_of(dep)][0]})")
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    graph = {m: {d for d in imports_of(m) if d in MODULES} for m in MODULES}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node, path):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle.extend(path[path.index(dep):] + [dep] if dep in path else [node, dep])
                return True
            if dep not in state and visit(dep, path + [dep]):
                return True
        state[node] = 2
        return False

    for m in sorted(graph):
        if m not in state and visit(m, [m]):
            break
    assert not cycle, " -> ".join(cycle)


LIBRARY = [m for m in MODULES if not (m == "rnnlm_cli.cli" or m.startswith("rnnlm_cli.cli.") or m == "rnnlm_cli.__main__")]


@pytest.mark.parametrize("name", LIBRARY)
def test_library_never_talks_to_the_terminal(name):
    """Below the command line nothing imports click or tqdm, prints, exits or asks about terminals."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"imports {m}" for m in mods if m.split(".")[0] in ("click", "tqdm", "argparse")]
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in ("print", "exit", "input"):
                found.append(f"calls {f.id}()")
            if isinstance(f, ast.Attribute) and f.attr in ("isatty", "exit") and not (
                    isinstance(f.value, ast.Name) and f.value.id == "os"):
                found.append(f"calls .{f.attr}()")
    assert not found, f"{name}: {', '.join(found)}"


READERS = ["rnnlm_cli.runs", "rnnlm_cli.evaluate", "rnnlm_cli.sample", "rnnlm_cli.analysis.probe",
           "rnnlm_cli.analysis.diagnostics", "rnnlm_cli.analysis.gradcheck", "rnnlm_cli.cli.read_cmds",
           "rnnlm_cli.cli.probe_cmd", "rnnlm_cli.cli.diagnose_cmd"]


@pytest.mark.parametrize("name", READERS)
def test_checkpoint_readers_do_not_import_the_trainer(name):
    """Commands that only read a checkpoint never load the training loop, not even indirectly."""
    seen, todo = set(), [name]
    while todo:
        m = todo.pop()
        if m in seen or m not in MODULES:
            continue
        seen.add(m)
        todo.extend(imports_of(m))
    assert "rnnlm_cli.train.trainer" not in seen
