"""Optical-flow estimators behind one small interface, selected by name in the config.

Serves the flow half of the ``shard`` and ``static_shard`` rules (via
:mod:`pipeline.data.targets`). An estimator takes batches of RGB uint8 frame
pairs and returns raw flow with ``first(x) ≈ second(x + flow(x))``:

- :mod:`pipeline.flow.tvl1`: OpenCV contrib's Dual TV-L1;
- :mod:`pipeline.flow.liu`: Ce Liu's coarse-to-fine estimator in PyTorch, batched on
  CPU or GPU, its CPU SOR kernel in :mod:`pipeline.flow.liu_kernel` (``liu_sor.cpp``);
- :mod:`pipeline.flow.flo`: Middlebury ``.flo`` files.

New estimators register a factory in :data:`REGISTRY`; the rules and the targets
stage only ever call :func:`make_estimator`.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Protocol

import numpy as np


class FlowEstimator(Protocol):
    name: str

    def params(self) -> dict[str, Any]:
        """Every parameter that changes the result (recorded as shard provenance)."""

    def estimate(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 RGB pairs -> (B, H, W, 2) float32 flow (u, v)."""


def check_pairs(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two (B, H, W, 3) uint8 batches of equal shape (a single pair gains the batch axis)."""
    first, second = np.asarray(first), np.asarray(second)
    if first.ndim == 3:
        first, second = first[None], second[None]
    if first.shape != second.shape or first.ndim != 4 or first.shape[-1] != 3:
        raise ValueError(f"expected two (B, H, W, 3) batches of equal shape, got {first.shape} and {second.shape}")
    return np.ascontiguousarray(first, np.uint8), np.ascontiguousarray(second, np.uint8)


# name -> "module:attribute" of a factory taking **params; imported lazily so that
# choosing tvl1 never imports torch.
REGISTRY: dict[str, str] = {
    "tvl1": "pipeline.flow.tvl1:TVL1",
    "liu": "pipeline.flow.liu:LiuEstimator",
}


def make_estimator(name: str, **params: Any) -> FlowEstimator:
    """Build the estimator registered under ``name`` with its parameters."""
    if name not in REGISTRY:
        raise ValueError(f"unknown flow estimator {name!r}; known: {sorted(REGISTRY)}")
    module, attr = REGISTRY[name].split(":")
    factory: Callable[..., FlowEstimator] = getattr(importlib.import_module(module), attr)
    return factory(**params)
