"""One recognition stream: a torchvision classifier trained on one kind of still-image input.

Inputs are read from HDF5 rows as stored and mapped on the device (the
appearance stream's uint8 RGB frames, the true flow in pixels, or flow images
already in the network range, as the hallucinated motion is stored); every
one becomes a 3-channel image in [-1, 1], then [0, 1], ImageNet-normalised,
as the motion-content network sees flow. Training runs on the shared loop
(:func:`pipeline.train.loop.fit`) with random flips (a flow's cos negated) and
random shifts of up to ``pad`` pixels.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from models.backbones import build_classifier, imagenet_normalise, resize_square
from pipeline.encoding import DEFAULT_MAGNITUDE_CLIP, frames_to_network, hflip, network_to_unit, to_network
from pipeline.recognize.static_sets import Column
from pipeline.train.loop import LoopConfig, RunPlan, Task, cosine_lr, fit, make_loader, recalibrate_batchnorm

log = logging.getLogger(__name__)

KINDS = ("rgb", "flow_px", "flow_net")


@dataclass
class StreamInput:
    """Where a stream's inputs live and how to read them: train and test columns of one kind."""

    train: Column
    test: Column
    kind: str  # rgb: (H, W, 3) uint8 | flow_px: (3, H, W) sin, cos, M px | flow_net: (3, H, W) in [-1, 1]
    magnitude_clip: float = DEFAULT_MAGNITUDE_CLIP

    def to_network(self, x: torch.Tensor) -> torch.Tensor:
        """A batch as stored -> (B, 3, H, W) float32 in [-1, 1]."""
        if self.kind == "rgb":
            return frames_to_network(x)
        if self.kind == "flow_px":
            return to_network(x, self.magnitude_clip)
        return x.float()


class StreamDataset(Dataset):
    """Rows of a column at given positions, with their labels; flips and shifts seeded by
    (seed, epoch, index) when ``augment``."""

    def __init__(self, column: Column, positions: Sequence[int], labels: np.ndarray, kind: str, augment: bool,
                 seed: int = 0, pad: int = 4):
        self.column, self.positions, self.labels = column, np.asarray(positions, np.int64), labels
        self.kind, self.augment, self.seed, self.pad, self.epoch = kind, augment, seed, pad, 0

    def __len__(self) -> int:
        return len(self.positions)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict:
        x = self.column.row(int(self.positions[i]))
        if self.augment:
            x = self._augment(x, np.random.default_rng((self.seed, self.epoch, i)))
        return {"x": torch.from_numpy(np.ascontiguousarray(x)), "label": torch.tensor(int(self.labels[i]))}

    def _augment(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Random horizontal flip (mirrored motion: cos changes sign) and a random shift of up to ``pad`` px."""
        channels_last = self.kind == "rgb"
        if rng.random() < 0.5:
            x = x[:, ::-1] if channels_last else hflip(x)
        h, w = x.shape[:2] if channels_last else x.shape[1:]
        p = self.pad
        spatial = ((p, p), (p, p), (0, 0)) if channels_last else ((0, 0), (p, p), (p, p))
        padded = np.pad(x, spatial, mode="edge")
        top, left = rng.integers(0, 2 * p + 1, size=2)
        return padded[top:top + h, left:left + w] if channels_last else padded[:, top:top + h, left:left + w]


class StreamTask(Task):
    """A classifier on one input kind, cross-entropy, Adam with cosine annealing."""

    metrics = ("loss",)

    def __init__(self, name: str, data: StreamInput, num_classes: int, cfg, seed: int):
        self.name, self.data, self.num_classes, self.cfg, self.seed = name, data, num_classes, cfg, seed

    def setup(self, plan: RunPlan) -> torch.optim.Optimizer:
        model, how = build_classifier(self.cfg.backbone, self.num_classes, self.cfg.pretrained)
        log.info("%s: %s %s (seed %d)", self.name, self.cfg.backbone, how, self.seed)
        self.model, self.total_steps = model.to(plan.device).train(), plan.total_steps
        return torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def inputs(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        unit = network_to_unit(self.data.to_network(x.to(device)))
        return imagenet_normalise(resize_square(unit, self.cfg.input_size))

    def compute(self, batch: dict, plan: RunPlan) -> dict[str, torch.Tensor]:
        logits = self.model(self.inputs(batch["x"], plan.device))
        return {"loss": F.cross_entropy(logits.float(), batch["label"].to(plan.device))}

    def learning_rate(self, epoch: int, step: int) -> float:
        return cosine_lr(self.cfg.lr, step, self.total_steps)


def train_stream(name: str, data: StreamInput, labels: np.ndarray, train_positions: np.ndarray,
                 evaluate: dict[str, tuple[Column, np.ndarray]], num_classes: int, cfg, seed: int
                 ) -> dict[str, np.ndarray]:
    """Train one stream on ``data.train`` rows at ``train_positions``; softmax scores of each
    ``evaluate`` entry (column, positions), in position order."""
    started = time.time()
    dataset = StreamDataset(data.train, train_positions, labels[train_positions], data.kind, True, seed)
    loop = LoopConfig(batch_size=cfg.batch_size, epochs=cfg.epochs, seed=seed, num_workers=0, log_every=50,
                      checkpoint_every=10**9, device=cfg.device)
    task = StreamTask(name, data, num_classes, cfg, seed)
    result = fit(task, dataset, loop)
    device = result.plan.device
    plain = StreamDataset(data.train, train_positions, labels[train_positions], data.kind, False)
    # precise BatchNorm statistics from the unaugmented training images: few steps leave the
    # running averages behind the weights
    recalibrate_batchnorm(task.model, _batches(plain, result.plan.batch_size),
                          lambda m, b: m(task.inputs(b["x"], device)))
    task.model.eval()
    scores = {}
    with torch.no_grad():
        for key, (column, positions) in evaluate.items():
            rows = StreamDataset(column, positions, np.zeros(len(positions), np.int64), data.kind, False)
            probs = [torch.softmax(task.model(task.inputs(b["x"], device)).float(), 1).cpu()
                     for b in _batches(rows, 64)]
            scores[key] = torch.cat(probs).numpy() if probs else np.zeros((0, num_classes), np.float32)
    final = result.history[-1]["loss"] if result.history else float("nan")
    log.info("%s: %d training images, %d steps in %.1f s, final training loss %.3f", name, len(train_positions),
             result.step, time.time() - started, final)
    return scores


def _batches(dataset: StreamDataset, batch_size: int):
    order = [list(range(i, min(i + batch_size, len(dataset)))) for i in range(0, len(dataset), batch_size)]
    return make_loader(dataset, order, 0, False, 0)
