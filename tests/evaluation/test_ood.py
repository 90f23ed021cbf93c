"""OOD detection on a real (tiny) digits-lenet run: results, ood.json, severity, detector, doctor
finding, CLI."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from liandan.errors import LiandanError
from liandan.evaluation.ood import MSP_FIXED_THRESHOLD, OODDetector, ood, ood_finding, ood_sweep, parse_methods


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(tiny_run, path, ignore=shutil.ignore_patterns("ood.json", "report.html", "figures"))
    return path


def test_parse_methods():
    assert parse_methods("all") == ["msp", "energy", "odin", "mahalanobis"]
    assert parse_methods(["msp,energy", "msp"]) == ["msp", "energy"]
    with pytest.raises(LiandanError, match="unknown OOD method 'knn'"):
        parse_methods("knn")


def test_ood_against_shapes_and_ood_json(run_copy):
    res = ood(run_copy, "shapes", "msp,mahalanobis", max_samples=200)
    assert res["ood"] == {"source": "shapes", "n": 200} and res["id"]["split"] == "test"
    assert res["positive"] == "ood" and res["calibration_split"] == "val"
    for m, r in res["methods"].items():
        assert r["auroc"] > 0.85, (m, r["auroc"])
        assert 0 <= r["fpr95"] <= 1 and 0 <= r["aupr_in"] <= 1 and 0 <= r["aupr_out"] <= 1
        assert r["ood_flagged"] > r["id_flagged"]
        assert sum(r["hist"]["id"]) == res["id"]["n"] and sum(r["hist"]["ood"]) == 200
    saved = json.loads((run_copy / "ood.json").read_text())["results"]
    assert len(saved) == 1 and set(saved[0]["methods"]) == {"msp", "mahalanobis"}
    ood(run_copy, "shapes", "energy", max_samples=200)  # merges into the same entry
    ood(run_copy, "invert", "msp", max_samples=200)  # a second OOD set
    saved = json.loads((run_copy / "ood.json").read_text())["results"]
    assert [r["ood"]["source"] for r in saved] == ["shapes", "invert"]
    assert set(saved[0]["methods"]) == {"msp", "mahalanobis", "energy"}


def test_rotation_severity_sweep(tiny_run):
    res = ood_sweep(tiny_run, ["rotate:0", "rotate:30", "rotate:90"], "msp,mahalanobis", max_samples=180)
    au = {m: [r["methods"][m]["auroc"] for r in res] for m in ("msp", "mahalanobis")}
    assert au["msp"][0] == au["mahalanobis"][0] == 0.5  # no shift: the same inputs
    assert au["mahalanobis"][1] > 0.8 and au["mahalanobis"][2] > au["mahalanobis"][1] - 0.03
    assert au["msp"][1] > 0.6


def test_detector_thresholds(tiny_run):
    from liandan.evaluation.runio import open_run, raw_split

    det = OODDetector.from_run(tiny_run, "msp", calibrate=False)
    assert det.threshold == MSP_FIXED_THRESHOLD and not det.calibrated
    run, data = open_run(tiny_run)
    x_val, _ = raw_split(data, "val")
    flags = det.is_ood(x_val)
    assert flags.dtype == torch.bool and flags.shape == (len(x_val),)
    det.calibrate(x_val)
    assert det.calibrated and det.is_ood(x_val).float().mean() <= 0.05
    energy = OODDetector(run.model, run.info, "energy")
    with pytest.raises(LiandanError, match="calibrate"):
        energy.is_ood(x_val)
    with pytest.raises(LiandanError, match="fit"):
        OODDetector(run.model, run.info, "mahalanobis").score(x_val)
    maha = OODDetector(run.model, run.info, "mahalanobis").fit(*raw_split(data, "train")).calibrate(x_val)
    assert maha.score(x_val).shape == (len(x_val),)


def test_detector_needs_a_classifier(tiny_run):
    from dataclasses import replace

    from liandan.training.run import load_run

    run = load_run(tiny_run)
    with pytest.raises(LiandanError, match="classification"):
        OODDetector(run.model, replace(run.info, task="regress"), "msp")


def test_ood_finding(tiny_run):
    from liandan.evaluation.runio import open_run, raw_split

    finding = ood_finding(tiny_run, "shapes:n=200")
    assert finding is not None and finding["code"] == "ood_inputs" and finding["severity"] == "warning"
    ev = finding["evidence"]
    assert ev["source"] == "shapes:n=200" and ev["flagged_rate"] > ev["alarm_rate"] > ev["expected_rate"] == 0.05
    assert finding["causes"] and all("say" in f for f in finding["fixes"])
    json.dumps(finding)
    det = OODDetector.from_run(tiny_run, "msp")
    run, data = open_run(tiny_run)
    assert ood_finding(det, raw_split(data, "test")[0]) is None  # in-distribution inputs
    with pytest.raises(LiandanError, match="run directory"):
        ood_finding(det, "shapes")


def test_cli_ood(tiny_run, capsys):
    from liandan.cli import main

    with pytest.raises(SystemExit) as e:
        main(
            [
                "ood",
                str(tiny_run),
                "--ood",
                "rotate:45",
                "--method",
                "msp",
                "--method",
                "energy",
                "--json",
                "--max-samples",
                "100",
                "--no-save",
            ]
        )
    assert e.value.code == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["methods"]) == {"msp", "energy"} and doc["ood"]["source"] == "rotate:45"
    assert not (tiny_run / "ood.json").exists()
    with pytest.raises(SystemExit) as e:
        main(["ood", str(tiny_run), "--ood", "shapes", "--method", "bogus"])
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith("error: unknown OOD method")


def test_cli_ood_sweep(tiny_run, capsys):
    """Repeated --ood is a severity sweep: one row per source, AUROC ± SE, and a verdict row."""
    from liandan.cli import main

    args = ["ood", str(tiny_run), "--method", "msp,mahalanobis", "--max-samples", "150", "--no-save"]
    with pytest.raises(SystemExit) as e:
        main([*args, "--ood", "rotate:0", "--ood", "rotate:90"])
    assert e.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split()[:3] == ["rotate:0", "0.500", "±"]  # no shift: chance
    assert lines[4].startswith("rises within noise")
    falls = [m for m, v in zip(["msp", "mahalanobis"], lines[4].split()[-2:], strict=True) if v == "no"]
    assert len(lines) == 5 + bool(falls) and all(f"{m} peaks at" in lines[-1] for m in falls)
    with pytest.raises(SystemExit) as e:
        main([*args, "--ood", "rotate:0", "--ood", "rotate:90", "--json"])
    docs = json.loads(capsys.readouterr().out)
    assert [d["ood"]["source"] for d in docs] == ["rotate:0", "rotate:90"]
    assert docs[1]["methods"]["mahalanobis"]["auroc"] > 0.8 and docs[1]["methods"]["msp"]["auroc_se"] > 0
