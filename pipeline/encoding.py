"""Flow <-> 3-channel flow image (sin θ, cos θ, magnitude), as in Im2Flow.

Layout is channels-last for raw flow ``(..., H, W, 2)`` holding (u, v) with image
y pointing down, and channels-first for encoded flow ``(..., 3, H, W)`` holding
(sin θ, cos θ, M) so that it drops straight into a network tensor.
Zero motion encodes as (0, 0, 0): never NaN.
"""

from __future__ import annotations

import numpy as np

ENCODING_VERSION = 1
DEFAULT_MAGNITUDE_CLIP = 30.0


def encode(flow: np.ndarray) -> np.ndarray:
    """(..., H, W, 2) raw flow -> (..., 3, H, W) float32 (sin, cos, M in pixels)."""
    flow = np.asarray(flow, dtype=np.float32)
    if flow.shape[-1] != 2:
        raise ValueError(f"flow must end in 2 channels (u, v), got shape {flow.shape}")
    u, v = flow[..., 0], flow[..., 1]
    magnitude = np.hypot(u, v)
    safe = np.where(magnitude > 0, magnitude, 1.0)
    with np.errstate(invalid="ignore"):  # non-finite input stays non-finite; writers check for it
        sin = np.where(magnitude > 0, v / safe, 0.0)
        cos = np.where(magnitude > 0, u / safe, 0.0)
    return np.stack([sin, cos, magnitude], axis=-3).astype(np.float32)


def decode(encoded: np.ndarray) -> np.ndarray:
    """(..., 3, H, W) (sin, cos, M) -> (..., H, W, 2) raw flow (u, v)."""
    encoded = np.asarray(encoded, dtype=np.float32)
    if encoded.shape[-3] != 3:
        raise ValueError(f"encoded flow must have 3 channels at axis -3, got shape {encoded.shape}")
    sin, cos, magnitude = encoded[..., 0, :, :], encoded[..., 1, :, :], encoded[..., 2, :, :]
    return np.stack([cos * magnitude, sin * magnitude], axis=-1)


def hflip(encoded: np.ndarray) -> np.ndarray:
    """Mirror an encoded flow image left-right: u changes sign, so cos does too.

    The original Lua code mirrored the picture only, which silently swaps the
    meaning of left and right motion in half of the training set.
    """
    flipped = np.array(encoded[..., ::-1], dtype=np.float32, copy=True)
    flipped[..., 1, :, :] *= -1.0
    return flipped


def hflip_raw(flow: np.ndarray) -> np.ndarray:
    """Mirror a raw (..., H, W, 2) flow left-right (u negated)."""
    flipped = np.array(flow[..., ::-1, :], dtype=np.float32, copy=True)
    flipped[..., 0] *= -1.0
    return flipped


def to_network(encoded: np.ndarray, magnitude_clip: float = DEFAULT_MAGNITUDE_CLIP) -> np.ndarray:
    """Map (sin, cos, M px) to the network's [-1, 1] range: M -> min(M, clip)/clip*2 - 1."""
    out = np.array(encoded, dtype=np.float32, copy=True)
    out[..., 2, :, :] = np.minimum(out[..., 2, :, :], magnitude_clip) / magnitude_clip * 2.0 - 1.0
    return out


def from_network(normalised: np.ndarray, magnitude_clip: float = DEFAULT_MAGNITUDE_CLIP) -> np.ndarray:
    """Inverse of :func:`to_network` (magnitudes above the clip come back as the clip)."""
    out = np.array(normalised, dtype=np.float32, copy=True)
    out[..., 2, :, :] = (np.clip(out[..., 2, :, :], -1.0, 1.0) + 1.0) / 2.0 * magnitude_clip
    return out


def to_uint8_image(encoded: np.ndarray, magnitude_clip: float = DEFAULT_MAGNITUDE_CLIP) -> np.ndarray:
    """(3, H, W) encoded flow -> (H, W, 3) uint8 RGB, the released code's PNG format."""
    net = to_network(encoded, magnitude_clip)
    rgb = np.clip((net + 1.0) / 2.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.moveaxis(rgb, -3, -1)


def from_uint8_image(rgb: np.ndarray, magnitude_clip: float = DEFAULT_MAGNITUDE_CLIP) -> np.ndarray:
    """(H, W, 3) uint8 flow image -> (3, H, W) encoded flow (sin, cos, M px)."""
    net = np.moveaxis(np.asarray(rgb, dtype=np.float32), -1, -3) / 255.0 * 2.0 - 1.0
    return from_network(net, magnitude_clip)


def resize_flow(flow: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize a raw (H, W, 2) flow and rescale (u, v) by the resize factors."""
    import cv2

    h, w = flow.shape[:2]
    new_h, new_w = size_hw
    resized = cv2.resize(flow.astype(np.float32), (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    resized[..., 0] *= new_w / w
    resized[..., 1] *= new_h / h
    return resized
