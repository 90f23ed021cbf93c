"""A merged fine-tune as a plain Hugging Face directory: what ``AutoModelFor….from_pretrained`` loads.

peft's ``merge_and_unload()`` + ``save_pretrained``: every weight-update adapter (the LoRA family,
VeRA, DyLoRA at its serving rank, QLoRA's float ``W̃ + ΔW``, QA-LoRA dequantised) is folded into
a copy of its base layer (:func:`~liandan.adapters.inject.merged_copy`), the Hugging Face model
inside (liandan's wrappers keep it as ``.hf``) is written with its own ``save_pretrained``
(``config.json`` + ``model.safetensors``, the architecture's class in ``architectures``), and the
tokenizer files of the base model are copied beside it, so the directory is usable as it is:
``AutoTokenizer`` and ``AutoModelForCausalLM`` / ``AutoModelForSequenceClassification`` read it
with no liandan and no peft. A classifier head that trained with the adapter is part of the model.
Prompt and prefix methods add virtual tokens, not weights: there is nothing to merge (refused).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from torch import nn

from liandan.adapters.inject import hf_root, merged_copy
from liandan.errors import LiandanError

# what tokenizers' save_pretrained writes, for the fast, SentencePiece and WordPiece/BPE kinds
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model", "chat_template.jinja", "chat_template.json")


def tokenizer_files(directory: str | Path | None) -> list[Path]:
    """The tokenizer files in ``directory`` (none when it is not a directory)."""
    if directory is None or not Path(directory).is_dir():
        return []
    return [Path(directory) / f for f in TOKENIZER_FILES if (Path(directory) / f).is_file()]


def base_directory(model: nn.Module) -> Path | None:
    """The local directory the Hugging Face model was loaded from (``from_pretrained`` keeps it as
    the config's ``_name_or_path``), if it is one."""
    root = hf_root(model)[0]
    name = getattr(getattr(root, "config", None), "_name_or_path", "") or ""
    return Path(name) if name and Path(name).is_dir() else None


def save_merged(model: nn.Module, directory: str | Path, *, tokenizer_from: str | Path | None = None) -> Path:
    """Merge ``model``'s adapter into a copy and write the Hugging Face model as a
    ``save_pretrained`` directory (safetensors) with the tokenizer files of ``tokenizer_from``
    (default: the directory the base was loaded from, when there is one). ``model`` itself is left
    as it was (adapter in place, trainable). A model without adapter is written as it is.
    Returns the directory."""
    from liandan.paths import check_path

    plain = merged_copy(model)  # refuses prompt / prefix methods in one line
    root = hf_root(plain)[0]
    if not callable(getattr(root, "save_pretrained", None)) or not hasattr(root, "config"):
        raise LiandanError(f"merge: {type(root).__name__} is not a Hugging Face transformers model; its merged "
                           "weights are the run's checkpoint (there is no save_pretrained directory to write)")
    out = check_path(directory, "merge output")
    if tokenizer_from is not None:
        source = check_path(tokenizer_from, "tokenizer")
        if not tokenizer_files(source):
            raise LiandanError(f"merge: {source} holds no tokenizer files ({', '.join(TOKENIZER_FILES[:5])}, ...)")
    else:
        source = base_directory(model)
        try:
            source = check_path(source, "tokenizer") if source is not None else None
        except LiandanError:  # the base came from outside the agents' roots: no tokenizer copied from there
            source = None
    own = [Path(d).resolve() for d in (base_directory(model), source) if d is not None]
    if out.exists() and out.resolve() in own:
        raise LiandanError(f"merge: the output {out} is the base model's (or tokenizer's) own directory; write "
                           "the merged model elsewhere")
    out.mkdir(parents=True, exist_ok=True)
    from transformers.utils import logging

    logging.disable_progress_bar()
    root.save_pretrained(str(out))  # safetensors (transformers 5 writes no other format)
    for f in tokenizer_files(source):
        shutil.copyfile(f, out / f.name)
    return out
