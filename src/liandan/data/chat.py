"""``sft`` rows of a records source: chat ``messages`` or ``prompt`` + ``response``, rendered with
the tokenizer's chat template and learned on the assistant's tokens only.

Which tokens are the assistant's is read from the rendered text, not guessed from token ids:
for each assistant turn ``i`` the template renders the conversation up to it with the generation
prompt (``messages[:i]``, ``add_generation_prompt``) and through it (``messages[:i+1]``); the
characters between the two are that turn's answer (with its end-of-turn marker, so the model
learns to stop). The whole conversation is tokenized once with character offsets, and a token is
learned when it starts inside an answer. A template that renders earlier turns differently once
later ones follow is refused (the answer could not be told apart). Without a chat template a
prompt + response record is the prompt's tokens (with the tokenizer's own special tokens) then
the response's and the end-of-sequence token (TRL's prompt-completion format).

Rows are next-token pairs as in :func:`liandan.data.text.lm_pairs`: ``x = ids[:-1]``,
``y = ids[1:]`` with -100 where the token is not learned. With ``packing`` several examples share
a row of ``max_len`` pairs (first fit, in order): ``x`` is ``(N, 2, T)``, token ids and position
ids restarting at 0 per example, which the model turns into a block-diagonal causal mask
(:mod:`liandan.models.hf_pretrained`): no token sees another example, so each example's loss is
what it is unpacked.
"""

from __future__ import annotations

from typing import Any

import torch

from liandan.data.base import TOKENS, Source
from liandan.data.records import SPLITS, Records, fixed_splits, rows_for, too_long
from liandan.data.text import IGNORE
from liandan.errors import LiandanError


def conversations(rec: Records, split: str) -> list[list[dict[str, str]]]:
    """The split's records as chats: ``messages`` as given, or ``prompt`` + ``response`` as one exchange."""
    if rec.has("messages"):
        out = rec.column(split, "messages")
        for i, m in enumerate(out):
            if not (isinstance(m, list) and m and all(isinstance(t, dict) and isinstance(t.get("role"), str)
                                                      and isinstance(t.get("content"), str) for t in m)):
                raise LiandanError(f"{rec.where[split]}: record {i}: {rec.name('messages')!r} must be a list of "
                                   "{role, content} objects")
            if not any(t["role"] == "assistant" for t in m):
                raise LiandanError(f"{rec.where[split]}: record {i} has no assistant message to learn")
        return [[{"role": t["role"], "content": t["content"]} for t in m] for m in out]
    prompts, responses = rec.strings(split, "prompt"), rec.strings(split, "response")
    return [[{"role": "user", "content": p}, {"role": "assistant", "content": r}]
            for p, r in zip(prompts, responses, strict=True)]


def render(tok: Any, chat: list[dict[str, str]], where: str) -> tuple[list[int], list[bool]]:
    """Token ids of one conversation and, per token, whether it is learned (an assistant's)."""
    if tok.chat_template is None:
        if len(chat) != 2 or chat[1]["role"] != "assistant":
            raise LiandanError(f"{where}: the tokenizer has no chat template, so only prompt + response records "
                               "(one exchange) can be rendered; give a tokenizer with a chat_template")
        prompt = tok(chat[0]["content"], add_special_tokens=True)["input_ids"]
        answer = tok(chat[1]["content"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        return prompt + answer, [False] * len(prompt) + [True] * len(answer)
    text = tok.apply_chat_template(chat, tokenize=False)
    spans = []
    for i, turn in enumerate(chat):
        if turn["role"] != "assistant":
            continue
        before = tok.apply_chat_template(chat[:i], tokenize=False, add_generation_prompt=True) if i else ""
        # the last turn's rendering is the whole text: one template call fewer per record
        through = text if i == len(chat) - 1 else tok.apply_chat_template(chat[: i + 1], tokenize=False)
        if not (through.startswith(before) and text.startswith(through)):
            raise LiandanError(f"{where}: the chat template renders earlier turns differently once later ones "
                               "follow, so the assistant's tokens cannot be told apart")
        spans.append((len(before), len(through)))
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    learned = [any(a <= start < b for a, b in spans) for start, _ in enc["offset_mapping"]]
    return list(enc["input_ids"]), learned


def pairs(ids: list[int], learned: list[bool]) -> tuple[list[int], list[int]]:
    """Next-token pairs: input token t, target token t+1 where that one is learned (else -100)."""
    return ids[:-1], [t if keep else IGNORE for t, keep in zip(ids[1:], learned[1:], strict=True)]


def pack(examples: list[tuple[list[int], list[int]]], length: int) -> list[list[tuple[list[int], list[int]]]]:
    """First-fit packing, in order: each row holds examples whose pairs add up to ≤ ``length``."""
    rows: list[list[tuple[list[int], list[int]]]] = []
    room: list[int] = []
    for ex in examples:
        n = len(ex[0])
        j = next((k for k, r in enumerate(room) if r >= n), None)
        if j is None:
            rows.append([ex])
            room.append(length - n)
        else:
            rows[j].append(ex)
            room[j] -= n
    return rows


def tensors(rows: list[list[tuple[list[int], list[int]]]], length: int, pad: int,
            packed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` ``(N, T)`` (``(N, 2, T)`` ids and positions when ``packed``) and ``y`` ``(N, T)``."""
    x = torch.full((len(rows), 2, length), pad, dtype=torch.int64)
    y = torch.full((len(rows), length), IGNORE, dtype=torch.int64)
    for i, row in enumerate(rows):
        at = 0
        for xs, ys in row:
            n = len(xs)
            x[i, 0, at: at + n] = torch.as_tensor(xs)
            x[i, 1, at: at + n] = torch.arange(n)  # positions restart: a new example
            y[i, at: at + n] = torch.as_tensor(ys)
            at += n
        last = len(row[-1][0]) if row else 0
        # padding continues the last example's positions: it joins that example, after all of its tokens
        x[i, 1, at:] = torch.arange(last, last + length - at)
    return (x if packed else x[:, 0].contiguous()), y


@rows_for("sft")
def sft_rows(rec: Records, tok: Any, *, context: int | None, truncate: bool, packing: bool,
             pack_length: int | None) -> Source:
    examples: dict[str, list[tuple[list[int], list[int]]]] = {}
    notes: list[str] = []
    for s in SPLITS:
        if rec.splits.get(s) is None:
            continue
        rendered = [render(tok, chat, f"{rec.where[s]}: record {i}") for i, chat in enumerate(conversations(rec, s))]
        notes += too_long([len(ids) - 1 for ids, _ in rendered], context, truncate, rec.where[s])
        if context is not None:
            rendered = [(ids[: context + 1], keep[: context + 1]) for ids, keep in rendered]
        examples[s] = [pairs(ids, keep) for ids, keep in rendered]
        silent = sum(all(t == IGNORE for t in ys) for _, ys in examples[s])
        if silent:
            notes.append(f"{silent} {s} record{'s' if silent > 1 else ''} with no response token left to learn")
    longest = max(len(xs) for ex in examples.values() for xs, _ in ex)  # already within the context
    length = max(pack_length or 0, longest) if packing else longest
    if context is not None:
        length = min(length, context)
    packed_splits = ("train",) if len(examples) > 1 else tuple(examples)  # held-out records stay one per row
    rows = {s: pack(ex, length) if packing and s in packed_splits else [[e] for e in ex] for s, ex in examples.items()}
    if packing:
        notes.append(f"{sum(len(examples[s]) for s in packed_splits)} examples packed into "
                     f"{sum(len(rows[s]) for s in packed_splits)} rows of {length} tokens")
    x, y = tensors([r for s in SPLITS if s in rows for r in rows[s]], length, int(tok.pad_token_id), packing)
    return Source(y=y, task="sft", targets=TOKENS, x=x, fixed_splits=fixed_splits({s: len(rows[s]) for s in rows}),
                  facts={"vocab_size": len(tok), "max_len": length, "pad_id": int(tok.pad_token_id),
                         "packed": packing, "notes": notes})
