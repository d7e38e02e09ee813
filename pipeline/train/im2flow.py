"""Train the Im2Flow encoder-decoder (rule ``train_im2flow``, `im2flow train`).

Reads training shards, optimises the U-Net with Adam on pixel L2 + λ · motion
content (a frozen network from `im2flow train-motion-net`), with random crops
and flips of frame and flow together, and writes into ``--out``:

- ``checkpoint.pt``: the final generator (``models.unet.load_im2flow`` reads it),
- ``last.pt``: the full training state every ``checkpoint_every`` steps (resume),
- ``metrics.csv`` and ``loss_curve.png``.

A rerun with the same config and shards resumes from ``last.pt``; a different
config starts from scratch. Paper values are the defaults of
:class:`TrainConfig` (Adam 2e-4, β1 0.5, batch 32, 30 epochs, lr halved every
10 epochs, 256² crops, λ = 0.02).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.losses import Im2FlowLoss, LossWeights
from models.motion_net import freeze, load_motion_net
from models.unet import Im2FlowUNet, count_parameters, init_weights, unet_config
from pipeline.config import slice_from_args
from pipeline.data.dataset import ShardDataset, to_network
from pipeline.train.loop import STOPPED_EXIT_CODE, TRAINING_OVERRIDES, LoopConfig, RunPlan, Task, \
    add_training_arguments, fit, plot_loss_curve, save_checkpoint, step_decay_lr

log = logging.getLogger(__name__)

LOSSES = ("loss", "pixel", "content", "weighted_pixel")


@dataclass
class TrainConfig(LoopConfig):
    """The `train` slice of the config. Defaults are the paper's (UCF-101 preset)."""

    SECTION = "train"

    model: str = "paper"  # U-Net preset: paper | released | small | tiny
    dilations: list[int] | None = None  # override the preset's per-level dilation rates
    dropout: float | None = None  # override the preset's decoder dropout
    init: str = "pix2pix"  # pix2pix (conv N(0, 0.02), BatchNorm N(1, 0.02)) | pytorch (its defaults)
    batch_size: int = 32
    epochs: int = 30
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_decay_every: int | None = 10  # epochs; None = constant
    lr_decay_factor: float = 0.5
    crop: int | None = 256  # random square crop; None = whole frame
    flip: bool = True  # random horizontal flip (the flow's cos is negated)
    pixel_weight: float = 1.0
    content_weight: float = 0.02  # λ; 0 disables the motion-content term
    content_distance: str = "l2"  # "l1" is what the released code used
    gradient_weighting: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.content_distance not in ("l1", "l2"):
            raise ValueError(f"train.content_distance must be l1 or l2, got {self.content_distance!r}")
        if self.init not in ("pix2pix", "pytorch"):
            raise ValueError(f"train.init must be pix2pix or pytorch, got {self.init!r}")
        self.unet()  # fails early on a bad preset

    def unet(self):
        return unet_config(self.model, dilations=self.dilations, dropout=self.dropout)

    def loss_weights(self) -> LossWeights:
        return LossWeights(self.pixel_weight, self.content_weight, self.content_distance, self.gradient_weighting)


class Im2FlowTask(Task):
    """The generator, its loss (with the frozen motion-content network) and Adam."""

    name = "train im2flow"
    metrics = LOSSES

    def __init__(self, cfg: TrainConfig, shards: list[str], magnitude_clip: float, motion_net: str | None):
        if cfg.content_weight > 0 and motion_net is None:
            raise ValueError("train.content_weight > 0 needs --motion-net (a train-motion-net checkpoint)")
        self.cfg, self.shards, self.clip, self.motion_net = cfg, shards, magnitude_clip, motion_net

    def setup(self, plan: RunPlan) -> torch.optim.Optimizer:
        cfg = self.cfg
        self.model = Im2FlowUNet(cfg.unet())
        if cfg.init == "pix2pix":
            init_weights(self.model)
        self.model.to(device=plan.device, memory_format=plan.memory_format).train()
        log.info("Im2Flow U-Net preset %r: %s parameters, dilations %s, %s init, on %s%s", cfg.model,
                 f"{count_parameters(self.model):,}", self.model.config.dilations, cfg.init, plan.device,
                 f" with AMP ({cfg.amp_dtype})" if plan.use_amp else "")
        content_net = None
        if cfg.content_weight > 0:
            content_net = freeze(load_motion_net(self.motion_net)).to(plan.device, memory_format=plan.memory_format)
            log.info("motion-content network: %s (layer2 features, λ = %g)", self.motion_net, cfg.content_weight)
        self.criterion = Im2FlowLoss(content_net, cfg.loss_weights())
        return torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def compute(self, batch: dict, plan: RunPlan) -> dict[str, torch.Tensor]:
        frame, flow = to_network(batch, plan.device, self.clip, plan.memory_format)
        return self.criterion(self.model(frame), flow)

    def learning_rate(self, epoch: int, step: int) -> float:
        return step_decay_lr(self.cfg.lr, epoch, self.cfg.lr_decay_every, self.cfg.lr_decay_factor)

    def fingerprint(self) -> dict[str, Any]:
        return {"shards": sorted(str(Path(s).resolve()) for s in self.shards),
                "motion_net": str(Path(self.motion_net).resolve()) if self.motion_net else None}


def train(shards: list[str | Path], out_dir: str | Path, cfg: TrainConfig, motion_net: str | Path | None = None,
          resume: bool = True, stop_after_steps: int | None = None) -> dict[str, Any]:
    """Train the generator; returns a summary (steps, metrics rows, paths). See the module docstring.

    ``stop_after_steps`` stops like a kill would (after that step, no final
    outputs); the next call with the same arguments resumes from ``last.pt``.
    """
    out = Path(out_dir)
    shards = [str(s) for s in shards]
    dataset = ShardDataset(shards, crop=cfg.crop, flip=cfg.flip, seed=cfg.seed)
    task = Im2FlowTask(cfg, shards, dataset.magnitude_clip, str(motion_net) if motion_net else None)
    result = fit(task, dataset, cfg, out, resume=resume, stop_after_steps=stop_after_steps)
    if result.stopped:
        return {"stopped": True, "step": result.step}
    model = task.model
    save_checkpoint({
        "model": model.state_dict(), "model_config": model.config.to_dict(), "train_config": dataclasses.asdict(cfg),
        "magnitude_clip": float(dataset.magnitude_clip), "class_names": list(dataset.class_names),
        "step": result.step, "motion_net": task.motion_net,
    }, out / "checkpoint.pt")
    plot_loss_curve(result.history, out / "loss_curve.png", LOSSES, f"Im2Flow ({cfg.model}) training loss")
    final = result.history[-1]["loss"] if result.history else float("nan")
    log.info("finished %d steps; final loss %.4g; wrote %s", result.step, final, out)
    return {"stopped": False, "step": result.step, "metrics": result.history, "checkpoint": str(out / "checkpoint.pt")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_training_arguments(p, "train")
    p.add_argument("--motion-net", help="motion-content network checkpoint from train-motion-net")


def run(args: argparse.Namespace) -> int:
    cfg = slice_from_args(TrainConfig, args, "train", TRAINING_OVERRIDES)
    summary = train(args.shards, args.out, cfg, motion_net=args.motion_net, resume=not args.no_resume,
                    stop_after_steps=args.stop_after_steps)
    return STOPPED_EXIT_CODE if summary["stopped"] else 0
