"""One small interface for optical-flow estimators, selected by name in the config.

An estimator takes batches of RGB uint8 frame pairs and returns raw flow with
``first(x) ≈ second(x + flow(x))``. New estimators register a factory here; the
rules and the flow stage only ever call :func:`make_estimator`.
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


class TVL1:
    """OpenCV contrib's Dual TV-L1 (Zach et al. 2007, Wedel et al. 2009) on grey frames."""

    name = "tvl1"
    DEFAULTS: dict[str, Any] = {
        "tau": 0.25, "lambda_": 0.15, "theta": 0.3, "nscales": 5, "warps": 5,
        "epsilon": 0.01, "inner_iterations": 30, "outer_iterations": 10,
        "scale_step": 0.8, "median_filtering": 5, "threads": 1,
    }

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.DEFAULTS)
        if unknown:
            raise ValueError(f"unknown tvl1 parameter(s): {sorted(unknown)}")
        self._params = {**self.DEFAULTS, **params}
        self._impl = None

    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def _solver(self):
        import cv2

        if self._impl is None:
            if not hasattr(cv2, "optflow"):
                raise RuntimeError("cv2.optflow is missing: install opencv-contrib-python-headless, not opencv-python")
            cv2.setNumThreads(int(self._params["threads"]))
            p = self._params
            self._impl = cv2.optflow.DualTVL1OpticalFlow_create(
                tau=p["tau"], lambda_=p["lambda_"], theta=p["theta"], nscales=p["nscales"],
                warps=p["warps"], epsilon=p["epsilon"], innnerIterations=p["inner_iterations"],
                outerIterations=p["outer_iterations"], scaleStep=p["scale_step"],
                medianFiltering=p["median_filtering"],
            )
        return self._impl

    def estimate(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        import cv2

        first, second = _check_pairs(first, second)
        solver = self._solver()
        out = np.empty(first.shape[:3] + (2,), np.float32)
        for i in range(first.shape[0]):
            a = cv2.cvtColor(first[i], cv2.COLOR_RGB2GRAY)
            b = cv2.cvtColor(second[i], cv2.COLOR_RGB2GRAY)
            out[i] = solver.calc(a, b, None)
        return out


def _check_pairs(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    first, second = np.asarray(first), np.asarray(second)
    if first.ndim == 3:
        first, second = first[None], second[None]
    if first.shape != second.shape or first.ndim != 4 or first.shape[-1] != 3:
        raise ValueError(f"expected two (B, H, W, 3) batches of equal shape, got {first.shape} and {second.shape}")
    return np.ascontiguousarray(first, np.uint8), np.ascontiguousarray(second, np.uint8)


# name -> "module:attribute" of a factory taking **params; imported lazily so that
# choosing tvl1 never imports torch.
REGISTRY: dict[str, str] = {
    "tvl1": "pipeline.flow:TVL1",
    "liu": "pipeline.flow.liu:LiuEstimator",
}


def make_estimator(name: str, **params: Any) -> FlowEstimator:
    """Build the estimator registered under ``name`` with its parameters."""
    if name not in REGISTRY:
        raise ValueError(f"unknown flow estimator {name!r}; known: {sorted(REGISTRY)}")
    module, attr = REGISTRY[name].split(":")
    factory: Callable[..., FlowEstimator] = getattr(importlib.import_module(module), attr)
    return factory(**params)
