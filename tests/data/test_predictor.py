"""liandan.Predictor takes raw inputs and applies the run's normalisation, as `liandan.predict` does;
`run.model` alone expects standardised inputs."""

from __future__ import annotations

import numpy as np
import torch

import liandan
from liandan.data.pipeline import load_source


def test_predictor_takes_raw_images_like_predict(tmp_path) -> None:
    run = liandan.train({"data": {"source": "digits"}, "model": {"name": "mlp"}, "train": {"epochs": 2},
                         "doctor": {"enabled": False}}, out=tmp_path / "r", quiet=True)
    raw = load_source("digits", {}, 0).x[:5]  # raw pixels, before the run's standardisation
    np.save(tmp_path / "one.npy", raw[0].numpy())
    want = liandan.predict(run.dir, [str(tmp_path / "one.npy")])[0]["classes"][0]
    p = liandan.Predictor(run)
    probs = p(raw[0].numpy())  # one sample: one row of probabilities
    assert probs.shape == (10,) and abs(float(probs.sum()) - 1) < 1e-5
    k = int(probs.argmax())
    assert run.info.class_names[k] == want["label"] and abs(float(probs[k]) - want["prob"]) < 1e-3
    batch = p(raw)
    assert batch.shape == (5, 10) and torch.allclose(batch[0], probs)
    assert torch.allclose(liandan.Predictor(run.dir)(raw), batch)


def test_predictor_regression_in_target_units(tmp_path) -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(80, 2))
    lines = ["a,b,y", *(f"{u:.4f},{v:.4f},{1000 + 50 * u:.3f}" for u, v in a)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    run = liandan.train({"data": {"source": "csv", "path": str(tmp_path / "d.csv"), "target": "y"},
                         "model": {"name": "mlp"}, "train": {"epochs": 1}, "doctor": {"enabled": False}},
                        out=tmp_path / "r", quiet=True)
    out = liandan.Predictor(run)([0.5, 0.0])
    want = liandan.predict(run.dir, [[0.5, 0.0]])[0]["value"]
    assert out.shape == (1,) and abs(float(out[0]) - want[0]) < 1e-3 and 500 < float(out[0]) < 1500
