"""The autograd computation graph of one forward pass (the notes' 计算图 section).

PyTorch records the graph *dynamically* while the forward runs: every result of an operation on
tensors that require grad is a **non-leaf** tensor carrying a ``grad_fn`` (e.g.
``ConvolutionBackward0``) that points to the ``grad_fn`` of its inputs. **Leaf** tensors are the
ones the user created: parameters and inputs. ``backward()`` walks this DAG from the output in
reverse and accumulates gradients into the leaves' ``.grad`` (through ``AccumulateGrad``
nodes); non-leaf gradients are freed as soon as they are used unless ``retain_grad()`` was
called, which is why only parameters (and inputs with ``requires_grad``) have ``.grad`` after
a step.

:func:`autograd_graph` walks ``output.grad_fn.next_functions`` into a plain node/edge list;
:func:`write_graph` writes it as Graphviz ``.dot`` text and renders SVG/PNG when the ``dot``
program is installed.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liandan.errors import LiandanError

FORMATS = (".dot", ".svg", ".png")


@dataclass
class Node:
    id: str
    kind: str  # "input" | "parameter" | "op" (the non-leaf tensor an op produced)
    label: str
    leaf: bool
    grad_fn: str | None = None
    shape: list[int] | None = None
    requires_grad: bool = True
    grad_retained: bool = False  # .grad is populated after backward()
    output: bool = False


@dataclass
class Graph:
    model: str
    input_shape: list[int]
    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)  # (from, to): data flows forward

    def to_dict(self) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for n in self.nodes:
            kinds[n.kind] = kinds.get(n.kind, 0) + 1
        return {"model": self.model, "input_shape": self.input_shape, "counts": kinds,
                "nodes": [asdict(n) for n in self.nodes], "edges": [list(e) for e in self.edges]}

    def to_dot(self) -> str:
        style = {
            "input": 'shape=box, style="filled", fillcolor="#cfe2ff"',
            "parameter": 'shape=box, style="filled", fillcolor="#fff3cd"',
            "op": 'shape=ellipse, style="filled", fillcolor="#e9ecef"',
        }
        lines = [f"// autograd graph of {self.model} on input {tuple(self.input_shape)}",
                 "// boxes: leaf tensors (blue: input, yellow: parameters); ellipses: non-leaf results",
                 "digraph autograd {", '  rankdir=TB; node [fontname="Helvetica", fontsize=10];']
        for n in self.nodes:
            text = n.label + (f"\\n{tuple(n.shape)}" if n.shape is not None else "")
            extra = ', penwidth=2, color="#d63384"' if n.output else ""
            lines.append(f'  "{n.id}" [label="{_esc(text)}", {style[n.kind]}{extra}];')
        lines += [f'  "{a}" -> "{b}";' for a, b in self.edges]
        lines.append("}")
        return "\n".join(lines) + "\n"


def _esc(s: str) -> str:
    return s.replace('"', '\\"')


def autograd_graph(
    model_or_name: nn.Module | str,
    input_shape: Sequence[int] | None = None,
    *,
    backward: bool = True,
    device: str = "cpu",
    **model_options: Any,
) -> Graph:
    """Run one forward (eval mode) and return its autograd DAG.

    The input gets ``requires_grad=True`` so it appears as a leaf. With ``backward=True`` the
    sum of the outputs is back-propagated and each node's ``grad_retained`` says whether its
    tensor holds a ``.grad`` afterwards (leaves yes, non-leaf results no).
    """
    from liandan.inspection.summary import build_model

    if isinstance(model_or_name, str):
        label = model_or_name
        model, shape = build_model(model_or_name, input_shape, model_options, device)
    else:
        if input_shape is None:
            raise LiandanError("the graph of a module needs input_shape (batch included)")
        model, label, shape = model_or_name, type(model_or_name).__name__, tuple(int(s) for s in input_shape)
    x = torch.randn(shape, device=device, requires_grad=True)
    was_training = model.training
    model.eval()
    try:
        out = model(x)
    except RuntimeError as e:
        raise LiandanError(f"forward of {label} on input {shape} failed: {str(e).splitlines()[0]}") from None
    finally:
        model.train(was_training)
    outputs = [o for o in (out if isinstance(out, (tuple, list)) else [out])
               if isinstance(o, torch.Tensor) and o.grad_fn is not None]
    if not outputs:
        raise LiandanError(f"{label}: the output does not depend on anything that requires grad")

    graph = Graph(label, list(shape))
    names = {id(p): n for n, p in model.named_parameters()}
    leaves: dict[str, torch.Tensor] = {}
    seen: dict[int, tuple[str, Any]] = {}  # id(fn) -> (node id, fn); holding fn keeps its id unique
    todo: list[Any] = []

    def node_id(fn: Any) -> str:
        """The node of autograd function ``fn``, created (and queued for expansion) on first sight."""
        if id(fn) in seen:
            return seen[id(fn)][0]
        if type(fn).__name__ == "AccumulateGrad":  # a leaf tensor that requires grad
            t = fn.variable
            kind = "input" if t is x else "parameter"
            nid = "input" if t is x else f"param:{names.get(id(t), f'tensor{len(leaves)}')}"
            graph.nodes.append(Node(nid, kind, nid.removeprefix("param:"), leaf=True, shape=list(t.shape)))
            leaves[nid] = t
        else:
            nid = f"op{len(seen)}"
            graph.nodes.append(Node(nid, "op", type(fn).__name__, leaf=False, grad_fn=type(fn).__name__))
        seen[id(fn)] = (nid, fn)
        todo.append(fn)
        return nid

    out_ids = {node_id(o.grad_fn) for o in outputs}
    while todo:  # iterative: DenseNet-sized graphs are deeper than Python's recursion limit
        fn = todo.pop()
        for nxt, _ in fn.next_functions:
            if nxt is not None:  # None: an input that does not require grad (e.g. BN running stats)
                graph.edges.append((node_id(nxt), seen[id(fn)][0]))
    for n in graph.nodes:
        n.output = n.id in out_ids
    if backward:
        sum(o.float().sum() for o in outputs).backward()
        for n in graph.nodes:
            # Non-leaf results never keep .grad unless retain_grad() was called on them.
            n.grad_retained = n.leaf and leaves[n.id].grad is not None
    return graph


def write_graph(graph: Graph, out: str | Path) -> dict[str, Any]:
    """Write ``graph`` to ``out`` (.dot, .svg or .png). The .dot text is always written (beside
    an image, with the same stem); images are rendered by Graphviz ``dot`` when it is on PATH.

    Returns ``{"dot": path, "rendered": path or None, "note": str or None}``.
    """
    out = Path(out)
    if out.suffix not in FORMATS:
        raise LiandanError(f"graph output must end in {', '.join(FORMATS)}; got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    dot_path = out.with_suffix(".dot")
    dot_path.write_text(graph.to_dot())
    if out.suffix == ".dot":
        return {"dot": str(dot_path), "rendered": None, "note": None}
    exe = shutil.which("dot")
    if exe is None:
        return {"dot": str(dot_path), "rendered": None,
                "note": f"Graphviz 'dot' is not installed: wrote {dot_path} but not {out}; install graphviz "
                        f"(e.g. apt install graphviz) or run: dot -T{out.suffix[1:]} {dot_path} -o {out}"}
    res = subprocess.run([exe, f"-T{out.suffix[1:]}", str(dot_path), "-o", str(out)],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise LiandanError(f"graphviz dot failed on {dot_path}: {res.stderr.strip().splitlines()[-1:]}")
    return {"dot": str(dot_path), "rendered": str(out), "note": None}
