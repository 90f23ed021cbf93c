"""The confinement guard itself (:mod:`liandan.paths`), and three tool fixes: predict takes literal
features without touching the file system, list_models filters by the tags models have, and
nothing (the doctor's memory included) is written outside the roots on a client's behalf."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import liandan.paths as paths
from liandan.agents.function_calling import call_tool
from liandan.errors import LiandanError
from tests.agents.planted import SECRET, World

# --- the guard ------------------------------------------------------------------------------------


def test_guard_is_a_no_op_without_roots(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("hi")
    assert paths.active_roots() is None
    assert paths.check_path(f) == f and paths.read_text(f) == "hi"
    with paths.checked_file(f) as name:
        assert name == str(f)


def test_guard_checks_realpaths_and_restores_on_exit(tmp_path):
    root, out = tmp_path / "root", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    (out / "s.txt").write_text(SECRET)
    (root / "ok.txt").write_text("ok")
    (root / "link.txt").symlink_to(out / "s.txt")
    (tmp_path / "rootx").mkdir()  # shares the prefix, is not inside
    with paths.confine([root]) as roots:
        assert roots == (str(root.resolve()),) and paths.active_roots() == roots
        assert paths.read_text(root / "ok.txt") == "ok"
        for bad in (root / "link.txt", out / "s.txt", root / ".." / "out" / "s.txt", tmp_path / "rootx"):
            with pytest.raises(paths.OutsideRootsError, match="outside the allowed directories") as e:
                paths.read_text(bad)
            assert SECRET not in str(e.value) and str(out / "s.txt") not in str(e.value).replace(str(bad), "")
        with paths.confine([out]):  # nested: the inner roots rule until the block ends
            assert paths.read_text(out / "s.txt") == SECRET
        with pytest.raises(LiandanError):
            paths.check_path(out / "s.txt")
    assert paths.active_roots() is None


def test_roots_belong_to_one_context(tmp_path):
    """Another thread (another tool call) does not inherit a call's roots."""
    seen = []
    with paths.confine([tmp_path]):
        t = threading.Thread(target=lambda: seen.append(paths.active_roots()))
        t.start()
        t.join()
    assert seen == [None]


def test_run_file_names_are_plain_components():
    assert paths.component("best", "weights") == "best"
    for bad in ("", ".", "..", "../x", "a/b", "a\\b", "/abs", "x\x00"):
        with pytest.raises(LiandanError, match="plain file name"):
            paths.component(bad, "weights")


def test_state_home_stays_inside_the_roots(tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("LIANDAN_HOME", str(tmp_path / "elsewhere"))
    assert paths.state_home() == tmp_path / "elsewhere"
    with paths.confine([root]):
        assert paths.state_home() == root.resolve() / ".liandan"
        monkeypatch.setenv("LIANDAN_HOME", str(root / "state"))
        assert paths.state_home() == root.resolve() / "state"


# --- predict: literal features (item 3) ------------------------------------------------------------


@pytest.mark.parametrize("n", [13, 64, 300])
def test_predict_features_never_touch_the_file_system(planted: World, tmp_path, monkeypatch, n):
    w = planted
    feats = [0.1] * n
    monkeypatch.chdir(tmp_path)  # a file named like the joined features, in the server's cwd
    joined = ",".join(repr(v) for v in feats)
    if len(joined) < 255:
        Path(joined).write_text("9,9\n")

    real_is_file = Path.is_file

    def no_probe(self: Path) -> bool:
        assert "," not in str(self), "predict probed the file system for the features"
        return real_is_file(self)

    monkeypatch.setattr(Path, "is_file", no_probe)
    doc = json.loads(w.call("predict", run_dir=str(w.tiny), features=feats))
    monkeypatch.undo()
    if n == 13:
        assert doc["predictions"][0]["classes"], doc
    else:
        assert f"{n} values, the model takes shape (13,)" in doc["error"], doc
        assert "internal error" not in doc["error"] and len(doc["error"]) < 300


def test_predict_over_mcp_with_64_features_is_a_user_error(planted: World):
    import anyio
    from mcp import Client

    from liandan.agents.mcp_server import build_server

    async def session() -> tuple[object, object]:
        async with Client(build_server(planted.box.sandbox)) as c:
            bad = await c.call_tool("predict", {"run_dir": str(planted.tiny), "features": [0.5] * 64})
            good = await c.call_tool("predict", {"run_dir": str(planted.tiny), "features": [0.5] * 13})
        return bad, good

    bad, good = anyio.run(session)
    text = " ".join(getattr(c, "text", "") for c in bad.content)
    assert bad.is_error and "64 values" in text and "internal" not in text.lower()
    assert not good.is_error


# --- list_models(tag) (item 4) ---------------------------------------------------------------------


def test_list_models_filters_by_the_tags_models_have(toolbox):
    every = toolbox.list_models()["models"]
    assert all(m["tags"] for m in every)

    def names(tag: str) -> set[str]:
        return {m["name"] for m in json.loads(call_tool("list_models", {"tag": tag}, toolbox))["models"]}

    image, text, tabular = names("image"), names("text"), names("tabular")
    assert {"lenet5", "resnet18", "vit", "clip"} <= image and "gpt" not in image and "mlp" not in image
    assert {"gpt", "bert", "clip", "blip"} <= text and "lenet5" not in text
    assert "mlp" in tabular and {"lstm", "transformer"} <= names("sequence")
    assert "gpt" in names("lm") and "bert" in names("MLM ") and "lenet5" in names("classify")
    assert names("no-such-tag") == set()
    for m in every:
        assert {x["name"] for x in toolbox.list_models(tag=m["tags"][0])["models"]} >= {m["name"]}


# --- nothing written outside the roots (item 5) ----------------------------------------------------


def test_doctor_memory_goes_inside_the_roots(tmp_path, monkeypatch):
    from liandan.doctor.memory import Memory, default_path

    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.delenv("LIANDAN_HOME", raising=False)
    assert default_path() == Path.home() / ".liandan" / "memory.db"  # the CLI's default is unchanged
    with paths.confine([root]):
        assert Memory().path == root.resolve() / ".liandan" / "memory.db"
        with pytest.raises(LiandanError, match="outside the allowed"):
            Memory(tmp_path / "elsewhere" / "m.db")
        (root / "m.db").symlink_to(tmp_path / "planted.db")
        with pytest.raises(LiandanError, match="outside the allowed"):
            Memory(root / "m.db")
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "planted.db").exists()


AUTO_FIX = """
import json, sys
from liandan.agents.function_calling import call_tool
from liandan.agents.sandbox import Sandbox
from liandan.agents.tools import Toolbox
box = Toolbox(Sandbox([sys.argv[1]]))
print(call_tool("train", {"recipe": "wine-mlp", "epochs": 2, "overrides": [
    "doctor.enabled=true", "doctor.auto_fix=true", "doctor.max_rounds=1", "optim.lr=1000",
    "train.tensorboard=false"]}, box))
"""


@pytest.mark.slow
def test_a_train_call_writes_only_inside_the_root(tmp_path):
    """doctor.auto_fix on a diverging run, with its report, in a fresh server process: the repair
    rounds, the doctor's memory, the FLOPS cache and matplotlib's font cache land in the root;
    $HOME (where ~/.liandan/memory.db would go) stays empty."""
    import os
    import subprocess
    import sys

    home, root = tmp_path / "home", tmp_path / "root"
    home.mkdir()
    root.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("LIANDAN_HOME", "MPLCONFIGDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")}
    proc = subprocess.run([sys.executable, "-c", AUTO_FIX, str(root)], env={**env, "HOME": str(home)},
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" not in doc, (doc, proc.stderr[-2000:])
    assert (Path(doc["run_dir"]) / "repair.json").is_file()
    assert (root / ".liandan" / "memory.db").is_file()
    assert sorted(p.name for p in home.rglob("*")) == []
