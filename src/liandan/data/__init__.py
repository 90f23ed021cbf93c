"""Data: sources (registered with ``@register_data``), splits, normalisation and batching."""

from liandan.data.base import Source
from liandan.data.pipeline import DataInfo, DataModule, build_data

__all__ = ["Source", "DataInfo", "DataModule", "build_data"]
