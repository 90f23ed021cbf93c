"""The tool registry called directly: results are plain JSON, paths (also inside recipes and
source specs) are sandboxed, and user errors are LiandanErrors with one-line messages."""

from __future__ import annotations

import json
import math

import pytest

import liandan
from liandan.agents.sandbox import SandboxError
from liandan.agents.tools import TOOLS, Toolbox, error_message, jsonable
from liandan.errors import LiandanError


def test_registry_matches_the_toolbox():
    names = [t.name for t in TOOLS]
    assert len(names) == len(set(names)) >= 10
    for t in TOOLS:
        assert callable(getattr(Toolbox, t.name)) and getattr(Toolbox, t.name).__doc__
    assert {"list_presets", "list_models", "train", "evaluate", "ood", "summary", "diagnose", "predict",
            "generate"} <= set(names)
    assert [t.name for t in TOOLS if not t.read_only] == ["train", "remember", "forget"]


def test_train_tool_writes_inside_the_root(tiny_run, agent_root):
    assert tiny_run["run_dir"] == str(agent_root.resolve() / "tiny")
    assert tiny_run["status"] == "completed" and tiny_run["epochs"] == 2
    assert 0.0 <= tiny_run["final"]["test"]["accuracy"] <= 1.0
    json.dumps(tiny_run, allow_nan=False)


def test_read_tools_on_the_tiny_run(toolbox, tiny_run, agent_root):
    run = tiny_run["run_dir"]
    ev = toolbox.evaluate("tiny")  # relative to the first root
    assert ev["accuracy"] == pytest.approx(liandan.evaluate(run)["accuracy"])
    assert toolbox.diagnose(run)["healthy"] in (True, False)
    res = toolbox.ood(run, "noise", method="msp,energy", max_samples=50)
    assert set(res["methods"]) == {"msp", "energy"} and "hist" not in res["methods"]["msp"]
    pred = toolbox.predict(run, features=[0.1] * 13, top=2)["predictions"][0]
    assert len(pred["classes"]) == 2 and pred["classes"][0]["prob"] >= pred["classes"][1]["prob"]
    (agent_root / "x.csv").write_text(",".join(["0.1"] * 13) + "\n")
    from_file = toolbox.predict(run, files=["x.csv"], top=2)["predictions"][0]
    assert from_file["classes"] == pred["classes"] and from_file["input"].startswith(str(agent_root.resolve()))
    runs = toolbox.list_runs()
    assert runs["roots"] == list(toolbox.sandbox.roots) and run in [r["run_dir"] for r in runs["runs"]]
    for doc in (ev, res, runs):
        json.dumps(doc, allow_nan=False)


def test_listing_and_model_tools(toolbox):
    assert "wine-mlp" in [p["name"] for p in toolbox.list_presets()["presets"]]
    models = toolbox.list_models(verbose=True)["models"]
    lenet = next(m for m in models if m["name"] == "lenet5")
    assert "num_classes" in lenet["options"]
    s = toolbox.summary("lenet5")
    assert s["params"] == 61706 and "layers" not in s
    assert toolbox.summary("mlp", input_shape=[1, 4], options=["num_classes=3", "hidden=[8]"], layers=True)["layers"]
    assert "overfitting" in toolbox.explain("overfitting")["text"]


@pytest.mark.parametrize("call, match", [
    (lambda b: b.train("no-such-preset"), "no preset named"),
    (lambda b: b.train("wine-mpl"), "did you mean 'wine-mlp'"),
    (lambda b: b.train("/etc/recipe.yaml"), "outside the allowed"),
    (lambda b: b.train("../x.yaml"), "outside the allowed"),
    (lambda b: b.train("wine-mlp", overrides=["data.source=csv", "data.path=/etc/hostname", "data.target=x"]),
     "data.path '/etc/hostname' is outside"),
    (lambda b: b.train("wine-mlp", overrides=["model.from_run=/tmp"]), "outside the allowed"),
    (lambda b: b.train("wine-mlp", overrides=["loss.name=distill", "loss.teacher=/tmp"]), "outside the allowed"),
    (lambda b: b.train("wine-mlp", overrides=["doctor.memory=/tmp/m.db"]), "doctor.memory '/tmp/m.db' is outside"),
    (lambda b: b.train("wine-mlp", out="/tmp/elsewhere"), "outside the allowed"),
    (lambda b: b.train("wine-mlp", out="tiny"), "not empty"),
    (lambda b: b.train("wine-mlp", epochs=-1), "epochs"),
    (lambda b: b.evaluate("/etc"), "outside the allowed"),
    (lambda b: b.evaluate("tiny", source="csv:path=/etc/passwd,target=x"), "outside the allowed"),
    (lambda b: b.ood("tiny", "csv:path=../../x.csv"), "outside the allowed"),
    (lambda b: b.predict("tiny", files=["/etc/hostname"]), "outside the allowed"),
    (lambda b: b.predict("tiny"), "needs features or files"),
    (lambda b: b.predict("tiny", features=[float("nan")] * 13), "finite"),
    (lambda b: b.generate("tiny", "1+1="), "language-model run"),
    (lambda b: b.summary("lenet5", input_shape=[100000, 3, 224, 224]), "too large"),
    (lambda b: b.summary("lenet5", input_shape=[0, 1]), "positive"),
    (lambda b: b.summary("lenet5", options=["oops"]), "key=value"),
    (lambda b: b.explain("no-such-topic"), "unknown topic"),
])
def test_user_errors_are_liandan_errors(toolbox, tiny_run, call, match):
    with pytest.raises(LiandanError, match=match) as info:
        call(toolbox)
    assert "\n" not in (error_message(info.value) or "")


def test_sandbox_errors_happen_before_any_work(toolbox, agent_root):
    before = sorted(p.name for p in agent_root.iterdir())
    with pytest.raises(SandboxError):
        toolbox.train("wine-mlp", overrides=["model.from_run=/"])
    assert sorted(p.name for p in agent_root.iterdir()) == before


def test_error_message_and_jsonable():
    assert error_message(LiandanError("bad thing\nsecond line")) == "bad thing"
    assert error_message(ValueError("v")) == "ValueError: v"
    assert error_message(RuntimeError("internal detail")) is None  # a bug: reported generically
    doc = jsonable({"a": float("nan"), "b": (1, 2.5), "c": math.inf, 3: True})
    assert doc == {"a": None, "b": [1, 2.5], "c": None, "3": True}
    import numpy as np
    import torch

    assert jsonable({"n": np.float32(0.5), "t": torch.tensor([1, 2])}) == {"n": 0.5, "t": [1, 2]}
