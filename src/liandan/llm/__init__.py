"""Language-model adaptation: parameter-efficient fine-tuning (:mod:`liandan.llm.peft`).

A recipe fine-tunes a trained run by naming it and an adapter::

    model:   {name: gpt, size: tiny, layers: 2, dim: 64, heads: 4, from_run: runs/arith}
    adapter: {name: lora, r: 8, alpha: 16, targets: [c_attn, c_fc]}

The base weights load from ``from_run`` and freeze; only the adapter trains. ``liandan list
adapters`` shows every method with its options.
"""

from liandan.llm.peft import adapter_state_dict, apply_adapter, merge_adapter, trainable_parameters

__all__ = ["adapter_state_dict", "apply_adapter", "merge_adapter", "trainable_parameters"]
