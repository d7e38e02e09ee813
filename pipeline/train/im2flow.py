"""Stage 7: train the Im2Flow encoder-decoder (`im2flow train`).

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
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.losses import Im2FlowLoss, LossWeights
from models.motion_net import freeze, load_motion_net
from models.unet import Im2FlowUNet, count_parameters, unet_config

from pipeline.train import loop as tu

log = logging.getLogger(__name__)

METRIC_FIELDS = ("step", "epoch", "lr", "loss", "pixel", "content", "weighted_pixel", "images_per_s", "elapsed_s")


@dataclass
class TrainConfig(tu.RunConfig):
    """The `train` slice of the config. Defaults are the paper's (UCF-101 preset)."""

    model: str = "paper"  # U-Net preset: paper | released | small | tiny
    dilations: list[int] | None = None  # override the preset's per-level dilation rates
    dropout: float | None = None  # override the preset's decoder dropout
    batch_size: int = 32
    epochs: int = 30
    max_steps: int | None = None  # stop earlier than epochs (smoke runs, benchmarks)
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

    SECTION = "train"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.content_distance not in ("l1", "l2"):
            raise ValueError(f"train.content_distance must be l1 or l2, got {self.content_distance!r}")
        unet_config(self.model, dilations=self.dilations, dropout=self.dropout)  # fails early on a bad preset

    def unet(self):
        return unet_config(self.model, dilations=self.dilations, dropout=self.dropout)

    def loss_weights(self) -> LossWeights:
        return LossWeights(self.pixel_weight, self.content_weight, self.content_distance, self.gradient_weighting)


def _open_dataset(shards: list[str], crop: int | None, flip: bool, seed: int):
    from pipeline.data.dataset import ShardDataset

    return ShardDataset([str(s) for s in shards], crop=crop, flip=flip, seed=seed)


def train(
    shards: list[str | Path],
    out_dir: str | Path,
    cfg: TrainConfig,
    motion_net: str | Path | None = None,
    resume: bool = True,
    stop_after_steps: int | None = None,
) -> dict[str, Any]:
    """Train the generator; returns a summary (steps, metrics rows, paths). See the module docstring.

    ``stop_after_steps`` stops like a kill would (after that step, no final
    outputs); the next call with the same arguments resumes from ``last.pt``.
    """
    with tu.run_device(cfg) as device:
        return _train(shards, Path(out_dir), cfg, device, motion_net, resume, stop_after_steps)


def _train(shards, out: Path, cfg: TrainConfig, device: torch.device, motion_net, resume, stop_after_steps):
    out.mkdir(parents=True, exist_ok=True)
    tu.seed_everything(cfg.seed)
    dataset = _open_dataset([str(s) for s in shards], cfg.crop, cfg.flip, cfg.seed)
    plan = tu.plan_run(cfg, len(dataset), device)
    use_amp, memory_format, batch_size = plan.use_amp, plan.memory_format, plan.batch_size
    steps_per_epoch, total_steps = plan.steps_per_epoch, plan.total_steps

    model = Im2FlowUNet(cfg.unet()).to(device=device, memory_format=memory_format)
    log.info("Im2Flow U-Net preset %r: %s parameters, dilations %s, on %s%s",
             cfg.model, f"{count_parameters(model):,}", model.config.dilations, device,
             f" with AMP ({cfg.amp_dtype})" if use_amp else "")
    content_net = None
    if cfg.content_weight > 0:
        if motion_net is None:
            raise ValueError("train.content_weight > 0 needs --motion-net (a train-motion-net checkpoint)")
        content_net = freeze(load_motion_net(motion_net)).to(device=device, memory_format=memory_format)
        log.info("motion-content network: %s (layer2 features, λ = %g)", motion_net, cfg.content_weight)
    criterion = Im2FlowLoss(content_net, cfg.loss_weights())
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    scaler = tu.make_grad_scaler(device, use_amp, cfg.amp_dtype)

    run_id = tu.run_fingerprint(cfg, shards, device, total_steps,
                                motion_net=str(Path(motion_net).resolve()) if motion_net else None)
    last_path = out / "last.pt"
    step = 0
    ckpt = tu.find_resumable(last_path, run_id) if resume else None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        tu.set_rng_state(ckpt["rng"])
        step = int(ckpt["step"])
        log.info("resuming from %s at step %d of %d", last_path, step, total_steps)
    metrics = tu.MetricsLog(out / "metrics.csv", METRIC_FIELDS, resume_step=step if ckpt is not None else None)

    def save_state() -> None:
        tu.save_checkpoint({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "step": step, "rng": tu.rng_state(), "fingerprint": run_id,
        }, last_path)

    model.train()
    # Running sums stay on the device: reading a loss every step would stall the GPU pipeline.
    sums = dict.fromkeys(("loss", "pixel", "content", "weighted_pixel"), torch.zeros((), device=device))
    count, t_start, t_interval = 0, time.perf_counter(), time.perf_counter()
    bar = tu.progress(total_steps, step, "train im2flow")
    try:
        while step < total_steps:
            epoch, first_batch = divmod(step, steps_per_epoch)
            dataset.set_epoch(epoch)
            batches = tu.epoch_batches(len(dataset), batch_size, cfg.seed, epoch)[first_batch:]
            batches = batches[: total_steps - step]
            lr = tu.step_decay_lr(cfg.lr, epoch, cfg.lr_decay_every, cfg.lr_decay_factor)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loader = tu.make_loader(dataset, batches, cfg.num_workers, device.type == "cuda", cfg.seed + epoch)
            for batch in loader:
                frame = batch["frame"].to(device, non_blocking=True).contiguous(memory_format=memory_format)
                flow = batch["flow"].to(device, non_blocking=True)
                torch.manual_seed(tu.step_seed(cfg.seed, step))  # dropout masks depend on the step only
                with tu.autocast(device, use_amp, cfg.amp_dtype):
                    pred = model(frame)
                    losses = criterion(pred, flow)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(losses["loss"]).backward()
                scaler.step(optimizer)
                scaler.update()
                step += 1
                count += 1
                sums = {k: v + losses[k].detach() for k, v in sums.items()}
                bar.update(1)
                if step % cfg.log_every == 0 or step == total_steps:
                    now = time.perf_counter()
                    row = {k: float(v) / count for k, v in sums.items()}
                    if not math.isfinite(row["loss"]):
                        raise FloatingPointError(f"training loss is not finite (steps {step - count + 1}-{step})")
                    metrics.append(row | {
                        "step": step, "epoch": epoch, "lr": lr,
                        "images_per_s": count * batch_size / max(now - t_interval, 1e-9),
                        "elapsed_s": now - t_start,
                    })
                    bar.set_postfix(loss=f"{row['loss']:.4g}", lr=f"{lr:.2g}")
                    sums = {k: torch.zeros_like(v) for k, v in sums.items()}
                    count, t_interval = 0, now
                if step % cfg.checkpoint_every == 0 or step == total_steps:
                    save_state()
                if stop_after_steps is not None and step >= stop_after_steps:
                    log.warning("stopping at step %d as asked (--stop-after-steps)", step)
                    return {"stopped": True, "step": step}
    finally:
        bar.close()

    final = {
        "model": model.state_dict(), "model_config": model.config.to_dict(), "train_config": dataclasses.asdict(cfg),
        "magnitude_clip": float(dataset.magnitude_clip), "class_names": list(dataset.class_names),
        "step": step, "motion_net": str(motion_net) if motion_net else None,
    }
    tu.save_checkpoint(final, out / "checkpoint.pt")
    tu.plot_loss_curve(out / "metrics.csv", out / "loss_curve.png", ("loss", "pixel", "content", "weighted_pixel"),
                       f"Im2Flow ({cfg.model}) training loss")
    rows = metrics.read()
    log.info("finished %d steps; final loss %.4g; wrote %s", step, rows[-1]["loss"] if rows else float("nan"), out)
    return {"stopped": False, "step": step, "metrics": rows, "checkpoint": str(out / "checkpoint.pt")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    tu.add_training_arguments(p, "train")
    p.add_argument("--motion-net", help="motion-content network checkpoint from train-motion-net")


def run(args: argparse.Namespace) -> int:
    cfg = tu.config_from_args(TrainConfig, args, "train")
    summary = train(args.shards, args.out, cfg, motion_net=args.motion_net, resume=not args.no_resume,
                    stop_after_steps=args.stop_after_steps)
    return tu.STOPPED_EXIT_CODE if summary["stopped"] else 0
