"""Token data: the ``text`` source (local .txt / .jsonl files) and the helpers every token source
shares to turn token sequences into ``(x, y)`` pairs for a task.

- ``lm`` (next-token prediction, Radford et al. 2019): ``x = tokens[:-1]``, ``y = tokens[1:]``;
  padding and, optionally, a prompt are excluded from the loss with ``y = -100`` (PyTorch's
  ``ignore_index``), so a problem's question is context and only its answer is learned.
- ``mlm`` (masked language modelling, Devlin et al. 2018): 15 % of the non-special tokens are
  chosen; of those 80 % become ``<mask>``, 10 % a random token and 10 % stay, so the model
  cannot rely on seeing ``<mask>`` where it must predict. ``y`` holds the original id at chosen
  positions and -100 elsewhere. The source draws one masking per seed (val/test stay fixed);
  the ``mlm`` task re-draws it for every training batch (RoBERTa's dynamic masking, Liu et al.
  2019), reconstructing the original tokens as ``where(y >= 0, y, x)``.

Token ids are int64; id 0 is padding (see :mod:`liandan.data.tokenize`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from liandan.data.base import CLASS, TOKENS, Source
from liandan.data.tokenize import BOS, EOS, MASK, NUM_SPECIAL, PAD, Tokenizer, fit_tokenizer
from liandan.errors import LiandanError
from liandan.paths import check_path, check_tree, read_text
from liandan.registry import register_data

IGNORE = -100  # cross_entropy's default ignore_index
TOKEN_TASKS = ("lm", "mlm")


def lm_pairs(seqs: list[list[int]], length: int, starts: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded next-token pairs ``(N, length)``; ``starts[i]`` is the first position of
    ``seqs[i]`` whose token is learned (earlier ones are context only)."""
    n = len(seqs)
    x = torch.full((n, length), PAD, dtype=torch.int64)
    y = torch.full((n, length), IGNORE, dtype=torch.int64)
    for i, s in enumerate(seqs):
        s = s[: length + 1]
        t = torch.as_tensor(s, dtype=torch.int64)
        x[i, : len(s) - 1] = t[:-1]
        y[i, : len(s) - 1] = t[1:]
        if starts is not None:  # target j is token j+1: tokens before starts[i] are not learned
            y[i, : max(starts[i] - 1, 0)] = IGNORE
    return x, y


def pad_rows(seqs: list[list[int]], length: int) -> torch.Tensor:
    """``(N, length)`` right-padded (and truncated) id rows."""
    out = torch.full((len(seqs), length), PAD, dtype=torch.int64)
    for i, s in enumerate(seqs):
        s = s[:length]
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.int64)
    return out


def mask_tokens(ids: torch.Tensor, prob: float, vocab_size: int,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's 80/10/10 masking of ``ids`` (any shape); special tokens are never chosen.

    Pure tensor ops on ``ids``' device (no host sync), so the ``mlm`` task can call it per batch.
    """
    dev = ids.device
    chosen = (ids >= NUM_SPECIAL) & (torch.rand(ids.shape, generator=generator, device=dev) < prob)
    y = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    r = torch.rand(ids.shape, generator=generator, device=dev)
    rand_ids = torch.randint(NUM_SPECIAL, max(vocab_size, NUM_SPECIAL + 1), ids.shape, generator=generator, device=dev)
    x = torch.where(chosen & (r < 0.8), torch.full_like(ids, MASK), ids)
    x = torch.where(chosen & (r >= 0.8) & (r < 0.9), rand_ids, x)
    return x, y


# The tasks a token source packs documents for (GPT-2's packing: windows of max_len + 1 tokens
# across document ends, no padding, every token learned); the others keep a document per row.
PACKED = frozenset({"lm"})
# The tasks whose rows each carry a label (the sources that serve them must hand token_source labels).
LABELLED = frozenset({"classify"})


def token_source(seqs: list[list[int]], tok: Tokenizer, task: str, length: int, seed: int, *,
                 starts: list[int] | None = None, mask_prob: float = 0.15, dynamic: bool = True,
                 labels: torch.Tensor | None = None, class_names: list[str] | None = None,
                 **facts) -> Source:
    """A :class:`Source` of token pairs for ``task`` (lm, mlm, or classify with ``labels``).

    ``seqs`` are complete id sequences (with ``<bos>``/``<eos>``); ``length`` is the model's
    context: lm pairs are ``length`` long, mlm and classify rows are ``length`` ids.
    """
    common = {"vocab_size": tok.vocab_size, "max_len": length, "pad_id": PAD, "num_special": NUM_SPECIAL,
              **facts}

    def lm() -> Source:
        x, y = lm_pairs(seqs, length, starts)
        return Source(y=y, task="lm", targets=TOKENS, x=x, tokenizer=tok, facts=common)

    def mlm() -> Source:
        ids = pad_rows(seqs, length)
        x, y = mask_tokens(ids, mask_prob, tok.vocab_size, torch.Generator().manual_seed(seed))
        return Source(y=y, task="mlm", targets=TOKENS, x=x, tokenizer=tok,
                      facts={**common, "mask_prob": mask_prob if dynamic else 0.0})

    def classify() -> Source:
        k = int(labels.max()) + 1
        return Source(y=labels, task="classify", targets=CLASS, x=pad_rows(seqs, length), num_classes=k,
                      tokenizer=tok, class_names=class_names or [str(i) for i in range(k)], facts=common)

    builds = {"lm": lm, "mlm": mlm, **({"classify": classify} if labels is not None else {})}
    if task in builds:
        return builds[task]()
    raise LiandanError(f"this token source serves tasks {', '.join(builds)}, not {task!r}")


def read_documents(path: str, field: str = "text") -> list[str]:
    """Non-empty lines of .txt files, or ``field`` of each .jsonl record; ``path`` is a file or folder.

    Under the agents' roots every entry of the folder and every file read is checked (:mod:`liandan.paths`):
    a symlink leading outside refuses the source, naming it."""
    p = Path(path).expanduser()
    check_path(p, "data.path")
    if not p.exists():
        raise LiandanError(f"data.path: {p} not found")
    if p.is_dir():
        files = sorted(f for f in check_tree(p.rglob("*"), "data.path entry") if f.suffix in (".txt", ".jsonl"))
    else:
        files = [p]
    if not files:
        raise LiandanError(f"data.path: no .txt or .jsonl files under {p}")
    docs: list[str] = []
    for f in files:
        for n, line in enumerate(read_text(f, "data file", encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            if f.suffix == ".jsonl":
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    raise LiandanError(f"{f}:{n}: not a JSON line") from None
                if not isinstance(rec, dict) or not isinstance(rec.get(field), str):
                    raise LiandanError(f"{f}:{n}: no string field {field!r}")
                line = rec[field]
            docs.append(line)
    if not docs:
        raise LiandanError(f"data.path: {p} holds no text")
    return docs


@register_data("text", tags=("text",))
def text(
    path: str,
    tokenizer: str = "char",
    vocab_size: int = 512,
    max_len: int = 128,
    field: str = "text",
    task: str = "lm",
    mask_prob: float = 0.15,
    seed: int = 0,
) -> Source:
    """Local text (.txt lines or a .jsonl ``field``) as tokens, for lm or mlm.

    ``tokenizer``: char, word, or bpe (byte-level BPE with ``vocab_size`` entries, trained on
    these files). For lm the documents are joined with ``<eos>`` and cut into windows of
    ``max_len + 1`` tokens (GPT-2's packing: no padding, every token is learned); for mlm each
    document is one row ``<bos> ... <eos>`` of at most ``max_len`` ids.

    Args:
        path: a .txt file (one document per non-empty line), a .jsonl file, or a folder of them
        tokenizer: char, word, or bpe (byte-level BPE trained on these files)
        vocab_size: entries of the bpe vocabulary, special tokens included (≥ 261); unused by char and word
        max_len: tokens per row (≥ 4): lm windows hold max_len + 1, mlm rows at most max_len
        field: the key of each .jsonl record that holds its text
        task: lm (next token) or mlm (masked tokens)
        mask_prob: share of tokens masked for mlm (0.15 as in BERT)
        seed: random seed of the mlm masks
    """
    if max_len < 4:
        raise LiandanError("data.max_len must be ≥ 4")
    docs = read_documents(path, field)
    tok = fit_tokenizer(tokenizer, docs, vocab_size)
    if task in PACKED:
        stream: list[int] = [BOS]
        for d in docs:
            stream += tok.encode(d) + [EOS]
        w = max_len + 1
        seqs = [stream[i : i + w] for i in range(0, max(len(stream) - 1, 1), max_len)]
        seqs = [s for s in seqs if len(s) > 1]
    else:
        seqs = []
        for d in docs:  # long documents become several rows
            ids = tok.encode(d)
            seqs += [[BOS, *ids[i : i + max_len - 2], EOS] for i in range(0, max(len(ids), 1), max_len - 2)]
    if len(seqs) < 3:
        raise LiandanError(f"data.path: only {len(seqs)} sequences of max_len={max_len}; need at least 3 "
                           "(add text or lower max_len)")
    return token_source(seqs, tok, task, max_len, seed, mask_prob=mask_prob)


from liandan.data import textgen  # noqa: E402,F401  (arith and grammar register on import)
