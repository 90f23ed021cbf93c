"""Time of check vs time of use: a file swapped for a symlink after the client's path was checked
(or between the low-level check and the open) is refused when it is opened, never followed out of
the root. Swaps are provoked by wrapping the check that runs just before the open."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import liandan.paths as paths
from liandan.agents.sandbox import Sandbox
from liandan.errors import LiandanError
from tests.agents.planted import OUTSIDE, SECRET, TINY, World, assert_refused, text_folder, write_png


def _swap_after(monkeypatch, cls_or_mod: object, name: str, when, swap) -> None:
    """Wrap ``cls_or_mod.name`` so that ``swap()`` runs right after a call ``when(args)`` accepts."""
    real = getattr(cls_or_mod, name)
    done = []

    def wrapped(*args, **kwargs):
        out = real(*args, **kwargs)
        if not done and when(args, out):
            done.append(swap())
        return out

    monkeypatch.setattr(cls_or_mod, name, wrapped)


def _image_folder(w: World) -> Path:
    d = w.fresh("imgs")
    for c in ("c0", "c1"):
        (d / c).mkdir()
        write_png(d / c / "a.png")
        write_png(d / c / "b.png")
    return d


@pytest.mark.parametrize("tool", ["train-text", "evaluate-image_folder", "ood-text"])
def test_data_file_swapped_after_the_client_path_check(planted, monkeypatch, tool):
    w = planted
    if tool.endswith("text"):
        d = text_folder(w.fresh("docs"))
        victim, target = d / "a.txt", w.out / "secret.txt"
    else:
        d = _image_folder(w)
        victim, target = d / "c1" / "b.png", w.out / "secret.png"
    _swap_after(monkeypatch, Sandbox, "resolve", lambda a, out: Path(out) == d, lambda: w.link(victim, target))
    source = tool.split("-")[1]
    if tool.startswith("train"):
        resp = w.call("train", recipe="wine-mlp", epochs=1, overrides=[*TINY, "data.source=text", f"data.path={d}"])
    elif tool.startswith("evaluate"):
        resp = w.call("evaluate", run_dir=str(w.tiny), source=f"{source}:path={d}")
    else:
        resp = w.call("ood", run_dir=str(w.tiny), ood=f"{source}:path={d}", max_samples=50)
    monkeypatch.undo()
    assert victim.is_symlink()  # the swap happened, after the client's path had passed
    assert_refused(w, resp)


@pytest.mark.parametrize("victim", ["recipe.yaml", "summary.json", "data.json", "weights"])
def test_run_file_swapped_after_the_run_directory_check(planted, monkeypatch, victim):
    w = planted
    run = w.copy_run()
    if victim == "weights":
        name = json.loads((run / "summary.json").read_text())["weights"]
        at, target = run / "checkpoints" / f"{name}.safetensors", w.out / "run" / "checkpoints" / "last.safetensors"
    else:
        at, target = run / victim, w.out / "run" / victim
    _swap_after(monkeypatch, Sandbox, "run_dir", lambda a, out: Path(out) == run, lambda: w.link(at, target))
    resp = w.call("evaluate", run_dir=str(run))
    monkeypatch.undo()
    assert at.is_symlink()
    assert_refused(w, resp)


def _called_from_open() -> bool:
    return sys._getframe(3).f_code.co_name == "_open_fd"  # this <- when <- wrapped <- _open_fd


def test_last_component_swapped_between_check_and_open(planted, monkeypatch):
    """The checked file becomes a symlink after check_path resolved it: O_NOFOLLOW refuses it."""
    w = planted
    d = text_folder(w.fresh("docs"))
    _swap_after(monkeypatch, paths, "check_path", lambda a, out: Path(out).name == "a.txt" and _called_from_open(),
                lambda: w.link(d / "a.txt", w.out / "secret.txt"))
    resp = w.call("train", recipe="wine-mlp", epochs=1, overrides=[*TINY, "data.source=text", f"data.path={d}"])
    monkeypatch.undo()
    assert (d / "a.txt").is_symlink()
    assert_refused(w, resp, "became a symlink")


def test_parent_folder_swapped_between_check_and_open(planted, monkeypatch):
    """The checkpoints folder becomes a link to an outside run's after the weights file was checked:
    the descriptor is checked after the open and the outside file is refused, never read."""
    w = planted
    run = w.copy_run()
    (w.out / "run" / "checkpoints" / "final.safetensors").write_bytes(SECRET.encode())
    _swap_after(monkeypatch, paths, "check_path",
                lambda a, out: Path(out).suffix == ".safetensors" and _called_from_open(),
                lambda: w.link(run / "checkpoints", w.out / "run" / "checkpoints"))
    resp = w.call("predict", run_dir=str(run), features=[0.1] * 13)
    monkeypatch.undo()
    assert (run / "checkpoints").is_symlink()
    assert_refused(w, resp, "changed while being opened")


def test_image_swapped_after_listing_is_refused_when_decoded(planted):
    """image_folder lists and checks its files up front, decodes them later (maybe in a DataLoader
    worker, where the context is not inherited): the roots travel with the dataset."""
    from liandan.data.files import image_folder

    w = planted
    d = _image_folder(w)
    with paths.confine([w.root]):
        src = image_folder(str(d))
    files = [Path(f) for f in src.dataset.files]
    assert src.dataset.load(1).shape[-1] == 8  # outside the block: still confined, still fine inside
    w.link(files[1], w.out / "secret.png")
    with pytest.raises(LiandanError, match=OUTSIDE):
        src.dataset.load(1)


def test_memory_store_swapped_after_resolution(tmp_path, monkeypatch):
    """The agent memory file becomes a link out of the root after the sandbox resolved it: recall
    refuses to read it and remember neither reads nor appends to the outside file."""
    from liandan.agents.function_calling import call_tool
    from liandan.agents.memory import MEMORY_FILE
    from liandan.agents.tools import Toolbox

    root, out = tmp_path / "root", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    secret = out / "secret.jsonl"
    secret.write_text(json.dumps({"id": "x", "text": SECRET, "tags": []}) + "\n")
    box = Toolbox(Sandbox([root]))
    assert "error" not in json.loads(call_tool("remember", {"text": "first note"}, box))
    before = secret.read_bytes()
    for tool, args in (("recall", {"query": "note"}), ("remember", {"text": "second"})):
        _swap_after(monkeypatch, Sandbox, "resolve", lambda a, out: Path(out).name == MEMORY_FILE,
                    lambda: (root / MEMORY_FILE).unlink() or (root / MEMORY_FILE).symlink_to(secret))
        resp = call_tool(tool, args, box)
        monkeypatch.undo()
        (root / MEMORY_FILE).unlink()
        (root / MEMORY_FILE).write_text("")
        assert OUTSIDE in json.loads(resp)["error"] or "symlink" in json.loads(resp)["error"], resp
        assert SECRET not in resp
    assert secret.read_bytes() == before
    assert "error" not in json.loads(call_tool("recall", {"query": "note"}, box))
