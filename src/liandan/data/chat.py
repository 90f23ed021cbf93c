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

``data.train_on_prompt: true`` (LLaMA-Factory's option of the same name) learns every token
instead, prompts included, in every split. The source's facts say what the doctor needs: whether
a chat template rendered the records, and ``prompt_label_share``, the share of the learned tokens
that are not the assistant's (0 unless ``train_on_prompt``).

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
from liandan.registry import register_data


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


# A template for a tokenizer without one (the doctor's chat_template_missing fix): role tags and the
# tokenizer's own begin/end tokens (either may be None: rendered as nothing). Turns break at newlines, not
# spaces: a byte-level BPE (GPT-2's) merges a space into the next word, so "[assistant] Yes" would put the
# answer's first token across the prompt/answer boundary and leave it unlearned.
PLAIN_TEMPLATE = ("{{ bos_token or '' }}{% for m in messages %}[{{ m['role'] }}]\n{{ m['content'] }}"
                  "{{ eos_token or '' }}\n{% endfor %}{% if add_generation_prompt %}[assistant]\n{% endif %}")


def with_template(tok: Any, template: str) -> Any:
    """A copy of ``tok`` rendering chats with ``template`` (Jinja text, or a file holding it):
    ``data.chat_template`` for a tokenizer that has none (the loaded tokenizer is shared: not edited)."""
    import copy
    from pathlib import Path

    from liandan.paths import check_path

    if "{{" not in template and "{%" not in template:
        p = check_path(Path(template).expanduser(), "data.chat_template")
        if not p.is_file():
            raise LiandanError(f"data.chat_template: {template!r} is neither a Jinja template nor a file")
        template = p.read_text(encoding="utf-8")
    out = copy.deepcopy(tok)
    out.chat_template = template
    try:
        out.apply_chat_template([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
                                tokenize=False)
    except Exception as e:  # noqa: BLE001 (jinja's syntax and undefined-name errors: one line)
        raise LiandanError(f"data.chat_template: the template does not render a chat: "
                           f"{(str(e).strip().splitlines() or [type(e).__name__])[0][:160]}") from None
    return out


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
    on_prompt = bool(rec.options.get("train_on_prompt", False))
    prompt_labels = labels = 0
    for s in SPLITS:
        if rec.splits.get(s) is None:
            continue
        rendered = [render(tok, chat, f"{rec.where[s]}: record {i}") for i, chat in enumerate(conversations(rec, s))]
        notes += too_long([len(ids) - 1 for ids, _ in rendered], context, truncate, rec.where[s])
        if context is not None:
            rendered = [(ids[: context + 1], keep[: context + 1]) for ids, keep in rendered]
        answer = sum(sum(keep[1:]) for _, keep in rendered)  # targets are tokens 1.. (pairs)
        total = sum(len(ids) - 1 for ids, _ in rendered) if on_prompt else answer
        labels, prompt_labels = labels + total, prompt_labels + total - answer
        if on_prompt:  # every token learned, in every split (as LLaMA-Factory's preprocessing does)
            rendered = [(ids, [True] * len(ids)) for ids, _ in rendered]
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
                         "packed": packing, "notes": notes, "chat_template": tok.chat_template is not None,
                         "train_on_prompt": on_prompt, "prompt_label_share": prompt_labels / max(labels, 1)})


# --- a toy instruction set: sft without a pre-trained model or files ----------------------------

TOY_WORDS = "red blue green cat dog bird sun moon tree star fish book".split()
TOY_OPS = {"copy": lambda w: w, "reverse": lambda w: w[::-1], "sort": sorted}
TOY_SYSTEM = ("you are a careful assistant who follows the instruction of the user exactly and answers with the "
              "words only").split()


def toy_tokenizer(template: bool) -> Any:
    """A word-level ``transformers`` tokenizer of the toy chats (``<s>`` opens a text, ``</s>`` ends a turn)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    words = [*specials, "[user]", "[assistant]", "[system]", *(f"{op}:" for op in TOY_OPS), *TOY_WORDS,
             *dict.fromkeys(TOY_SYSTEM)]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", chat_template=PLAIN_TEMPLATE if template else None)


class _Table:
    """The part of a ``datasets.Dataset`` :class:`~liandan.data.records.Records` reads, over lists."""

    def __init__(self, columns: dict[str, list[Any]]) -> None:
        self.columns = columns

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)

    def __getitem__(self, name: str) -> list[Any]:
        return self.columns[name]


@register_data("instructions", tags=("text", "synthetic"))
def instructions(n: int = 2000, words: int = 4, system: int = 0, chat_template: bool = True,
                 train_on_prompt: bool = False, seed: int = 0) -> Source:
    """Toy instruction chats ("reverse: cat sun red" → "red sun cat"; copy, reverse, sort) with their own
    word-level tokenizer, rendered as sft records (task lm: the zoo's causal LMs, e.g. model gpt, learn
    the responses), for demos and the doctor's bench without a pre-trained model or files.

    Args:
        n: number of chats
        words: longest word list of an instruction (each has 1..words words)
        system: words of a fixed system prompt before each instruction (0: none): long prompts, short answers
        chat_template: render the chats with a chat template ([user] ... </s> [assistant] ... </s>); false: a
            tokenizer without one, so each record is the raw prompt, then the response
        train_on_prompt: learn the prompt tokens too, not only the responses (as records' data.train_on_prompt)
        seed: random seed of the generated chats (the same seed gives the same chats)
    """
    import numpy as np

    from liandan.data.records import ModelTokenizer

    if n < 3 or words < 1 or not 0 <= system <= len(TOY_SYSTEM):
        raise LiandanError(f"data.instructions: n ≥ 3, words ≥ 1 and system in 0..{len(TOY_SYSTEM)}")
    rng = np.random.default_rng(seed)
    ops, preamble, chats = list(TOY_OPS), " ".join(TOY_SYSTEM[:system]), []
    for _ in range(n):
        op = ops[int(rng.integers(len(ops)))]
        ws = [TOY_WORDS[int(i)] for i in rng.integers(len(TOY_WORDS), size=int(rng.integers(1, words + 1)))]
        user = f"{op}: {' '.join(ws)}"
        turns = [{"role": "user", "content": user}, {"role": "assistant", "content": " ".join(TOY_OPS[op](ws))}]
        if preamble:  # a system turn where a template renders one, else the same words before the prompt
            turns = [{"role": "system", "content": preamble}, *turns] if chat_template else \
                [{"role": "user", "content": f"{preamble} {user}"}, turns[1]]
        chats.append(turns)
    tok = toy_tokenizer(chat_template)
    rec = Records({"train": _Table({"messages": chats})}, {}, {"train": "data.instructions"},
                  {"train_on_prompt": train_on_prompt})
    src = sft_rows(rec, tok, context=None, truncate=False, packing=False, pack_length=None)
    src.tokenizer = ModelTokenizer(tok, "instructions")
    src.task = "lm"  # next-token pairs learned on the responses: the zoo's causal LMs serve lm (sft reads them too)
    return src
