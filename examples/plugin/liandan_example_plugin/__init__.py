"""An example liandan plugin: ``pip install examples/plugin`` and ``liandan list models`` shows
``example_fcnet``, ``liandan list data`` shows ``example_blobs``; a recipe names them as any
built-in entry::

    data: {source: example_blobs, classes: 4}
    model: {name: example_fcnet, hidden: 32}

Importing this package registers both (its ``liandan.plugins`` entry point in pyproject.toml).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from liandan.data.base import Source, classification
from liandan.registry import register_data, register_model


@register_model("example_fcnet", tags=("plugin",), input_kind="features")
def example_fcnet(num_classes: int = 10, input_shape: tuple[int, ...] = (2,), hidden: int = 32,
                  depth: int = 1) -> nn.Module:
    """A fully-connected net from the example plugin: flatten, ``depth`` Linear-ReLU blocks, a head.

    Args:
        hidden: width of each hidden layer
        depth: number of hidden Linear-ReLU blocks
    """
    n_in = int(np.prod(input_shape))
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(depth):
        layers += [nn.Linear(n_in if i == 0 else hidden, hidden), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(hidden if depth else n_in, num_classes))


@register_data("example_blobs", tags=("tabular", "synthetic", "plugin"))
def example_blobs(n: int = 400, classes: int = 3, features: int = 2, spread: float = 0.5, seed: int = 0) -> Source:
    """Gaussian blobs from the example plugin: one cluster per class.

    Args:
        n: number of samples, shared evenly by the classes
        classes: number of clusters, one class each
        features: dimensions of each sample
        spread: std of each cluster around its centre (the centres lie on the unit sphere)
        seed: random seed of the generated data
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, features))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.arange(n) % classes
    x = centres[y] + rng.normal(0, spread, (n, features))
    return classification(x.astype(np.float32), y)
