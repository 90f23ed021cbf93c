"""Model compression: dynamic int8 quantisation, magnitude pruning, knowledge distillation.

Each method takes a trained run directory, writes a compressed directory with a
``compress.json`` of everything it measured (size, parameters, the run's own test metrics
before/after, max |Δ output|, batch-1/64 latency ratios), and returns that document::

    import liandan.compress as lc
    lc.quantize("runs/d")                          # Jacob et al. 2018: int8 weights, dynamic activations
    lc.prune("runs/d", amount=0.5)                 # Han et al. 2015: global magnitude pruning
    lc.prune("runs/d", amount=0.5, structured=True)  # Li et al. 2017: remove hidden units
    lc.distill("runs/d", "digits-mlp", overrides=["model.hidden=[16]"])  # Hinton et al. 2015
    run = lc.load_compressed("runs/d-int8")        # the compressed model back (no pickle)

CLI: ``liandan compress RUN_DIR --method quantize|prune|distill`` calls :func:`compress`.
"""

from __future__ import annotations

from liandan.compress import distill as _distill_module  # noqa: F401  (registers the ``distill`` loss)
from liandan.compress.api import METHODS, compress, format_table
from liandan.compress.distill import distill, kd_loss
from liandan.compress.prune import prune
from liandan.compress.quantize import quantize
from liandan.compress.store import load_compressed

__all__ = ["METHODS", "compress", "distill", "format_table", "kd_loss", "load_compressed", "prune", "quantize"]
