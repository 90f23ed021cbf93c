"""The autograd graph: leaves vs non-leaf results, .grad retention, .dot/.svg output, CLI."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from torch import nn

from liandan.errors import LiandanError
from liandan.inspection import autograd_graph, write_graph
from liandan.registry import MODELS, Entry

IMAGE = [e for e in MODELS.entries() if e.extra.get("input_kind", "image") == "image"]


def test_small_mlp_graph_matches_autograd() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    g = autograd_graph(m, (5, 4))
    by = {n.id: n for n in g.nodes}
    leaves = {n.id for n in g.nodes if n.leaf}
    assert leaves == {"input", "param:0.weight", "param:0.bias", "param:2.weight", "param:2.bias"}
    ops = [n for n in g.nodes if not n.leaf]
    # Linear = AddmmBackward0 (+ TBackward0 for the transposed weight), ReLU = ReluBackward0
    assert sorted(n.grad_fn for n in ops) == sorted(
        ["AddmmBackward0", "TBackward0", "ReluBackward0", "AddmmBackward0", "TBackward0"])
    outs = [n for n in g.nodes if n.output]
    assert len(outs) == 1 and outs[0].grad_fn == "AddmmBackward0"
    # after backward: leaves hold .grad, non-leaf results do not (no retain_grad)
    assert all(by[i].grad_retained for i in leaves) and not any(n.grad_retained for n in ops)
    assert by["param:2.weight"].shape == [2, 3] and by["input"].kind == "input"
    assert ("param:0.weight", next(n.id for n in ops if n.grad_fn == "TBackward0" and
                                    ("param:0.weight", n.id) in g.edges)) in g.edges
    ids = set(by)
    assert all(a in ids and b in ids for a, b in g.edges)


def test_frozen_parameters_are_not_in_the_graph() -> None:
    m = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    m[0].requires_grad_(False)
    g = autograd_graph(m, (1, 4))
    assert {n.id for n in g.nodes if n.kind == "parameter"} == {"param:1.weight", "param:1.bias"}


@pytest.mark.parametrize("entry", IMAGE, ids=[e.name for e in IMAGE])
def test_graph_of_every_model(entry: Entry) -> None:
    opts = {"num_classes": 10} if "num_classes" in entry.options() else {}
    g = autograd_graph(entry.name, (1, 3, 16, 16), **opts)
    inferred = {"in_channels": 3, "input_shape": (3, 16, 16)}
    with torch.device("meta"):
        model = entry.fn(**opts, **{k: v for k, v in inferred.items() if k in entry.options()})
    params = sum(1 for n in g.nodes if n.kind == "parameter")
    assert params == sum(1 for p in model.parameters() if p.requires_grad)
    assert sum(n.output for n in g.nodes) == 1
    assert "digraph autograd {" in g.to_dot()


def test_write_dot_svg_and_missing_graphviz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = os.environ["PATH"]
    g = autograd_graph(nn.Linear(2, 1), (1, 2))
    res = write_graph(g, tmp_path / "g.dot")
    text = (tmp_path / "g.dot").read_text()
    assert res["rendered"] is None and '"param:weight"' in text and "AddmmBackward0" in text
    # no Graphviz: the .dot is written beside the requested image and the note says so
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    res = write_graph(g, tmp_path / "img" / "g.svg")
    assert (tmp_path / "img" / "g.dot").exists() and not (tmp_path / "img" / "g.svg").exists()
    assert "Graphviz 'dot' is not installed" in res["note"]
    # with a (fake) dot on PATH it is called as `dot -Tsvg in.dot -o out.svg`
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dot"
    fake.write_text('#!/bin/sh\necho "$1" > "$4"\ncat "$2" >> "$4"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{path}")
    res = write_graph(g, tmp_path / "g.svg")
    assert res["rendered"] == str(tmp_path / "g.svg") and res["note"] is None
    assert (tmp_path / "g.svg").read_text().startswith("-Tsvg\n// autograd graph")
    with pytest.raises(LiandanError, match="must end in"):
        write_graph(g, tmp_path / "g.pdf")


def test_cli_graph(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    rc, out, _ = cli("graph", "lenet5", "--out", str(tmp_path / "g.dot"), "--json")
    assert rc == 0
    doc = json.loads(out)
    kinds = {n["kind"] for n in doc["nodes"]}
    assert kinds == {"input", "parameter", "op"} and doc["counts"]["parameter"] == 10
    assert all(n["grad_retained"] == n["leaf"] for n in doc["nodes"])
    assert doc["files"]["dot"] == str(tmp_path / "g.dot") and (tmp_path / "g.dot").exists()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    rc, out, err = cli("graph", "resnet18", "--input-shape", "1,3,16,16", "--out", str(tmp_path / "r.svg"))
    assert rc == 2 and (tmp_path / "r.dot").exists()
    assert err.startswith("error: Graphviz 'dot' is not installed") and "r.dot" in out
