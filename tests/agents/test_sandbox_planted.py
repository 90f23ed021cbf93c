"""Planted files: symlinks and stored paths that lead out of the allowed root are refused when the
file is opened, whatever tool opens it (data folders walked by train / evaluate / ood, the files
of run directories, base runs, teachers, tokenizers), with one line, no outside byte in the
response, and the server answering the next call. Every case goes through the function-calling
dispatcher, the one the MCP and A2A servers run the toolbox methods through."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.agents.planted import (
    OUTSIDE,
    SECRET,
    TINY,
    World,
    assert_refused,
    text_folder,
    write_cifar,
    write_idx,
    write_png,
)

# --- data folders: (source name, folder inside the root with one planted link) -------------------

DataPlant = Callable[[World], tuple[str, Path]]


def text_file_link(w: World) -> tuple[str, Path]:
    d = text_folder(w.fresh("docs"))
    w.link(d / "leak.txt", w.out / "secret.txt")
    return "text", d


def text_jsonl_link(w: World) -> tuple[str, Path]:
    d = text_folder(w.fresh("docs"))
    w.link(d / "leak.jsonl", w.out / "secret.jsonl")
    return "text", d


def text_nested_link(w: World) -> tuple[str, Path]:
    d = text_folder(w.fresh("docs"))
    (d / "a" / "b").mkdir(parents=True)
    w.link(d / "a" / "b" / "leak.txt", w.out / "secret.txt")
    return "text", d


def text_folder_link(w: World) -> tuple[str, Path]:
    d = text_folder(w.fresh("docs"))
    w.link(d / "more", w.out)  # a symlinked folder full of .txt and .jsonl files
    return "text", d


def text_path_is_link(w: World) -> tuple[str, Path]:
    return "text", w.link(w.fresh("docs") / "corpus.txt", w.out / "secret.txt")


def image_file_link(w: World) -> tuple[str, Path]:
    d = w.fresh("imgs")
    for c in ("c0", "c1"):
        (d / c).mkdir()
        write_png(d / c / "a.png")
    w.link(d / "c1" / "leak.png", w.out / "secret.png")
    return "image_folder", d


def image_class_folder_link(w: World) -> tuple[str, Path]:
    d = w.fresh("imgs")
    (d / "c0").mkdir()
    write_png(d / "c0" / "a.png")
    w.link(d / "c1", w.out / "imgs" / "cls")
    return "image_folder", d


def _mnist(w: World) -> Path:
    d = w.fresh("mnist")
    write_idx(d / "train-images-idx3-ubyte", np.zeros((6, 8, 8)))
    write_idx(d / "train-labels-idx1-ubyte", np.arange(6) % 2)
    write_idx(d / "t10k-images-idx3-ubyte", np.zeros((4, 8, 8)))
    write_idx(d / "t10k-labels-idx1-ubyte", np.arange(4) % 2)
    return d


def mnist_file_link(w: World) -> tuple[str, Path]:
    d = _mnist(w)
    w.link(d / "train-images-idx3-ubyte", w.out / "idx" / "train-images-idx3-ubyte")
    return "mnist_idx", d


def mnist_gz_link(w: World) -> tuple[str, Path]:
    d = _mnist(w)
    (d / "t10k-labels-idx1-ubyte").unlink()
    w.link(d / "t10k-labels-idx1-ubyte.gz", w.out / "idx" / "t10k-labels-idx1-ubyte.gz")
    return "mnist_idx", d


def cifar_train_link(w: World) -> tuple[str, Path]:
    d = w.fresh("cifar")
    write_cifar(d / "test_batch")
    w.link(d / "data_batch_1", w.out / "cifar" / "data_batch_1")
    return "cifar_batches", d


def cifar_test_link(w: World) -> tuple[str, Path]:
    d = w.fresh("cifar")
    write_cifar(d / "data_batch_1")
    w.link(d / "test_batch", w.out / "cifar" / "test_batch")
    return "cifar_batches", d


def csv_path_is_link(w: World) -> tuple[str, Path]:
    return "csv", w.link(w.fresh("tab") / "data.csv", w.out / "secret.csv")


DATA_PLANTS = [text_file_link, text_jsonl_link, text_nested_link, text_folder_link, text_path_is_link,
               image_file_link, image_class_folder_link, mnist_file_link, mnist_gz_link, cifar_train_link,
               cifar_test_link, csv_path_is_link]


@pytest.mark.parametrize("tool", ["train", "evaluate", "ood"])
@pytest.mark.parametrize("plant", DATA_PLANTS, ids=lambda p: p.__name__)
def test_data_folder_links_out_are_refused(planted, plant, tool):
    w = planted
    source, path = plant(w)
    if tool == "train":
        extra = ["data.target=label"] if source == "csv" else []
        resp = w.call("train", recipe="wine-mlp", epochs=1,
                      overrides=[*TINY, f"data.source={source}", f"data.path={path}", *extra])
    elif tool == "evaluate":
        resp = w.call("evaluate", run_dir=str(w.tiny), source=f"{source}:path={path}")
    else:
        resp = w.call("ood", run_dir=str(w.tiny), ood=f"{source}:path={path}", max_samples=50)
    assert_refused(w, resp)
    assert str(path) in json.loads(resp)["error"] or "data.path" in json.loads(resp)["error"]


# --- run directories: (tool, arguments, expected part of the error) -------------------------------


def _recipe_with(w: World, run: Path, **sections: dict) -> Path:
    import yaml

    doc = yaml.safe_load((run / "recipe.yaml").read_text())
    doc.update(sections)
    (run / "recipe.yaml").write_text(yaml.safe_dump(doc))
    return run


def _summary_with(run: Path, **keys: object) -> Path:
    doc = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**doc, **keys}))
    return run


def _linked(w: World, name: str, target: str) -> Path:
    run = w.copy_run()
    w.link(run / name, w.out / "run" / target)
    return run


def _weights_linked(w: World, base: Path | None = None) -> Path:
    """A copy of a run whose weights file (the one its summary names) links to outside weights."""
    run = w.copy_run(base)
    name = json.loads((run / "summary.json").read_text()).get("weights", "last")
    w.link(run / "checkpoints" / f"{name}.safetensors", w.out / "run" / "checkpoints" / "last.safetensors")
    return run


def _lm_linked(w: World, name: str, target: Path) -> Path:
    run = w.copy_run(w.lm)
    w.link(run / name, target)
    return run


def _data_json_with(run: Path, **keys: object) -> Path:
    doc = json.loads((run / "data.json").read_text())
    (run / "data.json").write_text(json.dumps({**doc, **keys}))
    return run


def _ev(run: Path) -> tuple[str, dict]:
    return "evaluate", {"run_dir": str(run)}


def _pred(run: Path) -> tuple[str, dict]:
    return "predict", {"run_dir": str(run), "features": [0.1] * 13}


def _train_from(run: Path) -> tuple[str, dict]:
    return "train", {"recipe": "wine-mlp", "epochs": 1, "overrides": [*TINY, f"model.from_run={run}"]}


def _train_teacher(run: Path) -> tuple[str, dict]:
    return "train", {"recipe": "wine-mlp", "epochs": 1,
                     "overrides": [*TINY, "loss.name=distill", f"loss.teacher={run}"]}


RUN_PLANTS: dict[str, Callable[[World], tuple[str, dict] | tuple[str, dict, str]]] = {
    "recipe-link/evaluate": lambda w: _ev(_linked(w, "recipe.yaml", "recipe.yaml")),
    "recipe-link/diagnose": lambda w: ("diagnose", {"run_dir": str(_linked(w, "recipe.yaml", "recipe.yaml"))}),
    "recipe-link/predict": lambda w: _pred(_linked(w, "recipe.yaml", "recipe.yaml")),
    "recipe-link/retrain": lambda w: ("train", {"recipe": str(_linked(w, "recipe.yaml", "recipe.yaml"))}),
    "summary-link/evaluate": lambda w: _ev(_linked(w, "summary.json", "summary.json")),
    "summary-link/predict": lambda w: _pred(_linked(w, "summary.json", "summary.json")),
    "data-json-link/evaluate": lambda w: _ev(_linked(w, "data.json", "data.json")),
    "data-json-link/diagnose": lambda w: ("diagnose", {"run_dir": str(_linked(w, "data.json", "data.json"))}),
    "weights-link/evaluate": lambda w: _ev(_weights_linked(w)),
    "weights-link/ood": lambda w: ("ood", {"run_dir": str(_weights_linked(w)), "ood": "noise"}),
    "checkpoints-folder-link/predict": lambda w: _pred(_linked(w, "checkpoints", "checkpoints")),
    "summary-weights-dotdot/evaluate": lambda w: (*_ev(_summary_with(w.copy_run(),
                                                  weights="../../../outside/run/checkpoints/last")), "plain file"),
    "summary-weights-absolute/predict": lambda w: (*_pred(_summary_with(
        w.copy_run(), weights=str(w.out / "run" / "checkpoints" / "last"))), "plain file"),
    "recipe-data-etc-passwd/evaluate": lambda w: _ev(_recipe_with(w, w.copy_run(), data={
        "source": "csv", "path": "/etc/passwd", "target": "x"})),
    "recipe-data-outside-csv/evaluate": lambda w: _ev(_recipe_with(w, w.copy_run(), data={
        "source": "csv", "path": str(w.out / "secret.csv"), "target": "label"})),
    "recipe-data-outside-csv/ood": lambda w: ("ood", {"run_dir": str(_recipe_with(w, w.copy_run(), data={
        "source": "csv", "path": str(w.out / "secret.csv"), "target": "label"})), "ood": "noise"}),
    "recipe-data-linked-folder/evaluate": lambda w: _ev(_recipe_with(w, w.copy_run(), data={
        "source": "text", "path": str(text_file_link(w)[1])})),
    "compress-json-link/evaluate": lambda w: _ev(_linked(w, "compress.json", "summary.json")),
    "probe-log-link/diagnose": lambda w: ("diagnose", {"run_dir": str(_linked(w, "doctor_probes.jsonl",
                                                                              "doctor_probes.jsonl"))}),
    "metrics-link/diagnose": lambda w: ("diagnose", {"run_dir": str(_linked(w, "metrics.csv", "metrics.csv"))}),
    "tokenizer-link/generate": lambda w: ("generate", {"run_dir": str(_lm_linked(w, "tokenizer.json",
                                                                                w.out / "tok.json")), "prompt": "he"}),
    "tokenizer-dotdot/generate": lambda w: ("generate", {"run_dir": str(_data_json_with(
        w.copy_run(w.lm), tokenizer="../../outside/tok.json")), "prompt": "he"}),
    "lm-weights-link/generate": lambda w: ("generate", {"run_dir": str(_weights_linked(w, w.lm)), "prompt": "he"}),
    "run-folder-link/evaluate": lambda w: _ev(w.link(w.fresh("l") / "run", w.out / "run")),
    "run-folder-link/diagnose": lambda w: ("diagnose", {"run_dir": str(w.link(w.fresh("l") / "r", w.out / "run"))}),
    "run-folder-link/predict": lambda w: _pred(w.link(w.fresh("l") / "run", w.out / "run")),
    "run-folder-link/ood": lambda w: ("ood", {"run_dir": str(w.link(w.fresh("l") / "r", w.out / "run")),
                                              "ood": "noise"}),
    "run-folder-link/generate": lambda w: ("generate", {"run_dir": str(w.link(w.fresh("l") / "r", w.out / "run")),
                                                        "prompt": "x"}),
    "run-folder-link/remember": lambda w: ("remember", {"text": "n", "run_dir": str(w.link(w.fresh("l") / "r",
                                                                                           w.out / "run"))}),
    "from-run-weights-link/train": lambda w: _train_from(_weights_linked(w)),
    "from-run-data-json-link/train": lambda w: _train_from(_linked(w, "data.json", "data.json")),
    "from-run-summary-dotdot/train": lambda w: (*_train_from(_summary_with(
        w.copy_run(), weights="../../outside/run/checkpoints/last")), "plain file"),
    "from-run-folder-link/train": lambda w: _train_from(w.link(w.fresh("l") / "r", w.out / "run")),
    "teacher-weights-link/train": lambda w: _train_teacher(_weights_linked(w)),
    "teacher-recipe-link/train": lambda w: _train_teacher(_linked(w, "recipe.yaml", "recipe.yaml")),
    "teacher-summary-dotdot/train": lambda w: (*_train_teacher(_summary_with(
        w.copy_run(), weights="../../outside/run/checkpoints/last")), "plain file"),
    "teacher-folder-link/train": lambda w: _train_teacher(w.link(w.fresh("l") / "r", w.out / "run")),
    "retrain-recipe-from-run-outside/train": lambda w: ("train", {"recipe": str(_recipe_with(
        w, w.copy_run(), model={"name": "mlp", "hidden": [32], "from_run": str(w.out / "run")}))}),
    "retrain-recipe-teacher-outside/train": lambda w: ("train", {"recipe": str(_recipe_with(
        w, w.copy_run(), loss={"name": "distill", "teacher": str(w.out / "run")}))}),
    "retrain-recipe-data-outside/train": lambda w: ("train", {"recipe": str(_recipe_with(w, w.copy_run(), data={
        "source": "csv", "path": str(w.out / "secret.csv"), "target": "label"}))}),
    "predict-input-link/predict": lambda w: ("predict", {"run_dir": str(w.tiny), "files": [
        str(w.link(w.fresh("in") / "x.csv", w.out / "secret.csv"))]}),
}


@pytest.mark.parametrize("case", list(RUN_PLANTS))
def test_run_directory_plants_are_refused(planted, case):
    w = planted
    tool, args, *match = RUN_PLANTS[case](w)
    assert_refused(w, w.call(tool, **args), *match)


def test_list_runs_hides_runs_whose_files_lead_outside(planted):
    w = planted
    summary_link = _linked(w, "summary.json", "summary.json")
    recipe_link = _linked(w, "recipe.yaml", "recipe.yaml")
    w.link(w.fresh("l") / "run", w.out / "run")
    text = w.call("list_runs")
    listed = [r["run_dir"] for r in json.loads(text)["runs"]]
    assert SECRET not in text and str(w.tiny) in listed
    assert str(summary_link) not in listed and str(recipe_link) not in listed
    w.alive()


def test_summary_weights_stay_in_the_run_even_without_a_sandbox(planted):
    """Not an agents matter only: summary.json is data, its weights name never leaves the run."""
    import liandan
    from liandan.errors import LiandanError
    from liandan.paths import active_roots

    assert active_roots() is None
    run = _summary_with(planted.copy_run(), weights="../../../outside/run/checkpoints/last")
    with pytest.raises(LiandanError, match="plain file name"):
        liandan.load_run(run)
    assert liandan.load_run(_summary_with(planted.copy_run(), weights="last")).model is not None


def test_a_refusal_over_mcp_leaves_the_server_serving(planted):
    """The same over the MCP protocol (in memory): refused as a tool error, then a valid call works."""
    import anyio
    from mcp import Client

    from liandan.agents.mcp_server import build_server

    w = planted
    run = _weights_linked(w)

    async def session() -> tuple[object, object]:
        async with Client(build_server(w.box.sandbox)) as c:
            bad = await c.call_tool("evaluate", {"run_dir": str(run)})
            good = await c.call_tool("evaluate", {"run_dir": str(w.tiny)})
        return bad, good

    bad, good = anyio.run(session)
    text = " ".join(getattr(c, "text", "") for c in bad.content)
    assert bad.is_error and OUTSIDE in text and SECRET not in text
    assert not good.is_error and "accuracy" in good.structured_content
