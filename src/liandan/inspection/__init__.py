"""Model inspection: summary (parameters, MACs, memory, latency) and the autograd graph.

``liandan.inspection.summary("resnet18", (1, 3, 224, 224))`` or ``summary(any_module, shape)``;
``liandan.inspection.graph.autograd_graph(...)`` for the computation graph.
"""

from __future__ import annotations

from liandan.inspection.graph import Graph, autograd_graph, write_graph
from liandan.inspection.summary import LayerInfo, Summary, build_model, summary

__all__ = ["Graph", "LayerInfo", "Summary", "autograd_graph", "build_model", "summary", "write_graph"]
