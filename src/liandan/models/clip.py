"""CLIP: contrastive language-image pre-training (Radford et al. 2021, "Learning transferable
visual models from natural language supervision").

An image encoder (a ViT) and a text encoder (a causal transformer read out at its ``<eos>``
token) are each followed by a linear projection into one joint space; the cosine similarity of
an image and a text embedding, times a learnable temperature ``exp(logit_scale)`` (initialised
to 1/0.07 and clipped at 100, §2.5), is the logit of the contrastive loss. Built from Hugging
Face ``transformers`` (``CLIPConfig``/``CLIPModel``), imported lazily.

Sizes: ``base`` is CLIP ViT-B/32 (``CLIPConfig()``: 224×224 images, 32×32 patches, a 12-layer
768-wide vision tower, a 12-layer 512-wide text tower over 49,408 tokens and 77 positions,
512-d joint space): 151,277,313 parameters with the default options. ``tiny`` is a CPU-sized
model for 32×32 images (64 wide, 4×4 patches, 3 vision and 2 text layers, 64-d joint space).

``stem``: ``auto`` gives ``tiny`` a convolutional stem in place of the patchify convolution
(:class:`liandan.models._vl.ConvStem`; ViT's "hybrid", Dosovitskiy et al. 2021 §3.1, with Xiao et
al. 2021's stem), ``base`` the reference patchify stem. Measured on 32×32 shapes, a tiny ViT
classifier reached 0.26 test accuracy in 10 epochs with patches and 0.99 in 6 with the stem.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from liandan.models._vl import apply_stem, check_image_shape
from liandan.registry import register_model

PAD, BOS, EOS = 0, 1, 2  # liandan's token conventions (liandan.data.tokenize)
MAX_LOGIT_SCALE = 100.0  # Radford et al. clip the temperature so logits stay below 100

# (width, layers, heads) of the vision and text towers, joint dimension, patch size
TINY = {"vision": (64, 3, 4), "text": (64, 2, 4), "proj": 64, "patch": 4}


def first_eos(ids: torch.Tensor, eos: int = EOS) -> torch.Tensor:
    """(B, T) ids -> (B,) position of the first ``<eos>`` (the last position when there is none)."""
    is_eos = ids == eos
    last = torch.full_like(ids[:, 0], ids.shape[1] - 1)
    return torch.where(is_eos.any(1), is_eos.int().argmax(1), last)


class CLIP(nn.Module):
    """A CLIPModel with liandan's calling convention: ``model(images, ids)``.

    ``forward`` returns the L2-normalised image and text embeddings and the temperature, so
    the contrastive task forms the ``(B, B)`` similarity logits itself (and can mask duplicate
    captions); ``model(images)`` alone returns the normalised image embeddings.
    """

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        self.hf = hf

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.hf.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, E) projected, unnormalised."""
        pooled = self.hf.vision_model(pixel_values=images).pooler_output  # (B, D): class token after LayerNorm
        return self.hf.visual_projection(pooled)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, E) projected, unnormalised: the hidden state at the first ``<eos>``.

        We pool here rather than trust the Hugging Face pooler, which reads ``argmax(ids)`` when
        ``eos_token_id == 2`` (an old-checkpoint quirk) and liandan's ``<eos>`` is id 2.
        """
        hidden = self.hf.text_model(input_ids=ids, attention_mask=(ids != PAD).long()).last_hidden_state  # (B, T, D)
        pooled = hidden[torch.arange(len(ids), device=ids.device), first_eos(ids)]  # (B, D)
        return self.hf.text_projection(pooled)

    def forward(self, images: torch.Tensor, ids: torch.Tensor | None = None):
        img = F.normalize(self.encode_image(images), dim=-1)  # (B, E)
        if ids is None:
            return img
        txt = F.normalize(self.encode_text(ids), dim=-1)  # (B, E)
        return img, txt, self.logit_scale


def clip_config(size: str, image_size: int, in_channels: int, vocab_size: int, max_len: int):
    from transformers import CLIPConfig

    if size == "base":  # ViT-B/32: CLIPConfig's defaults, with the data's image size and vocabulary
        cfg = CLIPConfig()
        cfg.vision_config.image_size, cfg.vision_config.num_channels = image_size, in_channels
        cfg.text_config.vocab_size, cfg.text_config.max_position_embeddings = vocab_size, max_len
        cfg.text_config.pad_token_id, cfg.text_config.bos_token_id, cfg.text_config.eos_token_id = PAD, BOS, EOS
        return cfg
    (vw, vl, vh), (tw, tl, th) = TINY["vision"], TINY["text"]
    vision = {"hidden_size": vw, "num_hidden_layers": vl, "num_attention_heads": vh, "intermediate_size": 4 * vw,
              "image_size": image_size, "patch_size": TINY["patch"], "num_channels": in_channels}
    text = {"hidden_size": tw, "num_hidden_layers": tl, "num_attention_heads": th, "intermediate_size": 4 * tw,
            "vocab_size": vocab_size, "max_position_embeddings": max_len, "pad_token_id": PAD,
            "bos_token_id": BOS, "eos_token_id": EOS}
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=TINY["proj"])


@register_model("clip", input_kind="image_text", task="contrastive", ref_params=151_277_313,
                ref_options={"size": "base"}, paper="Radford et al. 2021")
def clip(
    input_shape: tuple[int, ...] = (3, 224, 224),
    vocab_size: int = 49408,
    max_len: int = 77,
    size: Literal["tiny", "base"] = "tiny",
    stem: Literal["auto", "patch", "conv"] = "auto",
) -> nn.Module:
    """CLIP: image and text encoders in one embedding space, trained contrastively (ViT-B/32: 151.3 M).

    Args:
        input_shape: square (C, H, W) images whose side the patch size divides; inferred from the data
        size: tiny: CPU-sized for 32×32 images (64 wide, 4×4 patches, 3 vision and 2 text layers, 64-d joint
            space); base: ViT-B/32 (CLIPConfig())
        stem: auto: a convolutional stem at size tiny (Xiao et al. 2021; learns shapes far faster from
            scratch), ViT's patchify conv at base; conv or patch forces one
    """
    from transformers import CLIPModel

    check_image_shape("clip", input_shape)
    cfg = clip_config(size, int(input_shape[1]), int(input_shape[0]), vocab_size, max_len)
    check_image_shape("clip", input_shape, cfg.vision_config.patch_size)
    hf = CLIPModel(cfg)
    apply_stem(hf.vision_model, stem, size, input_shape, cfg.vision_config)
    return CLIP(hf)
