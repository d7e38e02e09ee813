"""Stage 6: train the motion-content network (`im2flow train-motion-net`).

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
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from models.motion_net import MotionContentNet, build_motion_net

from pipeline.train import loop as tu
from pipeline.atomic import write_text

log = logging.getLogger(__name__)

METRIC_FIELDS = ("step", "epoch", "lr", "loss", "train_accuracy", "images_per_s", "elapsed_s")


@dataclass
class MotionNetConfig(tu.RunConfig):
    """The `motion_net` slice of the config.

    The paper fine-tunes an ImageNet ResNet-18 on UCF-101 flow images and
    gives no schedule; these defaults (Adam 1e-3, 20 epochs, lr ×0.1 every 8)
    are ours.
    """

    pretrained: str | None = "imagenet"  # "imagenet" (offline cache only), a file path, or None
    input_size: int | None = 224  # flow images are resized to this before the ResNet; None = as is
    batch_size: int = 64
    epochs: int = 20
    max_steps: int | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_decay_every: int | None = 8
    lr_decay_factor: float = 0.1
    label_smoothing: float = 0.0
    bn_recalibration_batches: int = 100  # precise BatchNorm statistics at the end; 0 = keep running averages
    crop: int | None = 224
    flip: bool = True

    SECTION = "motion_net"


def _open_dataset(shards: list[str], crop: int | None, flip: bool, seed: int):
    from pipeline.data.dataset import ShardDataset

    return ShardDataset([str(s) for s in shards], crop=crop, flip=flip, seed=seed)


def centre_crop(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """(..., H, W) -> (..., size, size) from the centre; unchanged when size is None or too big."""
    if size is None or (x.shape[-2] <= size and x.shape[-1] <= size):
        return x
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return x[..., top : top + size, left : left + size]


@torch.no_grad()
def evaluate(net: MotionContentNet, shards: list[str | Path], cfg: MotionNetConfig, device: torch.device) -> dict[str, Any]:
    """Top-1 accuracy and mean loss on unflipped flow images, centre-cropped to the training crop.

    The crop matters when ``input_size`` is None: a ResNet trained on small
    crops sees different statistics on larger frames (global pooling over more
    zero-padded border), which on the demo's 40-pixel frames costs most of the
    accuracy.
    """
    dataset = _open_dataset([str(s) for s in shards], None, False, cfg.seed)
    batches = [list(range(i, min(i + cfg.batch_size, len(dataset)))) for i in range(0, len(dataset), cfg.batch_size)]
    net.eval()
    correct, total, loss_sum = 0, 0, 0.0
    use_amp = cfg.amp and device.type == "cuda"
    for batch in tu.make_loader(dataset, batches, cfg.num_workers, device.type == "cuda", cfg.seed):
        flow = centre_crop(batch["flow"], cfg.crop).to(device)
        label = batch["label"].to(device)
        with tu.autocast(device, use_amp, cfg.amp_dtype):
            logits = net(flow).float()
        loss_sum += float(F.cross_entropy(logits, label, reduction="sum"))
        correct += int((logits.argmax(1) == label).sum())
        total += len(label)
    net.train()
    return {"test_accuracy": correct / max(total, 1), "test_loss": loss_sum / max(total, 1), "test_samples": total,
            "chance": 1.0 / net.num_classes}


def train_motion_net(
    shards: list[str | Path],
    out_dir: str | Path,
    cfg: MotionNetConfig,
    test_shards: list[str | Path] | None = None,
    resume: bool = True,
    stop_after_steps: int | None = None,
) -> dict[str, Any]:
    """Train the classifier; returns a summary (steps, metrics, test accuracy when test shards are given).

    ``stop_after_steps`` stops like a kill would; the next call resumes from ``last.pt``.
    """
    with tu.run_device(cfg) as device:
        return _train(shards, Path(out_dir), cfg, device, test_shards, resume, stop_after_steps)


def _train(shards, out: Path, cfg: MotionNetConfig, device: torch.device, test_shards, resume, stop_after_steps):
    out.mkdir(parents=True, exist_ok=True)
    tu.seed_everything(cfg.seed)
    dataset = _open_dataset([str(s) for s in shards], cfg.crop, cfg.flip, cfg.seed)
    plan = tu.plan_run(cfg, len(dataset), device)
    use_amp, memory_format, batch_size = plan.use_amp, plan.memory_format, plan.batch_size
    steps_per_epoch, total_steps = plan.steps_per_epoch, plan.total_steps

    net = build_motion_net(dataset.num_classes, cfg.input_size, cfg.pretrained).to(device=device, memory_format=memory_format)
    log.info("motion-content ResNet-18: %d classes, input %s, on %s", dataset.num_classes,
             cfg.input_size or "as is", device)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = tu.make_grad_scaler(device, use_amp, cfg.amp_dtype)

    run_id = tu.run_fingerprint(cfg, shards, device, total_steps)
    last_path = out / "last.pt"
    step = 0
    ckpt = tu.find_resumable(last_path, run_id) if resume else None
    if ckpt is not None:
        net.resnet.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        tu.set_rng_state(ckpt["rng"])
        step = int(ckpt["step"])
        log.info("resuming from %s at step %d of %d", last_path, step, total_steps)
    metrics = tu.MetricsLog(out / "metrics.csv", METRIC_FIELDS, resume_step=step if ckpt is not None else None)

    def save_state() -> None:
        tu.save_checkpoint({
            "model": net.resnet.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "step": step, "rng": tu.rng_state(), "fingerprint": run_id,
        }, last_path)

    net.train()
    # Running sums stay on the device: reading them every step would stall the GPU pipeline.
    loss_sum, correct = torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long)
    seen, count = 0, 0
    t_start = t_interval = time.perf_counter()
    bar = tu.progress(total_steps, step, "train motion net")
    try:
        while step < total_steps:
            epoch, first_batch = divmod(step, steps_per_epoch)
            dataset.set_epoch(epoch)
            batches = tu.epoch_batches(len(dataset), batch_size, cfg.seed, epoch)[first_batch:]
            batches = batches[: total_steps - step]
            lr = tu.step_decay_lr(cfg.lr, epoch, cfg.lr_decay_every, cfg.lr_decay_factor)
            for group in optimizer.param_groups:
                group["lr"] = lr
            for batch in tu.make_loader(dataset, batches, cfg.num_workers, device.type == "cuda", cfg.seed + epoch):
                flow = batch["flow"].to(device, non_blocking=True).contiguous(memory_format=memory_format)
                label = batch["label"].to(device, non_blocking=True)
                torch.manual_seed(tu.step_seed(cfg.seed, step))
                with tu.autocast(device, use_amp, cfg.amp_dtype):
                    logits = net(flow).float()
                    loss = F.cross_entropy(logits, label, label_smoothing=cfg.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                step += 1
                count += 1
                loss_sum = loss_sum + loss.detach()
                correct = correct + (logits.detach().argmax(1) == label).sum()
                seen += len(label)
                bar.update(1)
                if step % cfg.log_every == 0 or step == total_steps:
                    now = time.perf_counter()
                    mean_loss, accuracy = float(loss_sum) / count, int(correct) / max(seen, 1)
                    if not math.isfinite(mean_loss):
                        raise FloatingPointError(f"motion-net training loss is not finite (steps {step - count + 1}-{step})")
                    metrics.append({
                        "step": step, "epoch": epoch, "lr": lr, "loss": mean_loss, "train_accuracy": accuracy,
                        "images_per_s": seen / max(now - t_interval, 1e-9), "elapsed_s": now - t_start,
                    })
                    bar.set_postfix(loss=f"{mean_loss:.4g}", acc=f"{accuracy:.2f}")
                    loss_sum, correct = torch.zeros_like(loss_sum), torch.zeros_like(correct)
                    seen, count, t_interval = 0, 0, now
                if step % cfg.checkpoint_every == 0 or step == total_steps:
                    save_state()
                if stop_after_steps is not None and step >= stop_after_steps:
                    log.warning("stopping at step %d as asked (--stop-after-steps)", step)
                    return {"stopped": True, "step": step}
    finally:
        bar.close()

    if cfg.bn_recalibration_batches > 0:
        # The network is used frozen (eval mode) as the loss network: give it exact statistics.
        dataset.set_epoch(total_steps // steps_per_epoch + 1)
        batches = tu.epoch_batches(len(dataset), batch_size, cfg.seed, -1)[: cfg.bn_recalibration_batches]

        def forward(model, batch):
            flow = batch["flow"].to(device).contiguous(memory_format=memory_format)
            with tu.autocast(device, use_amp, cfg.amp_dtype):
                model(flow)

        n = tu.recalibrate_batchnorm(net, tu.make_loader(dataset, batches, cfg.num_workers, False, cfg.seed), forward)
        log.info("BatchNorm statistics recomputed over %d training batches", n)

    summary: dict[str, Any] = {"stopped": False, "step": step}
    if test_shards:
        result = evaluate(net, test_shards, cfg, device)
        summary.update(result)
        write_text(out / "metrics.json", json.dumps(result | {"steps": step}, indent=2) + "\n")
        log.info("test accuracy %.3f on %d samples (chance %.3f)", result["test_accuracy"],
                 result["test_samples"], result["chance"])
    tu.save_checkpoint({
        "model": net.resnet.state_dict(), "num_classes": net.num_classes, "class_names": list(dataset.class_names),
        "input_size": cfg.input_size, "magnitude_clip": float(dataset.magnitude_clip),
        "test_accuracy": summary.get("test_accuracy"), "config": dataclasses.asdict(cfg), "step": step,
    }, out / "checkpoint.pt")
    tu.plot_loss_curve(out / "metrics.csv", out / "loss_curve.png", ("loss",), "Motion-content ResNet-18 training loss")
    summary["metrics"] = metrics.read()
    summary["checkpoint"] = str(out / "checkpoint.pt")
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    tu.add_training_arguments(p, "motion_net")
    p.add_argument("--test-shards", nargs="*", default=[], help="test shards: accuracy goes to metrics.json")
    p.add_argument("--pretrained", help="override motion_net.pretrained: imagenet, none, or a weights file")


def run(args: argparse.Namespace) -> int:
    cfg = tu.config_from_args(MotionNetConfig, args, "motion_net", extra=("pretrained",))
    summary = train_motion_net(args.shards, args.out, cfg, test_shards=args.test_shards or None,
                               resume=not args.no_resume, stop_after_steps=args.stop_after_steps)
    return tu.STOPPED_EXIT_CODE if summary["stopped"] else 0
