"""Shared backbone helpers: ImageNet statistics, the offline weights lookup, classifier builders.

Every network that may start from ImageNet weights (the motion-content
ResNet-18, the recognition streams, the nearest-neighbour baseline's features)
resolves them here with one vocabulary, :func:`resolve_pretrained`:

- ``"imagenet"``: torchvision's ImageNet weights, only if they are already in the
  torch hub cache (jobs run offline and never download); otherwise random
  initialisation, said in the returned description and the log;
- ``"none"`` (or None): random initialisation;
- a path: a torchvision state dict, or a checkpoint of ours holding one under ``model``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import get_model, get_model_weights, list_models, resnet18

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NO_WEIGHTS = (None, "", "none")


def imagenet_normalise(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) images in [0, 1] -> ImageNet-normalised network input."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def resize_square(x: torch.Tensor, size: int | None, antialias: bool = False) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size) by bilinear resampling; unchanged when size is None or equal."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)


def cached_imagenet_weights(arch: str) -> tuple[Path, object]:
    """(where torchvision caches ``arch``'s default ImageNet weights, the weights enum entry)."""
    weights = get_model_weights(arch).DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url), weights


def _state_from_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a torchvision file or from one of our checkpoints (``model`` key);
    DataParallel's ``module.`` and our motion net's ``resnet.`` prefixes are dropped."""
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a state dict")
    return {k.removeprefix("module.").removeprefix("resnet."): v for k, v in obj.items()}


def resolve_pretrained(spec: str | None, arch: str = "resnet18") -> tuple[dict[str, torch.Tensor] | None, str]:
    """(state dict or None for random initialisation, a phrase saying which) for ``spec``
    in the vocabulary of the module docstring."""
    if spec in NO_WEIGHTS:
        return None, "random initialisation (no pretrained weights asked for)"
    if spec.lower() == "imagenet":
        cached, weights = cached_imagenet_weights(arch)
        if not cached.is_file():
            log.warning("ImageNet weights for %s asked for but not in the torch hub cache (%s); random "
                        "initialisation. Put %s there or give a local path.", arch, cached.parent, cached.name)
            return None, "random initialisation (ImageNet weights not available offline)"
        return weights.get_state_dict(progress=False, check_hash=False), f"ImageNet weights ({weights}, {cached})"
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights {spec!r}: no such file (use imagenet, none or a path)")
    return _state_from_file(path), f"weights from {path}"


def load_trunk(model: nn.Module, state: dict[str, torch.Tensor], head: str = "fc") -> bool:
    """Load ``state`` into a classifier, keeping the model's own head unless the file's fits.
    Returns whether the head came from the file; other missing or unexpected keys fail."""
    state = dict(state)
    own = dict(model.named_parameters())
    head_keys = [k for k in state if k.startswith(head + ".")]
    fits = all(k in own and own[k].shape == state[k].shape for k in head_keys) and bool(head_keys)
    if not fits:
        for k in head_keys:
            state.pop(k)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(head + ".")]
    if missing or unexpected:
        raise ValueError(f"not a state dict of this network (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return fits


class TinyNet(nn.Module):
    """A three-convolution classifier for unit tests and smoke runs: (B, 3, H, W) -> (B, classes)."""

    def __init__(self, num_classes: int):
        super().__init__()
        layers, c_in = [], 3
        for c_out in (16, 32, 64):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def _head_name(model: nn.Module) -> str:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]


def build_classifier(arch: str, num_classes: int, pretrained: str | None) -> tuple[nn.Module, str]:
    """A torchvision classification model (or ``"tiny"``) with ``num_classes`` outputs, initialised
    as ``pretrained`` says; returns (model, phrase for the log)."""
    if arch == "tiny":
        return TinyNet(num_classes), "random initialisation (tiny test network)"
    if arch not in list_models():
        raise ValueError(f"unknown torchvision model {arch!r}")
    model = get_model(arch, weights=None, num_classes=num_classes)
    state, how = resolve_pretrained(pretrained, arch)
    if state is not None:
        kept = load_trunk(model, state, head=_head_name(model))
        how += "" if kept else "; new classification head"
    return model, how


def resnet18_trunk(pretrained: str | None = "imagenet", seed: int = 0) -> tuple[nn.Module, str]:
    """ResNet-18 cut before the classifier (global-average-pooled 512-d features), eval mode.

    Random initialisation is seeded (``seed``) without touching the global generator.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = resnet18(weights=None)
    state, how = resolve_pretrained(pretrained, "resnet18")
    if state is not None:
        load_trunk(model, state)
    else:
        how += f", seed {seed}"
    model.fc = nn.Identity()
    return model.eval(), f"ResNet-18 features ({how})"
