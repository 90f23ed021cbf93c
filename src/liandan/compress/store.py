"""The compressed output directory, and loading it back without pickle.

Layout (a run directory, so ``liandan evaluate`` / ``report`` can read it)::

    OUT/recipe.yaml                  the source run's recipe (structured pruning of an ``mlp``: its new widths)
    OUT/data.json                    the source run's data facts (same splits, same normalisation)
    OUT/summary.json                 status, weights "final", and the compressed model's test metrics
    OUT/checkpoints/final.safetensors  the weights: float32 (pruned ones with their exact zeros), or for
                                     ``quantize`` the int8 tensors with scales and zero points
                                     (:mod:`liandan.compress.int8_store`)
    OUT/compress.json                method, its parameters, the layer widths it cut, every measured number

``compress.json``'s ``size_bytes`` are the sizes of the weight files on disk (the source run's and
this one's), so the ratio it reports is what a user saves. Nothing is a pickle: :func:`load_compressed`
rebuilds the model from the recipe and loads safetensors; a quantised model is rebuilt from its
stored int8 weights bit for bit (the logits :func:`liandan.compress.quantize` measured).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from liandan.errors import LiandanError
from liandan.registry import register_run_format
from liandan.runs import COMPRESS, DATA, RECIPE, RunDir

if TYPE_CHECKING:
    from liandan.recipe import Recipe
    from liandan.training.run import Run

COMPRESS_JSON = COMPRESS


def default_out(run_dir: Path, suffix: str) -> Path:
    return run_dir.parent / f"{run_dir.name}-{suffix}"


def check_out(out: Path) -> Path:
    """``out`` must be new or empty: a compressed directory is never written over another run."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LiandanError(f"output directory {out} already exists and is not empty; pass another --out")
    return out


def write_output(out: Path, run: Run, recipe: Recipe, model: nn.Module, doc: dict[str, Any],
                 final: dict[str, dict[str, float]] | None = None,
                 save: Callable[[Path], Any] | None = None) -> Path:
    """Write the compressed directory: recipe, data facts, weights, summary and ``compress.json``.

    ``save(path)`` writes the weights file (default: ``model``'s float weights); ``doc["size_bytes"]``
    becomes the on-disk sizes of the source run's weights and of this file."""
    from liandan.training.run import save_final

    rd = RunDir(out)
    rd.path.mkdir(parents=True, exist_ok=True)
    if not rd.has(RECIPE):
        rd.write_recipe(recipe, f"compressed from {run.dir} ({doc['method']})")
    rd.copy_from(RunDir(run.dir), DATA)
    if save is None:
        save_final(rd, model)
    else:
        save(rd.weights_file("final"))
    doc["size_bytes"] = disk_sizes(run.dir, rd.weights_file("final"))
    summary = rd.summary()
    summary.update({"name": recipe.name, "status": summary.get("status", "completed"), "weights": "final",
                    "compressed": {"method": doc["method"], "from": str(run.dir)}})
    if final is not None:  # a fine-tune's own train/val numbers stay; test is the compressed model's
        summary["final"] = {**summary.get("final", {}), **final}
    rd.write_summary(summary)
    rd.write_compress_doc(doc)
    return out


def disk_sizes(source: str | Path, weights: Path) -> dict[str, Any]:
    """``size_bytes``: ``os.path.getsize`` of the source run's weights file and of ``weights``."""
    src = RunDir(source)
    before, after = os.path.getsize(src.weights(summary=src.summary())), os.path.getsize(weights)
    return {"before": before, "after": after, "ratio": round(before / after, 3), "on_disk": True}


def read_doc(path: str | Path) -> dict[str, Any]:
    return RunDir(path).compress_doc()


@register_run_format("compressed", marker=COMPRESS)
def load_compressed(path: str | Path) -> Run:
    """A compressed run (quantised, pruned or distilled), rebuilt and loaded.

    Load a directory written by :func:`~liandan.compress.quantize`, :func:`~liandan.compress.prune`
    or :func:`~liandan.compress.distill`: the model is rebuilt from the recipe, cut to the recorded
    widths, loaded from safetensors and, for ``quantize``, quantised with its stored int8 weights."""
    from liandan.compress.int8_store import is_quantized_file, load_quantized
    from liandan.compress.prune import apply_structure
    from liandan.compress.quantize import apply_quantization
    from liandan.data.pipeline import DataInfo
    from liandan.training import checkpoint as ck
    from liandan.training.run import Run, seed_everything
    from liandan.training.setup import build_model, set_memory_format

    rd = RunDir(path)
    doc = rd.compress_doc()
    rd.require()
    recipe = rd.recipe()
    info = DataInfo.from_dict(rd.data_info())
    summary = rd.summary()
    seed_everything(recipe.seed)
    model = build_model(recipe.model, info)
    if doc.get("structure"):
        apply_structure(model, doc["structure"])
    weights = rd.weights_file(summary.get("weights", "final"))  # confined to the run
    if doc["method"] == "quantize" and is_quantized_file(weights):
        model = set_memory_format(model, recipe.train.channels_last, info, torch.device("cpu")).eval()
        return Run(rd.path, recipe, summary, info, load_quantized(model, weights, doc.get("options", {})))
    ck.load_weights(model, weights)
    model = set_memory_format(model, recipe.train.channels_last, info, torch.device("cpu")).eval()
    if doc["method"] == "quantize":  # an older directory: float weights, quantised again (deterministic)
        model = apply_quantization(model, doc.get("options", {}))
    return Run(rd.path, recipe, summary, info, model)
