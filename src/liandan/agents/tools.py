"""The one tool registry of the agents pillar: liandan's capabilities as typed Python functions.

Each tool is a method of :class:`Toolbox` with type hints and a docstring; the MCP server
(:mod:`liandan.agents.mcp_server`) and the OpenAI-style function-calling layer
(:mod:`liandan.agents.function_calling`) are both generated from :data:`TOOLS` and these
signatures, so they never disagree. Every tool returns a plain JSON-able dict and raises
:class:`~liandan.errors.LiandanError` for anything the caller can fix; :func:`error_message`
turns an exception into the one line a client sees (never a traceback).

Every path argument goes through the :class:`~liandan.agents.sandbox.Sandbox` (also the paths
inside a recipe and inside a data-source spec), and every tool runs under
:meth:`~liandan.agents.sandbox.Sandbox.confined`: each file opened on the client's behalf (a
data folder's files, a run's recipe, summary, weights, tokenizer, teacher, base run) is checked
against the roots when it is opened (:mod:`liandan.paths`). Torch work is serialised by one
lock: torch's thread count is process-global and training sets it, and an MCP server runs sync
tools on worker threads (the spec asks servers to rate-limit tool invocations).

No ``from __future__ import annotations`` here: the annotations are read at run time to build
the MCP ``inputSchema`` and the function-calling ``parameters``.
"""

import functools
import json
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from liandan.agents import memory as _memory
from liandan.agents.sandbox import Sandbox, SandboxError, check_recipe, check_source_spec, recipe_source
from liandan.errors import LiandanError
from liandan.paths import check_path, read_text

RunDir = Annotated[str, Field(description="run directory (absolute, or relative to the first allowed root); "
                                          "see list_runs")]
MAX_INPUT_ELEMENTS = 1 << 26  # summary: refuse inputs over 64 M elements (256 MiB of fp32)
MAX_NEW_TOKENS = 1024
MAX_OOD_SAMPLES = 20000


@dataclass(frozen=True)
class ToolInfo:
    """How a tool behaves, for MCP ``ToolAnnotations`` (hints; spec 2025-11-25 ``server/tools``)."""

    name: str
    title: str
    read_only: bool = True
    destructive: bool = False
    idempotent: bool = True


TOOLS: tuple[ToolInfo, ...] = (
    ToolInfo("list_presets", "List embedded recipes"),
    ToolInfo("list_models", "List registered models"),
    ToolInfo("list_runs", "List runs in the allowed directories"),
    ToolInfo("train", "Train a recipe into a new run directory", read_only=False, idempotent=False),
    ToolInfo("evaluate", "Evaluate a trained run"),
    ToolInfo("ood", "Out-of-distribution detection scores of a run"),
    ToolInfo("summary", "Parameters, MACs, memory and latency of a model"),
    ToolInfo("diagnose", "Doctor findings of a run"),
    ToolInfo("explain", "Knowledge-base page on a training problem or concept"),
    ToolInfo("predict", "Predict with a trained run"),
    ToolInfo("generate", "Generate text with a language-model run"),
    ToolInfo("remember", "Remember a note in the agent memory", read_only=False, idempotent=False),
    ToolInfo("recall", "Recall notes and past runs from the agent memory"),
    ToolInfo("forget", "Forget a note of the agent memory", read_only=False, destructive=True),
)


def error_message(exc: BaseException) -> str | None:
    """The one-line message a client sees for ``exc``; None for an unexpected error (a bug),
    which callers report generically while the traceback goes to the server log."""
    if isinstance(exc, LiandanError):
        text = str(exc)
    elif isinstance(exc, (ValueError, TypeError, KeyError, FileNotFoundError)):
        text = f"{type(exc).__name__}: {exc}"
    else:
        return None
    line = (text.strip().splitlines() or [type(exc).__name__])[0]
    return line[:500]


def jsonable(obj: Any) -> Any:
    """Plain JSON data: numpy/tensor values to lists and numbers, paths to strings, tuples to
    lists, non-finite floats to None (JSON has no NaN; RFC 8259 §6)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return jsonable(obj.tolist())
    if hasattr(obj, "item"):
        return jsonable(obj.item())
    return str(obj)


class Toolbox:
    """liandan's tools bound to a :class:`Sandbox` (the allowed root directories); with ``auto_remember``
    each finished ``train`` call leaves a one-line note on the run in the agent memory."""

    def __init__(self, sandbox: Sandbox | None = None, *, auto_remember: bool = True) -> None:
        self.sandbox = sandbox or Sandbox()
        self.auto_remember = auto_remember
        self._lock = threading.Lock()
        # Nothing is written outside the roots for a client: matplotlib's font cache (a run's report)
        # goes to the first root's .liandan/ too, unless the operator chose a folder (read at import).
        os.environ.setdefault("MPLCONFIGDIR", str(Path(self.sandbox.roots[0]) / ".liandan" / "matplotlib"))

    def functions(self) -> dict[str, Any]:
        """Tool name -> bound method, in :data:`TOOLS` order."""
        return {t.name: getattr(self, t.name) for t in TOOLS}

    # --- listing ----------------------------------------------------------------------------

    def list_presets(self) -> dict[str, Any]:
        """List liandan's embedded recipes (presets): name and one-line description. Pass a name to train."""
        from liandan.recipe import preset_names, preset_text

        out = []
        for name in preset_names():
            comments = [ln[1:].strip() for ln in preset_text(name).splitlines()[:3] if ln.startswith("#")]
            out.append({"name": name, "description": comments[1] if len(comments) > 1 else ""})
        return {"presets": out}

    def list_models(
        self,
        tag: Annotated[str | None, Field(description="only models with this tag, e.g. 'image' or 'text'")] = None,
        verbose: Annotated[bool, Field(description="also list each model's options and defaults")] = False,
    ) -> dict[str, Any]:
        """List the registered models (the zoo): name, description, tags; verbose adds the options."""
        from liandan.registry import MODELS

        want = tag.strip().lower() if tag else None
        out = []
        for e in MODELS.entries():
            tags = model_tags(e)
            if want and want not in tags:
                continue
            row: dict[str, Any] = {"name": e.name, "description": e.description.splitlines()[0] if e.description
                                   else "", "tags": tags}
            if verbose:
                row["options"] = {k: ("required" if p.default is p.empty else jsonable(p.default))
                                  for k, p in e.options().items()}
            out.append(row)
        return {"models": out}

    def list_runs(self) -> dict[str, Any]:
        """List the allowed root directories and the runs in them (up to two levels deep):
        path, name, status and final test metrics. Paths here are valid run_dir arguments."""
        runs = []
        for root in self.sandbox.roots:
            for summ in sorted([*Path(root).glob("*/summary.json"), *Path(root).glob("*/*/summary.json")])[:500]:
                run = summ.parent
                if not (run / "recipe.yaml").is_file() or not self.sandbox.contains(str(run.resolve())):
                    continue
                try:  # a summary.json or recipe.yaml linked out of the roots hides the run
                    check_path(run / "recipe.yaml", "run file")
                    doc = json.loads(read_text(summ, "run file"))
                except (OSError, ValueError, LiandanError):
                    continue
                if not isinstance(doc, dict):
                    continue
                runs.append({"run_dir": str(run), "name": doc.get("name"), "status": doc.get("status"),
                             "test": jsonable(doc.get("final", {}).get("test", {}))})
        return {"roots": list(self.sandbox.roots), "runs": runs}

    # --- training ---------------------------------------------------------------------------

    def train(
        self,
        recipe: Annotated[str, Field(description="a preset name (see list_presets), a recipe .yaml file or a "
                                                 "run directory to retrain, inside the allowed directories")],
        overrides: Annotated[list[str] | None, Field(description="recipe overrides as 'key.path=value', e.g. "
                                                                 "['optim.lr=3e-3', 'train.epochs=5']")] = None,
        epochs: Annotated[int | None, Field(description="shortcut for train.epochs=N")] = None,
        out: Annotated[str | None, Field(description="new run directory inside the allowed directories (must "
                                                     "not exist or be empty); default <root>/<name>-<time>")] = None,
    ) -> dict[str, Any]:
        """Train a recipe into a new run directory; returns the run directory, status and final metrics.

        Blocks until training ends (small presets take seconds on a CPU; use epochs to keep it short)."""
        from liandan.recipe import load_recipe

        ovs = list(overrides or [])
        if epochs is not None:
            if epochs < 0:
                raise LiandanError("epochs must be ≥ 0")
            ovs.append(f"train.epochs={int(epochs)}")
        rc = load_recipe(recipe_source(self.sandbox, recipe), ovs)
        doc = check_recipe(self.sandbox, rc.to_dict())
        run_dir = self.sandbox.output_dir(out, rc.name)
        import liandan
        from liandan.agents.cancel import cancel_callbacks

        with self._lock:  # cancel_callbacks: a cancelled or timed-out call stops training at its next step
            run = liandan.train(doc, out=run_dir, quiet=True, callbacks=cancel_callbacks())
        s = run.summary
        result = jsonable({"run_dir": str(run.dir), "name": s.get("name"), "status": s.get("status"),
                           "epochs": s.get("epochs"), "steps": s.get("steps"), "wall_s": s.get("wall_s"),
                           "best": s.get("best"), "final": s.get("final")})
        if self.auto_remember:
            _memory.remember_run(self, recipe, rc, result)
        return result

    # --- judging a run ----------------------------------------------------------------------

    def evaluate(
        self,
        run_dir: RunDir,
        split: Annotated[str, Field(description="train, val or test")] = "test",
        source: Annotated[str | None, Field(description="evaluate on this instead of the run's data: a data "
                                                        "source name or a shift such as 'rotate:30', 'noise:0.5', "
                                                        "'blur:1.5', 'invert'")] = None,
    ) -> dict[str, Any]:
        """Re-evaluate a trained run's saved weights: loss, accuracy/F1 (or MSE/MAE/R²), per-class
        table, confusion matrix and calibration (ECE)."""
        import liandan

        path = self.sandbox.run_dir(run_dir)
        src = check_source_spec(self.sandbox, source) if source else None
        with self._lock:
            return jsonable(liandan.evaluate(path, split=split, source=src))

    def ood(
        self,
        run_dir: RunDir,
        ood: Annotated[str, Field(description="OOD inputs: a data source name (e.g. 'shapes') or a shift of the "
                                              "test split: 'noise', 'rotate:DEG', 'invert', 'blur:SIGMA'")],
        method: Annotated[str, Field(description="msp, energy, odin, mahalanobis, comma-separated, or all")] = "msp",
        split: Annotated[str, Field(description="the in-distribution split")] = "test",
        max_samples: Annotated[int, Field(description="cap on ID and OOD samples scored")] = 2000,
    ) -> dict[str, Any]:
        """Out-of-distribution detection on a classifier run: AUROC, FPR@95, AUPR-In/Out per method.
        Read-only: the result is not saved into the run."""
        import liandan

        path = self.sandbox.run_dir(run_dir)
        methods = [m.strip() for m in method.split(",") if m.strip()] or ["msp"]
        n = max(1, min(int(max_samples), MAX_OOD_SAMPLES))
        with self._lock:
            spec = check_source_spec(self.sandbox, ood)
            res = liandan.ood(path, spec, methods, split=split, max_samples=n, save=False)
        for m in res.get("methods", {}).values():
            m.pop("hist", None)  # histogram bins: for plots, noise to an agent
        return jsonable(res)

    def diagnose(self, run_dir: RunDir) -> dict[str, Any]:
        """The training doctor's findings on a finished run (problem codes, evidence, causes, fixes
        as recipe overrides). Read-only: doctor.json is not rewritten."""
        from liandan.doctor.examine import diagnose_run_dir

        path = self.sandbox.run_dir(run_dir)
        with self._lock:
            return jsonable(diagnose_run_dir(path, write=False))

    def explain(self, topic: Annotated[str, Field(description="a problem code (e.g. 'overfitting') or a concept "
                                                              "(e.g. 'warmup')")]) -> dict[str, Any]:
        """The knowledge-base page on a training problem or concept: what it is, how the doctor detects it,
        causes and fixes."""
        from liandan.doctor import explain

        return {"topic": topic, "text": explain(topic)}

    # --- models -----------------------------------------------------------------------------

    def summary(
        self,
        model: Annotated[str, Field(description="registered model name (see list_models), e.g. 'lenet5'")],
        input_shape: Annotated[list[int] | None, Field(description="input shape with the batch, e.g. "
                                                                   "[1, 3, 224, 224]; default: the model's "
                                                                   "reference input")] = None,
        options: Annotated[list[str] | None, Field(description="model options as 'key=value', e.g. "
                                                               "['num_classes=10']")] = None,
        layers: Annotated[bool, Field(description="include the per-layer table")] = False,
    ) -> dict[str, Any]:
        """Summarise a model: parameters, MACs (FLOPs = 2·MACs), parameter/activation memory and CPU latency."""
        import yaml

        import liandan

        shape = None
        if input_shape is not None:
            shape = tuple(int(s) for s in input_shape)
            if not shape or any(s <= 0 for s in shape):
                raise LiandanError(f"input_shape: dimensions must be positive integers; got {list(input_shape)}")
            if math.prod(shape) > MAX_INPUT_ELEMENTS:
                raise LiandanError(f"input_shape {list(shape)} is too large (over {MAX_INPUT_ELEMENTS} elements)")
        opts: dict[str, Any] = {}
        for item in options or []:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise LiandanError(f"options: expected key=value; got {item!r}")
            try:
                opts[key.strip().removeprefix("model.")] = yaml.safe_load(value)
            except yaml.YAMLError:
                raise LiandanError(f"options {key}: cannot parse value {value!r}") from None
        with self._lock:
            doc = liandan.summary(model, shape, **opts).to_dict()
        if not layers:
            doc.pop("layers", None)
        return jsonable(doc)

    def predict(
        self,
        run_dir: RunDir,
        features: Annotated[list[float] | None, Field(description="one feature vector (tabular runs)")] = None,
        files: Annotated[list[str] | None, Field(description="image, .npy or .csv files inside the allowed "
                                                             "directories")] = None,
        top: Annotated[int, Field(description="how many top classes to return")] = 3,
    ) -> dict[str, Any]:
        """Predict with a trained run: top classes with probabilities (classifiers), the value
        (regressors), or a caption / zero-shot classes (image-text runs)."""
        import liandan

        path = self.sandbox.run_dir(run_dir)
        inputs: list[str | list[float]] = []
        if features:
            if not all(math.isfinite(float(v)) for v in features):
                raise LiandanError("features must be finite numbers")
            inputs.append([float(v) for v in features])  # literal: never probed as a file name
        for f in files or []:
            real = self.sandbox.resolve(f, must_exist=True, what="input file")
            if not real.is_file():
                raise SandboxError(f"input file {f!r} is not a file")
            inputs.append(str(real))
        if not inputs:
            raise LiandanError("predict needs features or files")
        with self._lock:
            return {"predictions": jsonable(liandan.predict(path, inputs, top=max(1, int(top))))}

    def generate(
        self,
        run_dir: RunDir,
        prompt: Annotated[str, Field(description="text to continue, e.g. '12+34='")],
        max_new_tokens: Annotated[int, Field(description=f"at most {MAX_NEW_TOKENS}")] = 64,
        temperature: Annotated[float, Field(description="0 = greedy")] = 1.0,
        top_k: Annotated[int | None, Field(description="sample from the k most likely tokens")] = None,
        top_p: Annotated[float | None, Field(description="nucleus sampling threshold, 0 < p ≤ 1")] = None,
        seed: Annotated[int, Field(description="sampling seed")] = 0,
    ) -> dict[str, Any]:
        """Continue a prompt with a language-model run (e.g. arith-gpt): prompt, completion, tokens, finish."""
        import liandan

        path = self.sandbox.run_dir(run_dir)
        n = min(int(max_new_tokens), MAX_NEW_TOKENS)
        with self._lock:
            return jsonable(liandan.generate(path, prompt, max_new_tokens=n, temperature=temperature, top_k=top_k,
                                             top_p=top_p, seed=seed))

    remember = _memory.remember  # agent memory: liandan.agents.memory
    recall = _memory.recall
    forget = _memory.forget


def _confined(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run tool ``fn`` with its toolbox's roots active for :mod:`liandan.paths` (``functools.wraps``
    keeps the signature: the schemas are read from it)."""

    @functools.wraps(fn)
    def tool(self: "Toolbox", *args: Any, **kwargs: Any) -> Any:
        with self.sandbox.confined():
            return fn(self, *args, **kwargs)

    return tool


for _info in TOOLS:
    setattr(Toolbox, _info.name, _confined(getattr(Toolbox, _info.name)))

KIND_TAGS = {"tokens": ("text",), "image_text": ("image", "text", "multimodal"), "sequence": ("sequence",),
             "generative": ("image", "generative"), "any": ("tabular", "sequence"), "tabular": ("tabular",),
             "image": ("image",)}


def model_tags(entry: Any) -> list[str]:
    """The tags of a model entry: its registered tags, its kind of input (``input_kind``, else image
    for a builder taking ``in_channels``, tabular otherwise) and the tasks it serves."""
    kind = entry.extra.get("input_kind") or ("image" if "in_channels" in entry.options() else "tabular")
    tasks = entry.extra.get("tasks") or ((entry.extra["task"],) if "task" in entry.extra else ())
    if not tasks and kind != "generative":
        tasks = ("classify", "regress") if kind in ("tabular", "any", "sequence") else ("classify",)
    tags = [*entry.tags, *KIND_TAGS.get(kind, (kind,)), *tasks]
    return [t.lower() for t in dict.fromkeys(tags)]
