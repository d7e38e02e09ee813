"""The Im2Flow training objective.

L = w_pixel · L2(pred, true) + w_content · D(φ(pred), φ(true)), with φ the
frozen motion-content ResNet-18 cut after layer2 and D an L2 (or L1) distance.

Weights: the paper writes L_pixel + λ·L_content with λ = 0.02; the released
code used 50·MSE + 1·L1 (the same 0.02 ratio). Defaults here follow the paper
(1, 0.02, L2); ``pixel_weight=50, content_weight=1, content_distance="l1"``
reproduces the released code. Adam is nearly invariant to the overall scale.

Gradient weighting (paper Sec. 3.2): the angle of a pixel that barely moves is
noise, so the gradient reaching the sin and cos channels of the prediction is
multiplied by the true normalised magnitude min(M, clip)/clip = (true₃ + 1)/2;
the magnitude channel's gradient is left alone. It weights the gradient that
reaches the network output from the whole loss, not the loss value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def magnitude_weight(true_flow: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) network-range true flow -> (B, 1, H, W) weight min(M, clip)/clip in [0, 1]."""
    return ((true_flow[:, 2:3].detach().float() + 1.0) * 0.5).clamp(0.0, 1.0)


class _WeightDirectionGradient(torch.autograd.Function):
    """Identity forward; backward multiplies channels 0-1 of the gradient by ``weight``."""

    @staticmethod
    def forward(ctx, pred: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(weight)
        return pred.view_as(pred)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (weight,) = ctx.saved_tensors
        scale = torch.cat([weight.expand(-1, 2, -1, -1), torch.ones_like(weight)], dim=1)
        return grad * scale.to(grad.dtype), None


def weight_direction_gradient(pred: torch.Tensor, true_flow: torch.Tensor) -> torch.Tensor:
    """``pred`` unchanged, but its (sin, cos) gradient gets multiplied by the true magnitude weight.

    pred, true_flow: (B, 3, H, W). Apply before any loss term that should be weighted.
    """
    if pred.shape[1] != 3 or true_flow.shape != pred.shape:
        raise ValueError(f"expected two (B, 3, H, W) flows, got {tuple(pred.shape)} and {tuple(true_flow.shape)}")
    return _WeightDirectionGradient.apply(pred, magnitude_weight(true_flow))


@dataclass(frozen=True)
class LossWeights:
    pixel_weight: float = 1.0
    content_weight: float = 0.02
    content_distance: str = "l2"  # "l2" (paper) or "l1" (released code)
    gradient_weighting: bool = True


class Im2FlowLoss(nn.Module):
    """Pixel L2 + λ · motion-content distance, with magnitude-weighted direction gradients.

    ``content_net``: an object with ``features(flow) -> (B, C, h, w)`` (a
    frozen :class:`models.motion_net.MotionContentNet`), or None when
    ``content_weight`` is 0. It is kept out of this module's parameters and
    state dict: it is a fixed yardstick, saved with its own checkpoint.
    """

    def __init__(self, content_net: nn.Module | None = None, weights: LossWeights = LossWeights()):
        super().__init__()
        if weights.content_distance not in ("l1", "l2"):
            raise ValueError(f"content_distance must be 'l1' or 'l2', got {weights.content_distance!r}")
        if weights.content_weight > 0 and content_net is None:
            raise ValueError("content_weight > 0 needs a motion-content network")
        self.weights = weights
        self._content_net = [content_net]  # a list hides it from .parameters() and .state_dict()

    @property
    def content_net(self) -> nn.Module | None:
        return self._content_net[0]

    def forward(self, pred: torch.Tensor, true_flow: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) predicted and true network-range flow -> float32 scalars.

        "loss" (to backpropagate), its "pixel" and "content" terms, and
        "weighted_pixel": the pixel MSE with sin/cos errors weighted by the true
        magnitude. With gradient weighting on, that (not "pixel") is what the
        pixel term's gradient descends: the direction of a still pixel is free
        to drift, so "pixel" can rise while the network learns.
        """
        w = self.weights
        pred = pred.float()
        true_flow = true_flow.float()
        if w.gradient_weighting:
            pred = weight_direction_gradient(pred, true_flow)
        pixel = F.mse_loss(pred, true_flow)
        loss = w.pixel_weight * pixel
        with torch.no_grad():  # the pixel objective whose gradient the weighting actually follows
            squared = (pred.detach() - true_flow) ** 2
            squared[:, :2] *= magnitude_weight(true_flow)
            weighted_pixel = squared.mean()
        content = pixel.new_zeros(())
        if w.content_weight > 0:
            with torch.no_grad():
                true_features = self.content_net.features(true_flow)
            pred_features = self.content_net.features(pred)
            distance = F.mse_loss if w.content_distance == "l2" else F.l1_loss
            content = distance(pred_features.float(), true_features.float())
            loss = loss + w.content_weight * content
        return {"loss": loss, "pixel": pixel.detach(), "content": content.detach(), "weighted_pixel": weighted_pixel}
