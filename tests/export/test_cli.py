"""``liandan export``: bad input ends in exit 2 with one line; --json prints one document."""

from __future__ import annotations

import json

import pytest


def _one_line_exit_2(cli, *args: str) -> str:
    code, out, err = cli(*args)
    assert code == 2, (args, code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_bad_inputs_exit_2_with_one_line(cli, tmp_path, mlp_run, gpt2_run) -> None:
    assert "not a run directory" in _one_line_exit_2(cli, "export", str(tmp_path))
    assert "unknown export format 'tflite'" in _one_line_exit_2(cli, "export", str(mlp_run), "--format", "tflite")
    assert "language-model runs" in _one_line_exit_2(cli, "export", str(mlp_run), "--format", "gguf")
    assert "model.style=llama" in _one_line_exit_2(cli, "export", str(gpt2_run), "--format", "gguf")
    missing = tmp_path / "nowhere" / "m.onnx"
    assert "does not exist" in _one_line_exit_2(cli, "export", str(mlp_run), "--out", str(missing))
    assert "--outtype" in _one_line_exit_2(cli, "export", str(mlp_run), "--outtype", "q8_0")
    assert not missing.parent.exists()


@pytest.mark.parametrize("args", [("--format", "gguf", "--outtype", "q5_k"), ("--format", "onnx", "--opset", "x")])
def test_bad_options_exit_2(cli, llama_run, args) -> None:
    code, _, err = cli("export", str(llama_run), *args)
    assert code == 2 and "Traceback" not in err


def test_gguf_json(cli, llama_run, tmp_path) -> None:
    code, out, err = cli("export", str(llama_run), "--format", "gguf", "--outtype", "q4_0",
                         "--out", str(tmp_path / "m.gguf"), "--json")
    assert code == 0, err
    doc = json.loads(out)
    lc = doc["llamacpp_tokenizer"]  # llama.cpp's tokenizer from the file gives the run's ids
    assert doc["outtype"] == "q4_0" and lc["same_ids"] == lc["texts"] > 0 and "byte_fallback" in lc
    assert json.loads((tmp_path / "export.json").read_text())["m.gguf"]["bytes"] == (tmp_path / "m.gguf").stat().st_size


def test_onnx_no_check_text(cli, mlp_run, tmp_path) -> None:
    code, out, err = cli("export", str(mlp_run), "--out", str(tmp_path / "m.onnx"), "--no-check")
    assert code == 0, err
    assert out.startswith(f"wrote {tmp_path / 'm.onnx'}") and "not checked" in out
    assert "check" not in json.loads((tmp_path / "export.json").read_text())["m.onnx"]


def test_exporter_failure_is_one_line_and_leaves_no_file(cli, mlp_run, tmp_path, monkeypatch) -> None:
    """Whatever the exporter prints or raises, the user sees one line and no half-written file."""
    import sys

    import torch

    def broken(model, args, f, **kw) -> None:
        open(f, "wb").write(b"half a model")  # noqa: SIM115
        print("exporter chatter", file=sys.stderr)
        print("def forward(self, arg0_1): ...")
        raise RuntimeError("Failed to export\nsecond line") from ValueError("the root cause")

    monkeypatch.setattr(torch.onnx, "export", broken)
    line = _one_line_exit_2(cli, "export", str(mlp_run), "--out", str(tmp_path / "m.onnx"))
    assert "ValueError: the root cause" in line
    assert list(tmp_path.iterdir()) == []
