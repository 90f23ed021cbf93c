"""OOD metrics against scikit-learn, and the positive-class conventions (OpenOOD v1.5: OOD positive)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from liandan.evaluation.ood_metrics import (
    auroc,
    auroc_se,
    fpr_at_tpr,
    ood_metrics,
    rises_within_noise,
    sweep_advice,
    sweep_verdicts,
)


def _scores(seed: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    id_s, ood_s = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.2, 170)
    return (np.round(id_s, 1), np.round(ood_s, 1)) if ties else (id_s, ood_s)


def _openood(id_s: np.ndarray, ood_s: np.ndarray) -> dict[str, float]:
    """openood/evaluators/metrics.py, written out with sklearn (OOD = 1, scored by −conf)."""
    conf = np.r_[id_s, ood_s]
    ood = np.r_[np.zeros(len(id_s)), np.ones(len(ood_s))]
    fpr, tpr, _ = skm.roc_curve(ood, -conf, drop_intermediate=False)
    p_in, r_in, _ = skm.precision_recall_curve(1 - ood, conf)
    p_out, r_out, _ = skm.precision_recall_curve(ood, -conf)
    return {
        "auroc": skm.roc_auc_score(ood, -conf),
        "fpr95": fpr[np.argmax(tpr >= 0.95)],
        "aupr_in": skm.auc(r_in, p_in),
        "aupr_out": skm.auc(r_out, p_out),
    }


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("ties", [False, True])
def test_matches_openood_with_sklearn(seed, ties):
    id_s, ood_s = _scores(seed, ties)
    ours, ref = ood_metrics(id_s, ood_s), _openood(id_s, ood_s)
    for k in ref:
        assert ours[k] == pytest.approx(ref[k], abs=1e-12), k


def test_auroc_is_invariant_to_the_positive_class_but_fpr95_is_not():
    id_s, ood_s = _scores(3, ties=False)
    lab = np.r_[np.ones(len(id_s)), np.zeros(len(ood_s))]
    conf = np.r_[id_s, ood_s]
    id_pos = skm.roc_auc_score(lab, conf)
    ood_pos = skm.roc_auc_score(1 - lab, -conf)
    assert auroc(id_s, ood_s) == pytest.approx(id_pos) == pytest.approx(ood_pos)
    f_ood, f_id = fpr_at_tpr(id_s, ood_s, positive="ood"), fpr_at_tpr(id_s, ood_s, positive="id")
    assert abs(f_ood - f_id) > 0.05, (f_ood, f_id)
    # ID positive (ODIN / energy papers): the share of OOD accepted when 95 % of ID is kept
    fpr, tpr, _ = skm.roc_curve(lab, conf, drop_intermediate=False)
    assert f_id == pytest.approx(fpr[np.argmax(tpr >= 0.95)])


def test_fpr95_convention_on_a_hand_example():
    # ID scores 1..20; OOD: 18 at −5 and two confident ones (15, 16).
    id_s = np.arange(1, 21, dtype=float)
    ood_s = np.r_[np.full(18, -5.0), 15.0, 16.0]
    # OOD positive: flagging 19 of 20 OOD inputs needs the cut at 15, which flags ID 1..15
    assert fpr_at_tpr(id_s, ood_s, positive="ood") == pytest.approx(15 / 20)
    # ID positive: keeping 19 of 20 ID inputs (scores >= 2) accepts the two confident OOD ones
    assert fpr_at_tpr(id_s, ood_s, positive="id") == pytest.approx(2 / 20)
    assert ood_metrics(id_s, ood_s)["fpr95"] == pytest.approx(15 / 20)


def test_extremes():
    assert ood_metrics(np.ones(10), np.zeros(10)) == {"auroc": 1.0, "auroc_se": 0.0, "fpr95": 0.0, "aupr_in": 1.0,
                                                      "aupr_out": 1.0}
    same = np.linspace(0, 1, 50)
    assert auroc(same, same) == pytest.approx(0.5)
    assert auroc(np.zeros(5), np.ones(5)) == 0.0


@pytest.mark.parametrize("shift", [0.3, 1.0, 2.0])
def test_auroc_standard_error_matches_the_bootstrap(shift):
    """Hanley & McNeil's closed form against 400 bootstrap resamples of the same scores."""
    rng = np.random.default_rng(0)
    id_s, ood_s = rng.normal(shift, 1.0, 300), rng.normal(0.0, 1.0, 200)
    boot = [auroc(rng.choice(id_s, len(id_s)), rng.choice(ood_s, len(ood_s))) for _ in range(400)]
    se = ood_metrics(id_s, ood_s)["auroc_se"]
    assert se == pytest.approx(float(np.std(boot)), rel=0.2)
    assert auroc_se(0.5, 300, 200) > auroc_se(0.95, 300, 200) > 0


def test_rises_within_noise():
    se = [0.02] * 4
    assert rises_within_noise([0.5, 0.7, 0.69, 0.9], se)  # a dip of 0.01 is noise at SE 0.02
    assert not rises_within_noise([0.5, 0.9, 0.8, 0.75], se)  # 0.9 -> 0.75 is over five SEs


def test_sweep_verdicts_and_advice():
    """A logit score that peaks mid-sweep is named with its peak and end, explained, and pointed to
    Mahalanobis when that one rises; a sweep where every method rises needs no advice."""
    pts = lambda *a: [{"auroc": v, "auroc_se": 0.02} for v in a]  # noqa: E731
    labels = ["rotate:0", "rotate:45", "rotate:90"]
    v = sweep_verdicts(labels, {"msp": pts(0.5, 0.9, 0.74), "mahalanobis": pts(0.5, 0.97, 0.99)})
    assert v["msp"] == {"rises": False, "peak": "rotate:45", "peak_auroc": 0.9, "end_auroc": 0.74}
    assert v["mahalanobis"]["rises"] is True and v["mahalanobis"]["peak"] == "rotate:90"
    text = sweep_advice(v)
    assert text.startswith("msp peaks at rotate:45 (0.900) and falls to 0.740.")
    assert "Hein et al. 2019" in text and "use --method mahalanobis" in text
    assert "Try --method mahalanobis" in sweep_advice({"msp": v["msp"]})
    assert sweep_advice({"mahalanobis": v["mahalanobis"]}) is None
    no_se = sweep_verdicts(labels, {"msp": [{"auroc": 0.5}, {"auroc": 0.9}, {"auroc": 0.7}]})
    assert no_se["msp"]["rises"] is None and sweep_advice(no_se) is None  # old results without SE: no verdict
