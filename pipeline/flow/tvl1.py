"""OpenCV contrib's Dual TV-L1 optical flow (Zach et al. 2007, Wedel et al. 2009), estimator ``tvl1``."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from pipeline.flow import check_pairs


class TVL1:
    """OpenCV contrib's Dual TV-L1 (Zach et al. 2007, Wedel et al. 2009) on grey frames."""

    name = "tvl1"
    DEFAULTS: dict[str, Any] = {
        "tau": 0.25, "lambda_": 0.15, "theta": 0.3, "nscales": 5, "warps": 5,
        "epsilon": 0.01, "inner_iterations": 30, "outer_iterations": 10,
        "scale_step": 0.8, "median_filtering": 5,
    }
    RUNTIME: dict[str, Any] = {"threads": 1}  # OpenCV's threads: how fast, not what comes out

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.DEFAULTS) - set(self.RUNTIME)
        if unknown:
            raise ValueError(f"unknown tvl1 parameter(s): {sorted(unknown)}")
        self._params = {**self.DEFAULTS, **self.RUNTIME, **params}
        self._impl = None

    def params(self) -> dict[str, Any]:
        """Every parameter that changes the result (the runtime ``threads`` does not)."""
        return {k: v for k, v in self._params.items() if k in self.DEFAULTS}

    def _solver(self):
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
        first, second = check_pairs(first, second)
        solver = self._solver()
        out = np.empty(first.shape[:3] + (2,), np.float32)
        for i in range(first.shape[0]):
            a = cv2.cvtColor(first[i], cv2.COLOR_RGB2GRAY)
            b = cv2.cvtColor(second[i], cv2.COLOR_RGB2GRAY)
            out[i] = solver.calc(a, b, None)
        return out
