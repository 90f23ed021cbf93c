"""Language-model adaptation: parameter-efficient fine-tuning (:mod:`liandan.adapters`).

A recipe fine-tunes a trained run by naming it and an adapter::

    model:   {name: gpt, size: tiny, layers: 2, dim: 64, heads: 4, from_run: runs/arith}
    adapter: {name: lora, r: 8, alpha: 16, targets: [c_attn, c_fc]}

The base weights load from ``from_run`` and freeze; only the adapter trains. ``liandan list
adapters`` shows every method with its options. :class:`AdapterServer` serves many LoRA
fine-tunes of one base in mixed batches (S-LoRA style).
"""

from liandan.adapters import adapter_state_dict, apply_adapter, merge_adapter, trainable_parameters
from liandan.llm.finetune import finetune, merge
from liandan.llm.serving import AdapterServer, serve_adapters
from liandan.llm.sft_eval import ExactMatch, sft_exact_match

__all__ = ["AdapterServer", "ExactMatch", "adapter_state_dict", "apply_adapter", "finetune", "merge", "merge_adapter",
           "serve_adapters", "sft_exact_match", "trainable_parameters"]
