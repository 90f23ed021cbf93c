"""Parameter-efficient fine-tuning, one folder per method (as peft): ``lora``, ``dylora``, ``vera``;
``prompt_tuning`` and ``prefix_tuning`` (which also registers ``p_tuning_v2``) add virtual tokens.

Each method registers a builder with ``@register_adapter``; its keyword options are the recipe's
``adapter:`` options. The builder returns an :class:`~liandan.adapters.inject.Adapter` and the
shared :func:`apply_adapter` does the surgery. :func:`save_peft_adapter` / :func:`load_peft_adapter`
write and read peft's ``adapter_config.json`` + ``adapter_model.safetensors``; :func:`save_merged`
writes a merged fine-tune as a plain Hugging Face ``save_pretrained`` directory (tokenizer included).
"""

from liandan.adapters import dylora, lora, prefix_tuning, prompt_tuning, qalora, qlora, vera  # noqa: F401  (registers)
from liandan.adapters.inject import (
    Adapter,
    adapter_layers,
    adapter_state_dict,
    apply_adapter,
    merge_adapter,
    merged_copy,
    model_adapters,
    trainable_parameters,
)
from liandan.adapters.merge import save_merged
from liandan.adapters.peft_format import save_peft_adapter
from liandan.adapters.peft_load import load_peft_adapter

__all__ = ["Adapter", "adapter_layers", "adapter_state_dict", "apply_adapter", "load_peft_adapter",
           "merge_adapter", "merged_copy", "model_adapters", "save_merged", "save_peft_adapter",
           "trainable_parameters"]
