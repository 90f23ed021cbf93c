"""Span tasks of pre-trained models: ``token_classify`` (a tag per word: named-entity recognition)
and ``extractive_qa`` (the answer to a question as a span of its context, SQuAD-style).

``token_classify`` (Devlin et al. 2018, §4.3: BERT on CoNLL-2003): the model's token-classification
head gives logits ``(B, T, K)``; the loss is the mean cross entropy over the words' first
sub-tokens (every other position is -100, :mod:`liandan.data.spans`), as transformers'
``...ForTokenClassification`` computes it. Metrics: entity precision, recall and F1 with CoNLL's
chunking (:mod:`liandan.training.span_metrics`) and the share of words tagged right (``accuracy``).

``extractive_qa`` (Devlin et al. 2018, §4.2: BERT on SQuAD v1.1): the ``qa`` head gives start and
end logits ``(B, T, 2)``; the loss is the mean of the start and end positions' cross entropies
(transformers' ``...ForQuestionAnswering`` loss). The answer is the span ``start ≤ end`` of at
most :data:`MAX_ANSWER_TOKENS` tokens inside the context with the highest start + end logit
(transformers' ``run_qa.py`` post-processing, without n-best lists), cut from the context through
the tokens' character offsets and scored with SQuAD v1.1's exact match and F1.

The per-step training tallies keep the loss (and the token accuracy) on the device; the entity and
answer scores need the tags and texts on the host, so they are computed on val/test passes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from liandan.data.text import IGNORE
from liandan.errors import LiandanError
from liandan.registry import register_task
from liandan.training import span_metrics as sm
from liandan.training.tasks import ExampleSource, Prediction, Task, eval_outputs
from liandan.training.tasks.language import token_loss
from liandan.training.tasks.text import run_tokenizer, texts_of

if TYPE_CHECKING:
    from liandan.training.run import Run

MAX_ANSWER_TOKENS = 30  # transformers' run_qa.py default max_answer_length
CHUNK = 64  # rows scored at once: the (rows, T, T) span scores stay small


def _short(name: str) -> str:
    return name if len(name) <= 60 else name[:57] + "..."


# --- token_classify -----------------------------------------------------------------------------------


class EntityTally:
    """Token-weighted loss and word accuracy on the device; entity counts on the host (not ``light``)."""

    def __init__(self, device: torch.device, names: list[str], light: bool) -> None:
        self.device, self.names, self.light = device, names, light
        self.reset()

    def reset(self) -> None:
        z = lambda: torch.zeros((), dtype=torch.float64, device=self.device)  # noqa: E731
        self.loss_sum, self.words, self.correct, self.n = z(), z(), z(), 0
        self.counts = [0, 0, 0]  # gold entities, predicted entities, correct

    @torch.no_grad()
    def update(self, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        learned = y != IGNORE  # (B, T): the words' first sub-tokens
        k = learned.sum()
        self.loss_sum += loss.detach().double() * k  # the loss is the mean over these k words
        self.words += k
        pred = out.argmax(-1)  # (B, T)
        self.correct += ((pred == y) & learned).sum()
        self.n += len(y)
        if self.light:
            return
        for p, t, m in zip(pred.cpu(), y.cpu(), learned.cpu(), strict=True):
            gold = [self.names[i] for i in t[m].tolist()]
            got = [self.names[i] for i in p[m].tolist()]
            for j, c in enumerate(sm.entity_counts(gold, got)):
                self.counts[j] += c

    def compute(self) -> dict[str, float]:
        n = max(float(self.words), 1.0)
        out = {"loss": float(self.loss_sum) / n, "accuracy": float(self.correct) / n}
        if not self.light:
            out.update(sm.prf(*self.counts))
        return out


@register_task("token_classify", tags=("pretrained",))
class TokenClassify(Task):
    """A tag per word by a pre-trained model's token-classification head; entity F1 (CoNLL)."""

    name = "token_classify"
    hf_head = "token_cls"
    own_loss = "cross_entropy"
    higher_is_better = frozenset({"accuracy", "precision", "recall", "f1"})
    headline_metric = "f1"
    export_output = "logits"  # token ids (batch, seq) in: the ONNX graph takes input_ids

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._inputs: dict[int, tuple[torch.Tensor, list[str], list[int]]] = {}  # read_inputs -> predictor

    def metric_names(self) -> list[str]:
        return ["accuracy", "precision", "recall", "f1"]

    def forward(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = net(x)  # (B, T, K)
        return token_loss(logits, y), logits

    def tally(self, device: torch.device, light: bool = False) -> EntityTally:
        return EntityTally(device, self.info.class_names or [], light)

    def read_inputs(self, run: Run, inputs: list[Any]) -> list[tuple[str, torch.Tensor]]:
        """Texts (or ``.txt`` files, a sentence per line), split into words at whitespace."""
        tok = run_tokenizer(run)
        out = []
        for name, text in texts_of(inputs):
            words = text.split()
            if not words:
                raise LiandanError(f"input {name!r} holds no words to tag")
            enc = tok(words, is_split_into_words=True, truncation=True, max_length=self.info.max_len)
            firsts: dict[int, int] = {}
            for pos, w in enumerate(enc.word_ids()):
                if w is not None:
                    firsts.setdefault(w, pos)
            x = torch.tensor(enc["input_ids"], dtype=torch.int64)
            kept = sorted(firsts)  # words cut off by max_len (or with no token) are not tagged
            self._inputs[id(x)] = (x, [words[w] for w in kept], [firsts[w] for w in kept])
            out.append((_short(name), x))
        return out

    def predictor(self, run: Run, top: int = 3) -> Prediction:
        """Each word with its tag (``value``: ``word/TAG`` pairs), the tags' probabilities, the entities."""
        model, names = run.model, self.info.class_names or []

        def one(x: torch.Tensor) -> dict[str, Any]:
            memo = self._inputs.get(id(x))
            if memo is not None and memo[0] is x:
                words, starts = memo[1], memo[2]
            else:  # bare token ids: every non-special token is a word
                tok = run_tokenizer(run)
                special = set(tok.all_special_ids)
                starts = [i for i, t in enumerate(x.tolist()) if t not in special]
                words = tok.convert_ids_to_tokens([int(x[i]) for i in starts])
            probs = model(x[None])[0].float().softmax(-1)[starts]  # (W, K)
            p, k = probs.max(-1) if len(starts) else (torch.zeros(0), torch.zeros(0, dtype=torch.int64))
            tags = [names[i] for i in k.tolist()]
            return {"value": " ".join(f"{w}/{t}" for w, t in zip(words, tags, strict=True)),
                    "tags": [{"word": w, "tag": t, "prob": round(float(q), 4)}
                             for w, t, q in zip(words, tags, p.tolist(), strict=True)],
                    "entities": [{"text": " ".join(words[a: b + 1]), "type": kind}
                                 for kind, a, b in sm.entities(tags)]}

        return one

    def render_examples(self, run: Run, ex: ExampleSource) -> dict[str, Any] | None:
        """A table of the split's sentences with their gold and predicted entities."""
        tok = run_tokenizer(run)
        names = self.info.class_names or []
        x, y = ex.inputs()
        pred = eval_outputs(run.model, self.info, x).argmax(-1)  # (N, T)
        special = set(tok.all_special_ids)
        rows = []
        for ids, t, p in zip(x.tolist(), y, pred, strict=True):
            starts = (t != IGNORE).nonzero().flatten().tolist()
            if not starts:
                continue
            ends = [*starts[1:], next((i for i in range(starts[-1] + 1, len(ids)) if ids[i] in special), len(ids))]
            words = [tok.decode(ids[a:b], skip_special_tokens=True) for a, b in zip(starts, ends, strict=True)]

            def shown(tags: list[int], words: list[str] = words) -> str:
                found = sm.entities([names[i] for i in tags])
                return "; ".join(f"{' '.join(words[a: b + 1])} ({kind})" for kind, a, b in found) or "—"

            gold, got = shown(t[starts].tolist()), shown(p[starts].tolist())
            rows.append({"prompt": " ".join(words), "expected": gold, "got": got, "right": gold == got})
        return {"title": f"entities of {ex.split} sentences", "rows": rows}


# --- extractive_qa ------------------------------------------------------------------------------------


@torch.no_grad()
def best_spans(logits: torch.Tensor, ctx: torch.Tensor,
               max_tokens: int = MAX_ANSWER_TOKENS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The best answer span of each row: ``start ≤ end < start + max_tokens``, both inside the
    context tokens ``ctx`` ``(B, 2)`` (first, last), maximising start + end logit.
    ``logits`` ``(B, T, 2)``; returns start, end and the span's probability (start and end
    softmaxes over the context's tokens), each ``(B,)``."""
    logits = logits.float().cpu()
    T = logits.shape[1]
    pos = torch.arange(T)
    band = (pos[None, :] >= pos[:, None]) & (pos[None, :] - pos[:, None] < max_tokens)  # (T, T): start i, end j
    starts, ends, probs = [], [], []
    for lo in range(0, len(logits), CHUNK):
        lg, c = logits[lo: lo + CHUNK], ctx[lo: lo + CHUNK].cpu()
        inside = (pos >= c[:, :1]) & (pos <= c[:, 1:])  # (b, T)
        s = lg[..., 0].masked_fill(~inside, float("-inf")).log_softmax(-1)  # (b, T)
        e = lg[..., 1].masked_fill(~inside, float("-inf")).log_softmax(-1)
        score = (s[:, :, None] + e[:, None, :]).masked_fill(~band, float("-inf"))  # (b, T, T)
        best, flat = score.flatten(1).max(1)
        starts.append(flat // T)
        ends.append(flat % T)
        probs.append(best.exp())
    return torch.cat(starts), torch.cat(ends), torch.cat(probs)


class AnswerTally:
    """The mean loss on the device; SQuAD exact match and F1 of the decoded answers (not ``light``)."""

    def __init__(self, device: torch.device, light: bool) -> None:
        self.device, self.light = device, light
        self.reset()

    def reset(self) -> None:
        self.loss_sum, self.n = torch.zeros((), dtype=torch.float64, device=self.device), 0
        self.em, self.f1, self.scored = 0.0, 0.0, 0

    @torch.no_grad()
    def update(self, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        self.loss_sum += loss.detach().double() * len(y)
        self.n += len(y)
        if self.light:
            return
        from liandan.data.spans import qa_table

        y = y.cpu()
        keys, rows = y[:, 2].tolist(), y[:, 3].tolist()
        tables = {k: qa_table(k) for k in set(keys)}
        ctx = torch.stack([tables[k].ctx[r] for k, r in zip(keys, rows, strict=True)])  # (B, 2)
        starts, ends, _ = best_spans(out, ctx)
        for k, r, a, b in zip(keys, rows, starts.tolist(), ends.tolist(), strict=True):
            t = tables[k]
            em, f1 = sm.best_over_golds(t.span_text(r, a, b), t.answers[r])
            self.em, self.f1, self.scored = self.em + em, self.f1 + f1, self.scored + 1

    def compute(self) -> dict[str, float]:
        out = {"loss": float(self.loss_sum) / max(self.n, 1)}
        if not self.light:
            out.update(exact_match=self.em / max(self.scored, 1), f1=self.f1 / max(self.scored, 1))
        return out


def qa_records(item: Any, fields: dict[str, str]) -> list[tuple[str, str, str]]:
    """``(name, question, context)`` of one predict input: a JSON object or a .jsonl/.json file of them."""
    from liandan.paths import read_text

    q, c = fields.get("question", "question"), fields.get("context", "context")
    text, name = str(item), None
    p = Path(text)
    try:
        is_file = p.suffix in (".jsonl", ".json") and p.is_file()
    except (OSError, ValueError):
        is_file = False
    if is_file:
        body, name = read_text(p, "input file", encoding="utf-8"), str(p)
        lines = [ln for ln in body.splitlines() if ln.strip()] if p.suffix == ".jsonl" else [body]
    else:
        lines = [text]
    docs: list[Any] = []
    for line in lines:
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            doc = None
        docs += doc if isinstance(doc, list) else [doc]  # a .json file may hold a list of objects
    out = []
    for i, doc in enumerate(docs):
        where = f"{name}[{i}]" if name else "input"
        if not (isinstance(doc, dict) and isinstance(doc.get(q), str) and isinstance(doc.get(c), str)):
            raise LiandanError(f"{where}: extractive_qa predicts from JSON objects {{{q!r}: ..., {c!r}: ...}} "
                               "(literal, or a line each in a .jsonl file)")
        out.append((f"{name}[{i}]" if name else doc[q], doc[q], doc[c]))
    return out


@register_task("extractive_qa", tags=("pretrained",))
class ExtractiveQA(Task):
    """The answer as a span of the context, by a pre-trained model's ``qa`` head; SQuAD EM and F1."""

    name = "extractive_qa"
    hf_head = "qa"
    own_loss = "cross_entropy"
    higher_is_better = frozenset({"exact_match", "f1"})
    headline_metric = "f1"
    export_output = None  # token ids in, start and end logits out: the exporters take images and features

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._inputs: dict[int, tuple[torch.Tensor, str, Any, tuple[int, int]]] = {}  # read_inputs -> predictor

    def metric_names(self) -> list[str]:
        return ["exact_match", "f1"]

    def forward(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = net(x)  # (B, T, 2)
        loss = (F.cross_entropy(logits[..., 0].float(), y[:, 0]) + F.cross_entropy(logits[..., 1].float(), y[:, 1])) / 2
        return loss, logits

    def tally(self, device: torch.device, light: bool = False) -> AnswerTally:
        return AnswerTally(device, light)

    def read_inputs(self, run: Run, inputs: list[Any]) -> list[tuple[str, torch.Tensor]]:
        """``{"question": ..., "context": ...}`` objects (literal, or .jsonl files), cut to the run's rows."""
        tok = run_tokenizer(run)
        fields = dict(run.recipe.data.options.get("fields") or {})
        segments = len(self.info.input_shape) == 2  # rows carry segment ids: (2, T)
        out = []
        for item in inputs:
            for name, q, c in qa_records(item, fields):
                enc = tok(q, c, truncation="only_second", max_length=self.info.max_len, return_offsets_mapping=True)
                ctx = [k for k, s in enumerate(enc.sequence_ids()) if s == 1]
                if not ctx:
                    raise LiandanError(f"{name}: the question leaves no room for the context in {self.info.max_len} "
                                       "tokens")
                x = torch.tensor(enc["input_ids"], dtype=torch.int64)
                if segments:
                    x = torch.stack([x, torch.tensor(enc["token_type_ids"], dtype=torch.int64)])  # (2, T)
                self._inputs[id(x)] = (x, c, enc["offset_mapping"], (ctx[0], ctx[-1]))
                out.append((_short(name), x))
        return out

    def predictor(self, run: Run, top: int = 3) -> Prediction:
        """The answer (``value``), its probability and its first character in the context."""
        model = run.model

        def one(x: torch.Tensor) -> dict[str, Any]:
            memo = self._inputs.get(id(x))
            if memo is None or memo[0] is not x:
                raise LiandanError("extractive_qa predicts from question and context texts, not token ids")
            _, context, offsets, (c0, c1) = memo
            a, b, p = (v[0] for v in best_spans(model(x[None]), torch.tensor([[c0, c1]])))
            start, end = offsets[int(a)][0], offsets[int(b)][1]
            return {"value": context[start:end], "prob": round(float(p), 4), "start": start}

        return one

    def render_examples(self, run: Run, ex: ExampleSource) -> dict[str, Any] | None:
        """A table of the split's questions with the gold answers and the predicted one."""
        from liandan.data.spans import qa_table

        x, y = ex.inputs()
        logits = eval_outputs(run.model, self.info, x)  # (N, T, 2)
        tables = [qa_table(k) for k in y[:, 2].tolist()]
        rows_ = y[:, 3].tolist()
        ctx = torch.stack([t.ctx[r] for t, r in zip(tables, rows_, strict=True)])
        starts, ends, probs = best_spans(logits, ctx)
        rows = []
        for t, r, a, b, p in zip(tables, rows_, starts.tolist(), ends.tolist(), probs.tolist(), strict=True):
            got = t.span_text(r, a, b)
            rows.append({"prompt": t.questions[r], "expected": " | ".join(t.answers[r]), "got": f"{got} ({p:.2f})",
                         "right": bool(sm.best_over_golds(got, t.answers[r])[0])})
        return {"title": f"answers to {ex.split} questions", "rows": rows}
