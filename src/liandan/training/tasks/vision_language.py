"""Image-text tasks: ``contrastive`` (CLIP, Radford et al. 2021) and ``caption`` (BLIP's
captioner, Li et al. 2022). Batches are ``(images (B, C, H, W), caption ids (B, T))``.

``contrastive``: symmetric InfoNCE over the batch: the ``(B, B)`` cosine similarities times the
learned temperature are the logits of image→text and of text→image classification, and the
loss is the mean of the two cross entropies (Radford et al. 2021, Fig. 3). Identical captions
in one batch (240 distinct captions in ``shapes_captions``) are *all* positives: an image's
target is spread evenly over every caption equal to its own, rather than asking the model to
tell apart two copies of the same text (which has no answer and pushes equal texts apart).
Metrics: in-batch retrieval accuracy (both directions; a duplicate of the true caption counts
as a hit) and, on evaluation, zero-shot accuracy: each class is scored from its text prompts
alone (the source's ``prompt_ids``; see :func:`class_scores`) and an image takes the class of
highest score; its true class is the class word in its caption.

``caption``: teacher-forced next-token cross entropy over the caption after ``<bos>``
(padding ignored); metrics: token accuracy, and on evaluation the greedy caption's
``shape_accuracy`` (its first class word is the image's class) and ``exact_match``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from liandan.errors import LiandanError
from liandan.registry import register_task
from liandan.training.tasks import ExampleSource, Prediction, Task, class_labels, top_classes

if TYPE_CHECKING:
    from liandan.training.run import Run


def plain(net: nn.Module) -> nn.Module:
    """The model inside a DDP/FSDP or ``torch.compile`` wrapper (their methods are the model's)."""
    net = getattr(net, "_orig_mod", net)
    return getattr(net, "module", net)


def caption_class(ids: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) ids -> (B,) index of the first class word in each row, -1 where there is none."""
    hits = ids[:, :, None] == class_ids[None, None, :]  # (B, T, K)
    any_word = hits.any(-1)  # (B, T)
    first = any_word.int().argmax(1)  # (B,) first position holding a class word
    cls = hits[torch.arange(len(ids), device=ids.device), first].int().argmax(-1)  # (B,)
    return torch.where(any_word.any(1), cls, torch.full_like(cls, -1))


def class_embeddings(model: nn.Module, prompt_ids: torch.Tensor) -> torch.Tensor:
    """(K, P, T) prompt ids -> (K, E) unit class embeddings: the mean of each class's unit prompt
    embeddings (Radford et al. 2021's prompt ensembling, §3.1.4)."""
    k, p, t = prompt_ids.shape
    txt = F.normalize(plain(model).encode_text(prompt_ids.reshape(k * p, t)), dim=-1).reshape(k, p, -1)  # (K, P, E)
    return F.normalize(txt.mean(1), dim=-1)


def class_scores(model: nn.Module, img: torch.Tensor, prompt_ids: torch.Tensor) -> torch.Tensor:
    """(B, E) unit image embeddings and (K, P, T) prompt ids -> (B, K) zero-shot class scores.

    A class's score is the log of its total probability under a softmax over *every* prompt,
    ``logsumexp_p(scale · cos(image, prompt_kp))``: the prompts of a class differ in what the
    class leaves open (here colour and size), which a class prediction should sum over. Averaging
    the prompt embeddings instead (:func:`class_embeddings`) suits paraphrases of one meaning, but
    the mean of "a small red X" … "a large white X" lies far from each of them: on one trained
    shapes-clip model it scored 0.29 where this scored 0.54.
    """
    k, p, t = prompt_ids.shape
    txt = F.normalize(plain(model).encode_text(prompt_ids.reshape(k * p, t)), dim=-1)  # (K·P, E)
    logits = plain(model).logit_scale * img @ txt.T  # (B, K·P)
    return logits.reshape(len(img), k, p).logsumexp(-1)  # (B, K)


@torch.no_grad()
def zero_shot_logits(model: nn.Module, images: torch.Tensor, prompt_ids: torch.Tensor,
                     ensemble: str = "marginal") -> torch.Tensor:
    """(B, C, H, W) normalised images -> (B, K) zero-shot class scores; argmax is the prediction.

    ``ensemble``: ``marginal`` (:func:`class_scores`, what the task reports) or ``mean``
    (cosine similarity to the mean prompt embedding, :func:`class_embeddings`).
    """
    if ensemble not in ("marginal", "mean"):
        raise LiandanError(f"ensemble must be marginal or mean, got {ensemble!r}")
    model = plain(model)
    was = model.training
    model.eval()  # batch norm in the image stem: running statistics, so a batch of one works
    try:
        img = F.normalize(model.encode_image(images), dim=-1)  # (B, E)
        prompt_ids = prompt_ids.to(images.device)
        if ensemble == "mean":
            return model.logit_scale * img @ class_embeddings(model, prompt_ids).T
        return class_scores(model, img, prompt_ids)
    finally:
        model.train(was)


class _ImageText(Task):
    """Shared set-up: the class-word ids and prompts the source put in ``DataInfo.extras``."""

    default_loss = None

    def __init__(self, info, loss_fn, recipe) -> None:
        super().__init__(info, loss_fn, recipe)
        ex = info.extras or {}
        self.pad = info.pad_id if info.pad_id is not None else 0
        self.class_ids = torch.as_tensor(ex.get("class_token_ids", []), dtype=torch.long)
        self.prompt_ids = torch.as_tensor(ex["prompt_ids"], dtype=torch.long) if ex.get("prompt_ids") else None

    def render_examples(self, run: Run, ex: ExampleSource) -> dict[str, Any] | None:
        """A few test images, each labelled with what the model says of it (:meth:`_say`)."""
        if not self.info.is_image:
            return None
        x_raw, y = ex.inputs()
        x = torch.stack([self.info.normalize_x(im) for im in x_raw])
        title, labels = self._say(run, x, y)
        return {"title": title, "images": x_raw, "labels": labels}

    def _say(self, run: Run, x: torch.Tensor, y: torch.Tensor) -> tuple[str, list[tuple[str, bool]]]:
        raise NotImplementedError


class _Sums:
    """Named sums kept as device tensors (no host sync per batch); ``n`` counts samples."""

    keys: tuple[str, ...] = ()

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        for k in ("loss_sum", *self.keys):
            setattr(self, k, torch.zeros((), dtype=torch.float64, device=self.device))
        self.n = 0

    def ratio(self, num: str, den: str) -> float | None:
        d = float(getattr(self, den))
        return float(getattr(self, num)) / d if d > 0 else None


@register_task("contrastive")
class Contrastive(_ImageText):
    """CLIP's symmetric InfoNCE; retrieval and zero-shot accuracy (Radford et al. 2021)."""

    name = "contrastive"
    higher_is_better = frozenset({"retrieval_accuracy", "zero_shot_accuracy"})

    def predictor(self, run: Run, top: int = 3) -> Prediction:
        """The ``top`` zero-shot classes of an image, scored from the classes' text prompts."""
        model, names = run.model, self.info.class_names
        return lambda x: {"classes": top_classes(zero_shot_logits(model, x[None], self.prompt_ids)[0], names, top)}

    def _say(self, run: Run, x: torch.Tensor, y: torch.Tensor) -> tuple[str, list[tuple[str, bool]]]:
        pred = zero_shot_logits(run.model, x, self.prompt_ids).argmax(-1)
        true = caption_class(y, self.class_ids)
        names = self.info.class_names or [str(i) for i in range(self.info.num_classes or 0)]
        return "zero-shot classes of test images (from text prompts)", class_labels(pred, true, names)

    def metric_names(self) -> list[str]:
        return ["retrieval_accuracy", "zero_shot_accuracy"]

    def forward(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Any]:
        img, txt, scale = net(x, y)  # (B, E), (B, E), ()
        logits = scale * img @ txt.T  # (B, B): row i scores image i against every caption
        same = (y[:, None, :] == y[None, :, :]).all(-1)  # (B, B) duplicate captions are positives too
        target = same.float() / same.sum(1, keepdim=True)  # symmetric, so it serves both directions
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        out = {"logits": logits.detach(), "same": same}
        if not net.training and self.prompt_ids is not None:  # evaluation: classify from text prompts too
            out["zero_shot"] = class_scores(net, img, self.prompt_ids.to(x.device)).argmax(-1)  # (B,)
        return loss, out

    def tally(self, device: torch.device, light: bool = False) -> ContrastiveTally:
        return ContrastiveTally(device, self.class_ids.to(device))


class ContrastiveTally(_Sums):
    keys = ("hits", "zs_hits", "zs_n")

    def __init__(self, device: torch.device, class_ids: torch.Tensor) -> None:
        self.class_ids = class_ids
        super().__init__(device)

    @torch.no_grad()
    def update(self, out: dict[str, torch.Tensor], y: torch.Tensor, loss: torch.Tensor) -> None:
        b = len(y)
        logits, same = out["logits"], out["same"]
        rows = torch.arange(b, device=y.device)
        i2t = same[rows, logits.argmax(1)]  # image i retrieved a caption equal to its own
        t2i = same[logits.argmax(0), rows]  # caption j retrieved an image with its caption
        self.hits += (i2t.sum() + t2i.sum()) / 2
        self.loss_sum += loss.detach() * b
        self.n += b
        if "zero_shot" in out and len(self.class_ids):
            true = caption_class(y, self.class_ids)
            self.zs_hits += ((out["zero_shot"] == true) & (true >= 0)).sum()
            self.zs_n += (true >= 0).sum()

    def compute(self) -> dict[str, float]:
        m = {"loss": float(self.loss_sum) / max(self.n, 1), "retrieval_accuracy": float(self.hits) / max(self.n, 1)}
        zs = self.ratio("zs_hits", "zs_n")
        if zs is not None:
            m["zero_shot_accuracy"] = zs
        return m


@register_task("caption")
class Caption(_ImageText):
    """Image captioning: next-token loss with teacher forcing, greedy decoding (Li et al. 2022)."""

    name = "caption"
    higher_is_better = frozenset({"token_accuracy", "shape_accuracy", "exact_match"})

    def predictor(self, run: Run, top: int = 3) -> Prediction:
        """The greedy caption of an image."""
        from liandan.data.tokenize import load_tokenizer

        tok = load_tokenizer(run.dir / self.info.tokenizer)
        return lambda x: {"caption": generate_captions(run.model, x[None], tok, max_new=self.info.max_len - 1)[0]}

    def _say(self, run: Run, x: torch.Tensor, y: torch.Tensor) -> tuple[str, list[tuple[str, bool]]]:
        from liandan.data.captions import decode
        from liandan.data.tokenize import load_tokenizer

        tok = load_tokenizer(run.dir / self.info.tokenizer)
        said = generate_captions(run.model, x, tok, max_new=self.info.max_len - 1)
        truth = decode(tok, y[:, 1:])
        return "greedy captions of test images", [(s, True) if s == t else (f"{s}\n(true: {t})", False)
                                                  for s, t in zip(said, truth, strict=True)]

    def metric_names(self) -> list[str]:
        return ["token_accuracy", "shape_accuracy", "exact_match"]

    def forward(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Any]:
        logits = net(x, y[:, :-1])  # (B, T-1, V): position t predicts token t+1
        target = y[:, 1:]  # (B, T-1)
        loss = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=self.pad)
        out = {"pred": logits.detach().argmax(-1)}
        if not net.training:  # evaluation: caption each image from <bos> alone
            out["tokens"] = plain(net).generate(x, target.shape[1])  # (B, T-1)
        return loss, out

    def tally(self, device: torch.device, light: bool = False) -> CaptionTally:
        return CaptionTally(device, self.class_ids.to(device), self.pad)


class CaptionTally(_Sums):
    keys = ("tok_hits", "tok_n", "shape_hits", "exact", "gen_n")

    def __init__(self, device: torch.device, class_ids: torch.Tensor, pad: int) -> None:
        self.class_ids, self.pad = class_ids, pad
        super().__init__(device)

    @torch.no_grad()
    def update(self, out: dict[str, torch.Tensor], y: torch.Tensor, loss: torch.Tensor) -> None:
        target = y[:, 1:]
        real = target != self.pad
        self.tok_hits += ((out["pred"] == target) & real).sum()
        self.tok_n += real.sum()
        self.loss_sum += loss.detach() * len(y)
        self.n += len(y)
        if "tokens" in out:
            gen = out["tokens"]
            self.exact += (gen == target).all(1).sum()
            self.gen_n += len(y)
            if len(self.class_ids):
                true, said = caption_class(y, self.class_ids), caption_class(gen, self.class_ids)
                self.shape_hits += ((said == true) & (true >= 0)).sum()

    def compute(self) -> dict[str, float]:
        m = {"loss": float(self.loss_sum) / max(self.n, 1), "token_accuracy": self.ratio("tok_hits", "tok_n") or 0.0}
        if float(self.gen_n) > 0:
            m["shape_accuracy"] = self.ratio("shape_hits", "gen_n")
            m["exact_match"] = self.ratio("exact", "gen_n")
        return m


# --- the Python surface: metrics of a finished run, captions and zero-shot predictions --------------


@torch.no_grad()
def generate_captions(model: nn.Module, images: torch.Tensor, tokenizer, max_new: int = 8) -> list[str]:
    """Greedy captions of (B, C, H, W) normalised images, as text."""
    from liandan.data.captions import decode

    model = plain(model)
    was = model.training
    model.eval()
    try:
        return decode(tokenizer, model.generate(images, max_new))
    finally:
        model.train(was)


def vision_language_metrics(run_dir: str | Path, split: str = "test") -> dict[str, float]:
    """Re-evaluate a finished contrastive or caption run on ``split``: its loss and metrics,
    including ``zero_shot_accuracy`` (contrastive) or ``shape_accuracy`` (caption)."""
    from liandan.training.loop import evaluate
    from liandan.training.run import load_run
    from liandan.training.tasks import build_task

    run = load_run(run_dir)
    if run.info.task not in ("contrastive", "caption"):
        raise LiandanError(f"{run_dir} is a {run.info.task} run, not an image-text (contrastive/caption) one")
    data = run.load_data()
    task = build_task(run.info, None, run.recipe)
    return evaluate(run.model, data.eval_batches(split), None, run.info, torch.device("cpu"), task=task)
