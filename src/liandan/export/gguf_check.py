"""Independent check of a GGUF file: transformers reads it back and must reproduce the run's logits.

``transformers`` has its own GGUF reader (``from_pretrained(dir, gguf_file=...)``: it maps the
``llama.*`` keys to a ``LlamaConfig``, dequantises every tensor and undoes the Q/K permutation),
so a wrong name, a wrong permutation or a wrong hyper-parameter shows up as different logits.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import torch

from liandan.errors import LiandanError
from liandan.export._common import first_line


def load_gguf_model(path: Path) -> tuple[torch.nn.Module, str]:
    """The GGUF file as a transformers ``LlamaForCausalLM`` in float32 (eval mode) and how it was read.

    ``from_pretrained(gguf_file=...)`` needs ``accelerate``; without it the same reader runs one
    level down: the config from the file's metadata, then ``load_gguf_checkpoint`` (the function
    ``from_pretrained`` uses to dequantise, rename and un-permute the tensors)."""
    from transformers import AutoConfig, LlamaForCausalLM
    from transformers.utils import is_accelerate_available, logging

    logging.disable_progress_bar()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if is_accelerate_available():
                model = LlamaForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
                return model.eval(), "transformers LlamaForCausalLM.from_pretrained(gguf_file=...)"
            from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

            model = LlamaForCausalLM(AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)).float()
            tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
            missing, unexpected = model.load_state_dict(tensors, strict=False)
    except Exception as e:  # noqa: BLE001 (a file transformers cannot read is a failed export)
        raise LiandanError(f"transformers cannot load the GGUF file: {first_line(e)}") from None
    if unexpected or set(missing) - {"lm_head.weight"} or (missing and not model.config.tie_word_embeddings):
        raise LiandanError(f"the GGUF file's tensors do not fill LlamaForCausalLM: missing {missing}, "
                           f"unexpected {unexpected}")
    model.tie_weights()
    emb = model.model.embed_tokens.weight
    if model.config.tie_word_embeddings and model.lm_head.weight.data_ptr() != emb.data_ptr():
        model.lm_head.weight = emb
    return model.eval(), "transformers AutoConfig + load_gguf_checkpoint (from_pretrained's GGUF reader)"


def prompt_ids(run: Any, max_prompts: int) -> torch.Tensor:
    """Token-id rows of the run's test split (val or train when there is none), right-padded."""
    from liandan.evaluation.runio import raw_split

    data = run.load_data()
    for split in ("test", "val", "train"):
        if getattr(data, split) is not None and len(data.indices[split]):
            return raw_split(data, split, max_samples=max_prompts)[0]
    raise LiandanError(f"{run.dir}: no token rows to compare logits on")


@torch.no_grad()
def compare_logits(path: Path, run: Any, max_prompts: int = 32) -> dict[str, Any]:
    """max |Δlogit| and greedy next-token agreement, GGUF (via transformers) vs the run's model.

    Positions after a row's right padding are left out: the run never trains or decodes there."""
    from liandan.data.tokenize import PAD

    ids = prompt_ids(run, max_prompts)
    ref = run.model.hf(input_ids=ids, use_cache=False).logits.float()
    model, reader = load_gguf_model(path)
    got = model(input_ids=ids, use_cache=False).logits.float()
    keep = (ids != PAD).cumprod(1).bool()  # real tokens up to the first padding
    diff = (got - ref).abs()[keep]
    agree = (got.argmax(-1) == ref.argmax(-1))[keep].float().mean()
    res = {"reader": reader, "prompts": int(len(ids)),
           "positions": int(keep.sum()), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
           "logit_scale": float(ref.abs()[keep].max()), "greedy_agreement": float(agree)}
    res["tokenizer"] = _tokenizer_check(path, run, ids)
    return res


def _tokenizer_check(path: Path, run: Any, ids: torch.Tensor) -> str:
    """Whether transformers' GGUF tokenizer encodes the prompts' text to the run's ids."""
    from liandan.data.tokenize import BOS, NUM_SPECIAL

    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        ours = run_tokenizer(run)
        for row in ids.tolist()[:8]:
            text = ours.decode(row)
            want = [BOS, *[i for i in row if i >= NUM_SPECIAL]]
            got = tok(text)["input_ids"]
            if got != want:
                return f"differs: {text!r} -> {got} (run: {want})"
        return "same ids"
    except Exception as e:  # noqa: BLE001 (informational: the weights check above is the verdict)
        return f"not checked: {type(e).__name__}: {first_line(e)}"


def run_tokenizer(run: Any) -> Any:
    from liandan.data.tokenize import load_tokenizer

    return load_tokenizer(run.dir / (run.info.tokenizer or "tokenizer.json"))
