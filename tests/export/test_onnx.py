"""ONNX export: onnxruntime is the oracle for the file, the run's own raw-input path for torch.

The contract: the .onnx file takes *raw* inputs (pixels in [0, 1], features in their units) and
returns what ``liandan predict`` computes (logits; a regressor's values in target units).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from liandan.errors import LiandanError

ATOL = 1e-4


def _session(path: str):
    from liandan.export.onnx_export import ort_session

    return ort_session(Path(path), threads=1)


def _test_inputs(run_dir: Path, n: int = 64) -> tuple[object, torch.Tensor]:
    from liandan.evaluation.runio import open_run, raw_split

    run, data = open_run(run_dir)
    return run, raw_split(data, "test", max_samples=n)[0]


def test_ort_matches_torch_at_batch_1_and_5(mlp_run, mlp_onnx) -> None:
    """Same file, two batch sizes (the batch axis is dynamic), raw inputs: ORT == logits_of within 1e-4."""
    from liandan.evaluation.runio import logits_of

    run, x = _test_inputs(mlp_run)
    sess = _session(mlp_onnx["path"])
    for b in (1, 5, 37):
        xb = x[:b]
        got = sess.run(None, {"input": xb.numpy()})[0]
        ref = logits_of(run.model, run.info, xb).numpy()  # the run's own normalise-then-forward path
        assert got.shape == ref.shape == (b, 10)
        assert np.abs(got - ref).max() <= ATOL
    chk = mlp_onnx["check"]
    assert chk["max_abs_diff"] <= ATOL and [s[0] for s in chk["input_shapes"]] == [1, 5]


def test_file_takes_raw_inputs_not_normalised_ones(mlp_run, mlp_onnx) -> None:
    """Feeding already-normalised inputs must NOT give the logits: the normalisation is in the graph."""
    from liandan.evaluation.runio import logits_of

    run, x = _test_inputs(mlp_run, 16)
    assert run.info.x_mean is not None  # the run does normalise, so the contract matters
    sess = _session(mlp_onnx["path"])
    ref = logits_of(run.model, run.info, x).numpy()
    raw = sess.run(None, {"input": x.numpy()})[0]
    twice = sess.run(None, {"input": run.info.normalize_x(x).numpy()})[0]
    assert np.abs(raw - ref).max() <= ATOL
    assert np.abs(twice - ref).max() > 0.1
    assert "mean" in mlp_onnx["preprocessing"] and mlp_onnx["raw_inputs"] is True


def test_regressor_outputs_target_units(reg_run) -> None:
    """A regressor's file maps raw features to predictions in target units (denormalize_y built in)."""
    from liandan.evaluation.runio import logits_of
    from liandan.export import to_onnx

    res = to_onnx(reg_run, check=True, repeats=5)
    run, x = _test_inputs(reg_run)
    got = _session(res["path"]).run(None, {"input": x.numpy()})[0]
    ref = run.info.denormalize_y(logits_of(run.model, run.info, x)).numpy()
    assert res["outputs"][0]["name"] == "prediction"
    assert np.abs(ref).max() > 10  # really in target units (diabetes progression ~25..346)
    assert np.abs(got - ref).max() <= ATOL * np.abs(ref).max()


def test_export_json_records_names_shapes_opset_latency(mlp_run, mlp_onnx) -> None:
    doc = json.loads((Path(mlp_onnx["path"]).parent / "export.json").read_text())
    e = doc["model.onnx"]
    assert e["opset"] >= 17 and e["format"] == "onnx"
    assert e["inputs"] == [{"name": "input", "shape": ["batch", 1, 8, 8], "dtype": "float32"}]
    assert e["outputs"] == [{"name": "logits", "shape": ["batch", 10], "dtype": "float32"}]
    lat = e["check"]["latency_ms"]
    assert lat["torch_eager"] > 0 and lat["onnxruntime"] > 0 and e["check"]["latency_batch"] == 1
    assert e["bytes"] == Path(mlp_onnx["path"]).stat().st_size
    assert not list(Path(mlp_onnx["path"]).parent.glob("*.data"))  # one self-contained file


def test_lm_logits_dynamic_batch_and_sequence(llama_run, llama_onnx) -> None:
    """A LLaMA-style LM: input_ids (batch, seq) both dynamic, logits (batch, seq, vocab)."""
    run, x = _test_inputs(llama_run)
    sess = _session(llama_onnx["path"])
    assert [i.name for i in sess.get_inputs()] == ["input_ids"]
    assert llama_onnx["inputs"][0]["shape"] == ["batch", "seq"]
    with torch.no_grad():
        for xb in (x[:1], x[:5], x[:3, :4]):
            got = sess.run(None, {"input_ids": xb.numpy()})[0]
            ref = run.model(xb).numpy()
            assert got.shape == (*xb.shape, run.info.vocab_size)
            assert np.abs(got - ref).max() <= ATOL
    assert llama_onnx["check"]["max_abs_diff"] <= ATOL


@pytest.mark.slow
def test_gpt2_lm_exports_too(gpt2_run) -> None:
    from liandan.export import to_onnx

    res = to_onnx(gpt2_run, repeats=5)
    assert res["check"]["max_abs_diff"] <= ATOL and res["outputs"][0]["shape"][:2] == ["batch", "seq"]


def test_static_batch(mlp_run, tmp_path) -> None:
    from liandan.export import to_onnx

    res = to_onnx(mlp_run, tmp_path / "fixed.onnx", dynamic_batch=False, repeats=5)
    assert res["inputs"][0]["shape"] == [1, 1, 8, 8] and res["check"]["input_shapes"] == [[1, 1, 8, 8]]


def test_failed_check_leaves_no_file(mlp_run, tmp_path) -> None:
    """An export whose check fails is never renamed into place, and its temporary file is gone."""
    from liandan.export import to_onnx

    dest = tmp_path / "m.onnx"
    with pytest.raises(LiandanError, match="not written"):
        to_onnx(mlp_run, dest, atol=-1.0, repeats=1)  # no difference can pass a negative tolerance
    assert list(tmp_path.iterdir()) == []


def test_refuses_what_one_graph_cannot_hold(mlp_run, tmp_path) -> None:
    from liandan.export import to_onnx

    with pytest.raises(LiandanError, match="not a run directory"):
        to_onnx(tmp_path)
    with pytest.raises(LiandanError, match="does not exist"):
        to_onnx(mlp_run, tmp_path / "missing" / "m.onnx")
    with pytest.raises(LiandanError, match="must end in .onnx"):
        to_onnx(mlp_run, tmp_path / "m.gguf")
