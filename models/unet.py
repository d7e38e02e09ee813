"""The Im2Flow generator: a pix2pix-style U-Net with dilated encoder convolutions.

Image (B, 3, H, W) in [-1, 1] -> flow image (B, 3, H, W) in [-1, 1] holding
(sin θ, cos θ, normalised magnitude). Each encoder level halves the resolution
with a 4×4 stride-2 convolution; each decoder level doubles it with a 4×4
stride-2 transposed convolution and concatenates the mirrored encoder output
(the skip connection). H and W must be multiples of 2**num_levels.

Module order follows pix2pix (the released Im2Flow code is a pix2pix fork):
the activation sits at the start of each block, so a skip carries the
BatchNorm output of its encoder level and the decoder block activates it
after concatenation. The innermost encoder conv has no BatchNorm (a 1×1 map
with batch 1 has nothing to normalise), the outermost decoder block has no
BatchNorm and ends in tanh.

Dilation: the paper says the encoder uses dilated convolutions; the released
code names its layers so but passes dilation 1. Here each encoder level takes
its own rate, and the padding is chosen so that the output size is exactly
half the input whatever the rate ((3·d)//2 for a 4×4 kernel).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.encoding import DEFAULT_MAGNITUDE_CLIP


@dataclass(frozen=True)
class UNetConfig:
    """Size of an Im2Flow U-Net. ``channels[i]`` is encoder level i's output width."""

    channels: tuple[int, ...] = (64, 128, 256, 512, 512, 512, 512, 512)
    dilations: tuple[int, ...] = (1, 1, 2, 2, 2, 1, 1, 1)
    in_channels: int = 3
    out_channels: int = 3
    dropout: float = 0.5
    dropout_levels: int = 3  # innermost decoder blocks with dropout, as in pix2pix
    image_size: int = 256  # nominal training size (documentation and shape tests)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        if len(self.channels) < 2:
            raise ValueError("a U-Net needs at least 2 levels")
        if len(self.dilations) != len(self.channels):
            raise ValueError(
                f"dilations has {len(self.dilations)} entries but there are {len(self.channels)} levels"
            )
        if any(d < 1 for d in self.dilations):
            raise ValueError(f"dilation rates must be >= 1, got {self.dilations}")
        if self.image_size % (2 ** len(self.channels)):
            raise ValueError(f"image_size {self.image_size} is not a multiple of 2**{len(self.channels)}")

    @property
    def num_levels(self) -> int:
        return len(self.channels)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The paper's size (pix2pix "U-Net-256"): 8 levels, 64-512 channels, 256×256.
# The paper gives no dilation rates (they are in its unpublished supplement);
# ours dilate levels 2-5 by 2, the levels whose input is at least 16×16 at 256²,
# where a 7×7 effective kernel still sees mostly image rather than padding.
PRESETS: dict[str, UNetConfig] = {
    "paper": UNetConfig(),
    # What the authors' code actually ran: the same network with dilation 1 everywhere.
    "released": UNetConfig(dilations=(1,) * 8),
    # The demo dataset's size: 64×64 frames, 6 levels down to 1×1, trains in minutes on 2 CPU cores.
    "small": UNetConfig(
        channels=(32, 64, 128, 128, 128, 128), dilations=(1, 2, 2, 1, 1, 1), dropout=0.0, image_size=64
    ),
    # For unit tests only: 32×32, 5 levels, a few thousand parameters per level.
    "tiny": UNetConfig(channels=(8, 16, 32, 32, 32), dilations=(1, 2, 1, 1, 1), dropout=0.0, image_size=32),
}


def unet_config(preset: str = "paper", **overrides: Any) -> UNetConfig:
    """A preset's config with some fields replaced (e.g. ``dilations=(1,)*8``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown U-Net preset {preset!r}; choose from {sorted(PRESETS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(overrides) - {f.name for f in dataclasses.fields(UNetConfig)}
    if unknown:
        raise ValueError(f"unknown U-Net option(s) {sorted(unknown)}")
    return dataclasses.replace(PRESETS[preset], **overrides)


def same_half_padding(dilation: int, kernel_size: int = 4) -> int:
    """Padding that makes a stride-2 conv of this dilation map H to exactly H/2 (H even)."""
    if kernel_size != 4:
        raise ValueError("only the 4×4 kernel of pix2pix is supported")
    return (3 * dilation) // 2


class DownBlock(nn.Module):
    """[LeakyReLU 0.2] -> Conv 4×4 stride 2 (dilated) -> [BatchNorm]: (B, Cin, H, W) -> (B, Cout, H/2, W/2)."""

    def __init__(self, c_in: int, c_out: int, dilation: int = 1, activation: bool = True, norm: bool = True):
        super().__init__()
        self.act = nn.LeakyReLU(0.2, inplace=False) if activation else nn.Identity()
        self.conv = nn.Conv2d(
            c_in, c_out, 4, stride=2, padding=same_half_padding(dilation), dilation=dilation, bias=not norm
        )
        self.norm = nn.BatchNorm2d(c_out) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(self.act(x)))


class UpBlock(nn.Module):
    """ReLU -> ConvTranspose 4×4 stride 2 -> [BatchNorm] -> [Dropout]: (B, Cin, H, W) -> (B, Cout, 2H, 2W)."""

    def __init__(self, c_in: int, c_out: int, norm: bool = True, dropout: float = 0.0):
        super().__init__()
        self.act = nn.ReLU(inplace=False)
        self.conv = nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=not norm)
        self.norm = nn.BatchNorm2d(c_out) if norm else nn.Identity()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.norm(self.conv(self.act(x))))


class Im2FlowUNet(nn.Module):
    """Still image -> flow image. See the module docstring for the layout."""

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = config = config or UNetConfig()
        ch, n = config.channels, config.num_levels
        # Encoder level i: (B, c_{i-1}, H/2^i, .) -> (B, c_i, H/2^(i+1), .)
        self.down = nn.ModuleList()
        for i in range(n):
            c_in = config.in_channels if i == 0 else ch[i - 1]
            self.down.append(
                DownBlock(c_in, ch[i], config.dilations[i], activation=i > 0, norm=0 < i < n - 1)
            )
        # Decoder block j undoes encoder level n-1-j. Its input is the previous decoder
        # output concatenated with the skip (except the innermost, which has no skip).
        self.up = nn.ModuleList()
        for j in range(n):
            level = n - 1 - j
            c_in = ch[level] if j == 0 else 2 * ch[level]
            outermost = level == 0
            c_out = config.out_channels if outermost else ch[level - 1]
            dropout = config.dropout if j < config.dropout_levels and not outermost else 0.0
            self.up.append(UpBlock(c_in, c_out, norm=not outermost, dropout=dropout))
        self.out_act = nn.Tanh()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) image in [-1, 1] -> (B, 3, H, W) flow image in [-1, 1]."""
        factor = 2**self.config.num_levels
        if image.shape[-1] % factor or image.shape[-2] % factor:
            raise ValueError(
                f"input {tuple(image.shape[-2:])} is not a multiple of {factor} "
                f"(2**{self.config.num_levels} levels)"
            )
        skips = []
        x = image
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.up[0](skips.pop())  # innermost: no concatenation
        for block in self.up[1:]:
            x = block(torch.cat([x, skips.pop()], dim=1))
        return self.out_act(x)


def init_weights(model: nn.Module, gain: float = 0.02) -> nn.Module:
    """pix2pix's ``init_weights(net, 'normal', 0.02)``, which the released Im2Flow code inherits:
    every (transposed) convolution and linear weight ~ N(0, gain), BatchNorm weight ~ N(1, gain),
    biases 0. Draws from the global generator (seed it first)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(module.weight, 0.0, gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            nn.init.normal_(module.weight, 1.0, gain)
            nn.init.zeros_(module.bias)
    return model


def build_unet(preset: str = "paper", **overrides: Any) -> Im2FlowUNet:
    return Im2FlowUNet(unet_config(preset, **overrides))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class Im2FlowCheckpoint:
    """A trained generator with what decoding and describing its output needs, read once."""

    model: Im2FlowUNet  # in eval mode, on the CPU
    magnitude_clip: float  # px: the network's magnitude channel covers [0, clip]
    step: int | None
    train_config: dict[str, Any]
    path: str

    def describe(self) -> str:
        preset = self.train_config.get("model", "?")
        return f"U-Net {preset} preset, step {self.step}, magnitude clip {self.magnitude_clip:g} px"


def load_im2flow(path: str | Path) -> Im2FlowCheckpoint:
    """The ``checkpoint.pt`` that `im2flow train` writes: the generator, its clip, step and config."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = Im2FlowUNet(UNetConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return Im2FlowCheckpoint(model.eval(), float(ckpt.get("magnitude_clip", DEFAULT_MAGNITUDE_CLIP)),
                             ckpt.get("step"), dict(ckpt.get("train_config") or {}), str(path))
