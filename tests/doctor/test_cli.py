"""CLI: liandan doctor RUN_DIR --json (post hoc = live), doctor RECIPE, doctor bench, explain."""

from __future__ import annotations

import json

from liandan.doctor.knowledge import topics
from tests.doctor.conftest import run_dir


def test_doctor_run_dir_json_matches_live_diagnosis(cli, quick_bench):
    d = run_dir(quick_bench, "lr_low_sgd_digits")
    live = json.loads((d / "doctor.json").read_text())
    code, out, _ = cli("doctor", str(d), "--json")
    assert code == 0
    doc = json.loads(out)  # exactly one JSON document on stdout
    assert [f["code"] for f in doc["findings"]] == [f["code"] for f in live["findings"]] == ["lr_too_low"]
    assert doc["healthy"] is False and doc["run"] == str(d)


def test_doctor_run_dir_without_probe_log_uses_metrics_csv(cli, quick_bench, tmp_path):
    import shutil

    src = run_dir(quick_bench, "healthy_wine_sgd")
    d = tmp_path / "run"
    shutil.copytree(src, d)
    (d / "doctor_probes.jsonl").unlink()
    code, out, _ = cli("doctor", str(d), "--json")
    assert code == 0 and json.loads(out)["healthy"] is True


def test_doctor_recipe_probing_run(tmp_path):
    import liandan

    doc = liandan.diagnose({"data": {"source": "iris", "batch_size": 16}, "model": {"name": "mlp", "hidden": [16]},
                            "train": {"tensorboard": False}}, out=tmp_path / "probe")
    assert doc["mode"] == "probe" and doc["overfit_check"]["passed"] is True
    assert doc["healthy"] is True and (tmp_path / "probe" / "doctor.json").exists()


def test_doctor_bench_json_subset(cli):
    code, out, _ = cli("doctor", "bench", "--cases", "symmetry_zeros_relu_digits", "--no-repair", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["recall"] == 1.0 and doc["precision"] == 1.0 and doc["cases"] == 1
    assert {"false_alarm_rate", "repair_success", "wall_s", "results"} <= set(doc)


def test_doctor_bench_seeds(cli):
    code, out, _ = cli("doctor", "bench", "--cases", "symmetry_zeros_relu_digits", "--no-repair", "--seeds", "0,1",
                       "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["offsets"] == [0, 1] and [d["seed_offset"] for d in doc["seeds"]] == [0, 1]
    assert doc["scores"]["recall"] == {"mean": 1.0, "sd": 0.0, "min": 1.0, "max": 1.0}
    assert doc["scores"]["repair_success"] is None  # --no-repair
    code, out, _ = cli("doctor", "bench", "--cases", "symmetry_zeros_relu_digits", "--no-repair", "--seeds", "0,1")
    assert code == 0 and out.strip().splitlines()[-1].startswith("seed offsets 0,1 (mean ± sd [min–max]): recall 1.000")


def test_explain_topics(cli):
    code, out, _ = cli("explain", "exploding_gradients")
    assert code == 0 and "Causes:" in out and "Fixes:" in out and "why:" in out and "梯度裁剪" in out
    for t in ("batchnorm", "layernorm", "dropout", "weight_decay", "warmup", "gradient_clipping", "xavier",
              "he_init", "amp", "early_stopping", "cross_entropy", "kl_divergence"):
        assert t in topics()
        assert cli("explain", t)[0] == 0
    assert cli("explain", "BN")[1].startswith("batchnorm")  # aliases


def test_explain_unknown_topic_lists_topics(cli):
    code, _, err = cli("explain", "flux_capacitor")
    assert code == 2 and err.startswith("error: unknown topic") and "exploding_gradients" in err


def test_outside_findings_survive_rediagnosis(cli, quick_bench, tmp_path):
    """The ood_inputs hook: liandan ood adds its finding with add_finding; doctor RUN_DIR keeps it."""
    import shutil

    from liandan.doctor.findings import add_finding

    d = tmp_path / "run"
    shutil.copytree(run_dir(quick_bench, "healthy_wine_sgd"), d)
    add_finding(d, {"code": "ood_inputs", "severity": "warning", "step": None, "epoch": None,
                    "evidence": {"flagged_rate": 0.4}, "causes": ["other source"],
                    "fixes": [{"say": "check", "patch": {}}]})
    code, out, _ = cli("doctor", str(d), "--json")
    doc = json.loads(out)
    assert code == 0 and [f["code"] for f in doc["findings"]] == ["ood_inputs"] and doc["healthy"] is False
