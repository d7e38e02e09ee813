"""The Walker-style codebook baseline's network: a per-cell classifier over k-means flow codewords."""

from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def _coords(b: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(B, 2, h, w) x and y coordinates in [-1, 1]."""
    ys = torch.linspace(-1, 1, h, dtype=like.dtype, device=like.device).view(1, 1, h, 1).expand(b, 1, h, w)
    xs = torch.linspace(-1, 1, w, dtype=like.dtype, device=like.device).view(1, 1, 1, w).expand(b, 1, h, w)
    return torch.cat([xs, ys], dim=1)


class CellClassifier(nn.Module):
    """Fully convolutional: (B, 3, S, S) image -> (B, n_classes, grid, grid) codeword logits.

    Three stride-2 conv blocks, a dilated block for context, pooling to the grid,
    then per-cell 1×1 layers that also see a broadcast global feature and the
    cell's coordinates (a cell's motion can depend on where it sits relative to
    the object, which a purely local classifier cannot know).
    """

    def __init__(self, n_classes: int, grid: int, width: int = 32):
        super().__init__()
        self.grid = grid
        self.trunk = nn.Sequential(_block(5, width, 2), _block(width, 2 * width, 2), _block(2 * width, 2 * width, 2),
                                   _block(2 * width, 2 * width, dilation=2))
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.head = nn.Sequential(nn.Conv2d(4 * width + 2, 2 * width, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(2 * width, n_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        f = self.pool(self.trunk(torch.cat([x, _coords(b, h, w, x)], dim=1)))
        g = f.mean(dim=(2, 3), keepdim=True).expand_as(f)
        return self.head(torch.cat([f, g, _coords(b, self.grid, self.grid, f)], dim=1))
