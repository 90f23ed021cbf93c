"""Export failure modes: unwritable folders, exports killed mid-write, opsets, latency settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from liandan.errors import LiandanError


def _one_line_exit_2(cli, *args: str) -> str:
    code, _, err = cli(*args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0]


def test_unwritable_folder_is_one_line_naming_the_cause(cli, llama_run, tmp_path, monkeypatch) -> None:
    """The OS refusing the write (here injected: the suite runs as root, which ignores modes) is
    reported as itself, in one line, and no temporary file stays behind."""
    from liandan.export import gguf_export

    def refused(path, *a, **k):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(gguf_export, "_write", refused)
    line = _one_line_exit_2(cli, "export", str(llama_run), "--format", "gguf", "--out", str(tmp_path / "m.gguf"))
    assert "Permission denied" in line and str(tmp_path / "m.gguf") in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_exit_2(cli, llama_run, tmp_path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        line = _one_line_exit_2(cli, "export", str(llama_run), "--format", "gguf", "--out", str(ro / "m.gguf"))
    finally:
        ro.chmod(0o755)
    assert "cannot write to" in line and "read-only" in line


KILLED = """
import os, signal, sys
from pathlib import Path
from liandan.export._common import atomic_file
with atomic_file(Path(sys.argv[1])) as tmp:
    tmp.write_bytes(b"half a model")
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
def test_killed_export_leaves_nothing_the_next_export_keeps(llama_run, tmp_path) -> None:
    """An export SIGKILLed mid-write leaves its hidden .part file (nothing can run after SIGKILL);
    the next export to the folder removes it, and keeps a live process's."""
    from liandan.export import to_gguf

    target = tmp_path / "m.gguf"
    proc = subprocess.run([sys.executable, "-c", KILLED, str(target)], capture_output=True)
    assert proc.returncode == -9
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".m.part-") and not target.exists()
    live = tmp_path / f".other.part-{os.getpid()}.gguf"  # ours, "still being written"
    live.write_bytes(b"")
    (tmp_path / f".export.json.tmp-{_dead_pid()}").write_text("{")  # liandan.runs' writer, killed
    (tmp_path / ".notes.part").write_text("a user's file")  # no process id: not ours to remove
    to_gguf(llama_run, target, outtype="q8_0", check=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.gguf", "export.json", live.name, ".notes.part"])


def test_remove_stale_parts_only_takes_dead_processes_files(tmp_path) -> None:
    from liandan.export._common import remove_stale_parts

    dead = _dead_pid()
    names = [f".m.part-{dead}.gguf", f".m.part-{dead}.onnx.data", f".export.json.tmp-{dead}",
             f".m.part-{os.getpid()}.gguf", ".m.part", "m.part-1.gguf", ".bashrc"]
    for n in names:
        (tmp_path / n).write_text("x")
    assert sorted(remove_stale_parts(tmp_path)) == sorted(names[:3])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[3:])


def _dead_pid() -> int:
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(p.stdout)


@pytest.mark.slow
def test_opset_is_honoured_or_refused(cli, mlp_run, tmp_path) -> None:
    """--opset never silently becomes another opset: the file has it, or the export says why not."""
    from liandan.export import to_onnx

    for opset in (17, 9):
        out = tmp_path / f"m{opset}.onnx"
        try:
            res = to_onnx(mlp_run, out, opset=opset, repeats=3)
        except LiandanError as e:
            assert f"--opset {opset}" in str(e) and not out.exists()
        else:
            import onnx

            assert res["opset"] == opset
            assert next(o.version for o in onnx.load(str(out)).opset_import if o.domain in ("", "ai.onnx")) == opset
    assert "defines opsets" in _one_line_exit_2(cli, "export", str(mlp_run), "--opset", "3")


def test_latency_is_single_threaded(mlp_onnx) -> None:
    """Both runtimes are timed on one thread, on its CPU clock (the spread over repeated exports:
    bench/export.py --spread 5)."""
    from pathlib import Path

    chk = mlp_onnx["check"]
    assert chk["threads"] == 1 and chk["latency_ms"]["torch_eager"] > 0 and chk["latency_ms"]["onnxruntime"] > 0
    assert "CPU time" in chk["latency_clock"] and chk["wall_ms"]["onnxruntime"] > 0
    path = Path(mlp_onnx["path"])
    assert json.loads((path.parent / "export.json").read_text())[path.name]["check"]["threads"] == 1
