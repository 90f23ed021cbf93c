"""A run fine-tuned through an adapter exports its merged weights: the GGUF file and the ONNX
model compute what the adapted model computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import liandan
from liandan.training.run import load_run

from .conftest import FAST


@pytest.mark.slow
def test_lora_fine_tune_exports_merged(llama_run, tmp_path) -> None:
    from liandan.export import to_gguf, to_onnx
    from liandan.export.gguf_check import load_gguf_model, prompt_ids

    run = liandan.finetune(llama_run, "arith-gpt", adapter={"name": "lora", "r": 4, "targets": ["q_proj", "v_proj"]},
                           overrides=["model.style=llama", "data.n=300", "data.operators='-'", "train.epochs=1",
                                      *FAST], out=tmp_path / "ft", quiet=True)
    assert 0 < run.summary["trainable_params"] < run.summary["params"] / 10
    doc = to_gguf(run.dir, outtype="f32")
    assert doc["check"]["max_abs_diff"] < 1e-4
    adapted = load_run(run.dir)
    ids = prompt_ids(adapted, 8)
    gguf_model, _ = load_gguf_model(__import__("pathlib").Path(doc["path"]))
    with torch.no_grad():
        ref = adapted.model(ids)  # the adapter model itself, not merged
        got = gguf_model(input_ids=ids, use_cache=False).logits[..., : ref.shape[-1]]  # less the added tokens
    assert (got - ref).abs().max() < 1e-4
    onnx = to_onnx(run.dir, repeats=2)
    assert onnx["check"]["max_abs_diff"] < 1e-4
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx["path"], providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: ids.numpy()})[0]
    assert np.abs(out - ref.numpy()).max() < 1e-4


def test_prompt_tuned_run_is_refused_not_exported_without_its_prompt(llama_run, tmp_path) -> None:
    """Virtual tokens are inputs, not weights: no hf/ copy and no export that would drop them."""
    import pytest

    from liandan.errors import LiandanError
    from liandan.export import to_gguf, to_onnx

    run = liandan.finetune(llama_run, "arith-gpt", adapter={"name": "prompt_tuning", "num_virtual_tokens": 4},
                           overrides=["model.style=llama", "data.n=300", "train.epochs=1", *FAST],
                           out=tmp_path / "pt", quiet=True)
    assert (run.dir / "adapter.safetensors").exists() and not (run.dir / "hf").exists()
    for export in (to_onnx, to_gguf):
        with pytest.raises(LiandanError, match="virtual tokens"):
            export(run.dir)
    assert not (run.dir / "export").exists() or not any((run.dir / "export").iterdir())
