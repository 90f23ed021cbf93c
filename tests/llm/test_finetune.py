"""Fine-tuning a trained run with an adapter, end to end through the recipe and the CLI."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

import liandan
from liandan.training.run import load_run

from .conftest import FAST, arith_recipe

transformers = pytest.importorskip("transformers")


def test_lora_fine_tune(base, tmp_path):
    """The base's weights load and stay frozen; only LoRA trains; adapter.safetensors holds it alone;
    hf/ is a plain GPT-2 with the adapter merged; the run loads without its base."""
    rec = arith_recipe("-", adapter={"name": "lora", "r": 4, "targets": ["c_attn"]})
    rec["model"]["from_run"] = str(base.dir)
    run = liandan.train(rec, overrides=FAST, out=tmp_path / "ft", quiet=True)
    assert run.summary["status"] == "completed"
    assert run.summary["trainable_params"] == 4 * (32 + 96)  # one c_attn: r·(in + out)
    assert run.summary["params"] == base.summary["params"] + run.summary["trainable_params"]
    adapter = load_file(tmp_path / "ft" / "adapter.safetensors")
    assert sorted(k.rsplit(".", 1)[-1] for k in adapter) == ["lora_A", "lora_B"]
    assert adapter[next(k for k in adapter if k.endswith("lora_B"))].abs().sum() > 0  # it trained
    ft = {k.replace(".base.", "."): v for k, v in load_run(tmp_path / "ft").model.state_dict().items()}
    for k, v in base.model.state_dict().items():  # every base tensor as it was
        assert torch.equal(ft[k], v), k
    away = base.dir.with_name("base-away")
    shutil.move(base.dir, away)  # the fine-tuned run must not need its base to load
    try:
        loaded = load_run(tmp_path / "ft")
    finally:
        shutil.move(away, base.dir)
    ids = torch.randint(3, 10, (2, 8))
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "ft" / "hf").eval()
    with torch.no_grad():
        assert (hf(input_ids=ids).logits - loaded.model(ids)).abs().max() < 1e-5


def test_fine_tune_errors(base, tmp_path, cli):
    code, _, err = cli("train", "arith-gpt", "--set", f"model.from_run={tmp_path}", "--out", str(tmp_path / "x"))
    assert code == 2 and err.startswith("error: model.from_run:") and len(err.strip().splitlines()) == 1
    code, _, err = cli("train", "arith-gpt", "--set", f"model.from_run={base.dir}", "--out", str(tmp_path / "y"))
    assert code == 2 and "weights do not fit this model" in err  # arith-gpt is wider than the base
    rec = arith_recipe("-", adapter={"name": "lora", "rank": 4})
    with pytest.raises(liandan.LiandanError, match="adapter: unknown option 'rank'"):
        liandan.train(rec, overrides=FAST, out=tmp_path / "z", quiet=True)
    rec = arith_recipe("-", adapter={"name": "lora", "targets": ["wte"]})
    with pytest.raises(liandan.LiandanError, match="adapters wrap Linear"):
        liandan.train(rec, overrides=FAST, out=tmp_path / "w", quiet=True)


def test_finetune_verb(base, tmp_path, cli):
    """``liandan finetune BASE RECIPE --adapter lora`` is train with model.from_run and the adapter;
    without a recipe it continues on the base run's own data."""
    import yaml

    (tmp_path / "sub.yaml").write_text(yaml.safe_dump(arith_recipe("-")))
    code, out, err = cli("finetune", str(base.dir), str(tmp_path / "sub.yaml"), "--adapter", "lora", "--set",
                         "adapter.r=2", "--set", "doctor.enabled=false", "--set", "report=false", "--out",
                         str(tmp_path / "ft"), "--quiet", "--json")
    assert code == 0, err
    doc = __import__("json").loads(out)
    assert doc["trainable_params"] == 2 * (32 + 96) and doc["status"] == "completed"  # default target: c_attn
    run = liandan.finetune(base.dir, overrides=FAST, out=tmp_path / "same", quiet=True)  # full, base's data
    assert run.summary["trainable_params"] == run.summary["params"] == base.summary["params"]
    assert run.recipe.name == "arith+-ft" and run.recipe.data.options["operators"] == "+"
    code, _, err = cli("finetune", str(tmp_path), "--out", str(tmp_path / "x"))
    assert code == 2 and "is not a run directory" in err


def test_fine_tune_writes_a_peft_adapter_and_starts_from_one(base, tmp_path):
    """RUN/adapter/ is peft's format: PeftModel.from_pretrained on the base's hf/ gives the run's
    logits; and ``adapter: {from: RUN/adapter}`` starts a new fine-tune from exactly that adapter."""
    peft = pytest.importorskip("peft")
    rec = arith_recipe("-", adapter={"name": "lora", "r": 4, "targets": ["c_attn"]})
    rec["model"]["from_run"] = str(base.dir)
    run = liandan.train(rec, overrides=FAST, out=tmp_path / "ft", quiet=True)
    ids = torch.randint(3, 10, (2, 8))
    hf_base = transformers.GPT2LMHeadModel.from_pretrained(base.dir / "hf")
    tuned = peft.PeftModel.from_pretrained(hf_base, tmp_path / "ft" / "adapter").eval()
    with torch.no_grad():
        ours = run.model.eval()(ids)
        assert (tuned(input_ids=ids).logits - ours).abs().max() < 1e-5
    again = arith_recipe("-", adapter={"from": str(tmp_path / "ft" / "adapter")})
    again["model"]["from_run"] = str(base.dir)
    start = liandan.train(again, overrides=[*FAST, "train.max_steps=1", "optim.lr=1e-12"], out=tmp_path / "ft2",
                          quiet=True)
    assert start.summary["trainable_params"] == run.summary["trainable_params"]
    with torch.no_grad():
        assert (start.model.eval()(ids) - ours).abs().max() < 1e-4  # one step at lr 1e-12 from the same adapter
