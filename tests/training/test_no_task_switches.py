"""A task owns its batch: outside ``training/tasks/`` no code compares a task's name.

Code that needs to know what a run's task does asks the task (``build_task(info, ...)`` or
``task_class(info.task)``: ``is_classification``, ``headline_metric``, ``predictor``,
``render_examples``, ``export_output``, ``target_kind``, ...), so a new task is one file and every
pillar reads its answers. This scans the source, as ``tests/core/test_layers.py`` does, for a
``task ==`` / ``task !=`` / ``task in (...)`` / ``task not in`` comparison, in text and in the
syntax tree (``task``, ``x.task``, ``x["task"]`` or ``x.get("task")`` compared with string
literals). No exceptions.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import liandan

ROOT = Path(liandan.__file__).parent
ALLOWED = ROOT / "training" / "tasks"  # the task registry: each task knows its own name
TEXT = re.compile(r"\btask\s*(==|!=)|\btask\s+(not\s+)?in\s*[(\[{]|\btask\s+not\s+in\b")
OPS = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)


def _is_task(node: ast.AST) -> bool:
    """``task``, ``x.task``, ``x["task"]`` or ``x.get("task")``."""
    if isinstance(node, ast.Name | ast.Attribute):
        return getattr(node, "id", getattr(node, "attr", None)) == "task"
    key = node.slice if isinstance(node, ast.Subscript) else (
        node.args[0] if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "get" and node.args else None)
    return isinstance(key, ast.Constant) and key.value == "task"


def _is_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    return isinstance(node, ast.Tuple | ast.List | ast.Set) and bool(node.elts) and all(map(_is_literal, node.elts))


def switches(src: str) -> list[int]:
    """Lines of ``src`` holding a task-name comparison."""
    hits = {n for n, line in enumerate(src.splitlines(), 1) if TEXT.search(line.split("#")[0])}
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Compare) and any(isinstance(op, OPS) for op in node.ops):
            sides = [node.left, *node.comparators]
            if any(map(_is_task, sides)) and any(map(_is_literal, sides)):
                hits.add(node.lineno)
    return sorted(hits)


def test_scanner_sees_every_form() -> None:
    src = ('a = info.task == "classify"\nb = task in ("gan", "diffusion")\nc = task != "lm"\n'
           'd = run.info.task not in SERVED\ne = "regress" == view.task\nf = task_class(info.task).is_regression\n'
           'g = facts.get("task") == "classify"\nh = d["task"] in ("lm", "mlm")\n')
    assert switches(src) == [1, 2, 3, 4, 5, 7, 8]


def test_no_task_name_switches_outside_the_task_registry() -> None:
    found = []
    for f in sorted(ROOT.rglob("*.py")):
        if ALLOWED not in f.parents:
            lines = f.read_text().splitlines()
            found += [f"{f.relative_to(ROOT).as_posix()}:{n}: {lines[n - 1].strip()}" for n in switches(f.read_text())]
    assert not found, ("compare no task names outside training/tasks/: ask the task "
                       "(task_class(info.task).is_classification, .headline_metric, ...)\n  " + "\n  ".join(found))
