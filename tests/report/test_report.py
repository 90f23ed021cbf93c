"""report.html and figures/: content, self-containment, robustness to missing pieces, speed."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from liandan.report import write_report

SECTIONS = ("overview", "training", "evaluation", "doctor", "ood", "model", "recipe", "notes")
FIGURES = {"loss", "metrics", "lr", "grad_norm", "confusion", "calibration", "examples", "ood_0"}


def _srcs(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]*)"', html)


def test_full_report(report_run):
    page = write_report(report_run)
    html = page.read_text()
    assert page == report_run / "report.html"
    for s in SECTIONS:
        assert f'id="{s}"' in html, s
    assert {p.stem for p in (report_run / "figures").glob("*.png")} == FIGURES
    for p in (report_run / "figures").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000, p
    # self-contained: only in-page anchors and data: URLs, and a CSP that forbids anything else
    assert all(u.startswith(("#", "data:")) for u in _srcs(html)), [u[:40] for u in _srcs(html)]
    assert "default-src 'none'" in html and "<script" not in html
    assert html.count("data:image/png;base64,") == len(FIGURES)
    for text in (
        "exploding_gradients",
        "--set train.grad_clip=1.0",
        "AUROC",
        "mahalanobis",
        "61,706",
        "Per class",
        "completed",
    ):
        assert text in html, text


def test_report_without_evaluation_or_extras(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("ood.json", "doctor.json", "report.html", "figures"))
    html = write_report(run, evaluate=False).read_text()
    assert 'id="ood"' not in html and "no doctor.json" in html
    assert {p.stem for p in (run / "figures").glob("*.png")} == {"loss", "metrics", "lr", "grad_norm"}


@pytest.mark.parametrize("damage", ["failed", "corrupt", "no_weights"])
def test_report_never_raises_on_missing_pieces(tiny_run, tmp_path, damage):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("report.html", "figures"))
    if damage == "failed":
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, "status": "failed", "final": {}}))
        shutil.rmtree(run / "checkpoints")
    elif damage == "corrupt":
        (run / "summary.json").write_text("{not json")
        (run / "metrics.csv").write_text("epoch,step,split,loss\n0,x,train,\n,,,")
        (run / "doctor.json").write_text("[1, 2]")
        (run / "ood.json").write_text('{"results": [{"methods": {"msp": {"auroc": "high"}}}]}')
    elif damage == "no_weights":
        shutil.rmtree(run / "checkpoints")
    html = write_report(run).read_text()
    assert "<html" in html and 'id="notes"' in html and "digits-lenet" in html


def test_missing_directory_is_a_user_error(tmp_path):
    from liandan.errors import LiandanError

    with pytest.raises(LiandanError, match="not a directory"):
        write_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()  # a folder, but not a run: no report is written into it
    with pytest.raises(LiandanError, match="not a run directory"):
        write_report(tmp_path / "empty")
    assert list((tmp_path / "empty").iterdir()) == []


def test_cli_report(report_run, capsys):
    from liandan.cli import main

    with pytest.raises(SystemExit) as e:
        main(["report", str(report_run), "--no-eval"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == str(report_run / "report.html")


def test_regression_report(tmp_path):
    import liandan

    run = liandan.train("diabetes-regression", overrides=["train.epochs=3"], out=tmp_path / "reg", quiet=True)
    html = write_report(run.dir).read_text()
    assert "r2" in html and "rmse" in html and "Confusion" not in html
    assert {p.stem for p in (run.dir / "figures").glob("*.png")} == {"loss", "metrics", "lr", "grad_norm"}


def test_examples_show_the_models_answers(tiny_run):
    """The examples figure's labels are the model's predicted classes, right where they match."""
    from liandan.evaluation.runio import logits_of, open_run, raw_split
    from liandan.report.examples import N_EXAMPLES, examples

    run, data = open_run(tiny_run)
    ex = examples(run, data, "test")
    x, y = raw_split(data, "test", N_EXAMPLES, run.recipe.seed)
    pred = logits_of(run.model, run.info, x).argmax(-1)
    assert ex["images"].shape == x.shape and 0 <= float(ex["images"].min()) <= float(ex["images"].max()) <= 1
    assert [right for _, right in ex["labels"]] == (pred == y).tolist()
    assert [text.split("\n")[0] for text, _ in ex["labels"]] == [run.info.class_names[i] for i in pred.tolist()]


def test_severity_sweep_section(tiny_run, tmp_path):
    """Saved OOD results at three or more severities of one shift become a sweep: a figure of
    AUROC against severity and a table whose last row says whether each method rises."""
    from liandan.evaluation.ood import ood_sweep
    from liandan.report.collect import ood_sweeps

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("ood.json", "report.html", "figures"))
    res = ood_sweep(run, ["rotate:0", "rotate:45", "rotate:90", "invert"], "msp,mahalanobis", max_samples=120,
                    save=True)
    sweeps = ood_sweeps(res)
    assert list(sweeps) == ["rotate (test)"] and [s for s, _ in sweeps["rotate (test)"]] == [0.0, 45.0, 90.0]
    html = write_report(run, evaluate=False).read_text()
    assert "Severity sweep: rotate (test)" in html and "rises within noise" in html
    assert (run / "figures" / "ood_sweep_0.png").stat().st_size > 5000
