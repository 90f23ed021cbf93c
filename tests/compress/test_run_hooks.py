"""Compressed directories are runs to the rest of liandan: load_run rebuilds the int8 model (so
evaluate scores what was quantised), and a distilled student retrains from its own recipe.yaml in
a fresh process (the distill loss registers itself, the classify task hands it the inputs)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import liandan
from liandan.compress import distill, quantize


def test_load_run_gives_the_quantised_model(teacher, tmp_path, cli) -> None:
    doc = quantize(teacher, out=tmp_path / "int8", repeats=1)
    run = liandan.load_run(tmp_path / "int8")
    assert any(m._get_name() == "DynamicQuantizedLinear" for m in run.model.modules())
    code, out, _ = cli("evaluate", str(tmp_path / "int8"), "--json")
    assert code == 0 and json.loads(out)["accuracy"] == pytest.approx(doc["test"]["after"]["accuracy"])


@pytest.mark.slow
def test_student_recipe_retrains_in_a_fresh_process(teacher, tmp_path) -> None:
    overrides = ["model.hidden=[8]", "train.epochs=3", "doctor.enabled=false", "train.tensorboard=false",
                 "report=false"]
    doc = distill(teacher, "digits-mlp", overrides=overrides, out=tmp_path / "kd")
    again = tmp_path / "again"
    proc = subprocess.run([sys.executable, "-m", "liandan", "train", str(tmp_path / "kd" / "recipe.yaml"),
                           "--out", str(again)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-400:]
    acc = json.loads((again / "summary.json").read_text())["final"]["test"]["accuracy"]
    assert acc == pytest.approx(doc["test"]["after"]["accuracy"])  # same seed, same teacher, same run
