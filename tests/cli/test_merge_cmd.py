"""`liandan merge HF_DIR OUT --adapter PEFT_DIR`: a peft LoRA folded into a tiny LLaMA gives a plain
directory whose AutoModelForCausalLM logits are peft's; a folder that is not an adapter is one line."""

from __future__ import annotations

import torch

from tests.models import hf_tiny


def test_merge_cli_folds_a_peft_adapter(tmp_path, cli) -> None:
    import peft
    from transformers import AutoModelForCausalLM

    base_dir = hf_tiny.write(tmp_path, "llama")
    base = AutoModelForCausalLM.from_pretrained(str(base_dir))
    adapted = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                        init_lora_weights=False))  # B ≠ 0: a real update
    adapted.save_pretrained(str(tmp_path / "adapter"))
    ids = torch.tensor([[1, 5, 6, 7, 8]])
    with torch.no_grad():
        want = adapted(ids).logits
    code, out, err = cli("merge", str(base_dir), str(tmp_path / "merged"), "--adapter", str(tmp_path / "adapter"))
    assert code == 0, err
    merged = AutoModelForCausalLM.from_pretrained(out.strip())
    with torch.no_grad():
        assert (merged(ids).logits - want).abs().max() < 1e-5
    code, _, err = cli("merge", str(base_dir), str(tmp_path / "m2"), "--adapter", str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1
