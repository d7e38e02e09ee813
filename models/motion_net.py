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
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, flow: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) flow in [-1, 1] -> (B, 3, S, S) ImageNet-normalised input."""
        if self.input_size is not None and tuple(flow.shape[-2:]) != (self.input_size, self.input_size):
            flow = F.interpolate(flow, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return ((flow + 1.0) * 0.5 - self.mean) / self.std

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


def _torchvision_cached_imagenet() -> Path | None:
    """Where torchvision keeps ResNet18_Weights.IMAGENET1K_V1 once downloaded, if it is there."""
    filename = os.path.basename(ResNet18_Weights.IMAGENET1K_V1.url)
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    return path if path.is_file() else None


def _resnet_state_from_file(path: Path) -> dict[str, torch.Tensor]:
    """A ResNet-18 state dict from a torchvision file, or from our own motion-net checkpoint."""
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # a checkpoint written by `im2flow train-motion-net`
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a state dict")
    state = {}
    for key, value in obj.items():
        key = key.removeprefix("module.").removeprefix("resnet.")
        state[key] = value
    return state


def load_backbone_weights(net: MotionContentNet, pretrained: str | None) -> str:
    """Initialise the ResNet-18 trunk; returns a phrase for the log saying what was used.

    ``pretrained``: None or "none" -> random initialisation; "imagenet" ->
    torchvision's IMAGENET1K_V1 weights, but only if they are already in the
    torch hub cache (training jobs run offline and must not download);
    anything else -> a local file (torchvision state dict or our checkpoint).
    The classification head is kept from the file only if its class count fits.
    """
    if pretrained in (None, "", "none", "random"):
        return "random initialisation (no pretrained weights asked for)"
    if pretrained.lower() == "imagenet":
        cached = _torchvision_cached_imagenet()
        if cached is None:
            log.warning(
                "ImageNet weights for ResNet-18 asked for but not in the torch hub cache (%s); "
                "falling back to random initialisation. Put resnet18-f37072fd.pth there or give a local path.",
                Path(torch.hub.get_dir()) / "checkpoints",
            )
            return "random initialisation (ImageNet weights not available offline)"
        state = ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=False)
        source = f"ImageNet weights (torchvision IMAGENET1K_V1, {cached})"
    else:
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"motion-net pretrained weights: no file at {path}")
        state = _resnet_state_from_file(path)
        source = f"weights from {path}"
    head = {k: state.pop(k) for k in ("fc.weight", "fc.bias") if k in state}
    if head and head["fc.weight"].shape[0] == net.num_classes:
        state.update(head)
    missing, unexpected = net.resnet.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ValueError(f"{pretrained}: not a ResNet-18 state dict (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return source + ("" if "fc.weight" in state else "; new classification head")


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
