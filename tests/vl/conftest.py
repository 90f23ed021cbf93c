"""Image-text tests: a small batch of captioned shapes and a tiny model per registered image-text entry."""

from __future__ import annotations

import pytest

from liandan.registry import MODELS

VL = [e for e in MODELS.entries() if e.extra.get("input_kind") == "image_text"]


@pytest.fixture(scope="session")
def captioned():
    """(images (16, 3, 32, 32) standardised, caption ids (16, T), DataInfo) from shapes_captions."""
    from liandan.data.pipeline import build_data
    from liandan.recipe import DataConfig

    data = build_data(DataConfig(source="shapes_captions", n=60, batch_size=16), seed=0, task="contrastive")
    x, y = next(iter(data.train.epoch(0)))
    return x, y, data.info
