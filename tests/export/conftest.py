"""Tiny trained runs shared by the export tests (session-scoped: each is trained once).

A 2-epoch digits MLP (normalised image inputs), a 2-epoch diabetes regressor (normalised
features and standardised targets), and two 1-epoch arith language models, LLaMA- and GPT-2-style.
"""

from __future__ import annotations

from pathlib import Path

import pytest

FAST = ["doctor.enabled=false", "train.tensorboard=false", "report=false"]
LM = ["data.n=600", "train.epochs=1", "schedule.warmup_steps=2", *FAST]


def _train(tmp_path_factory: pytest.TempPathFactory, preset: str, overrides: list[str], name: str) -> Path:
    import liandan

    out = tmp_path_factory.mktemp("export-runs") / name
    return liandan.train(preset, overrides=overrides, out=out, quiet=True).dir


@pytest.fixture(scope="session")
def mlp_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory, "digits-mlp", ["train.epochs=2", *FAST], "mlp")


@pytest.fixture(scope="session")
def reg_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory, "diabetes-regression", ["train.epochs=2", *FAST], "reg")


@pytest.fixture(scope="session")
def llama_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory, "arith-gpt", ["model.style=llama", *LM], "llama")


@pytest.fixture(scope="session")
def gpt2_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory, "arith-gpt", ["data.n=300", *LM[1:]], "gpt2")


@pytest.fixture(scope="session")
def mlp_onnx(mlp_run) -> dict:
    from liandan.export import to_onnx

    return to_onnx(mlp_run, repeats=10)


@pytest.fixture(scope="session")
def llama_onnx(llama_run) -> dict:
    from liandan.export import to_onnx

    return to_onnx(llama_run, repeats=10)


@pytest.fixture(scope="session")
def gguf_f32(llama_run) -> dict:
    from liandan.export import to_gguf

    return to_gguf(llama_run, outtype="f32")


@pytest.fixture(scope="session")
def gguf_q8(llama_run) -> dict:
    from liandan.export import to_gguf

    return to_gguf(llama_run, outtype="q8_0")
