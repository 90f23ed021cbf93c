"""Magnitude pruning, unstructured and structured.

* **Unstructured** (Han et al. 2015, "Learning both Weights and Connections for Efficient Neural
  Networks"): the ``amount`` share of the smallest |w| over *all* Linear/Conv weight matrices
  together (global L1 ranking, ``torch.nn.utils.prune.global_unstructured``) is set to zero, then
  the masks are folded in (``prune.remove``) so the weights are plain tensors with exactly
  ``round(amount·N)`` zeros. Layers keep their shapes: dense kernels do not get faster, the model
  only compresses well (and sparse kernels could use it).
* **Structured** (Li et al. 2017, "Pruning Filters for Efficient ConvNets", applied to hidden
  units): in every ``Linear → (activation / dropout / BatchNorm1d)* → Linear`` chain inside an
  ``nn.Sequential``, the hidden units whose incoming weight rows have the smallest L2 norm
  ``‖W[i,:]‖₂`` are removed *physically*: rows of the first Linear (and its bias), the unit's
  BatchNorm statistics, and columns of the next Linear. The model is smaller and faster, and it
  computes exactly what the original computes with those columns of the next layer zeroed.

Both may be followed by a short fine-tune with the run's own recipe (``finetune_epochs``), the
usual prune → retrain step; unstructured masks stay applied while it trains, so the zeros stay.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liandan.errors import LiandanError

# modules that act on each unit independently and keep the width: a hidden unit can be dropped across them
ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Mish,
               nn.Softplus, nn.Hardswish, nn.Hardtanh, nn.Dropout, nn.Identity)


@dataclass
class Chain:
    """``seq[first]`` (Linear) → ``seq[between]`` (per-unit modules) → ``seq[nxt]`` (Linear)."""

    seq: nn.Sequential
    prefix: str  # qualified name of ``seq`` ("" for the model itself)
    first: int
    between: list[int]
    nxt: int

    @property
    def name(self) -> str:
        return f"{self.prefix}.{self.first}" if self.prefix else str(self.first)


def check_amount(amount: float) -> float:
    if not isinstance(amount, (int, float)) or not 0.0 < float(amount) < 1.0:
        raise LiandanError(f"amount must be a fraction strictly between 0 and 1, got {amount!r}")
    return float(amount)


# --- unstructured -------------------------------------------------------------------------------


def magnitude_prune(model: nn.Module, amount: float) -> list[tuple[nn.Module, str]]:
    """Global L1 magnitude pruning of every Linear/Conv weight, in place, masks still attached."""
    from torch.nn.utils import prune

    from liandan.compress.measure import weight_matrices

    params = weight_matrices(model)
    if not params:
        raise LiandanError(f"{type(model).__name__} has no Linear or Conv weight to prune")
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=check_amount(amount))
    return params


def fold_masks(params: list[tuple[nn.Module, str]]) -> None:
    """``prune.remove``: weights become plain parameters holding the zeros."""
    from torch.nn.utils import prune

    for m, n in params:
        if prune.is_pruned(m):
            prune.remove(m, n)


# --- structured ---------------------------------------------------------------------------------


def find_chains(model: nn.Module) -> list[Chain]:
    """Every ``Linear → per-unit modules → Linear`` run of children inside an ``nn.Sequential``."""
    chains = []
    for prefix, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        kids = list(seq)
        for i, m in enumerate(kids):
            if not isinstance(m, nn.Linear):
                continue
            between, j = [], i + 1
            while j < len(kids) and (isinstance(kids[j], ELEMENTWISE) or
                                     (isinstance(kids[j], nn.BatchNorm1d) and kids[j].num_features == m.out_features)):
                between.append(j)
                j += 1
            if j < len(kids) and isinstance(kids[j], nn.Linear) and kids[j].in_features == m.out_features:
                chains.append(Chain(seq, prefix, i, between, j))
    return chains


def unit_scores(chain: Chain) -> torch.Tensor:
    """Importance of each hidden unit: the L2 norm of its incoming weight row (Li et al. 2017, §3.1)."""
    return chain.seq[chain.first].weight.detach().norm(dim=1)


def _sliced_linear(lin: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None) -> nn.Linear:
    w = lin.weight.detach()
    w = w[rows] if rows is not None else w
    w = w[:, cols] if cols is not None else w
    new = nn.Linear(w.shape[1], w.shape[0], bias=lin.bias is not None).to(w.device, w.dtype)
    new.weight.data.copy_(w)
    if lin.bias is not None:
        new.bias.data.copy_(lin.bias.detach()[rows] if rows is not None else lin.bias.detach())
    new.train(lin.training)
    return new


def _sliced_bn(bn: nn.BatchNorm1d, keep: torch.Tensor) -> nn.BatchNorm1d:
    new = nn.BatchNorm1d(len(keep), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                         track_running_stats=bn.track_running_stats)
    sd = {k: (v[keep] if v.dim() == 1 else v) for k, v in bn.state_dict().items()}
    new.load_state_dict(sd)
    new.train(bn.training)
    return new


def cut_units(chain: Chain, keep: torch.Tensor) -> None:
    """Keep only the hidden units ``keep`` (sorted indices) of ``chain``, in place."""
    seq = chain.seq
    seq[chain.first] = _sliced_linear(seq[chain.first], keep, None)
    for j in chain.between:
        if isinstance(seq[j], nn.BatchNorm1d):
            seq[j] = _sliced_bn(seq[j], keep)
    seq[chain.nxt] = _sliced_linear(seq[chain.nxt], None, keep)


def structured_prune(model: nn.Module, amount: float) -> dict[str, list[int]]:
    """Remove ``amount`` of the hidden units of every chain (at least one stays), in place.

    Units are ranked on the original weights of each layer (all chains are scored before any is
    cut). Returns ``{first Linear's name: kept unit indices}``."""
    amount = check_amount(amount)
    chains = find_chains(model)
    if not chains:
        raise LiandanError(f"{type(model).__name__} has no Linear→Linear chain of hidden units inside an "
                           "nn.Sequential to prune structurally (e.g. the mlp model); use unstructured pruning")
    plan = {}
    for c in chains:
        s = unit_scores(c)
        k = max(1, len(s) - int(round(amount * len(s))))
        plan[c.name] = torch.sort(torch.topk(s, k).indices).values
    for c in chains:
        cut_units(c, plan[c.name])
    return {n: v.tolist() for n, v in plan.items()}


def apply_structure(model: nn.Module, widths: dict[str, int]) -> nn.Module:
    """Cut a freshly built model to the recorded widths (the first units; weights are loaded next)."""
    chains = {c.name: c for c in find_chains(model)}
    for name, k in widths.items():
        c = chains.get(name)
        if c is None:
            raise LiandanError(f"compressed structure names layer {name!r}, which the model has no chain for")
        if c.seq[c.first].out_features != k:
            cut_units(c, torch.arange(int(k)))
            chains = {c.name: c for c in find_chains(model)}
    return model


def mlp_hidden(model: nn.Module) -> list[int]:
    """Hidden widths of a pruned ``mlp`` (its Linear layers but the last), for the recipe."""
    lins = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return [m.out_features for m in lins[:-1]]


# --- the public function ------------------------------------------------------------------------


def prune(run_dir: str | Path, amount: float = 0.5, structured: bool = False, out: str | Path | None = None,
          finetune_epochs: int = 0, finetune_lr_scale: float = 1.0, latency: bool = True, repeats: int = 50,
          quiet: bool = True) -> dict[str, Any]:
    """Prune a trained run and write ``out`` (default ``RUN_DIR-pruned``); returns its ``compress.json``.

    ``amount``: the share of weights (unstructured) or of each chain's hidden units (structured)
    removed. ``finetune_epochs > 0`` retrains the pruned model for that many epochs with the run's
    recipe at ``finetune_lr_scale`` × its learning rate; ``out`` is then a full run directory.
    The document reports ``sparsity``, ``params``, ``size_bytes``, the test metrics before/after,
    ``max_abs_delta_output`` and the batch-1/64 ``latency`` ratios (before/after).
    """
    from liandan.compress.measure import compare, count_params, run_metrics
    from liandan.compress.store import check_out, default_out, write_output
    from liandan.evaluation.runio import open_run
    from liandan.recipe import load_recipe

    amount = check_amount(amount)
    if finetune_epochs < 0:
        raise LiandanError(f"finetune_epochs must be >= 0, got {finetune_epochs}")
    run_dir = Path(run_dir)
    run, data = open_run(run_dir)
    out = check_out(Path(out) if out is not None else default_out(run_dir, "pruned"))
    before = run.model.eval()
    model = copy.deepcopy(before)
    recipe, structure, masks = run.recipe, {}, []
    if structured:
        kept = structured_prune(model, amount)
        structure = {n: len(v) for n, v in kept.items()}
        if recipe.model.name == "mlp":  # the recipe itself can say the new widths: load_run works as is
            recipe = load_recipe(recipe, {"model.hidden": mlp_hidden(model)})
    else:
        masks = magnitude_prune(model, amount)
    options = {"amount": amount, "structured": structured, "finetune_epochs": finetune_epochs,
               "criterion": "L2 norm of each unit's incoming weights" if structured else "global |w| (L1)"}
    doc: dict[str, Any] = {"method": "prune", "source": str(run_dir), "out": str(out), "options": options,
                           "structure": structure}
    pruned_at = None
    if finetune_epochs:
        from liandan.compress.finetune import finetune

        # the masks stay on while fine-tuning (their hooks multiply them in), so the zeros stay zero
        pruned_at = run_metrics(run, data, model.eval())
        finetune(run, data, model, recipe, out, finetune_epochs, finetune_lr_scale, quiet)
    fold_masks(masks)
    model.eval()
    doc.update(compare(run, data, before, model, latency=latency, repeats=repeats))
    if pruned_at is not None:
        doc["test"]["after_prune_before_finetune"] = pruned_at
    doc["params"]["removed"] = count_params(before) - count_params(model)
    if not structured:
        doc["options"]["pruned_weights"] = sum(int((getattr(m, n) == 0).sum()) for m, n in masks)
    write_output(out, run, recipe, model, doc, final={"test": doc["test"]["after"]})
    return doc

