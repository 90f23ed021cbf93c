"""Evaluation metrics against scikit-learn (the oracle), and evaluate_full on a real run."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from liandan.evaluation.calibration import reliability
from liandan.evaluation.metrics import classification_metrics, confusion_matrix, regression_metrics, softmax


def _logits(seed: int, n: int = 400, k: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1.5, (n, k))
    logits[np.arange(n), y] += rng.uniform(0, 3, n)  # informative but imperfect
    logits[:, k - 1] -= 10  # a class that is never predicted: zero-division paths
    return logits, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_matches_sklearn(seed):
    logits, y = _logits(seed)
    k = logits.shape[1]
    res = classification_metrics(logits, y, k)
    pred = logits.argmax(1)
    assert res["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert res["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=range(k)).tolist()
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=range(k), zero_division=0)
    per = res["per_class"]
    np.testing.assert_allclose([c["precision"] for c in per], p)
    np.testing.assert_allclose([c["recall"] for c in per], r)
    np.testing.assert_allclose([c["f1"] for c in per], f)
    assert [c["support"] for c in per] == s.tolist()
    for avg in ("macro", "micro", "weighted"):
        assert res[f"{avg}_f1"] == pytest.approx(skm.f1_score(y, pred, average=avg, zero_division=0)), avg
    assert res["f1_macro"] == res["macro_f1"]
    assert res["macro_precision"] == pytest.approx(skm.precision_score(y, pred, average="macro", zero_division=0))
    assert res["macro_recall"] == pytest.approx(skm.recall_score(y, pred, average="macro", zero_division=0))
    for j in (1, 3, 5):
        want = skm.top_k_accuracy_score(y, logits, k=j, labels=range(k))
        assert res["top_k"][str(j)] == pytest.approx(want), j
    assert res["nll"] == pytest.approx(skm.log_loss(y, softmax(logits), labels=range(k)))
    assert "top5_accuracy" not in res  # the trainer's rule: top-5 only with 10+ classes


def test_top5_key_with_ten_classes():
    logits, y = _logits(3, k=12)
    res = classification_metrics(logits, y, 12)
    assert res["top5_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, logits, k=5, labels=range(12)))


def test_confusion_matrix_orientation():
    cm = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]  # rows = true, columns = predicted


def test_ece_matches_definition_and_sklearn_curve():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.05, 1.0, 2000)
    correct = rng.uniform(size=2000) < conf**1.5  # over-confident
    rel = reliability(conf, correct, n_bins=10)
    # brute-force ECE (Guo et al. 2017, eq. 3)
    ece = 0.0
    for lo in np.arange(10) / 10:
        m = (conf > lo) & (conf <= lo + 0.1)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    assert rel["ece"] == pytest.approx(ece)
    assert rel["ece"] > 0.05
    # the reliability bins are sklearn's uniform calibration curve (binary: P(correct) vs confidence)
    prob_true, prob_pred = calibration_curve(correct, conf, n_bins=10, strategy="uniform")
    filled = [b for b in rel["bins"] if b["count"]]
    np.testing.assert_allclose([b["accuracy"] for b in filled], prob_true)
    np.testing.assert_allclose([b["confidence"] for b in filled], prob_pred)
    assert sum(b["count"] for b in rel["bins"]) == 2000


def test_perfectly_calibrated_has_small_ece():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0, 1, 50_000)
    assert reliability(conf, rng.uniform(size=conf.size) < conf)["ece"] < 0.02


@pytest.mark.parametrize("targets", [1, 3])
def test_regression_matches_sklearn(targets):
    rng = np.random.default_rng(targets)
    t = rng.normal(size=(300, targets)) * [10.0, 1.0, 0.1][:targets]
    p = t + rng.normal(size=t.shape)
    res = regression_metrics(p, t)
    assert res["mse"] == pytest.approx(skm.mean_squared_error(t, p))
    assert res["mae"] == pytest.approx(skm.mean_absolute_error(t, p))
    assert res["r2"] == pytest.approx(skm.r2_score(t, p))
    np.testing.assert_allclose(res["r2_per_target"], skm.r2_score(t, p, multioutput="raw_values"))
    assert res["rmse"] == pytest.approx(np.sqrt(res["mse"]))


def test_evaluate_full_agrees_with_the_trainer(tiny_run):
    import json

    from liandan.evaluation.metrics import evaluate_full

    res = evaluate_full(tiny_run, "test")
    final = json.loads((tiny_run / "summary.json").read_text())["final"]["test"]
    for key in ("loss", "accuracy", "top5_accuracy", "f1_macro"):  # the keys `liandan evaluate` had
        assert res[key] == pytest.approx(final[key], abs=1e-5), key
    assert res["n"] == sum(c["support"] for c in res["per_class"]) == np.sum(res["confusion_matrix"])
    assert len(res["reliability"]["bins"]) == 15 and 0 <= res["ece"] <= 1
    assert res["class_names"] == [str(i) for i in range(10)]
    json.dumps(res)  # one JSON document


def test_evaluate_full_under_a_shift(tiny_run):
    from liandan.errors import LiandanError
    from liandan.evaluation.metrics import evaluate_full

    same = evaluate_full(tiny_run, source="rotate:0")
    plain = evaluate_full(tiny_run)
    assert same["accuracy"] == plain["accuracy"] and same["source"] == "rotate:0"
    assert evaluate_full(tiny_run, source="rotate:90")["accuracy"] < plain["accuracy"] - 0.3
    with pytest.raises(LiandanError, match="no labels"):
        evaluate_full(tiny_run, source="shapes:n=50")  # other classes: OOD inputs only
    with pytest.raises(LiandanError, match="split"):
        evaluate_full(tiny_run, split="holdout")


def test_evaluate_full_regression(tmp_path):
    import json

    import liandan
    from liandan.evaluation.metrics import evaluate_full

    run = liandan.train("diabetes-regression", overrides=["train.epochs=3"], out=tmp_path / "reg", quiet=True)
    res = evaluate_full(run.dir)
    final = run.summary["final"]["test"]
    for key in ("loss", "mse", "mae", "r2"):  # original units, as the trainer reports them
        assert res[key] == pytest.approx(final[key], rel=1e-5), key
    assert res["n"] == 44 and "confusion_matrix" not in res
    json.dumps(res)
