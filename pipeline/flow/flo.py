"""Middlebury `.flo` files: the binary flow format `cv2.readOpticalFlow` and
`cv2.writeOpticalFlow` speak, so that predictions open in other flow tools."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipeline.atomic import atomic_path

FLO_MAGIC = 202021.25  # "PIEH" read as a little-endian float32


def write_flo(path: str | os.PathLike, flow: np.ndarray) -> Path:
    """Write (H, W, 2) flow as Middlebury `.flo` (magic 202021.25, int32 width, int32
    height, float32 (u, v) interleaved row-major, all little-endian).

    Written to a temporary file and renamed, so a killed job never leaves a
    truncated `.flo` that a rerun would read as finished.
    """
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise ValueError(f"flow must have shape (H, W, 2), got {flow.shape}")
    height, width = flow.shape[:2]
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(np.array([FLO_MAGIC], "<f4").tobytes())
            fh.write(np.array([width, height], "<i4").tobytes())
            fh.write(np.ascontiguousarray(flow, dtype="<f4").tobytes())
    return path


def read_flo(path: str | os.PathLike) -> np.ndarray:
    """Read a Middlebury `.flo` file -> (H, W, 2) float32 (u, v); ValueError naming the
    file when the magic, the dimensions or the length are wrong."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 12:
        raise ValueError(f"{path}: too short for a .flo header ({len(data)} bytes)")
    magic = np.frombuffer(data, "<f4", count=1)[0]
    if magic != np.float32(FLO_MAGIC):
        raise ValueError(f"{path}: not a .flo file (magic {magic!r}, expected {FLO_MAGIC})")
    width, height = (int(x) for x in np.frombuffer(data, "<i4", count=2, offset=4))
    if width <= 0 or height <= 0 or width > 1 << 16 or height > 1 << 16:
        raise ValueError(f"{path}: implausible .flo size {width}x{height}")
    expected = 12 + 8 * width * height
    if len(data) != expected:
        raise ValueError(f"{path}: .flo of {width}x{height} should be {expected} bytes, file has {len(data)}")
    flow = np.frombuffer(data, "<f4", offset=12).reshape(height, width, 2)
    return flow.astype(np.float32)
