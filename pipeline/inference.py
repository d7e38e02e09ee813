"""The one inference path from still frames to hallucinated flow, used by evaluate, predict and recognize.

Policy, in one place so that Table 1, Table 2 and ``im2flow predict`` use the
same Im2Flow:

- **Resize.** A frame whose size is not a multiple of the U-Net's 2**levels (or
  that the caller wants at another network size) is resized with area
  interpolation; the predicted flow is resized back with (u, v) rescaled by the
  resize factors, so magnitudes stay in the frame's own pixels.
- **BatchNorm.** ``eval`` uses the running statistics learnt in training;
  ``train`` normalises each batch by its own statistics (the pix2pix test
  script); dropout is off in both.
- **Flip averaging.** Optionally the mean of the prediction and the mirrored
  frame's prediction mirrored back (u negated): :func:`flip_averaged`, which the
  evaluation applies to every learned method alike.
- **Decoding** with the checkpoint's magnitude clip, read once with the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
import torch

from models.unet import Im2FlowCheckpoint
from pipeline.encoding import decode, encode, frames_to_network, from_network, hflip_frames, hflip_raw, resize_flow, \
    to_network

BN_MODES = ("eval", "train")
FlowPredictor = Callable[[np.ndarray], np.ndarray]  # (N, H, W, 3) uint8 -> (N, H, W, 2) float32 px


def check_frames(frames: np.ndarray) -> np.ndarray:
    """``frames`` as (N, H, W, 3) uint8 RGB, or a ValueError saying what it got."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (N, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
    return frames


def flip_averaged(predict: FlowPredictor, frames: np.ndarray) -> np.ndarray:
    """Mean of ``predict(frames)`` and the prediction for the mirrored frames, mirrored back.

    Training flips too, so both are valid guesses; where they disagree about the
    direction the average shrinks towards no motion, which is what an endpoint
    error rewards under uncertainty.
    """
    return 0.5 * (predict(frames) + hflip_raw(predict(hflip_frames(frames))))


def set_bn_mode(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """Test mode: ``eval`` uses BatchNorm's running statistics, ``train`` the predicted batch's own
    (without touching the stored ones). Dropout is off in both, so predictions are deterministic."""
    if mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, got {mode!r}")
    model.eval()
    if mode == "train":
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.train()
                module.momentum = 0.0
    return model


def network_size(model: torch.nn.Module, size_hw: tuple[int, int], target: int | None = None) -> tuple[int, int]:
    """The input size the network gets for frames of ``size_hw``: ``target`` squared when given,
    else the frame size rounded to the nearest multiple of 2**levels (at least one)."""
    factor = 2 ** model.config.num_levels
    if target is not None:
        side = max(factor, int(round(target / factor)) * factor)
        return side, side
    return tuple(max(factor, int(round(s / factor)) * factor) for s in size_hw)  # type: ignore[return-value]


@dataclass
class InferenceOptions:
    """How Im2Flow is run at test time (the ``evaluate`` config's choices, recorded with every result)."""

    bn_mode: str = "eval"
    flip_average: bool = False
    input_size: int | None = None  # network input side; None: the frame size rounded to 2**levels
    batch_size: int = 32

    def describe(self) -> str:
        return (f"BatchNorm {self.bn_mode} mode" + (", averaged with its mirrored prediction" if self.flip_average
                                                    else ""))


class Im2FlowPredictor:
    """A loaded Im2Flow checkpoint on a device, predicting raw flow for batches of frames."""

    def __init__(self, checkpoint: Im2FlowCheckpoint, device: torch.device | str = "cpu",
                 options: InferenceOptions | None = None):
        self.checkpoint = checkpoint
        self.options = options or InferenceOptions()
        self.device = torch.device(device)
        self.model = set_bn_mode(checkpoint.model.to(self.device), self.options.bn_mode)

    @property
    def magnitude_clip(self) -> float:
        return self.checkpoint.magnitude_clip

    def describe(self) -> str:
        return f"{self.checkpoint.describe()}, {self.options.describe()}"

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB frames of one size -> (N, H, W, 2) float32 flow (u, v) in pixels."""
        frames = check_frames(frames)
        if self.options.flip_average:
            return flip_averaged(self._predict, frames)
        return self._predict(frames)

    def network_images(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 flow images in the network range (the
        recognition streams' input), re-encoded from the raw flow so resizing rescales them."""
        return to_network(encode(self(frames)), self.magnitude_clip)

    def _predict(self, frames: np.ndarray) -> np.ndarray:
        n, h, w = frames.shape[:3]
        net_h, net_w = network_size(self.model, (h, w), self.options.input_size)
        out = np.empty((n, h, w, 2), np.float32)
        with torch.inference_mode():
            for start in range(0, n, self.options.batch_size):
                batch = frames[start:start + self.options.batch_size]
                if (net_h, net_w) != (h, w):
                    batch = np.stack([cv2.resize(f, (net_w, net_h), interpolation=cv2.INTER_AREA) for f in batch])
                x = frames_to_network(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
                flows = decode(from_network(self.model(x).float().cpu().numpy(), self.magnitude_clip))
                for k, flow in enumerate(flows):
                    out[start + k] = resize_flow(flow, (h, w))
        if not np.isfinite(out).all():
            raise FloatingPointError("the network predicted NaN or Inf flow")
        return out
