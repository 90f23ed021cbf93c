"""The ``arith-sub-lora`` preset as a user launches it: ``liandan finetune BASE arith-sub-lora``.

That the recipe is robust (LoRA exact match ≥ 0.85 on every arith-gpt base seed: 0.910-0.998 over
pairs 0-4 on the 2-core CPU sandbox, where the earlier lr 1e-2 / 10-epoch recipe gave 0.431-0.966,
and 0.125 on base seed 1 on another machine) takes a full arith-gpt base (50-100 s on 2 CPU cores)
and a 15-epoch fine-tune (45-100 s), past the slow tier's budget. It is a bench check instead:
``python bench/peft_arith.py --pairs 1 --methods lora --bar 0.85`` (exit status 1 below the bar;
``--pairs 0-4`` for every pair), and the full table is ``bench/peft_arith.py``. Here: the wiring.
"""

from __future__ import annotations

import liandan
from liandan.adapters.base import adaptable, dims
from liandan.adapters.inject import adapter_layers
from liandan.recipe import load_recipe

from .conftest import FAST, MODEL

SMALL = [f"model.{k}={v}" for k, v in MODEL.items() if k in ("layers", "dim", "heads")]


def test_preset_adapts_attention_and_mlp_of_every_block(base, tmp_path):
    """Every Linear of every block (attention c_attn/c_proj, MLP c_fc/c_proj) gets a LoRA update of
    the preset's rank; the embeddings, norms and biases stay frozen."""
    rec = load_recipe("arith-sub-lora")
    r = rec.adapter.options["r"]
    run = liandan.finetune(base.dir, "arith-sub-lora", overrides=[*FAST, *SMALL, "data.n=600", "train.max_steps=2"],
                           out=tmp_path / "ft", quiet=True)
    assert run.summary["status"] == "completed" and run.recipe.data.options["operators"] == "-"
    block_linears = {n: m for n, m in base.model.named_modules() if adaptable(m) and ".h." in n}
    adapted = dict(adapter_layers(run.model))
    assert set(adapted) == set(block_linears)
    assert any(".mlp." in n for n in adapted) and any(".attn." in n for n in adapted)
    assert run.summary["trainable_params"] == sum(r * sum(dims(m)) for m in block_linears.values())
