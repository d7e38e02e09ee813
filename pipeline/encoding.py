"""Every mapping between frames, flow and the networks' ranges, and the horizontal flip.

Layouts: raw flow is channels-last ``(..., H, W, 2)`` holding (u, v) in pixels
with image y pointing down; encoded flow is channels-first ``(..., 3, H, W)``
holding (sin θ, cos θ, M px), so that it drops straight into a network tensor;
frames are ``(..., H, W, 3)`` uint8 RGB. Zero motion encodes as (0, 0, 0): never NaN.

Network ranges (the released code's, [-1, 1] everywhere):

- frames: ``x / 127.5 - 1`` (:func:`frames_to_network`);
- flow images: sin and cos as they are, the magnitude as
  ``min(M, clip) / clip · 2 - 1`` (:func:`to_network`), ``clip`` being the
  recorded magnitude clip (:data:`DEFAULT_MAGNITUDE_CLIP` = 30 px in the paper);
- ImageNet-style backbones take either in [0, 1] (:func:`network_to_unit`).

The flip (:func:`hflip`) negates cos: mirrored motion goes the other way
(the original Lua code forgot). The network-range functions accept numpy
arrays and torch tensors alike, so the data loader, the trainers and the
inference path share them.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

ENCODING_VERSION = 1
DEFAULT_MAGNITUDE_CLIP = 30.0  # px: the paper's and the released code's clip


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _float_copy(x: Any) -> Any:
    """A float32 copy of a numpy array or a torch tensor."""
    if _is_torch(x):
        import torch  # already imported by whoever made the tensor

        return x.to(dtype=torch.float32, copy=True)
    return np.array(x, dtype=np.float32, copy=True)


# ----------------------------------------------------------------------------- raw flow <-> encoded


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


# ----------------------------------------------------------------------------- flips


def hflip(encoded: Any) -> Any:
    """Mirror encoded or network-range flow images ``(..., 3, H, W)`` left-right: u changes sign,
    so cos does too. numpy arrays and torch tensors; always a new array.

    The original Lua code mirrored the picture only, which silently swaps the
    meaning of left and right motion in half of the training set.
    """
    if _is_torch(encoded):
        import torch

        flipped = torch.flip(encoded, dims=[-1])
    else:
        flipped = np.ascontiguousarray(encoded[..., ::-1])
        if flipped.dtype == np.float16:  # numpy's float16 arithmetic is slow: flip the sign bit instead
            flipped[..., 1, :, :].view(np.uint16)[...] ^= np.uint16(0x8000)
            return flipped
    flipped[..., 1, :, :] *= -1
    return flipped


def hflip_raw(flow: np.ndarray) -> np.ndarray:
    """Mirror a raw (..., H, W, 2) flow left-right (u negated)."""
    flipped = np.array(flow[..., ::-1, :], dtype=np.float32, copy=True)
    flipped[..., 0] *= -1.0
    return flipped


def hflip_frames(frames: np.ndarray) -> np.ndarray:
    """Mirror (..., H, W, C) frames left-right."""
    return np.ascontiguousarray(frames[..., ::-1, :])


# ----------------------------------------------------------------------------- network ranges


def to_network(encoded: Any, magnitude_clip: float = DEFAULT_MAGNITUDE_CLIP) -> Any:
    """Map (sin, cos, M px) to the network's [-1, 1] range: M -> min(M, clip)/clip*2 - 1."""
    out = _float_copy(encoded)
    out[..., 2, :, :] = out[..., 2, :, :].clip(max=magnitude_clip) * (2.0 / magnitude_clip) - 1.0
    return out


def from_network(normalised: Any, magnitude_clip: float = DEFAULT_MAGNITUDE_CLIP) -> Any:
    """Inverse of :func:`to_network` (magnitudes above the clip come back as the clip)."""
    out = _float_copy(normalised)
    out[..., 2, :, :] = (out[..., 2, :, :].clip(-1.0, 1.0) + 1.0) * (0.5 * magnitude_clip)
    return out


def frames_to_network(frames: Any) -> Any:
    """(..., H, W, 3) uint8 RGB frames -> (..., 3, H, W) float32 in [-1, 1] (numpy or torch)."""
    if _is_torch(frames):
        return frames.movedim(-1, -3).float() * (1.0 / 127.5) - 1.0
    return np.moveaxis(np.asarray(frames), -1, -3).astype(np.float32) * (1.0 / 127.5) - 1.0


def network_to_unit(x: Any) -> Any:
    """[-1, 1] network-range images (frames or flow images) -> [0, 1], as an 8-bit PNG of them
    would be read: the range ImageNet-normalised backbones expect."""
    return (x + 1.0) * 0.5


def to_uint8_image(encoded: np.ndarray, magnitude_clip: float = DEFAULT_MAGNITUDE_CLIP) -> np.ndarray:
    """(3, H, W) encoded flow -> (H, W, 3) uint8 RGB, the released code's PNG format."""
    net = to_network(encoded, magnitude_clip)
    rgb = np.clip(network_to_unit(net) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.moveaxis(rgb, -3, -1)


def from_uint8_image(rgb: np.ndarray, magnitude_clip: float = DEFAULT_MAGNITUDE_CLIP) -> np.ndarray:
    """(H, W, 3) uint8 flow image -> (3, H, W) encoded flow (sin, cos, M px)."""
    return from_network(frames_to_network(rgb), magnitude_clip)


# ----------------------------------------------------------------------------- resizing


def resize_flow(flow: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize a raw (H, W, 2) flow and rescale (u, v) by the resize factors (no-op copy at equal size)."""
    h, w = flow.shape[:2]
    new_h, new_w = size_hw
    if (h, w) == (new_h, new_w):
        return np.array(flow, dtype=np.float32, copy=True)
    resized = cv2.resize(flow.astype(np.float32), (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    resized[..., 0] *= new_w / w
    resized[..., 1] *= new_h / h
    return resized
