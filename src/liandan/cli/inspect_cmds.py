"""``liandan summary`` and ``liandan graph``: thin wrappers over :mod:`liandan.inspection`.

torch and the inspect pillar are imported inside the verbs so ``liandan --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

import typer

from liandan.cli.app import app, print_json
from liandan.errors import LiandanError

_SHAPE_HELP = "input tensor shape with the batch, e.g. 1,3,224,224 (default: the model's reference input)"
_DEVICE_HELP = "cpu (measures latency) or meta (counts only: no memory, no arithmetic)"
_SET_HELP = "model option k=v, e.g. --set num_classes=10 (values parsed as YAML); repeatable"


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``"1,3,224,224"`` (or ``1x3x224x224``) -> ``(1, 3, 224, 224)``."""
    if text is None:
        return None
    parts = text.replace("x", ",").replace("×", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts if p.strip())
    except ValueError:
        raise LiandanError(
            f"--input-shape: expected comma-separated integers like 1,3,224,224; got {text!r}") from None
    if not shape or any(s <= 0 for s in shape):
        raise LiandanError(f"--input-shape: dimensions must be positive integers; got {text!r}")
    return shape


def parse_model_sets(model: str, sets: list[str] | None) -> dict[str, Any]:
    """``["num_classes=10", "norm=group"]`` -> validated model options of ``model``."""
    import yaml

    from liandan.registry import MODELS

    opts: dict[str, Any] = {}
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise LiandanError(f"--set: expected key=value; got {item!r}")
        key = key.strip().removeprefix("model.")  # accept recipe-style model.num_classes=10 too
        try:
            opts[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise LiandanError(f"--set {key}: cannot parse value {value!r}") from None
    return MODELS.get(model).validate(opts, where="model")


def model_and_shape(model: str, input_shape: str | None, sets: list[str] | None,
                    ) -> tuple[tuple[int, ...] | None, dict[str, Any]]:
    """The input shape (batch included) and model options from the CLI flags.

    A builder's own ``input_shape`` option (one sample, e.g. ``--set input_shape=[1,8,8]``) is
    derived from ``--input-shape`` when that is given; alone, it means batch 1 of that sample.
    """
    shape = parse_shape(input_shape)
    opts = parse_model_sets(model, sets)
    sample = opts.pop("input_shape", None)
    if sample is not None:
        sample = tuple(sample)
        if shape is None:
            shape = (1, *sample)
        elif shape[1:] != sample:
            raise LiandanError(f"--set input_shape={list(sample)} disagrees with --input-shape "
                               f"{','.join(map(str, shape))} (which includes the batch)")
    return shape, opts


@app.command("summary")
def summary_cmd(
    model: str = typer.Argument(..., help="registered model name (see: liandan list models)"),
    input_shape: str | None = typer.Option(None, "--input-shape", help=_SHAPE_HELP),
    set_: list[str] | None = typer.Option(None, "--set", help=_SET_HELP),
    json_out: bool = typer.Option(False, "--json", help="print one JSON document instead of the table"),
    explain: str | None = typer.Option(None, "--explain", help="show the params/MACs formula of this layer"),
    device: str = typer.Option("cpu", "--device", help=_DEVICE_HELP),
) -> None:
    """Per-layer table, parameters, MACs (FLOPs = 2·MACs), memory and CPU latency of a model."""
    from liandan.inspection import summary

    if device not in ("cpu", "meta"):
        raise LiandanError(f"--device must be cpu or meta; got {device!r}")
    shape, opts = model_and_shape(model, input_shape, set_)
    s = summary(model, shape, device=device, **opts)
    text = s.explain(explain) if explain else None
    if json_out:
        doc = s.to_dict()
        if text is not None:
            doc["explain"] = {"layer": explain, "text": text}
        print_json(doc)
    else:
        typer.echo(text if text is not None else s.table())


@app.command("graph")
def graph_cmd(
    model: str = typer.Argument(..., help="registered model name (see: liandan list models)"),
    out: str = typer.Option(..., "--out", help="FILE.svg, FILE.png or FILE.dot (the .dot is always written)"),
    input_shape: str | None = typer.Option(None, "--input-shape", help=_SHAPE_HELP),
    set_: list[str] | None = typer.Option(None, "--set", help=_SET_HELP),
    json_out: bool = typer.Option(False, "--json", help="print the nodes and edges as one JSON document"),
) -> None:
    """Autograd graph of one forward: leaf tensors (inputs, parameters) and non-leaf results (grad_fn)."""
    from liandan.inspection import autograd_graph, write_graph

    shape, opts = model_and_shape(model, input_shape, set_)
    g = autograd_graph(model, shape, **opts)
    files = write_graph(g, out)
    if json_out:
        print_json({**g.to_dict(), "files": files})
    else:
        c = g.to_dict()["counts"]
        typer.echo(f"{model}: {len(g.nodes)} nodes ({c.get('parameter', 0)} parameters, "
                   f"{c.get('op', 0)} ops), {len(g.edges)} edges")
        typer.echo(f"wrote {files['rendered'] or files['dot']}")
    if files["note"]:
        # The image the user asked for does not exist: a user-fixable problem, exit code 2.
        raise LiandanError(files["note"])
