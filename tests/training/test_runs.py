"""The run directory through its one module (liandan.runs) and Run, the one model factory, and
``resume`` of a run that is already complete."""

from __future__ import annotations

import json

import pytest
import torch

import liandan
from liandan.errors import LiandanError
from liandan.runs import RunDir

FAST = {"train.epochs": 1, "doctor.enabled": False, "train.tensorboard": False, "report": False}


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    return liandan.train("digits-mlp", overrides=FAST, out=tmp_path_factory.mktemp("runs") / "mlp", quiet=True)


def _state(run_dir) -> dict[str, object]:
    files = sorted(p for p in run_dir.rglob("*") if p.is_file())
    return {str(p.relative_to(run_dir)): (p.stat().st_mtime_ns, p.read_bytes()) for p in files}


def test_resume_of_a_completed_run_says_so_and_trains_nothing(mlp_run, cli) -> None:
    """Before: ``liandan resume`` of a completed run printed "resuming ... at epoch 2", evaluated
    every split again and rewrote final.safetensors and summary.json. Now one line, exit 0, and
    the run directory is untouched (Lightning's fit on a checkpoint past max_epochs and HF's
    resume_from_checkpoint past max_steps also return without training)."""
    before = _state(mlp_run.dir)
    code, out, err = cli("resume", str(mlp_run.dir))
    assert code == 0, err
    assert out.strip() == str(mlp_run.dir)
    assert "resuming" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "already completed" in lines[0] and "nothing to resume" in lines[0], err
    assert _state(mlp_run.dir) == before


def test_resume_with_more_epochs_continues_a_completed_run(tmp_path) -> None:
    first = liandan.train("digits-mlp", overrides=FAST, out=tmp_path / "r", quiet=True)
    assert first.summary["epochs"] == 1
    more = liandan.resume(first.dir, quiet=True, epochs=2)
    assert more.status == "completed" and more.summary["epochs"] == 2
    assert RunDir(first.dir).summary()["epochs"] == 2


def test_final_eval_names_the_splits_evaluated_at_the_end(mlp_run, tmp_path) -> None:
    """``train.final_eval: [test]`` evaluates only the test split at the end; the same weights give
    the same test metrics as the full final evaluation, and the run still reports its final weights."""
    run = liandan.train("digits-mlp", overrides={**FAST, "train.final_eval": ["test"]}, out=tmp_path / "t", quiet=True)
    assert set(run.summary["final"]) == {"test"} and run.summary["weights"] == "final"
    assert run.summary["final"]["test"] == mlp_run.summary["final"]["test"]
    assert RunDir(run.dir).weights_file("final").is_file()


def test_run_open_reads_files_and_builds_the_model_on_first_use(mlp_run, monkeypatch) -> None:
    from liandan.training.run import Run, load_run

    built = []
    monkeypatch.setattr(Run, "load_model", lambda self: built.append(1) or torch.nn.Linear(1, 1))
    run = Run.open(mlp_run.dir)
    assert run.status == "completed" and run.info.num_classes == 10 and not built
    assert isinstance(run.model, torch.nn.Linear) and run.model is run.model and built == [1]
    monkeypatch.undo()
    loaded = load_run(mlp_run.dir)
    sd = loaded.model.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in mlp_run.model.state_dict().items())
    assert loaded.load_data() is loaded.load_data()


def test_rundir_is_the_layout(mlp_run, tmp_path) -> None:
    rd = RunDir(mlp_run.dir)
    assert rd.is_run() and rd.summary() == json.loads((mlp_run.dir / "summary.json").read_text())
    assert rd.weights() == mlp_run.dir / "checkpoints" / "final.safetensors"
    assert {r["split"] for r in rd.metrics()} >= {"train", "val"} and rd.recipe().name == mlp_run.recipe.name
    with pytest.raises(LiandanError, match="plain file name"):
        rd.weights("../../elsewhere")
    with pytest.raises(LiandanError, match="no nope weights"):
        rd.weights("nope")
    with pytest.raises(LiandanError, match="not a run directory"):
        RunDir(tmp_path).require()
    new = RunDir.create("x", tmp_path / "new")
    new.start(mlp_run.recipe, "copied", rd)
    assert new.data_info() == rd.data_info() and new.summary() == {"name": mlp_run.recipe.name, "status": "running"}
    assert (new / "recipe.yaml").read_text().startswith("# copied\n")
    assert not list(new.path.glob(".*tmp*"))  # atomic writes leave no temporary files
    with pytest.raises(LiandanError, match="already holds a run"):
        RunDir.create("x", tmp_path / "new")


def test_create_model_infers_what_the_data_implies(mlp_run) -> None:
    m = liandan.create_model("resnet18", num_classes=5)
    assert m.fc.out_features == 5
    info = mlp_run.info
    mlp = liandan.create_model("mlp", info)
    assert mlp(torch.zeros(2, *info.input_shape)).shape == (2, info.num_classes)
    assert liandan.create_model("mlp", info, num_classes=12)(torch.zeros(1, *info.input_shape)).shape == (1, 12)
    from liandan.recipe import ModelConfig
    from liandan.training.setup import build_model

    with pytest.raises(LiandanError, match="model.num_classes=3 but the data has 10 classes"):
        build_model(ModelConfig(name="mlp", num_classes="3"), info)  # the recipe's builder: create_model + init
    conv = liandan.create_model("lenet5", {"input_shape": (3, 32, 32)}, num_classes=4)
    assert conv(torch.zeros(1, 3, 32, 32)).shape == (1, 4)
    with pytest.raises(LiandanError, match="needs option 'num_classes'"):
        liandan.create_model("mlp", {"input_shape": (8,)})
