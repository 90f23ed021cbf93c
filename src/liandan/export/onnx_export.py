"""Export a trained run to one self-contained ONNX file, checked against PyTorch with onnxruntime.

ONNX (Open Neural Network Exchange, https://onnx.ai/onnx/) stores the model as a graph of
standard operators; onnxruntime runs it without Python or PyTorch. We use PyTorch's default
exporter (``torch.onnx.export(..., dynamo=True)``: ``torch.export`` traces the model into an
FX graph that onnxscript translates to ONNX) with ``external_data=False`` so the weights sit
inside the one ``.onnx`` file.

**The file takes raw inputs.** A run normalises its inputs with training-split statistics
(``DataInfo.normalize_x``) and a regressor predicts standardised targets (``denormalize_y``).
A deploying user has raw pixels or features and wants answers in the data's units, and nothing
else in the file would tell them the mean and std, so both affine maps are baked into the graph
as constants: the ONNX model maps exactly what ``liandan predict`` reads to what it prints
(logits for classifiers, values in target units for regressors). Language models take token
ids ``(batch, seq)`` (both axes dynamic, seq up to the run's context) and return logits
``(batch, seq, vocab)``, without a key/value cache.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liandan.compress.int8_store import dequantized_copy, has_quantized
from liandan.errors import LiandanError
from liandan.export._common import (
    atomic_file,
    destination,
    first_line,
    median_ms,
    require,
    run_path,
    silenced,
    torch_threads,
    write_manifest,
)

CHECK_BATCHES = (1, 5)
LATENCY_THREADS = 1


class RawInputModel(nn.Module):
    """The run's model with its input normalisation (and a regressor's target scaling) built in."""

    def __init__(self, model: nn.Module, info: Any, tokens: bool) -> None:
        super().__init__()
        self.model = model
        self.norm_x = info.x_mean is not None and not tokens
        self.scale_y = _scales_outputs(info)
        if self.norm_x:  # the same shapes and arithmetic as DataInfo.normalize_x: bit-identical in torch
            shape = (-1, 1, 1) if info.is_image else (-1,)
            self.register_buffer("x_mean", torch.tensor(info.x_mean, dtype=torch.float32).view(shape))
            self.register_buffer("x_std", torch.tensor(info.x_std, dtype=torch.float32).view(shape))
        if self.scale_y:
            self.register_buffer("y_mean", torch.tensor(info.y_mean, dtype=torch.float32))
            self.register_buffer("y_std", torch.tensor(info.y_std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_x:
            x = (x - self.x_mean) / self.x_std
        out = self.model(x)
        if self.scale_y:
            out = out * self.y_std + self.y_mean
        return out


def _scales_outputs(info: Any) -> bool:
    """The model predicts standardised targets (a regressor's): the graph scales them back."""
    from liandan.training.tasks import task_class

    return task_class(info.task).is_regression and info.y_mean is not None


def _signature(run: Any, x: torch.Tensor) -> tuple[bool, tuple[str, str]]:
    """Whether the inputs are token ids, and the graph's (input, output) names: the task names its
    output, or refuses what a one input -> one output graph cannot hold."""
    from liandan.training.tasks import task_class

    output = task_class(run.info.task).export_output
    if output is None:
        raise LiandanError(f"ONNX export serves classifiers, regressors and language models; {run.dir} is a "
                           f"{run.info.task!r} run (its model is driven by a sampling or multi-input loop)")
    tokens = not x.is_floating_point()  # token ids (batch, seq): the sequence axis is dynamic too
    return tokens, ("input_ids" if tokens else "input", output)


def _inputs(run_dir: Path) -> tuple[Any, torch.Tensor]:
    """The run and real raw inputs (test split, else val, else train) for tracing and checking."""
    from liandan.evaluation.runio import open_run, raw_split

    run, data = open_run(run_dir)
    if run.recipe.adapter is not None:  # a fine-tune through an adapter: export the merged weights
        from liandan.adapters import merged_copy

        run.model = merged_copy(run.model)
    for split in ("test", "val", "train"):
        if getattr(data, split) is not None and len(data.indices[split]):
            x, _ = raw_split(data, split, max_samples=64)
            return run, x
    raise LiandanError(f"{run_dir}: the data has no samples to trace the model with")


def _dynamic_shapes(x: torch.Tensor, tokens: bool, max_len: int, dynamic_batch: bool) -> tuple | None:
    from torch.export import Dim

    dims: dict[int, Any] = {}
    if dynamic_batch:
        dims[0] = Dim("batch", min=1, max=4096)
    if tokens:
        dims[1] = Dim("seq", min=1, max=max(max_len, x.shape[1]))
    return (dims,) if dims else None


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's notes about itself (optional torchvision ops, pytree deprecations, and
    the whole FX graph torch.export logs when it gives up): a failure is reported as one line."""
    names = ["torch", *(n for n in logging.root.manager.loggerDict if n.startswith("torch."))]
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)  # e.g. RNN flat weights re-assigned while tracing
            yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def _export(wrapper: nn.Module, example: torch.Tensor, path: Path, names: tuple[str, str], dyn: tuple | None,
            opset: int | None) -> None:
    kwargs: dict[str, Any] = {"dynamo": True, "external_data": False, "input_names": [names[0]],
                              "output_names": [names[1]], "dynamic_shapes": dyn, "verbose": False}
    if opset is not None:
        kwargs["opset_version"] = opset
    try:  # the exporter prints progress on stdout (keep stdout for --json) and warns about its own internals
        with silenced(), torch.no_grad(), _quiet_exporter():
            torch.onnx.export(wrapper, (example,), str(path), **kwargs)
    except LiandanError:
        raise
    except Exception as e:  # noqa: BLE001 (an exporter failure is reported as one line: its root cause)
        while e.__cause__ is not None:
            e = e.__cause__
        why = re.sub(r"\x1b\[[0-9;]*m", "", first_line(e))
        raise LiandanError(f"torch.onnx.export cannot export {type(wrapper.model).__name__}: "
                           f"{type(e).__name__}: {why}") from None


def _io_spec(path: Path) -> tuple[int, list[dict], list[dict]]:
    """Opset and the graph's inputs/outputs (name, shape with symbolic axes named, element type).

    Also drops the exporter's per-node provenance (``metadata_props``: the FX node, the module
    path), which is for debugging the exporter and doubles a small model's file."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    for node in [*m.graph.node, *(n for f in m.functions for n in f.node)]:
        del node.metadata_props[:]
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))

    def spec(v: Any) -> dict:
        t = v.type.tensor_type
        shape = [d.dim_param or d.dim_value for d in t.shape.dim]
        return {"name": v.name, "shape": shape, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name}

    return opset, [spec(v) for v in m.graph.input], [spec(v) for v in m.graph.output]


def _check_opset(opset: int | None) -> None:
    """Refuse an opset ONNX itself does not define (one line) before any work is done."""
    if opset is None:
        return
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not 7 <= opset <= newest:
        raise LiandanError(f"--opset {opset}: the installed onnx {onnx.__version__} defines opsets 7 to {newest}")


def ort_session(path: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session on ``threads`` intra-op threads (default: as many as torch uses)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _check(wrapper: nn.Module, sess: Any, x: torch.Tensor, tokens: bool, repeats: int) -> dict[str, Any]:
    """max |Δ| ORT vs torch at two batch sizes (and a shorter sequence for token models), latency at batch 1."""
    name = sess.get_inputs()[0].name
    cases = [x[:b] for b in CHECK_BATCHES if b <= len(x)] or [x]
    if tokens and x.shape[1] > 2:
        cases.append(x[: min(5, len(x)), : x.shape[1] - 2])  # the sequence axis is dynamic too
    diffs, shapes, scale = [], [], 0.0
    with torch.no_grad():
        for xb in cases:
            ref = wrapper(xb).float().numpy()
            got = sess.run(None, {name: xb.numpy()})[0]
            if got.shape != ref.shape:
                raise LiandanError(f"onnxruntime output shape {got.shape} differs from torch {ref.shape}")
            diffs.append(float(abs(got - ref).max()))
            shapes.append(list(xb.shape))
            scale = max(scale, float(abs(ref).max()))
        one = x[:1]
        feed = {name: one.numpy()}
        # batch-1 latency on ONE thread for both runtimes (the session was made so), timed on this
        # thread's CPU clock: with every core and wall time the figure swung 0.8-40 ms between
        # identical exports on a shared 2-core CPU (the OS, not the model, decided)
        with torch_threads(LATENCY_THREADS):
            t_torch = median_ms(lambda: wrapper(one), repeats)
            t_torch_wall = median_ms(lambda: wrapper(one), repeats, clock=time.perf_counter)
    t_ort = median_ms(lambda: sess.run(None, feed), repeats)
    t_ort_wall = median_ms(lambda: sess.run(None, feed), repeats, clock=time.perf_counter)
    return {"input_shapes": shapes, "max_abs_diff": max(diffs), "max_abs_diff_per_case": diffs, "output_scale": scale,
            "latency_ms": {"torch_eager": round(t_torch, 4), "onnxruntime": round(t_ort, 4)},
            "latency_clock": "thread CPU time per call (one thread; lowest of 5 block medians)",
            "wall_ms": {"torch_eager": round(t_torch_wall, 4), "onnxruntime": round(t_ort_wall, 4)},
            "latency_ratio_ort_over_torch": round(t_ort / t_torch, 4), "latency_batch": 1,
            "latency_repeats": repeats, "threads": LATENCY_THREADS}


def to_onnx(run_dir: str | Path, out: str | Path | None = None, *, dynamic_batch: bool = True,
            opset: int | None = None, check: bool = True, atol: float = 1e-4, repeats: int = 100,
            int8_atol: float = 0.05) -> dict[str, Any]:
    """Export the run's model to one ``.onnx`` file (default ``RUN_DIR/export/model.onnx``).

    The graph takes raw inputs (see the module docstring). With ``check`` the temporary file is
    run by onnxruntime on real test-split inputs at batch 1 and 5 (and a shorter sequence for
    language models); it is renamed into place only if max |Δ| vs torch ≤ ``atol`` (times the
    output magnitude where that exceeds 1), and the
    torch-eager vs onnxruntime latency at batch 1 (median of ``repeats`` calls) is measured.
    A dynamically quantised run (``liandan compress --method quantize``) is exported with its int8
    weights dequantised (``s·(q − z)``, exact in float32) and float activations; ``export.json``'s
    ``quantized`` says so and holds max |Δ| of onnxruntime vs the int8 model (which also quantises
    activations per batch), refused above ``int8_atol`` times the output magnitude (at least 1).
    Returns the entry written to ``export.json`` beside the file."""
    require("onnx", "onnxscript", *(["onnxruntime"] if check else []))
    _check_opset(opset)
    run_dir = run_path(run_dir)
    path = destination(run_dir / "export", out, "model.onnx", ".onnx")
    run, x = _inputs(run_dir)
    tokens, names = _signature(run, x)
    int8_model = None
    if has_quantized(run.model):  # torch.onnx cannot trace packed int8 weights: export s·(q − z) in float
        int8_model = RawInputModel(run.model, run.info, tokens).eval()
        run.model = dequantized_copy(run.model)
    wrapper = RawInputModel(run.model, run.info, tokens).eval()
    example = x[:2] if len(x) >= 2 else x.expand(2, *x.shape[1:])  # batch ≥ 2, or torch.export fixes it at 1
    if not dynamic_batch:
        example = x[:1]
    dyn = _dynamic_shapes(example, tokens, run.info.max_len, dynamic_batch)
    with atomic_file(path) as tmp:
        _export(wrapper, example, tmp, names, dyn, opset)
        got_opset, inputs, outputs = _io_spec(tmp)
        if opset is not None and got_opset != opset:  # torch converts below its own opset, or gives up silently
            raise LiandanError(f"--opset {opset}: torch.onnx.export could not convert the graph to opset {opset} "
                               f"(it wrote {got_opset}); use --opset {got_opset} or higher, or leave --opset out")
        entry: dict[str, Any] = {
            "format": "onnx", "file": path.name, "run": str(run_dir), "task": run.info.task,
            "model": run.recipe.model.name, "opset": got_opset, "inputs": inputs, "outputs": outputs,
            "dynamic_batch": dynamic_batch, "raw_inputs": True,
            "preprocessing": _preprocessing(run.info, tokens),
            "exporter": f"torch {torch.__version__} torch.onnx.export(dynamo=True, external_data=False)",
        }
        if check:
            if not dynamic_batch:
                x = x[:1]
            res = _check(wrapper, ort_session(tmp, threads=LATENCY_THREADS), x, tokens, repeats)
            # float32 keeps ~7 digits: outputs in target units (a regressor's, say 150 ± 77) are held
            # to atol relative to their magnitude, logits of magnitude ≤ 1 to atol itself
            res["tolerance"] = tol = atol * max(1.0, res["output_scale"])
            if not res["max_abs_diff"] <= tol:
                raise LiandanError(f"onnxruntime differs from torch by {res['max_abs_diff']:.3g} > {tol:.3g}; "
                                   f"{path} not written (check=False writes it unchecked)")
            entry["check"] = res
            if int8_model is not None:
                entry["quantized"] = _int8_check(int8_model, ort_session(tmp), x, int8_atol)
        elif int8_model is not None:
            entry["quantized"] = {"note": DEQUANT_NOTE}
        entry["bytes"] = tmp.stat().st_size
    return {**write_manifest(path, entry), "path": str(path)}


DEQUANT_NOTE = ("dequantized export: the int8 weights are stored as float32 s*(q - z) (exactly the int8 "
                "values); activations stay float, whereas the torch int8 model quantizes them per batch")


def _int8_check(int8_model: nn.Module, sess: Any, x: torch.Tensor, atol: float) -> dict[str, Any]:
    """max |Δ| of the exported (dequantised) graph vs the int8 torch model on the check inputs."""
    name = sess.get_inputs()[0].name
    with torch.no_grad():
        ref = int8_model(x).float().numpy()
    got = sess.run(None, {name: x.numpy()})[0]
    diff, scale = float(abs(got - ref).max()), float(abs(ref).max())
    tol = atol * max(1.0, scale)
    if not diff <= tol:
        raise LiandanError(f"the dequantized ONNX graph differs from the int8 model by {diff:.3g} > {tol:.3g}")
    return {"note": DEQUANT_NOTE, "max_abs_diff_vs_int8": diff, "tolerance": tol, "output_scale": scale,
            "input_shape": list(x.shape)}


def _preprocessing(info: Any, tokens: bool) -> str:
    if tokens:
        tok = info.tokenizer or "tokenizer.json"
        return f"none: token ids from the run's tokenizer ({tok}), vocab {info.vocab_size}"
    parts = ["(x - mean) / std with the training split's statistics" if info.x_mean is not None else "none"]
    if _scales_outputs(info):
        parts.append("outputs scaled back to target units (y * std + mean)")
    return "inside the graph: " + "; ".join(parts)
