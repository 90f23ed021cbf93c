"""Independent checks of a GGUF file before it is renamed into place.

1. **Weights** — transformers has its own GGUF reader (``from_pretrained(dir, gguf_file=...)``: it
   maps the ``llama.*`` / ``qwen2.*`` keys to a config, dequantises every tensor and undoes the
   Q/K permutation), so a wrong name, permutation, bias or hyper-parameter shows up as different
   logits on the source's prompts.
2. **Tokenizer, as llama.cpp reads it** — :class:`~liandan.export.llamacpp_tokenizer.LlamaCppTokenizer`
   re-implements llama.cpp's tokenizers from the file's ``tokenizer.*`` keys alone (read back by
   ``gguf.GGUFReader``); the ids it gives sample texts must be the model's own tokenizer's, or
   the file is not written. A char-level vocabulary is also fed characters it lacks, which
   llama.cpp must take through the byte tokens instead of aborting.
3. transformers' GGUF tokenizer on a few texts: informational (it ignores ``tokenizer.ggml.pre``).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import torch

from liandan.errors import LiandanError
from liandan.export._common import first_line
from liandan.export.gguf_vocab import BYTE


def load_gguf_model(path: Path) -> tuple[torch.nn.Module, str]:
    """The GGUF file as a transformers causal LM in float32 (eval mode) and how it was read.

    ``from_pretrained(gguf_file=...)`` needs ``accelerate``; without it the same reader runs one
    level down: the config from the file's metadata, then ``load_gguf_checkpoint`` (the function
    ``from_pretrained`` uses to dequantise, rename and un-permute the tensors)."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import is_accelerate_available, logging

    logging.disable_progress_bar()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if is_accelerate_available():
                model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                             dtype=torch.float32)
                return model.eval(), f"transformers {type(model).__name__}.from_pretrained(gguf_file=...)"
            from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(path.parent),
                                                                                gguf_file=path.name)).float()
            tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
            missing, unexpected = model.load_state_dict(tensors, strict=False)
    except Exception as e:  # noqa: BLE001 (a file transformers cannot read is a failed export)
        raise LiandanError(f"transformers cannot load the GGUF file: {first_line(e)}") from None
    if unexpected or set(missing) - {"lm_head.weight"} or (missing and not model.config.tie_word_embeddings):
        raise LiandanError(f"the GGUF file's tensors do not fill {type(model).__name__}: missing {missing}, "
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


def _padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids right-padded with the rows' first id (a causal model never looks right) and the mask."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [r[0]] * (width - len(r)) for r in rows])
    keep = torch.arange(width)[None, :] < torch.tensor([len(r) for r in rows])[:, None]
    return ids, keep


@torch.no_grad()
def compare_logits(path: Path, src: Any) -> dict[str, Any]:
    """max |Δlogit| and greedy next-token agreement, GGUF (via transformers) vs the source model.

    Only the model's own vocabulary columns are compared: byte-fallback tokens appended to a
    char-level vocabulary exist only in the file."""
    if not src.prompts:
        raise LiandanError(f"{src.path}: no prompts to compare logits on")
    ids, keep = _padded(src.prompts)
    ref = src.model(input_ids=ids, use_cache=False).logits.float()
    model, reader = load_gguf_model(path)
    got = model(input_ids=ids, use_cache=False).logits.float()[..., : ref.shape[-1]]
    diff = (got - ref).abs()[keep]
    agree = (got.argmax(-1) == ref.argmax(-1))[keep].float().mean()
    return {"reader": reader, "prompts": len(src.prompts), "positions": int(keep.sum()),
            "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "logit_scale": float(ref.abs()[keep].max()), "greedy_agreement": float(agree),
            "tokenizer": _transformers_tokenizer(path, src)}


def llamacpp_tokenizer_check(path: Path, src: Any) -> dict[str, Any]:
    """Encode the source's sample texts as llama.cpp would with the file's metadata; every text must
    give the ids of the model's own tokenizer (else :class:`LiandanError`, nothing written)."""
    from liandan.export.llamacpp_tokenizer import LlamaCppTokenizer

    lc = LlamaCppTokenizer.from_gguf(path)
    same, first_bad = 0, None
    for text in src.texts:
        want, got = src.encode(text), lc.encode(text)
        if got == want:
            same += 1
        elif first_bad is None:
            first_bad = (text, got, want)
    res: dict[str, Any] = {"texts": len(src.texts), "same_ids": same,
                           "pre": lc.v.pre, "model": lc.v.model}
    if first_bad is not None:
        text, got, want = first_bad
        raise LiandanError(f"llama.cpp would tokenize {len(src.texts) - same} of {len(src.texts)} sample texts "
                           f"unlike the model's tokenizer (e.g. {text[:40]!r}: {got[:12]} vs {want[:12]}); "
                           f"not written")
    if src.oov_text is not None:  # characters outside a char vocabulary: byte tokens, not an abort
        ids = lc.encode(src.oov_text)
        byte_ids = [i for i in ids if lc.v.types[i] == BYTE]
        res["byte_fallback"] = {"text": src.oov_text[:40], "ids": len(ids), "byte_tokens": len(byte_ids)}
    return res


def _transformers_tokenizer(path: Path, src: Any) -> str:
    """Whether transformers' GGUF tokenizer encodes a few sample texts to the model's ids (informational:
    transformers rebuilds the tokenizer from templates and ignores ``tokenizer.ggml.pre``)."""
    try:
        from transformers import AutoTokenizer

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        for text in src.texts[:8]:
            got, want = tok(text)["input_ids"], src.encode(text)
            if got != want:
                return f"differs: {text[:40]!r} -> {got[:12]} (model: {want[:12]})"
        return "same ids"
    except Exception as e:  # noqa: BLE001 (informational: the checks above are the verdict)
        return f"not checked: {type(e).__name__}: {first_line(e)}"


def run_tokenizer(run: Any) -> Any:
    from liandan.data.tokenize import load_tokenizer

    return load_tokenizer(run.dir / (run.info.tokenizer or "tokenizer.json"))
