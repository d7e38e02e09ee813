"""The motion-content network: a torchvision ResNet-18 that classifies actions from flow images.

Trained on true flow images (stage 6), then frozen; its layer2 activations are
the "motion content" that the Im2Flow loss compares between predicted and true
flow (the released code: flow image upsampled to 224, ImageNet-normalised,
ResNet-18 cut after layer2, 128×28×28).

Input is a network-range flow image (B, 3, H, W) in [-1, 1] (sin, cos,
normalised magnitude). It is mapped to [0, 1] like the released code's 8-bit
flow PNGs and normalised with ImageNet statistics, so ImageNet weights see
inputs in the range they were trained on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet18

from models.backbones import imagenet_normalise, load_trunk, resize_square, resolve_pretrained
from pipeline.encoding import network_to_unit

log = logging.getLogger(__name__)


class MotionContentNet(nn.Module):
    """ResNet-18 on flow images, with a classification head and a layer2 feature output.

    ``input_size``: the flow image is resized (bilinear) to this square size
    first (224 in the paper); None keeps the input size (the demo's 64×64).
    """

    def __init__(self, num_classes: int, input_size: int | None = 224):
        super().__init__()
        self.num_classes = int(num_classes)
        self.input_size = input_size
        self.resnet = resnet18(weights=None, num_classes=self.num_classes)

    def preprocess(self, flow: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) flow in [-1, 1] -> (B, 3, S, S) ImageNet-normalised input."""
        return imagenet_normalise(network_to_unit(resize_square(flow, self.input_size)))

    def features(self, flow: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) flow -> layer2 activations (B, 128, S/8, S/8): the motion content."""
        r = self.resnet
        x = r.maxpool(r.relu(r.bn1(r.conv1(self.preprocess(flow)))))
        return r.layer2(r.layer1(x))

    def classify_features(self, layer2: torch.Tensor) -> torch.Tensor:
        """layer2 activations -> (B, num_classes) logits."""
        r = self.resnet
        x = r.avgpool(r.layer4(r.layer3(layer2)))
        return r.fc(torch.flatten(x, 1))

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) flow in [-1, 1] -> (B, num_classes) logits."""
        return self.classify_features(self.features(flow))


def load_backbone_weights(net: MotionContentNet, pretrained: str | None) -> str:
    """Initialise the ResNet-18 as ``pretrained`` says (:func:`models.backbones.resolve_pretrained`);
    returns a phrase for the log. The classification head is kept from the file only if its
    class count fits."""
    state, how = resolve_pretrained(pretrained, "resnet18")
    if state is None:
        return how
    return how + ("" if load_trunk(net.resnet, state) else "; new classification head")


def build_motion_net(num_classes: int, input_size: int | None = 224, pretrained: str | None = None) -> MotionContentNet:
    """A motion-content network, initialised as ``pretrained`` says (logged)."""
    net = MotionContentNet(num_classes, input_size=input_size)
    log.info("motion-content ResNet-18: %s", load_backbone_weights(net, pretrained))
    return net


def load_motion_net(path: str | Path, map_location: str | torch.device = "cpu") -> MotionContentNet:
    """The trained network from a ``train-motion-net`` checkpoint, in eval mode."""
    ckpt: dict[str, Any] = torch.load(path, map_location=map_location, weights_only=False)
    net = MotionContentNet(ckpt["num_classes"], input_size=ckpt.get("input_size", 224))
    net.resnet.load_state_dict(ckpt["model"])
    return net.eval()


def freeze(net: nn.Module) -> nn.Module:
    """Eval mode (BatchNorm uses running statistics) and no parameter gradients: a fixed loss network."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net
