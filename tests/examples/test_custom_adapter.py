"""examples/custom_adapter.py: a PEFT method added in one file (IA³) equals peft's IA³ and
fine-tunes a frozen run through the ordinary recipe path."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).parents[2] / "examples" / "custom_adapter.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("custom_adapter_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)  # registers "ia3" once for this test process
    return mod


def test_ia3_equals_peft(example) -> None:
    peft = pytest.importorskip("peft")
    from liandan.adapters import apply_adapter
    from liandan.api_models import create_model
    from liandan.registry import ADAPTERS

    torch.manual_seed(0)
    base = create_model("mlp", num_classes=10, input_shape=(64,), hidden=[32, 32])  # Linear layers "1", "3", "5"
    ours = apply_adapter(copy.deepcopy(base), ADAPTERS.get("ia3").fn(targets=["1", "3"]))
    theirs = peft.get_peft_model(copy.deepcopy(base), peft.IA3Config(target_modules=["1", "3"], feedforward_modules=[]))
    scales = {name: torch.rand(32) + 0.5 for name in ("1", "3")}
    with torch.no_grad():
        for name, l in scales.items():
            ours.get_submodule(name).ia3_l.copy_(l)
            theirs.base_model.model.get_submodule(name).ia3_l["default"].copy_(l.view(-1, 1))  # peft: (out, 1)
    x = torch.randn(8, 64)
    assert torch.allclose(ours(x), theirs(x), atol=1e-6, rtol=0)
    assert sum(p.numel() for p in ours.parameters() if p.requires_grad) == 64  # one scale per unit


def test_ia3_fine_tunes_a_frozen_run_and_merges(example, tmp_path) -> None:
    res = example.main(tmp_path)
    assert res["trainable"] == 64  # the hidden layer's scales; the output head stays as trained
    # 2 epochs of base, then IA³: +0.033 to +0.061 over seeds 0-3 here (6 to 11 of 180 test digits)
    assert res["ia3_test_accuracy"] > res["base_test_accuracy"]
    assert res["merge_max_abs_diff"] < 1e-5
    assert sorted(p.name for p in EXAMPLE.parent.glob("custom_*.py")) == [
        "custom_adapter.py", "custom_callback.py", "custom_task.py"]  # one new file per kind of extension
