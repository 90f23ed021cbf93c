"""Out-of-distribution detection for a trained classifier: ``liandan ood`` and ``liandan.ood``.

Score functions are in :mod:`liandan.evaluation.ood_scores` (MSP, ODIN, energy, Mahalanobis; papers
cited there), metrics and their conventions in :mod:`liandan.evaluation.ood_metrics` (OpenOOD v1.5:
**OOD is the positive class for FPR@95**), and the OOD inputs in :mod:`liandan.evaluation.sources`.

:class:`OODDetector` turns a score into a decision: ``score(x) < threshold`` is OOD. The threshold
is the MSP rule of thumb 0.8 until :meth:`OODDetector.calibrate` sets it from held-out ID data so
that 95 % of ID inputs are kept (a TPR of 95 % with ID positive; 5 % false alarms).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from liandan.data.pipeline import DataInfo
from liandan.errors import LiandanError
from liandan.evaluation import ood_scores as S
from liandan.evaluation.ood_metrics import ood_metrics

MSP_FIXED_THRESHOLD = 0.8  # the notes' fixed cut-off on the maximum softmax probability
FIT_SAMPLES = 20_000  # training samples for the Mahalanobis class means and covariance


def parse_methods(method: str | Sequence[str]) -> list[str]:
    """``"all"``, ``"msp"``, ``"msp,energy"`` or a list of names → validated method names."""
    items = [method] if isinstance(method, str) else list(method)
    names: list[str] = []
    for item in items:
        for m in filter(None, (p.strip().lower() for p in item.split(","))):
            for n in S.METHODS if m == "all" else [m]:
                if n not in S.METHODS:
                    raise LiandanError(f"unknown OOD method {n!r}; available: {', '.join(S.METHODS)}, all")
                if n not in names:
                    names.append(n)
    if not names:
        raise LiandanError("no OOD method given")
    return names


class OODDetector:
    """Scores raw inputs (a source's units; normalised here as in training) and flags OOD ones.

    ``temperature`` defaults to T = 1000 for ODIN and T = 1 for energy; ``epsilon`` is ODIN's
    perturbation (0.0014). ``fit`` is needed for Mahalanobis only (class means and covariance
    from training data); ``calibrate`` sets the threshold that keeps ``tpr`` of ID inputs.
    """

    def __init__(
        self,
        model: nn.Module,
        info: DataInfo,
        method: str = "msp",
        *,
        temperature: float | None = None,
        epsilon: float = S.ODIN_EPS,
        tpr: float = 0.95,
        threshold: float | None = None,
    ) -> None:
        from liandan.training.tasks import task_class

        if not task_class(info.task).is_classification:
            raise LiandanError("OOD detection needs a classification run (softmax scores)")
        (self.method,) = parse_methods(method)
        self.model, self.info, self.epsilon, self.tpr = model, info, epsilon, tpr
        self.temperature = (
            temperature if temperature is not None else (S.ODIN_T if self.method == "odin" else S.ENERGY_T)
        )
        self.threshold = threshold if threshold is not None else (MSP_FIXED_THRESHOLD if self.method == "msp" else None)
        self.calibrated = False
        self._maha: S.Mahalanobis | None = None

    @property
    def params(self) -> dict[str, float]:
        return {
            "odin": {"temperature": self.temperature, "epsilon": self.epsilon},
            "energy": {"temperature": self.temperature},
        }.get(self.method, {})

    def fit(self, x_train: torch.Tensor, y_train: torch.Tensor) -> OODDetector:
        """Mahalanobis: class means and shared covariance of the training features (no-op otherwise)."""
        if self.method == "mahalanobis":
            feats = self.features(x_train)[1]
            self._maha = S.Mahalanobis().fit(feats, y_train.long(), self.info.num_classes)
        return self

    def calibrate(self, x_val: torch.Tensor) -> OODDetector:
        """Threshold at the (1 − tpr) quantile of ID scores: ``tpr`` of ID inputs stay ID."""
        s = np.sort(self.score(x_val).numpy())
        if not len(s):
            raise LiandanError("no inputs to calibrate the OOD threshold on")
        self.threshold = float(s[min(int(math.floor((1 - self.tpr) * len(s))), len(s) - 1)])
        self.calibrated = True
        return self

    def features(self, x: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, penultimate features) of raw inputs."""
        from liandan.evaluation.runio import capture_penultimate, logits_of

        with capture_penultimate(self.model) as feats:
            logits = logits_of(self.model, self.info, x, batch_size)
        return logits, torch.cat(feats) if feats else torch.empty(0)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of raw inputs (float64, larger = more in-distribution)."""
        from liandan.evaluation.runio import logits_of

        if self.method == "odin":
            return S.odin(self.model, self.info, x, self.temperature, self.epsilon)
        if self.method == "mahalanobis":
            if self._maha is None:
                raise LiandanError("the Mahalanobis detector needs fit(x_train, y_train) first")
            return self._maha.score(self.features(x)[1])
        logits = logits_of(self.model, self.info, x)
        return S.msp(logits) if self.method == "msp" else S.energy(logits, self.temperature)

    def is_ood(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean per input: its score is below the threshold."""
        if self.threshold is None:
            raise LiandanError(f"the {self.method} detector has no threshold: calibrate(x_val) first")
        return self.score(x) < self.threshold

    @classmethod
    def from_run(cls, run_dir: str | Path, method: str = "msp", calibrate: bool = True, **kw: Any) -> OODDetector:
        """A detector for a trained run: fitted on its train split, calibrated on val (or train)."""
        from liandan.evaluation.runio import open_run, raw_split

        run, data = open_run(run_dir)
        det = cls(run.model, run.info, method, **kw)
        det.fit(*raw_split(data, "train", FIT_SAMPLES, run.recipe.seed))
        if calibrate:
            det.calibrate(raw_split(data, _calib_split(data), FIT_SAMPLES, run.recipe.seed)[0])
        return det


def _calib_split(data) -> str:
    return "val" if data.val is not None else "train"


def _histogram(id_s: np.ndarray, ood_s: np.ndarray, bins: int = 40) -> dict[str, Any]:
    """Score histograms for the report, over the ID range widened by its own width on each side
    (Mahalanobis OOD scores reach −10⁴ and would squash the ID mass); tails go to the end bins."""
    both = np.r_[id_s, ood_s]
    both = both[np.isfinite(both)]
    if not len(both):
        return {"edges": np.linspace(0, 1, bins + 1).tolist(), "id": [0] * bins, "ood": [0] * bins, "clipped": False}
    ref = id_s[np.isfinite(id_s)] if np.isfinite(id_s).any() else both
    width = max(float(ref.max() - ref.min()), 1e-9)
    lo, hi = max(both.min(), ref.min() - width), min(both.max(), ref.max() + width)
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-9, bins + 1)
    clip = lambda v: np.clip(v[np.isfinite(v)], edges[0], edges[-1])  # noqa: E731
    return {
        "edges": edges.tolist(),
        "id": np.histogram(clip(id_s), edges)[0].tolist(),
        "ood": np.histogram(clip(ood_s), edges)[0].tolist(),
        "clipped": bool(both.min() < lo or both.max() > hi),
    }


def _detectors(run, data, methods: list[str], temperature: float | None, epsilon: float) -> dict[str, OODDetector]:
    """One detector per method: fitted on the train split, calibrated on val (or train)."""
    from liandan.evaluation.runio import raw_split

    seed = run.recipe.seed
    x_tr, y_tr = raw_split(data, "train", FIT_SAMPLES, seed)
    x_cal = raw_split(data, _calib_split(data), FIT_SAMPLES, seed)[0]
    dets = {}
    for m in methods:
        t = temperature if m in ("odin", "energy") else None
        dets[m] = OODDetector(run.model, run.info, m, temperature=t, epsilon=epsilon).fit(x_tr, y_tr).calibrate(x_cal)
    return dets


def _method_result(det: OODDetector, id_s: np.ndarray, ood_s: np.ndarray) -> dict[str, Any]:
    return {
        **ood_metrics(id_s, ood_s),
        "threshold": det.threshold,
        "id_flagged": float((id_s < det.threshold).mean()),
        "ood_flagged": float((ood_s < det.threshold).mean()),
        "params": det.params,
        "hist": _histogram(id_s, ood_s),
    }


def ood(
    run_dir: str | Path,
    ood: str,
    method: str | Sequence[str] = "msp",
    *,
    split: str = "test",
    max_samples: int = 2000,
    temperature: float | None = None,
    epsilon: float = S.ODIN_EPS,
    save: bool = True,
) -> dict[str, Any]:
    """Score the run's ``split`` (ID) against the OOD set ``ood`` with each method.

    Returns AUROC, FPR@95 (OOD positive), AUPR-In, AUPR-Out per method, plus the threshold
    calibrated on the validation split (95 % of ID kept) and the fraction of ID / OOD inputs it
    flags. ``save`` merges the result into ``RUN_DIR/ood.json`` (the report shows it).
    """
    return ood_sweep(
        run_dir,
        [ood],
        method,
        split=split,
        max_samples=max_samples,
        temperature=temperature,
        epsilon=epsilon,
        save=save,
    )[0]


def ood_sweep(
    run_dir: str | Path,
    sources: Sequence[str],
    method: str | Sequence[str] = "all",
    *,
    split: str = "test",
    max_samples: int = 2000,
    temperature: float | None = None,
    epsilon: float = S.ODIN_EPS,
    save: bool = False,
) -> list[dict[str, Any]]:
    """:func:`ood` for several OOD sets with one fit: e.g. a severity sweep
    ``[f"rotate:{d}" for d in range(0, 91, 15)]``. Returns one result per source."""
    from liandan.evaluation.runio import open_run, raw_split
    from liandan.evaluation.sources import resolve_source

    methods = parse_methods(method)
    run, data = open_run(run_dir)
    seed = run.recipe.seed
    x_id, _ = raw_split(data, split, max_samples, seed)
    dets = _detectors(run, data, methods, temperature, epsilon)
    id_scores = {m: d.score(x_id).numpy() for m, d in dets.items()}
    results = []
    for src in sources:
        x_ood, _, label = resolve_source(src, data, run.info, split=split, seed=seed, max_samples=max_samples)
        res: dict[str, Any] = {
            "run": str(run_dir),
            "id": {"source": run.info.source, "split": split, "n": len(x_id)},
            "ood": {"source": label, "n": len(x_ood)},
            "positive": "ood",
            "tpr": 0.95,
            "calibration_split": _calib_split(data),
            "methods": {m: _method_result(d, id_scores[m], d.score(x_ood).numpy()) for m, d in dets.items()},
        }
        if save:
            save_result(Path(run_dir), res)
        results.append(res)
    return results


def save_result(run_dir: Path, res: dict[str, Any]) -> Path:
    """Merge ``res`` into ``run_dir/ood.json`` (one entry per OOD source; methods updated)."""
    from liandan.training.rundir import read_json, write_json

    path = run_dir / "ood.json"
    try:
        doc = read_json(path) if path.exists() else {}
    except ValueError:
        doc = {}
    results = [r for r in doc.get("results", []) if isinstance(r, dict)]
    for r in results:
        if r.get("ood", {}).get("source") == res["ood"]["source"] and r.get("id") == res["id"]:
            r.update({k: v for k, v in res.items() if k != "methods"})
            r.setdefault("methods", {}).update(res["methods"])
            break
    else:
        results.append(res)
    write_json(path, {"results": results})
    return path


def ood_finding(
    detector: OODDetector | str | Path,
    inputs: torch.Tensor | str,
    *,
    source: str | None = None,
    method: str = "msp",
) -> dict[str, Any] | None:
    """A doctor ``ood_inputs`` finding when ``inputs`` score as OOD beyond the calibrated rate.

    ``detector`` is a calibrated :class:`OODDetector` or a run directory (then a ``method``
    detector is fitted and calibrated on it); ``inputs`` are raw inputs or a source spec of
    :mod:`liandan.evaluation.sources`. A calibrated detector flags ``1 − tpr`` (5 %) of ID inputs;
    the finding fires when the flagged fraction exceeds that by more than three binomial
    standard deviations and by at least 5 points. Returns None when the inputs look ID.
    """
    if not isinstance(detector, OODDetector):
        run_dir = Path(detector)
        detector = OODDetector.from_run(run_dir, method)
        if isinstance(inputs, str):
            from liandan.evaluation.runio import open_run
            from liandan.evaluation.sources import resolve_source

            run, data = open_run(run_dir)
            source = source or inputs
            inputs = resolve_source(inputs, data, run.info, seed=run.recipe.seed, max_samples=2000)[0]
    elif isinstance(inputs, str):
        raise LiandanError("a source spec needs a run directory, not a detector: pass the inputs as a tensor")
    if detector.threshold is None:
        raise LiandanError("ood_finding needs a calibrated detector")
    scores = detector.score(inputs).numpy()
    n = len(scores)
    expected = round(1 - detector.tpr, 6) if detector.calibrated else None
    rate = float((scores < detector.threshold).mean()) if n else 0.0
    base = expected if expected is not None else 0.05
    alarm = base + max(3 * math.sqrt(base * (1 - base) / max(n, 1)), 0.05)
    if n == 0 or rate <= alarm:
        return None
    return {
        "code": "ood_inputs",
        "severity": "warning",
        "evidence": {
            "source": source or "inputs",
            "method": detector.method,
            "n": n,
            "flagged_rate": round(rate, 4),
            "expected_rate": expected,
            "alarm_rate": round(alarm, 4),
            "threshold": detector.threshold,
            "median_score": float(np.median(scores)),
        },
        "causes": [
            "the inputs come from another distribution than the training data (source, sensor, domain)",
            "the inputs are preprocessed unlike the training data (value range, size, channels, scaling)",
            "the data drifted since training (rotation, blur, noise, inverted contrast, new classes)",
        ],
        "fixes": [
            {"say": "check that the inputs are preprocessed as the training data (range, size, channels)"},
            {"say": "label some of these inputs, add them to the training data and retrain"},
            {"say": "reject or route the flagged inputs to a person: OODDetector.is_ood(x)"},
            {
                "say": "train with augmentation that covers the shift",
                "patch": {"data.augment": ["noise:0.05"]},
            },
        ],
    }
