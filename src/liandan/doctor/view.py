"""RunView: what the rules see — the recipe, the data facts and the probe records — with the
derived signals several rules share (learning quality, loss progress, per-layer series).

Built live from the probe callback's records, or post hoc from a run directory
(``doctor_probes.jsonl``, else ``metrics.csv``), so both paths run the same rules on the same
numbers.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from liandan.recipe import Recipe

PHASES = ("step", "epoch", "end")
ADAPTIVE = ("adam", "adamw", "adabelief", "rmsprop", "adagrad")
# Typical good learning rates (Karpathy's 3e-4 .. 1e-3 for Adam; 0.01 .. 0.1 for SGD, Bengio 2012
# "Practical recommendations"): a repair lowers a rate that is far above these to them directly.
TYPICAL_LR = {"sgd": 0.05, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.01}


def typical_lr(optimizer: str) -> float:
    return TYPICAL_LR.get(optimizer, 1e-3)


def finite(xs: list[float]) -> list[float]:
    return [x for x in xs if x is not None and math.isfinite(x)]


def median(xs: list[float], default: float = float("nan")) -> float:
    xs = finite(xs)
    return statistics.median(xs) if xs else default


@dataclass
class RunView:
    recipe: Recipe
    task: str
    num_classes: int
    input_shape: tuple[int, ...]
    records: list[dict[str, Any]]
    class_names: list[str] | None = None
    status: str = "running"
    phase: str = "end"
    mode: str = "train"  # "probe": the short run of `liandan doctor RECIPE`
    overfit_check: dict[str, Any] | None = None
    sizes: dict[str, int] = field(default_factory=dict)  # samples per split (data.json)
    extra: dict[str, Any] = field(default_factory=dict)

    # --- records by type -------------------------------------------------------------------------

    def _of(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("type") == kind]

    @cached_property
    def meta(self) -> dict[str, Any]:
        m = self._of("meta")
        return m[0] if m else {"layers": [], "activations": [], "norms": 0, "dropout": [], "params": 0}

    @cached_property
    def inputs(self) -> dict[str, Any] | None:
        m = self._of("inputs")
        return m[0] if m else None

    @cached_property
    def probes(self) -> list[dict[str, Any]]:
        return self._of("probe")

    @cached_property
    def epochs(self) -> list[dict[str, Any]]:
        return self._of("epoch")

    @cached_property
    def identical(self) -> list[dict[str, Any]]:
        return self._of("identical")

    @cached_property
    def _steps(self) -> tuple[list[int], list[float], list[float], list[bool]]:
        s, lo, g, a = [], [], [], []
        for r in self._of("steps"):
            s += r["steps"]
            lo += [_f(x) for x in r["loss"]]
            g += [_f(x) for x in r["grad_norm"]]
            a += r["applied"]
        return s, lo, g, a

    @property
    def steps(self) -> list[int]:
        return self._steps[0]

    @property
    def loss(self) -> list[float]:
        return self._steps[1]

    @property
    def grad_norm(self) -> list[float]:
        return self._steps[2]

    @property
    def applied(self) -> list[bool]:
        return self._steps[3]

    # --- recipe facts ----------------------------------------------------------------------------

    @property
    def lr(self) -> float:
        return self.recipe.optim.lr

    @property
    def optimizer(self) -> str:
        return self.recipe.optim.name

    @property
    def steps_per_epoch(self) -> int:
        return int(self.meta.get("steps_per_epoch") or max(1, len(self.steps)))

    def act_kinds(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.meta.get("activations", []):
            out[a["kind"]] = out.get(a["kind"], 0) + 1
        return out

    def model_option(self, key: str, default: Any = None) -> Any:
        return self.recipe.model.options.get(key, default)

    def data_info(self) -> dict[str, Any]:
        """The run's data facts as data.json holds them (``extras``: a source's own facts, e.g. whether a
        chat template rendered its records); {} when the view was built without them."""
        info = self.extra.get("info")
        if info is None:
            return {}
        return info if isinstance(info, dict) else info.to_dict()

    # --- task facts: the task answers, the view never compares its name ---------------------------

    @cached_property
    def is_classification(self) -> bool:
        """Class logits against integer labels: judged by accuracy over chance."""
        from liandan.training.tasks import task_class

        return task_class(self.task).is_classification

    @cached_property
    def is_regression(self) -> bool:
        """Values against float targets: judged by R²."""
        from liandan.training.tasks import task_class

        return task_class(self.task).is_regression

    # --- derived signals -------------------------------------------------------------------------

    def bad_steps(self) -> list[int]:
        """Steps whose loss or gradient was non-finite (the trainer skipped their update)."""
        return [s for s, lo, g, a in zip(*self._steps, strict=True)
                if not a or not math.isfinite(lo) or not math.isfinite(g)]

    def loss_window(self, start: bool, frac: float = 0.1, least: int = 3) -> float:
        lo = finite(self.loss)
        if not lo:
            return float("nan")
        k = max(least, int(len(lo) * frac))
        part = lo[:k] if start else lo[-k:]
        return sum(part) / len(part)

    def loss_drop(self) -> float:
        """1 − (mean loss at the end) / (mean loss at the start): 0 = no progress."""
        a, b = self.loss_window(True), self.loss_window(False)
        if not (math.isfinite(a) and math.isfinite(b)) or a <= 0:
            return float("nan")
        return 1.0 - b / a

    def metric(self, split: str, key: str) -> list[float]:
        return [e[split][key] for e in self.epochs if isinstance(e.get(split), dict) and key in e[split]]

    def quality(self, best: bool = False, split: str | None = None) -> float:
        """How well the run learned, 0 (chance) .. 1 (perfect): the last epoch's accuracy over
        chance (classification) or R² (regression), val preferred to train (or ``split``);
        ``best`` over epochs.

        This is the "second signal" that gates symptom rules (AutoTrainer reports VG/EG/DR only
        when training also fails to converge, Zhang et al. ICSE 2021, §2)."""
        split = split or ("val" if any("val" in e for e in self.epochs) else "train")
        key = "accuracy" if self.is_classification else "r2"
        vals = self.metric(split, key)
        if not vals:
            return float("nan")
        x = max(finite(vals) or [float("nan")]) if best else vals[-1]
        if x is None or not math.isfinite(x):
            return 0.0 if self.is_classification else -1.0
        if self.is_classification:
            chance = 1.0 / max(self.num_classes, 2)
            return (x - chance) / (1 - chance)
        return x

    def poor(self) -> float:
        """The quality below which a run "learns poorly": 0.6 of the way from chance to perfect
        accuracy (AutoTrainer's Θ = 0.6–0.7), or R² 0.3 — noisy regression sets such as
        diabetes top out near 0.5, so regression gets a lower bar."""
        return 0.6 if self.is_classification else 0.3

    def learns_poorly(self, threshold: float | None = None) -> bool:
        """Below the quality bar at the end — or, in the short probing run of ``liandan doctor
        RECIPE`` (half an epoch is no fair test), failing the one-batch overfit check."""
        if self.mode == "probe":
            return bool(self.overfit_check) and not self.overfit_check.get("passed", True)
        threshold = self.poor() if threshold is None else threshold
        q = self.quality()
        if math.isnan(q):  # no epoch finished: judge by the loss curve
            d = self.loss_drop()
            return math.isnan(d) or d < 0.2
        return q < threshold

    def last_probes(self, n: int = 3) -> list[dict[str, Any]]:
        return self.probes[-n:]

    def layer_series(self, key: str, probes: list[dict[str, Any]] | None = None) -> dict[str, list[float]]:
        """layer name -> values of ``key`` over ``probes`` (default: all), in model order."""
        out: dict[str, list[float]] = {}
        for p in probes if probes is not None else self.probes:
            for name, st in p.get("layers", {}).items():
                if key in st:
                    out.setdefault(name, []).append(st[key])
        return out

    def act_series(self, key: str, probes: list[dict[str, Any]] | None = None) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for p in probes if probes is not None else self.probes:
            for name, st in p.get("acts", {}).items():
                if key in st:
                    out.setdefault(name, []).append(st[key])
        return out

    def act_kind(self, name: str) -> str:
        for a in self.meta.get("activations", []):
            if a["name"] == name:
                return a["kind"]
        return "?"

    def epoch_of(self, step: int) -> int:
        return max(0, (step - 1) // max(1, self.steps_per_epoch))


def _f(x: Any) -> float:
    return float("nan") if x is None else float(x)


def view_from_run_dir(run_dir: Path) -> RunView:
    """Rebuild the view of a finished run from its files (probe log, else metrics.csv)."""
    from liandan.doctor.probes import PROBE_LOG, read_probe_log
    from liandan.errors import LiandanError
    from liandan.recipe import load_recipe
    from liandan.training.rundir import read_json

    run_dir = Path(run_dir)
    if not (run_dir / "recipe.yaml").is_file() or not (run_dir / "data.json").is_file():
        raise LiandanError(f"{run_dir} is not a run directory (no recipe.yaml / data.json)")
    recipe = load_recipe(run_dir / "recipe.yaml")
    info = read_json(run_dir / "data.json")
    summary = read_json(run_dir / "summary.json") if (run_dir / "summary.json").exists() else {}
    if (run_dir / PROBE_LOG).exists():
        records = read_probe_log(run_dir / PROBE_LOG)
    else:
        records = records_from_metrics(run_dir, recipe, info)
    return RunView(recipe, info["task"], int(info["num_classes"]), tuple(info["input_shape"]), records,
                   class_names=info.get("class_names"), status=summary.get("status", "unknown"),
                   sizes=dict(info.get("sizes", {})), extra={"summary": summary, "dir": str(run_dir), "info": info})


def records_from_metrics(run_dir: Path, recipe: Recipe, info: dict[str, Any]) -> list[dict[str, Any]]:
    """Records from metrics.csv alone (a run trained with the doctor off): logged steps and
    epochs, plus the model's static facts (the model is built, not loaded: no weights needed)."""
    from liandan.data.pipeline import DataInfo
    from liandan.doctor.probes import model_facts
    from liandan.training.rundir import read_metrics
    from liandan.training.setup import build_model

    model = build_model(recipe.model, DataInfo.from_dict(info))
    rows = read_metrics(run_dir / "metrics.csv") if (run_dir / "metrics.csv").exists() else []
    steps = [r for r in rows if r["split"] == "step"]
    n_train = info.get("sizes", {}).get("train", 0)
    spe = max(1, -(-n_train // recipe.data.batch_size) // recipe.train.accumulate)
    recs: list[dict[str, Any]] = [{"type": "meta", **model_facts(model), "steps_per_epoch": spe}]
    if steps:
        recs.append({"type": "steps", "epoch": 0, "steps": [int(r["step"]) for r in steps],
                     "loss": [_f(r["loss"]) for r in steps], "grad_norm": [_f(r["grad_norm"]) for r in steps],
                     "applied": [True] * len(steps)})
    by_epoch: dict[int, dict[str, Any]] = {}
    skip = {"epoch", "step", "split", "lr", "grad_norm", "wall_s"}
    for r in rows:
        if r["split"] in ("train", "val"):
            e = by_epoch.setdefault(int(r["epoch"]), {"type": "epoch", "epoch": int(r["epoch"]),
                                                      "step": int(r["step"]), "lr": r["lr"]})
            e[r["split"]] = {k: _f(v) for k, v in r.items() if k not in skip and v is not None}
    recs += [by_epoch[k] for k in sorted(by_epoch)]
    return recs
