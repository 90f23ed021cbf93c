"""What every compression method reports: size, parameters, sparsity, the run's own metric,
the largest change of an output, and latency — measured the same way before and after.

* **size**: here, bytes of the serialized ``state_dict`` in memory (a first estimate);
  :func:`liandan.compress.store.write_output` replaces it with the sizes of the weight files on
  disk (the source run's and the output's), which is what ``compress.json`` reports.
* **metric**: the run's own evaluation of the test split (``accuracy`` for classifiers, ``r2``
  for regression, else the task's ``loss``), computed by :mod:`liandan.evaluation.metrics`.
* **latency**: the median of repeated forward calls of one batch under ``inference_mode`` on
  one torch thread (small CPU models are faster on one; two processes never fight for cores).
"""

from __future__ import annotations

import io
import statistics
import time
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from liandan.data.pipeline import DataModule
    from liandan.training.run import Run

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def state_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())`` (int8 packed params included), in memory."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def count_params(model: nn.Module) -> int:
    """Parameters, counting the packed int8 weights and biases of dynamically quantized Linear layers."""
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    n = sum(p.numel() for p in model.parameters())
    for m in model.modules():
        if isinstance(m, QLinear):  # its int8 weight and bias are packed, not parameters
            w, b = m._weight_bias()
            n += w.numel() + (b.numel() if b is not None else 0)
    return n


def weight_matrices(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """``(module, "weight")`` for every Linear / Conv weight: what magnitude pruning ranks."""
    return [(m, "weight") for m in model.modules() if isinstance(m, WEIGHT_LAYERS) and m.weight is not None]


def sparsity(model: nn.Module) -> float:
    """Share of exact zeros over all Linear / Conv weight matrices."""
    ws = [getattr(m, n).detach() for m, n in weight_matrices(model)]
    total = sum(w.numel() for w in ws)
    return sum(int((w == 0).sum()) for w in ws) / max(total, 1)


def metric_key(task: str) -> str:
    """The metric compression compares: the task's headline (accuracy, R², else the loss)."""
    from liandan.training.tasks import task_class

    return task_class(task).headline_metric


def run_metrics(run: Run, data: DataModule, model: nn.Module, split: str = "test") -> dict[str, float]:
    """The run's own evaluation of ``model`` on ``split`` (loss and the task's metrics)."""
    from dataclasses import replace

    from liandan.evaluation.metrics import evaluate_loaded

    res = evaluate_loaded(replace(run, model=model), data, split)
    return {k: float(v) for k, v in res.items() if isinstance(v, (int, float)) and k != "n"}


@torch.inference_mode()
def latency_ms(model: nn.Module, x: torch.Tensor, repeats: int = 50, warmup: int = 5) -> float:
    """Median milliseconds of ``model(x)`` over ``repeats`` calls on one torch thread."""
    from liandan.training.setup import torch_threads

    was = model.training
    model.eval()
    try:
        with torch_threads(1):
            _time_calls(model, x, warmup)
            times = _time_calls(model, x, repeats)
    finally:
        model.train(was)
    return 1e3 * statistics.median(times)


def _time_calls(model: nn.Module, x: torch.Tensor, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    return times


def latency_pair(before: nn.Module, after: nn.Module, x: torch.Tensor, repeats: int = 50) -> dict[str, float]:
    """Latency of both models on ``x``, alternated over rounds so drift hits both alike.

    ``ratio`` is before / after: above 1 the compressed model is faster."""
    b, a = [], []
    for r in range(3):
        pair = ((before, b), (after, a)) if r % 2 == 0 else ((after, a), (before, b))
        for m, acc in pair:
            acc.append(latency_ms(m, x, repeats=repeats))
    tb, ta = statistics.median(b), statistics.median(a)
    return {"before_ms": round(tb, 4), "after_ms": round(ta, 4), "ratio": round(tb / ta, 3)}


def latency_report(before: nn.Module, after: nn.Module, x_norm: torch.Tensor, repeats: int = 50) -> dict[str, Any]:
    """Batch-1 and batch-64 latency of both models on (normalised) test inputs."""
    out: dict[str, Any] = {"threads": 1}
    for bs in (1, 64):
        x = x_norm[:bs]
        if len(x) < bs:  # a tiny test split: repeat it up to the batch size
            x = x.repeat((-(-bs // len(x)),) + (1,) * (x.dim() - 1))[:bs]
        out[f"batch{bs}"] = latency_pair(before, after, x, repeats=repeats if bs == 1 else max(repeats // 3, 5))
    return out


def compare(run: Run, data: DataModule, before: nn.Module, after: nn.Module, *, latency: bool = True,
            repeats: int = 50, max_samples: int | None = None) -> dict[str, Any]:
    """Size, parameters, sparsity, test metrics, max |Δ output| and latency of ``after`` against ``before``."""
    from liandan.evaluation.runio import logits_of, raw_split

    info = run.info
    key = metric_key(info.task)
    m_before, m_after = run_metrics(run, data, before), run_metrics(run, data, after)
    x_raw, _ = raw_split(data, "test", max_samples=max_samples)
    with torch.inference_mode():
        d = (logits_of(after, info, x_raw) - logits_of(before, info, x_raw)).abs().max()
    sb, sa = state_bytes(before), state_bytes(after)
    res: dict[str, Any] = {
        "metric": key,
        "size_bytes": {"before": sb, "after": sa, "ratio": round(sb / sa, 3)},
        "params": {"before": count_params(before), "after": count_params(after)},
        "sparsity": {"before": round(sparsity(before), 6), "after": round(sparsity(after), 6)},
        "test": {"before": m_before, "after": m_after,
                 "delta": round(m_after.get(key, float("nan")) - m_before.get(key, float("nan")), 6)},
        "max_abs_delta_output": float(d),
    }
    if latency:
        res["latency"] = latency_report(before, after, info.normalize_x(x_raw), repeats=repeats)
    return res
