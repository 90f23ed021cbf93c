"""BLIP's image captioner (Li et al. 2022, "BLIP: bootstrapping language-image pre-training").

A ViT encodes the image into patch features; a causal transformer text decoder reads the
caption so far and attends to those features through cross-attention in every layer (BLIP's
"image-grounded text decoder", trained with a language-modelling loss). Built from Hugging Face
``transformers`` (``BlipConfig``/``BlipForConditionalGeneration``), imported lazily; the loss
and the greedy decoding are liandan's (:mod:`liandan.training.tasks.vision_language`).

Sizes: ``base`` is ``BlipConfig()`` (ViT-B/16 at 384×384, a 12-layer 768-wide BERT decoder with
cross-attention over 30,524 tokens): 223,971,644 parameters with the default options (the
output layer shares the token embedding). ``tiny`` is CPU-sized for 32×32 images (64 wide,
4×4 patches, 3 vision and 2 decoder layers); ``stem`` as in :mod:`liandan.models.clip` (``tiny``
gets the convolutional stem).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from liandan.models._vl import apply_stem, check_image_shape
from liandan.models.hf_text import init_std
from liandan.registry import register_model

PAD, BOS, EOS = 0, 1, 2  # liandan's token conventions (liandan.data.tokenize)

TINY = {"vision": (64, 3, 4), "text": (64, 2, 4), "patch": 4}  # (width, layers, heads)


class BLIPCaptioner(nn.Module):
    """A BlipForConditionalGeneration with liandan's calling convention: ``model(images, ids)``.

    ``forward`` returns next-token logits ``(B, T, V)`` for the caption prefix ``ids``;
    ``model(images)`` alone scores the first word after ``<bos>``. :meth:`generate` decodes greedily.
    """

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        self.hf = hf

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 1 + N, D) patch features (class token first) for cross-attention."""
        return self.hf.vision_model(pixel_values=images).last_hidden_state

    def decode(self, feats: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Image features (B, S, D) and ids (B, T) -> logits (B, T, V)."""
        out = self.hf.text_decoder(input_ids=ids, attention_mask=(ids != PAD).long(),
                                   encoder_hidden_states=feats, return_dict=True)
        return out.logits

    def forward(self, images: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        if ids is None:
            ids = torch.full((len(images), 1), BOS, dtype=torch.long, device=images.device)
        return self.decode(self.encode_image(images), ids)

    @torch.no_grad()
    def generate(self, images: torch.Tensor, max_new: int, bos: int = BOS, eos: int = EOS) -> torch.Tensor:
        """Greedy captions: (B, C, H, W) -> (B, max_new) ids after ``<bos>``, padded after ``<eos>``.

        The image is encoded once; each step re-reads the short prefix (captions here are a few
        words, so a key/value cache would save little).
        """
        feats = self.encode_image(images)  # (B, S, D)
        ids = torch.full((len(images), 1), bos, dtype=torch.long, device=images.device)
        done = torch.zeros(len(images), dtype=torch.bool, device=images.device)
        for _ in range(max_new):
            logits = self.decode(feats, ids)[:, -1]  # (B, V)
            logits[:, PAD] = float("-inf")  # padding is never a word
            nxt = torch.where(done, torch.full_like(done, PAD, dtype=torch.long), logits.argmax(-1))  # (B,)
            ids = torch.cat([ids, nxt[:, None]], 1)
            done |= nxt == eos
        return ids[:, 1:]


def blip_config(size: str, image_size: int, in_channels: int, vocab_size: int, max_len: int):
    from transformers import BlipConfig

    if size == "base":
        cfg = BlipConfig()
        cfg.vision_config.image_size, cfg.vision_config.num_channels = image_size, in_channels
        cfg.vision_config.initializer_range = 0.02  # not 1e-10: we train from scratch (see below)
        cfg.text_config.vocab_size = vocab_size
        cfg.text_config.max_position_embeddings = max(max_len, 512)  # BERT's 512 positions at the defaults
        cfg.text_config.pad_token_id, cfg.text_config.bos_token_id = PAD, BOS
        cfg.text_config.eos_token_id = cfg.text_config.sep_token_id = EOS
        return cfg
    (vw, vl, vh), (tw, tl, th) = TINY["vision"], TINY["text"]
    vision = {"hidden_size": vw, "num_hidden_layers": vl, "num_attention_heads": vh, "intermediate_size": 4 * vw,
              "image_size": image_size, "patch_size": TINY["patch"], "num_channels": in_channels,
              # BlipVisionConfig's default initializer_range is 1e-10 (fine under pretrained weights): from
              # scratch every vision weight would start ~0 and the units alike (the doctor's symmetry finding)
              "initializer_range": 0.02}
    text = {"hidden_size": tw, "num_hidden_layers": tl, "num_attention_heads": th, "intermediate_size": 4 * tw,
            "vocab_size": vocab_size, "max_position_embeddings": max_len, "encoder_hidden_size": vw,
            "pad_token_id": PAD, "bos_token_id": BOS, "eos_token_id": EOS, "sep_token_id": EOS,
            # with BERT's N(0, 0.02) at width 64 the image reached the decoder through value and output maps
            # at 0.16² ≈ 3 % of the text's scale, and the encoder's gradient shrank alike: from scratch it never
            # learned shapes (shape accuracy 0.11; with 1/√width 0.977). See init_std.
            "initializer_range": init_std(size, tw)}
    return BlipConfig(text_config=text, vision_config=vision, projection_dim=tw)


@register_model("blip", input_kind="image_text", task="caption", ref_params=223_971_644,
                ref_options={"size": "base"}, paper="Li et al. 2022")
def blip(
    input_shape: tuple[int, ...] = (3, 384, 384),
    vocab_size: int = 30524,
    max_len: int = 512,
    size: Literal["tiny", "base"] = "tiny",
    stem: Literal["auto", "patch", "conv"] = "auto",
) -> nn.Module:
    """BLIP captioner: ViT image encoder + causal text decoder with cross-attention (base: 224.0 M).

    Args:
        input_shape: square (C, H, W) images whose side the patch size divides; inferred from the data
        size: tiny: CPU-sized for 32×32 images (64 wide, 4×4 patches, 3 vision and 2 decoder layers); base:
            BlipConfig() (ViT-B/16 at 384, a 12-layer 768-wide decoder)
        stem: auto: a convolutional stem at size tiny (Xiao et al. 2021; learns shapes far faster from
            scratch), ViT's patchify conv at base; conv or patch forces one
    """
    from transformers import BlipForConditionalGeneration

    check_image_shape("blip", input_shape)
    cfg = blip_config(size, int(input_shape[1]), int(input_shape[0]), vocab_size, max_len)
    check_image_shape("blip", input_shape, cfg.vision_config.patch_size)
    hf = BlipForConditionalGeneration(cfg)
    apply_stem(hf.vision_model, stem, size, input_shape, cfg.vision_config)
    return BLIPCaptioner(hf)
