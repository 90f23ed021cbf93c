"""Pre-trained Hugging Face models as recipe models: ``model: {name: hf, path: DIR_OR_ID}``.

``path`` is a ``save_pretrained`` directory (``config.json`` beside the weights) or a hub id
(``org/name``) already in the user's Hugging Face cache: nothing is ever downloaded
(``local_files_only``, so ``HF_HUB_OFFLINE`` holds either way). The model keeps its own weights,
configuration, tokenizer (``AutoTokenizer``) and chat template; ``head`` picks the
``AutoModelFor...`` class (``auto``: the one the recipe's task declares as ``hf_head``). A head
whose size comes from the data (``seq_cls``, ``token_cls``: one output per label) starts from
scratch; the run's start-up line says so.

The model is :class:`~liandan.models.hf_text.HFTokenModel` (``.hf`` is the transformers model,
``save_pretrained`` writes ``RUN/hf/``), so adapters, checkpoints, export and ``hf/`` treat it as
they treat liandan's config-built ``gpt``/``bert``. The data is tokenized with the model's
tokenizer: the recipe's ``data.tokenizer`` is filled with ``model.path`` (``data_options``
below, applied by :func:`liandan.recipe.load_recipe`), so a run directory records both.

Packed rows (``data.packing``) arrive as ``(B, 2, T)``: token ids and position ids that restart
at 0 at each example. With no attention mask transformers' masking utilities read the position
resets as example boundaries and build a block-diagonal causal mask (``find_packed_sequence_indices``,
as in its ``DataCollatorWithFlattening``), so no token attends across an example boundary.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from liandan.errors import LiandanError
from liandan.models.hf_text import HFTokenModel
from liandan.registry import register_model

# head -> transformers' auto class
HEADS = {"causal_lm": "AutoModelForCausalLM", "seq_cls": "AutoModelForSequenceClassification",
         "token_cls": "AutoModelForTokenClassification", "qa": "AutoModelForQuestionAnswering",
         "masked_lm": "AutoModelForMaskedLM"}
LABELLED = frozenset({"seq_cls", "token_cls"})  # one output per label: sized by the data, new weights
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length")  # config.json names of the context


def resolve(path: str, what: str = "model.path") -> Path:
    """The local directory of ``path``: a ``save_pretrained`` directory, or the snapshot of hub id
    ``path`` in the Hugging Face cache (never downloaded). One error line names what was looked for."""
    from liandan.paths import check_path, check_tree

    p = Path(path).expanduser()
    if p.is_dir():
        p = check_path(p, what)
        check_tree(p.iterdir(), f"{what} entry")  # a symlink inside leading out of the roots
        if not (p / "config.json").is_file() and not (p / "tokenizer_config.json").is_file():
            raise LiandanError(f"{what}: {p} holds no config.json: not a save_pretrained directory")
        return p.resolve()
    if p.exists():
        raise LiandanError(f"{what}: {p} is a file; give the save_pretrained directory that holds it")
    from huggingface_hub import constants, snapshot_download

    try:
        found = Path(snapshot_download(repo_id=str(path), local_files_only=True))
    except Exception:  # noqa: BLE001 (not cached, or not a valid repo id: the same answer)
        raise LiandanError(f"{what}: no directory {p.absolute()} and no model {str(path)!r} in the Hugging Face "
                           f"cache ({constants.HF_HUB_CACHE}); models are never downloaded: save one with "
                           "save_pretrained or fetch it into the cache first") from None
    return check_path(found, what).resolve()


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' own warnings off while loading (the run says what matters, e.g. a new head)."""
    from transformers.utils import logging

    before = logging.get_verbosity()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(before)


@functools.cache
def _tokenizer(directory: str) -> Any:
    from transformers import AutoTokenizer

    try:
        with _quiet_transformers():
            tok = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise LiandanError(f"tokenizer: cannot load one from {directory}: {str(e).strip().splitlines()[0]}") from None
    if tok.pad_token is None:  # GPT-2, LLaMA: no padding token; right padding is never attended by a causal model
        if tok.eos_token is None:
            raise LiandanError(f"tokenizer: {directory} has neither a padding nor an end-of-sequence token")
        tok.pad_token = tok.eos_token
    return tok


def load_tokenizer(path: str, what: str = "data.tokenizer") -> Any:
    """The ``transformers`` tokenizer of ``path`` (directory or cached hub id), padding token set."""
    return _tokenizer(str(resolve(path, what)))


def context_length(path: str, what: str = "data.tokenizer") -> int | None:
    """The longest input the model at ``path`` takes: its configuration's position table and the
    tokenizer's ``model_max_length`` (whichever is smaller; None when neither says)."""
    d = resolve(path, what)
    found = []
    cfg = d / "config.json"
    if cfg.is_file():
        doc = json.loads(cfg.read_text())
        doc = doc.get("text_config", doc)  # a multimodal config keeps the language model's inside
        found += [int(doc[k]) for k in CONTEXT_KEYS if isinstance(doc.get(k), int)][:1]
    n = getattr(_tokenizer(str(d)), "model_max_length", None)
    if isinstance(n, int) and n < 10**7:  # transformers' "no limit" is a huge sentinel
        found.append(n)
    return min(found) if found else None


class HFPretrained(HFTokenModel):
    """A pre-trained transformers model: token ids ``(B, T)`` (or packed rows ``(B, 2, T)``; for the
    ``qa`` head, ids and segment ids ``(B, 2, T)`` where the tokenizer makes them) ->
    logits ``(B, T, V)`` (causal/masked LM), ``(B, K)`` (sequence labels), ``(B, T, K)`` (token
    labels) or ``(B, T, 2)`` (question answering: start and end logits)."""

    def __init__(self, hf: nn.Module, pad_id: int, needs_mask: bool, path: str, head: str,
                 new_weights: list[str], pretrained: bool = True) -> None:
        super().__init__(hf, pad_id=pad_id, needs_mask=needs_mask)
        self.path, self.head, self.new_weights, self.pretrained = path, head, new_weights, pretrained

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3 and self.head == "qa":  # (B, 2, T): ids and segment ids (question 0, context 1), never packed
            mask = (x[:, 0] != self.pad_id).long() if self.needs_mask else None  # (B, T)
            out = self.hf(input_ids=x[:, 0], token_type_ids=x[:, 1], attention_mask=mask, use_cache=False)
        elif x.dim() == 3:  # packed rows (B, 2, T): ids, and positions that restart at each example
            out = self.hf(input_ids=x[:, 0], position_ids=x[:, 1], use_cache=False)
        else:
            mask = (x != self.pad_id).long() if self.needs_mask else None  # (B, T), 1 = real token
            out = self.hf(input_ids=x, attention_mask=mask, use_cache=False)
        if self.head == "qa":
            return torch.stack([out.start_logits, out.end_logits], -1)  # (B, T, 2)
        return out.logits

    def describe(self) -> str:
        """One line for the run's start: what was loaded, and what starts from scratch."""
        n = sum(p.numel() for p in self.parameters())
        cfg = self.hf.config
        what = f"weights from {self.path}" if self.pretrained else f"random weights (the architecture of {self.path})"
        size = f"{n / 1e6:.1f}M" if n >= 10**6 else f"{n:,}"
        line = (f"model: hf {type(self.hf).__name__} ({cfg.model_type}), {size} parameters, "
                f"{str(next(self.parameters()).dtype).removeprefix('torch.')}: {what}")
        if self.new_weights and self.pretrained:
            shown = ", ".join(self.new_weights[:4]) + (", …" if len(self.new_weights) > 4 else "")
            labels = getattr(cfg, "num_labels", None) if self.head in LABELLED else None
            line += (f"; new {self.head} head initialised from scratch ({shown}"
                     + (f"; {labels} labels from the data)" if labels else ")"))
        return line


def _head(head: str, task: str) -> str:
    if head != "auto":
        return head
    from liandan.registry import TASKS

    found = getattr(TASKS.get(task).fn, "hf_head", None)  # through the registry: this layer imports no task
    if found is None:
        raise LiandanError(f"model.head: task {task!r} names no Hugging Face head; set model.head to one of "
                           f"{', '.join(HEADS)}")
    return found


def _data_options(model: dict[str, Any]) -> dict[str, Any]:
    """The data options this model implies: the data is tokenized with the model's tokenizer."""
    return {"tokenizer": model["path"]} if isinstance(model.get("path"), str) else {}


@register_model("hf", input_kind="pretrained", data_options=_data_options)
def hf(
    path: str,
    head: Literal["auto", "causal_lm", "seq_cls", "token_cls", "qa", "masked_lm"] = "auto",
    dtype: Literal["float32", "bfloat16", "float16"] = "float32",
    pretrained: bool = True,
    task: str = "text_classify",
    num_classes: int = 2,
) -> nn.Module:
    """A pre-trained Hugging Face model (save_pretrained directory or cached hub id) with its tokenizer.

    Args:
        path: a save_pretrained directory (config.json, weights, tokenizer), or a hub id found in the Hugging
            Face cache (never downloaded)
        head: causal_lm, seq_cls (a label per text), token_cls (a label per token), qa (start/end logits),
            masked_lm; auto: the head the task declares (text_classify: seq_cls, sft: causal_lm,
            token_classify: token_cls, extractive_qa: qa)
        dtype: float32, bfloat16 or float16 weights
        pretrained: false: the same architecture with random weights (the baseline that shows what the
            pre-training is worth)
        task: the task the model serves; inferred from the data
        num_classes: labels of a seq_cls or token_cls head (a new, randomly initialised layer); inferred from
            the data
    """
    import transformers

    head = _head(head, task)
    d = resolve(path)
    tok = _tokenizer(str(d))
    cls = getattr(transformers, HEADS[head])
    # a labelled head sized by the data; a checkpoint's head of another size is replaced (and said)
    kw: dict[str, Any] = {"num_labels": num_classes} if head in LABELLED else {}
    try:
        with _quiet_transformers():
            if pretrained:
                model, loading = cls.from_pretrained(str(d), dtype=DTYPES[dtype], local_files_only=True,
                                                     use_safetensors=True, output_loading_info=True,
                                                     ignore_mismatched_sizes=head in LABELLED, **kw)
                new = sorted({*loading.get("missing_keys", ()), *(m[0] for m in loading.get("mismatched_keys", ()))})
            else:
                cfg = transformers.AutoConfig.from_pretrained(str(d), local_files_only=True, **kw)
                model, new = cls.from_config(cfg, dtype=DTYPES[dtype]), []
    except ValueError as e:  # no class of this head for the architecture
        msg = str(e).strip().splitlines()[0]
        raise LiandanError(f"model.head: {head} ({HEADS[head]}) cannot load {d}: {msg[:200]}") from None
    except OSError as e:  # no weights (or only a pickled .bin, which is not read)
        msg = str(e).strip().splitlines()[0]
        raise LiandanError(f"model.path: cannot load weights from {d} (safetensors only): {msg[:200]}") from None
    if getattr(model.config, "pad_token_id", None) is None:  # a causal classifier finds each row's last token by it
        model.config.pad_token_id = tok.pad_token_id
    # A dedicated padding token never occurs in text, so masking it is exact; a causal model whose
    # padding is its end-of-text token needs no mask (right padding is never attended).
    needs_mask = tok.pad_token_id not in (tok.eos_token_id, tok.bos_token_id)
    return HFPretrained(model, pad_id=int(tok.pad_token_id), needs_mask=needs_mask, path=str(d), head=head,
                        new_weights=new, pretrained=pretrained)
