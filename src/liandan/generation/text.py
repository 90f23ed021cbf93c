"""Text generation from a trained language-model run: ``liandan.generate`` and ``exact_match``.

Sampling, one token at a time: models with a key/value cache (``decode_step``: the Hugging Face
GPTs) feed only the new token each step while the context fits their positions; others re-read
the (last ``max_len`` tokens of the) context. The logits are divided by the temperature (T → 0
is greedy, T > 1 flattens), then optionally cut to the ``top_k`` most likely tokens (Fan et al.
2018) and to the nucleus, the smallest set of tokens whose probability reaches ``top_p``
(Holtzman et al. 2019, "The curious case of neural text degeneration"), and one token is drawn
from what is left. A seeded generator makes a generation a function of (run, prompt, options, seed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from liandan.errors import LiandanError
from liandan.training.setup import torch_threads


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Logits ``(B, V)`` with all but the ``k`` largest per row set to -inf (ties at the k-th kept)."""
    if not k or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Nucleus filtering: keep the most likely tokens until their probability reaches ``p``.

    A token is kept when the probability of the tokens ranked above it is still below ``p``,
    so the most likely token always stays.
    """
    if p is None or p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
    probs = sorted_logits.softmax(-1)
    before = probs.cumsum(-1) - probs  # mass ranked above each token
    drop_sorted = before >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row from logits ``(B, V)`` -> ``(B,)``; temperature 0 is greedy."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = top_p_filter(top_k_filter(logits.float() / temperature, top_k), top_p)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


@torch.no_grad()
def sample_tokens(model: nn.Module, ids: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, eos: int | None = None,
           generator: torch.Generator | None = None, pad: int = 0, use_cache: bool = True) -> torch.Tensor:
    """Extend prompts ``ids`` ``(B, T)`` (all the same length) by up to ``max_new_tokens``;
    rows that produced ``eos`` continue with ``pad``. Returns ``(B, T + n)``. ``use_cache=False``
    re-reads the context every step even where the model has a key/value cache."""
    context = getattr(model, "max_len", None)
    cached = use_cache and hasattr(model, "decode_step") and not model.training
    done = torch.zeros(len(ids), dtype=torch.bool, device=ids.device)
    past, seen = None, 0  # the cache holds the first `seen` tokens of `ids`
    for _ in range(max_new_tokens):
        if cached and (context is None or ids.shape[1] <= context):
            logits, past = model.decode_step(ids[:, seen:], past)  # (B, V)
            seen = ids.shape[1]
        else:  # learned positions end at max_len: slide the window, re-reading it
            window = ids if context is None else ids[:, -context:]
            logits = model(window)[:, -1, :]  # (B, V)
        tok = next_token(logits, temperature, top_k, top_p, generator)
        tok = torch.where(done, torch.full_like(tok, pad), tok)
        ids = torch.cat([ids, tok[:, None]], 1)
        if eos is not None:
            done |= tok == eos
            if bool(done.all()):
                break
    return ids


def _load(run_dir: str | Path):
    from liandan.data.tokenize import load_tokenizer
    from liandan.training.run import load_run
    from liandan.training.tasks import task_class

    run = load_run(run_dir)
    if not task_class(run.info.task).generates_text or not run.info.tokenizer:
        raise LiandanError(f"{run_dir}: generation needs a language-model run (task lm), this is {run.info.task!r}")
    return run, load_tokenizer(Path(run_dir) / run.info.tokenizer)


def generate(run_dir: str | Path, prompt: str = "", max_new_tokens: int = 64, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int = 0) -> dict[str, Any]:
    """Continue ``prompt`` with the run's language model; returns prompt, completion, tokens, finish."""
    from liandan.data.tokenize import BOS, EOS

    if max_new_tokens < 1 or temperature < 0 or (top_k is not None and top_k < 1) or \
            (top_p is not None and not 0 < top_p <= 1):
        raise LiandanError("generate: need max_new_tokens ≥ 1, temperature ≥ 0, top_k ≥ 1, 0 < top_p ≤ 1")
    run, tok = _load(run_dir)
    ids = torch.tensor([[BOS, *tok.encode(prompt)]])
    g = torch.Generator().manual_seed(seed)
    with torch_threads(model=run.model):
        out = sample_tokens(run.model, ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                     eos=EOS, generator=g)[0, ids.shape[1]:].tolist()
    finish = "eos" if EOS in out else "length"
    new = out[: out.index(EOS)] if EOS in out else out
    return {"prompt": prompt, "completion": tok.decode(new), "tokens": new, "finish": finish, "seed": seed,
            "temperature": temperature, "top_k": top_k, "top_p": top_p}


def prompted_problems(x: torch.Tensor, y: torch.Tensor, marker: int | None) -> dict[int, list[tuple[list, list]]]:
    """Each row of an lm split as ``(prompt, answer)`` token lists, grouped by prompt length (one
    length batches without padding). The prompt ends at ``marker`` (arith: ``=``), else before the
    first learned token; rows with neither are left out."""
    from liandan.data.tokenize import PAD

    groups: dict[int, list[tuple[list, list]]] = {}
    for xr, yr in zip(x.tolist(), y.tolist(), strict=True):
        n = sum(t != PAD for t in xr)
        seq = xr[:n] + [yr[n - 1]]  # x is the sequence but its last token, which y ends with
        learned = [j for j, t in enumerate(yr) if t != -100]
        if marker is not None and marker in seq:
            cut = seq.index(marker) + 1
        elif learned:
            cut = learned[0] + 1
        else:
            continue
        groups.setdefault(cut, []).append((seq[:cut], seq[cut:]))
    return groups


def exact_match(run_dir: str | Path, split: str = "test", max_samples: int | None = None) -> dict[str, Any]:
    """Greedy-generate the answer of every problem in ``split`` and count the exactly right ones.

    The prompt is a sequence up to its ``answer_after`` symbol (arith: ``=``), else up to its
    first learned token; the answer is the rest, ``<eos>`` included (a right answer that runs on
    is wrong). Where the run's data names a ``final_after`` symbol (arith with ``steps``: ``|``),
    only what follows its last occurrence counts: the final answer, not the working.
    """
    from liandan.data.tokenize import EOS

    run, tok = _load(run_dir)
    data = run.load_data()
    idx = torch.as_tensor(data.indices[split] if split in data.indices else [], dtype=torch.int64)
    if len(idx) == 0:
        raise LiandanError(f"{run_dir}: no {split!r} split")
    idx = idx[:max_samples] if max_samples else idx
    x, y = data.source.x[idx], data.source.y[idx]
    after = run.info.extras.get("answer_after")
    marker = tok.encode(after)[0] if after else None
    final = run.info.extras.get("final_after")
    final_id = tok.encode(final)[0] if final else None

    def judged(ids: list[int]) -> list[int]:
        if final_id is None or final_id not in ids:
            return ids
        return ids[len(ids) - ids[::-1].index(final_id):]  # after the last marker
    groups = prompted_problems(x, y, marker)
    right, total, shown, wrong = 0, 0, [], []
    for cut, items in sorted(groups.items()):  # prompts of one length batch without padding
        prompts = torch.tensor([p for p, _ in items])
        # a right answer is exactly as long as the expected one; with working judged by its final
        # answer only, a different (longer) working may still end in the right answer
        longest = max(len(a) for _, a in items) + (16 if final_id is not None else 0)
        with torch_threads(model=run.model):
            out = sample_tokens(run.model, prompts, longest, temperature=0, eos=EOS)[:, cut:].tolist()
        for (p, answer), got in zip(items, out, strict=True):
            got = got[: got.index(EOS) + 1] if EOS in got else got
            ok = judged(got) == judged(answer) and (final_id is None or final_id in got)
            right += ok
            total += 1
            row = {"prompt": tok.decode(p), "expected": tok.decode(answer), "got": tok.decode(got)}
            if len(shown) < 8:  # the first few, right or wrong (the report's examples)
                shown.append({**row, "right": bool(ok)})
            if len(wrong) < 5 and not ok:
                wrong.append(row)
    return {"split": split, "n": total, "exact_match": right / max(total, 1), "examples": shown,
            "wrong_examples": wrong}
