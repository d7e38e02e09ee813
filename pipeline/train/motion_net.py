"""Train the motion-content network (rule ``train_motion_net``, `im2flow train-motion-net`).

A torchvision ResNet-18 learns to classify actions from true flow images
(ImageNet weights when the user has them, else random initialisation, said in
the log). Its layer2 activations later serve as the motion content of the
Im2Flow loss. Writes into ``--out``: ``checkpoint.pt`` (ResNet-18 state,
class count and names, input size, test accuracy), ``last.pt`` (resume),
``metrics.csv``, ``loss_curve.png`` and, with ``--test-shards``,
``metrics.json`` holding the test accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from models.motion_net import MotionContentNet, build_motion_net
from pipeline.atomic import write_text
from pipeline.config import slice_from_args
from pipeline.data.dataset import ShardDataset
from pipeline.encoding import to_network
from pipeline.runtime import autocast
from pipeline.train.loop import STOPPED_EXIT_CODE, TRAINING_OVERRIDES, LoopConfig, RunPlan, Task, \
    add_training_arguments, epoch_batches, fit, make_loader, plot_loss_curve, recalibrate_batchnorm, run_device, \
    save_checkpoint, step_decay_lr

log = logging.getLogger(__name__)


@dataclass
class MotionNetConfig(LoopConfig):
    """The `motion_net` slice of the config.

    The paper fine-tunes an ImageNet ResNet-18 on UCF-101 flow images and
    gives no schedule; these defaults (Adam 1e-3, 20 epochs, lr ×0.1 every 8)
    are ours.
    """

    SECTION = "motion_net"

    pretrained: str | None = "imagenet"  # imagenet (offline cache only), none, or a file path
    input_size: int | None = 224  # flow images are resized to this before the ResNet; None = as is
    batch_size: int = 64
    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_decay_every: int | None = 8
    lr_decay_factor: float = 0.1
    label_smoothing: float = 0.0
    bn_recalibration_batches: int = 100  # precise BatchNorm statistics at the end; 0 = keep running averages
    crop: int | None = 224
    flip: bool = True


def centre_crop(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """(..., H, W) -> (..., size, size) from the centre; unchanged when size is None or too big."""
    if size is None or (x.shape[-2] <= size and x.shape[-1] <= size):
        return x
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return x[..., top: top + size, left: left + size]


class MotionNetTask(Task):
    """The ResNet-18 flow classifier, cross-entropy and Adam."""

    name = "train motion net"
    metrics = ("loss", "train_accuracy")

    def __init__(self, cfg: MotionNetConfig, shards: list[str], num_classes: int, magnitude_clip: float):
        self.cfg, self.shards, self.num_classes, self.clip = cfg, shards, num_classes, magnitude_clip

    def setup(self, plan: RunPlan) -> torch.optim.Optimizer:
        self.net = build_motion_net(self.num_classes, self.cfg.input_size, self.cfg.pretrained)
        self.net.to(device=plan.device, memory_format=plan.memory_format).train()
        log.info("motion-content ResNet-18: %d classes, input %s, on %s", self.num_classes,
                 self.cfg.input_size or "as is", plan.device)
        return torch.optim.Adam(self.net.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"resnet": self.net.resnet}

    def flow_images(self, batch: dict, plan: RunPlan) -> torch.Tensor:
        flow = batch["flow"].to(plan.device, non_blocking=True)
        return to_network(flow, self.clip).contiguous(memory_format=plan.memory_format)

    def compute(self, batch: dict, plan: RunPlan) -> dict[str, torch.Tensor]:
        label = batch["label"].to(plan.device, non_blocking=True)
        logits = self.net(self.flow_images(batch, plan)).float()
        loss = F.cross_entropy(logits, label, label_smoothing=self.cfg.label_smoothing)
        return {"loss": loss, "train_accuracy": (logits.detach().argmax(1) == label).float().mean()}

    def learning_rate(self, epoch: int, step: int) -> float:
        return step_decay_lr(self.cfg.lr, epoch, self.cfg.lr_decay_every, self.cfg.lr_decay_factor)

    def fingerprint(self) -> dict[str, Any]:
        return {"shards": sorted(str(Path(s).resolve()) for s in self.shards)}


@torch.no_grad()
def evaluate(task: MotionNetTask, shards: list[str], plan: RunPlan) -> dict[str, Any]:
    """Top-1 accuracy and mean loss on unflipped flow images, centre-cropped to the training crop.

    The crop matters when ``input_size`` is None: a ResNet trained on small
    crops sees different statistics on larger frames (global pooling over more
    zero-padded border), which on the demo's 40-pixel frames costs most of the
    accuracy.
    """
    cfg, net = task.cfg, task.net
    dataset = ShardDataset(shards)
    batches = [list(range(i, min(i + cfg.batch_size, len(dataset)))) for i in range(0, len(dataset), cfg.batch_size)]
    net.eval()
    correct, total, loss_sum = 0, 0, 0.0
    for batch in make_loader(dataset, batches, cfg.num_workers, plan.device.type == "cuda", cfg.seed):
        flow = centre_crop(task.flow_images(batch, plan), cfg.crop)
        label = batch["label"].to(plan.device)
        with autocast(plan.device, plan.use_amp, cfg.amp_dtype):
            logits = net(flow).float()
        loss_sum += float(F.cross_entropy(logits, label, reduction="sum"))
        correct += int((logits.argmax(1) == label).sum())
        total += len(label)
    return {"test_accuracy": correct / max(total, 1), "test_loss": loss_sum / max(total, 1), "test_samples": total,
            "chance": 1.0 / net.num_classes}


def _recalibrate(task: MotionNetTask, dataset: ShardDataset, plan: RunPlan) -> None:
    """Exact BatchNorm statistics for the frozen use as a loss network (eval mode)."""
    cfg = task.cfg
    dataset.set_epoch(plan.total_steps // plan.steps_per_epoch + 1)
    batches = epoch_batches(len(dataset), plan.batch_size, cfg.seed, -1)[: cfg.bn_recalibration_batches]

    def forward(model: MotionContentNet, batch: dict) -> None:
        with autocast(plan.device, plan.use_amp, cfg.amp_dtype):
            model(task.flow_images(batch, plan))

    n = recalibrate_batchnorm(task.net, make_loader(dataset, batches, cfg.num_workers, False, cfg.seed), forward)
    log.info("BatchNorm statistics recomputed over %d training batches", n)


def train_motion_net(shards: list[str | Path], out_dir: str | Path, cfg: MotionNetConfig,
                     test_shards: list[str | Path] | None = None, resume: bool = True,
                     stop_after_steps: int | None = None) -> dict[str, Any]:
    """Train the classifier; returns a summary (steps, metrics, test accuracy when test shards are given).

    ``stop_after_steps`` stops like a kill would; the next call resumes from ``last.pt``.
    """
    out, shards = Path(out_dir), [str(s) for s in shards]
    dataset = ShardDataset(shards, crop=cfg.crop, flip=cfg.flip, seed=cfg.seed)
    task = MotionNetTask(cfg, shards, dataset.num_classes, dataset.magnitude_clip)
    result = fit(task, dataset, cfg, out, resume=resume, stop_after_steps=stop_after_steps)
    if result.stopped:
        return {"stopped": True, "step": result.step}
    summary: dict[str, Any] = {"stopped": False, "step": result.step}
    with run_device(cfg):
        if cfg.bn_recalibration_batches > 0:
            _recalibrate(task, dataset, result.plan)
        if test_shards:
            summary.update(evaluate(task, [str(s) for s in test_shards], result.plan))
            write_text(out / "metrics.json", json.dumps({k: v for k, v in summary.items() if k != "stopped"}
                                                        | {"steps": result.step}, indent=2) + "\n")
            log.info("test accuracy %.3f on %d samples (chance %.3f)", summary["test_accuracy"],
                     summary["test_samples"], summary["chance"])
    save_checkpoint({
        "model": task.net.resnet.state_dict(), "num_classes": task.net.num_classes,
        "class_names": list(dataset.class_names), "input_size": cfg.input_size,
        "magnitude_clip": float(dataset.magnitude_clip), "test_accuracy": summary.get("test_accuracy"),
        "config": dataclasses.asdict(cfg), "step": result.step,
    }, out / "checkpoint.pt")
    plot_loss_curve(result.history, out / "loss_curve.png", ("loss",), "Motion-content ResNet-18 training loss")
    return summary | {"metrics": result.history, "checkpoint": str(out / "checkpoint.pt")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_training_arguments(p, "motion_net")
    p.add_argument("--test-shards", nargs="*", default=[], help="test shards: accuracy goes to metrics.json")
    p.add_argument("--pretrained", help="override motion_net.pretrained: imagenet, none, or a weights file")


def run(args: argparse.Namespace) -> int:
    cfg = slice_from_args(MotionNetConfig, args, "motion_net", TRAINING_OVERRIDES + ("pretrained",))
    summary = train_motion_net(args.shards, args.out, cfg, test_shards=args.test_shards or None,
                               resume=not args.no_resume, stop_after_steps=args.stop_after_steps)
    return STOPPED_EXIT_CODE if summary["stopped"] else 0
