"""ONNX export of pre-trained text models' heads: a text classifier (batch, K) and a token tagger
(batch, seq, K) take token ids with dynamic batch and sequence axes, checked against torch by
onnxruntime inside the export (max |Δ| recorded in export.json)."""

from __future__ import annotations

import pytest

import liandan
from liandan.export import export
from tests.data.test_records import jsonl as labelled_jsonl
from tests.data.test_records import labelled
from tests.data.test_span_records import jsonl, ner_records, write_bert

QUIET = {"train.tensorboard": False, "report": False, "doctor.enabled": False, "train.threads": 1}


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> str:
    return str(write_bert(tmp_path_factory.mktemp("bert")))


@pytest.mark.parametrize("task", ["text_classify", "token_classify"])
def test_text_heads_export_to_onnx(bert, tmp_path, task: str) -> None:
    path = (labelled_jsonl(tmp_path / "d.jsonl", labelled(60)) if task == "text_classify"
            else jsonl(tmp_path / "d.jsonl", ner_records(60)))
    rc = {"name": task, "task": task, "data": {"source": "records", "path": path, "batch_size": 16},
          "model": {"name": "hf", "path": bert}, "optim": {"lr": 3e-3}, "train": {"epochs": 1}}
    run = liandan.train(rc, QUIET, out=tmp_path / "run", quiet=True)
    res = export(run.dir, format="onnx")
    assert [i["name"] for i in res["inputs"]] == ["input_ids"]
    assert res["inputs"][0]["shape"] == ["batch", "seq"]
    assert res["outputs"][0]["shape"][:1] == ["batch"]
    assert len(res["outputs"][0]["shape"]) == (2 if task == "text_classify" else 3)
    assert res["check"]["max_abs_diff"] < 1e-4 and len(res["check"]["input_shapes"]) >= 2
