"""Imports flow one way: base → core → training → pillars → front-ends (the CLI, the agents'
servers, the ``liandan`` facade). Checked on the source with ``ast``, lazy imports inside
functions and module names written as strings included; no module imports a layer above its
own. Pillars reach the core through registries filled from entry points, never the other way.

There are no exceptions: the doctor's callback and the report reach the trainer through the
``CALLBACKS`` and ``RUN_HOOKS`` registries, the run directory's layout is the base layer's
(:mod:`liandan.runs`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import liandan

ROOT = Path(liandan.__file__).parent

LAYERS: dict[str, int] = {
    # base: no torch-level knowledge of anything above
    "errors": 0, "registry": 0, "recipe": 0, "recipe_doc": 0, "paths": 0, "runs": 0,
    # core: data, models, losses, optimizers and weight files
    "data": 1, "models": 1, "losses": 1, "optim": 1, "serialize": 1, "api_models": 1, "weights": 1,
    "adapters": 1,  # PEFT adapters wrap any Linear: a model-level tool, not a language-model pillar
    # training: the trainer, tasks, callbacks, run directories
    "training": 2,
    # pillars: what is built on trained models
    "doctor": 3, "inspection": 3, "evaluation": 3, "report": 3, "compress": 3, "export": 3, "llm": 3,
    "generation": 3, "prediction": 3,
    # front-ends over the public API
    "agents": 4, "cli": 4, "__init__": 4, "__main__": 4,
}



def _imports(path: Path) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, node.lineno))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("liandan."):
            out.append((node.value, node.lineno))  # importlib.import_module("liandan.x") and the like
    return out


def upward_edges() -> set[tuple[str, str]]:
    edges = set()
    for f in sorted(ROOT.rglob("*.py")):
        rel = f.relative_to(ROOT).with_suffix("").as_posix()
        top = rel.split("/")[0]
        for module, _ in _imports(f):
            if module != "liandan" and not module.startswith("liandan."):
                continue
            target = "__init__" if module == "liandan" else module.split(".")[1]
            if target not in LAYERS:  # a string such as "liandan.x" that names no package
                continue
            if target != top and LAYERS[target] > LAYERS[top]:
                edges.add((rel, module))
    return edges


def test_every_package_has_a_layer() -> None:
    tops = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()
            if (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert tops <= set(LAYERS), f"give these a layer: {sorted(tops - set(LAYERS))}"


def test_imports_flow_one_way() -> None:
    edges = upward_edges()
    assert not edges, "imports pointing up a layer:\n" + "\n".join(f"  {a} -> {b}" for a, b in sorted(edges))


def test_no_cycle_between_packages() -> None:
    """Module-level (eager) imports between top-level packages form no cycle."""
    graph: dict[str, set[str]] = {}
    for f in sorted(ROOT.rglob("*.py")):
        top = f.relative_to(ROOT).with_suffix("").as_posix().split("/")[0]
        tree = ast.parse(f.read_text())
        for node in tree.body:  # module level only: lazy imports are what break cycles
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                    else [])
            for m in mods:
                if m.startswith("liandan."):
                    t = m.split(".")[1]
                    if t != top:
                        graph.setdefault(top, set()).add(t)
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        state[n] = 1
        for m in sorted(graph.get(n, ())):
            assert state.get(m) != 1, "import cycle: " + " -> ".join([*path, n, m])
            if m not in state:
                visit(m, [*path, n])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [])
