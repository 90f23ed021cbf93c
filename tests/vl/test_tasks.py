"""The ``contrastive`` and ``caption`` tasks, checked against reference formulas."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from liandan.data.pipeline import DataInfo
from liandan.training.tasks import TASKS
from liandan.training.tasks.vision_language import ContrastiveTally, caption_class


class FixedEmbeddings(torch.nn.Module):
    """A stand-in CLIP whose embeddings are given: isolates the loss from any encoder."""

    def __init__(self, img: torch.Tensor, txt: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.img, self.txt, self.scale = img, txt, torch.tensor(scale)

    def forward(self, x, y):
        return F.normalize(self.img, dim=-1), F.normalize(self.txt, dim=-1), self.scale


def _info(task: str) -> DataInfo:
    return DataInfo(source="t", task=task, num_classes=0, input_shape=(3, 4, 4), pad_id=0,
                    extras={"class_token_ids": [7, 8, 9]})


def test_contrastive_loss_is_clip_loss_without_duplicates() -> None:
    from transformers.models.clip.modeling_clip import image_text_contrastive_loss

    torch.manual_seed(0)
    img, txt = torch.randn(6, 5), torch.randn(6, 5)
    y = torch.arange(6)[:, None].repeat(1, 3)  # six distinct captions
    task = TASKS.get("contrastive").fn(_info("contrastive"), None, None)
    loss, out = task.forward(FixedEmbeddings(img, txt, 10.0).train(), torch.zeros(6), y)
    logits_per_text = 10.0 * F.normalize(txt, dim=-1) @ F.normalize(img, dim=-1).T
    assert torch.allclose(loss, image_text_contrastive_loss(logits_per_text), atol=1e-6)


def test_contrastive_duplicates_are_all_positives() -> None:
    """Two images with the same caption: each caption copy is an equally right answer."""
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    txt = img.clone()
    y = torch.tensor([[1, 7, 2], [1, 7, 2], [1, 8, 2]])
    task = TASKS.get("contrastive").fn(_info("contrastive"), None, None)
    loss, out = task.forward(FixedEmbeddings(img, txt, 50.0).train(), torch.zeros(3), y)
    # rows 0 and 1 split their target over the two equal captions, which they score equally: loss log 2 each
    expected = (2 * torch.log(torch.tensor(2.0)) + 0.0) / 3
    assert torch.allclose(loss, expected, atol=1e-4)
    tally = ContrastiveTally(torch.device("cpu"), torch.tensor([7, 8, 9]))
    tally.update(out, y, loss)
    assert tally.compute()["retrieval_accuracy"] == 1.0  # a duplicate of the true caption is a hit


def test_caption_class_reads_the_first_class_word() -> None:
    ids = torch.tensor([[1, 5, 8, 2], [1, 5, 6, 2], [1, 9, 7, 2]])
    assert caption_class(ids, torch.tensor([7, 8, 9])).tolist() == [1, -1, 2]


def test_caption_loss_is_teacher_forced_cross_entropy() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 10)

    class Fixed(torch.nn.Module):
        def forward(self, x, ids):
            assert ids.shape == (2, 3)  # the caption without its last token
            return logits

    y = torch.tensor([[1, 7, 4, 2], [1, 8, 2, 0]])  # the second caption is padded
    task = TASKS.get("caption").fn(_info("caption"), None, None)
    loss, out = task.forward(Fixed().train(), torch.zeros(2), y)
    target = y[:, 1:]
    ref = F.cross_entropy(logits.reshape(-1, 10), target.reshape(-1), ignore_index=0)
    assert torch.allclose(loss, ref)
    tally = task.tally(torch.device("cpu"), light=True)
    tally.update(out, y, loss)
    hits = ((logits.argmax(-1) == target) & (target != 0)).sum().item()
    assert tally.compute()["token_accuracy"] == hits / 5


def test_shapes_captions_describe_the_image() -> None:
    from liandan.data.captions import decode, shapes_captions, tokenizer
    from liandan.data.shapes import SHAPES

    src = shapes_captions(n=30, task="caption")
    texts = decode(tokenizer(), src.y)
    for i, t in enumerate(texts):
        assert t == f"a {src.meta['size'][i]} {src.meta['colour'][i]} {SHAPES[src.meta['shape'][i]]}"
    k = torch.tensor(src.facts["class_token_ids"])
    assert torch.equal(caption_class(src.y, k), torch.as_tensor(src.meta["shape"]))
    prompts = torch.tensor(src.facts["prompt_ids"])
    assert prompts.shape == (10, 24, src.y.shape[1])  # every size × colour, per shape
    assert torch.equal(caption_class(prompts[:, 0], k), torch.arange(10))
