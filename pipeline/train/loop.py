"""One training loop for every network: :func:`fit` runs a :class:`Task`.

In the spirit of pix2pix's ``BaseModel.optimize_parameters``: a task builds
its networks and optimizer and computes the losses of a batch; the loop does
everything else once for all of them (the Im2Flow U-Net, the motion-content
ResNet, the recognition streams, the codebook CNN): device and threads,
seeding, the batch order, learning-rate schedule, mixed precision, the
backward pass and optimizer step, the metrics log, checkpoints, resume and
stopping.

Resume contract: everything a step depends on is either saved in ``last.pt``
(the task's modules and optimizer, the AMP scaler, the step, the RNG states,
the metrics history) or a pure function of (seed, epoch, step): the batch
order, the crops and flips (datasets seed them by (seed, epoch, index)) and
the dropout masks (the global generator is reseeded every step). So a run
killed after any checkpoint and resumed ends with the same weights, bit for
bit on the CPU, and the same metrics history, as a run that was never killed,
even when the metrics file was deleted in between.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import matplotlib
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from pipeline.atomic import atomic_path
from pipeline.runtime import autocast, choose_device, determinism, rng_state, seed_everything, set_rng_state, \
    set_threads, step_seed

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402  (after choosing the non-interactive backend)

log = logging.getLogger(__name__)

# Exit code of a run stopped by --stop-after-steps (a stand-in for a kill in tests).
STOPPED_EXIT_CODE = 3
# Config keys that change how a run goes but not what it computes: a rerun with other
# values (say, more cores from the scheduler) still resumes from last.pt.
NOT_RESULT_RELEVANT = ("threads", "num_workers", "log_every", "checkpoint_every", "device")


@dataclasses.dataclass
class LoopConfig:
    """How a run executes (every training config extends this): shared keys of the config slices."""

    SECTION = "train"

    batch_size: int = 32
    epochs: int = 1
    max_steps: int | None = None  # stop earlier than epochs (smoke runs, benchmarks)
    seed: int = 0
    num_workers: int = 4
    checkpoint_every: int = 500  # steps
    log_every: int = 20  # steps
    amp: bool = True  # CUDA only
    amp_dtype: str = "bfloat16"  # or "float16" (then a GradScaler is used)
    channels_last: bool = True  # CUDA only
    deterministic: bool = True
    device: str = "auto"
    threads: int | None = None  # CPU intra-op threads (the rule's `threads:`); None = PyTorch's default

    def __post_init__(self) -> None:
        section = self.SECTION
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError(f"{section}.batch_size and {section}.epochs must be >= 1")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError(f"{section}.checkpoint_every and {section}.log_every must be >= 1")
        if self.amp_dtype not in ("bfloat16", "float16"):
            raise ValueError(f"{section}.amp_dtype must be bfloat16 or float16, got {self.amp_dtype!r}")


@dataclasses.dataclass
class RunPlan:
    """What follows from a config, the device and the dataset size: precision, layout and step counts."""

    device: torch.device
    use_amp: bool
    memory_format: torch.memory_format
    batch_size: int
    steps_per_epoch: int
    total_steps: int


class Task(abc.ABC):
    """What one network's training supplies to :func:`fit`."""

    name: str = "train"
    metrics: tuple[str, ...] = ("loss",)  # keys of compute()'s result logged as interval means

    @abc.abstractmethod
    def setup(self, plan: RunPlan) -> torch.optim.Optimizer:
        """Build the networks on ``plan.device``; return their optimizer."""

    @abc.abstractmethod
    def modules(self) -> dict[str, torch.nn.Module]:
        """The networks whose weights ``last.pt`` holds (resume)."""

    @abc.abstractmethod
    def compute(self, batch: Any, plan: RunPlan) -> dict[str, torch.Tensor]:
        """The losses of one batch (under autocast); ``"loss"`` is backpropagated."""

    def learning_rate(self, epoch: int, step: int) -> float | None:
        """The learning rate at a step; None leaves the optimizer's own."""
        return None

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this run besides the loop config (inputs, task settings): decides resume."""
        return {}


@dataclasses.dataclass
class FitResult:
    step: int
    stopped: bool
    history: list[dict[str, float]]
    plan: RunPlan


# --------------------------------------------------------------------------- batches and schedules


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The shuffled full batches of one epoch (the ragged tail is dropped: BatchNorm wants full batches)."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    order = torch.randperm(n, generator=g).tolist()
    return [order[i: i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def step_decay_lr(base_lr: float, epoch: int, every: int | None, factor: float) -> float:
    """lr · factor^(epoch // every): the paper's 'halved every 10 epochs'."""
    if not every:
        return base_lr
    return base_lr * factor ** (epoch // every)


def cosine_lr(base_lr: float, step: int, total_steps: int) -> float:
    """Cosine annealing from ``base_lr`` to 0 over ``total_steps``."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))


def make_loader(dataset: Dataset, batches: Sequence[Sequence[int]], num_workers: int, pin_memory: bool,
                seed: int) -> DataLoader:
    """A DataLoader over precomputed batches. Its own generator keeps it off the global RNG."""
    return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(seed), persistent_workers=False)


def plan_run(cfg: LoopConfig, n_samples: int, device: torch.device) -> RunPlan:
    if n_samples <= 0:
        raise ValueError("the training set is empty")
    batch_size = cfg.batch_size
    if n_samples < batch_size:
        log.warning("training set has %d samples, fewer than batch size %d: using batch %d", n_samples,
                    batch_size, n_samples)
        batch_size = n_samples
    steps_per_epoch = n_samples // batch_size
    on_cuda = device.type == "cuda"
    return RunPlan(
        device=device, use_amp=cfg.amp and on_cuda,
        memory_format=torch.channels_last if cfg.channels_last and on_cuda else torch.contiguous_format,
        batch_size=batch_size, steps_per_epoch=steps_per_epoch,
        total_steps=cfg.epochs * steps_per_epoch if cfg.max_steps is None else cfg.max_steps,
    )


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(obj: Mapping[str, Any], path: str | os.PathLike) -> None:
    """torch.save to a temporary sibling, fsync, then os.replace: never a half-written checkpoint."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(dict(obj), fh)
            fh.flush()
            os.fsync(fh.fileno())


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def fingerprint(obj: Any) -> str:
    """Short stable hash of a JSON-able object (decides whether last.pt belongs to this run)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_fingerprint(cfg: LoopConfig, task: Task, plan: RunPlan) -> str:
    """Identity of a run for resuming: same result-relevant config, task inputs and length."""
    config = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_RESULT_RELEVANT}
    return fingerprint({"config": config | {"device": plan.device.type}, **task.fingerprint(),
                        "total_steps": plan.total_steps})


def find_resumable(path: Path, run_id: str) -> dict[str, Any] | None:
    """``last.pt`` if it exists and was written by a run with the same config and inputs."""
    if not path.is_file():
        return None
    try:
        ckpt = load_checkpoint(path)
    except Exception as exc:  # atomic writes make this unlikely, but a foreign file must not stop a run
        log.warning("ignoring unreadable %s (%s); starting from scratch", path, exc)
        return None
    if ckpt.get("fingerprint") != run_id:
        log.warning("%s belongs to a different config or input set; starting from scratch", path)
        return None
    return ckpt


# --------------------------------------------------------------------------- metrics log and plot


class MetricsLog:
    """The run's metrics history, mirrored to a CSV (append-only during a run, rewritten whole on start).

    The history itself travels in ``last.pt``, so a resumed run rewrites the CSV
    from it: deleting the CSV (Snakemake removes a killed job's outputs) loses nothing.
    """

    def __init__(self, path: Path | None, fields: Sequence[str], history: Sequence[Mapping[str, float]] = ()):
        self.path, self.fields, self.rows = path, list(fields), [dict(r) for r in history]
        if path is not None:
            with atomic_path(path) as tmp:
                with open(tmp, "w", newline="") as fh:
                    writer = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
                    writer.writeheader()
                    writer.writerows(self._formatted(r) for r in self.rows)

    @staticmethod
    def _formatted(row: Mapping[str, Any]) -> dict[str, Any]:
        return {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}

    def append(self, row: Mapping[str, float]) -> None:
        self.rows.append(dict(row))
        if self.path is not None:
            with open(self.path, "a", newline="") as fh:
                csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore").writerow(self._formatted(row))


def read_metrics(path: str | os.PathLike) -> list[dict[str, float]]:
    with open(path, newline="") as fh:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(fh)]


def plot_loss_curve(rows: Sequence[Mapping[str, float]], png_path: str | os.PathLike, columns: Sequence[str],
                    title: str) -> None:
    """Loss against step, one line per column, log scale when positive."""
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    positive = True
    for col in columns:
        pts = [(r["step"], r[col]) for r in rows if col in r]
        if pts:
            xs, ys = zip(*pts)
            positive &= min(ys) > 0
            ax.plot(xs, ys, label=col)
    if rows and positive:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="loss", title=title)
    ax.grid(True, alpha=0.3)
    if rows:
        ax.legend()
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")


# --------------------------------------------------------------------------- the loop


@contextlib.contextmanager
def run_device(cfg: LoopConfig) -> Iterator[torch.device]:
    """The device a run uses, with its thread count and determinism settings applied."""
    device = choose_device(cfg.device)
    set_threads(cfg.threads)
    with determinism(cfg.deterministic, device):
        yield device


class _Run:
    """The mutable state of one :func:`fit` call: step, optimizer, scaler, log, interval sums."""

    def __init__(self, task: Task, cfg: LoopConfig, plan: RunPlan, out_dir: Path | None, resume: bool):
        self.task, self.cfg, self.plan, self.out_dir = task, cfg, plan, out_dir
        self.optimizer = task.setup(plan)
        self.scaler = torch.amp.GradScaler("cuda", enabled=plan.use_amp and cfg.amp_dtype == "float16")
        self.run_id = run_fingerprint(cfg, task, plan)
        self.step, elapsed, history = 0, 0.0, []
        ckpt = find_resumable(out_dir / "last.pt", self.run_id) if out_dir is not None and resume else None
        if ckpt is not None:
            self._restore(ckpt)
            elapsed, history = float(ckpt.get("elapsed_s", 0.0)), list(ckpt.get("history", []))
            log.info("resuming %s from %s at step %d of %d", task.name, out_dir / "last.pt", self.step,
                     plan.total_steps)
        fields = ("step", "epoch", "lr", *task.metrics, "images_per_s", "elapsed_s")
        self.log = MetricsLog(out_dir / "metrics.csv" if out_dir is not None else None, fields, history)
        self.t_start = time.perf_counter() - elapsed
        self._reset_interval()

    def _restore(self, ckpt: dict[str, Any]) -> None:
        for name, module in self.task.modules().items():
            module.load_state_dict(ckpt["modules"][name])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        self.step = int(ckpt["step"])

    def _reset_interval(self) -> None:
        # running sums stay on the device: reading a loss every step would stall the GPU pipeline
        self.sums = {k: torch.zeros((), device=self.plan.device) for k in self.task.metrics}
        self.count, self.t_interval = 0, time.perf_counter()

    def save_state(self) -> None:
        if self.out_dir is None:
            return
        save_checkpoint({
            "modules": {k: m.state_dict() for k, m in self.task.modules().items()},
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(), "step": self.step,
            "rng": rng_state(), "fingerprint": self.run_id, "history": self.log.rows,
            "elapsed_s": time.perf_counter() - self.t_start,
        }, self.out_dir / "last.pt")

    def train_step(self, batch: Any, epoch: int, lr: float | None) -> None:
        torch.manual_seed(step_seed(self.cfg.seed, self.step))  # dropout masks depend on the step only
        if lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        with autocast(self.plan.device, self.plan.use_amp, self.cfg.amp_dtype):
            losses = self.task.compute(batch, self.plan)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["loss"]).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        self.count += 1
        self.sums = {k: v + losses[k].detach().float() for k, v in self.sums.items()}
        if self.step % self.cfg.log_every == 0 or self.step == self.plan.total_steps:
            self._log_interval(epoch)
        if self.step % self.cfg.checkpoint_every == 0 or self.step == self.plan.total_steps:
            self.save_state()

    def _log_interval(self, epoch: int) -> None:
        now = time.perf_counter()
        row = {k: float(v) / self.count for k, v in self.sums.items()}
        if not all(math.isfinite(v) for v in row.values()):
            raise FloatingPointError(f"{self.task.name}: training loss is not finite "
                                     f"(steps {self.step - self.count + 1}-{self.step}): {row}")
        lr = self.optimizer.param_groups[0]["lr"]
        self.log.append({"step": self.step, "epoch": epoch, "lr": lr, **row,
                         "images_per_s": self.count * self.plan.batch_size / max(now - self.t_interval, 1e-9),
                         "elapsed_s": now - self.t_start})
        self._reset_interval()


def fit(task: Task, dataset: Dataset, cfg: LoopConfig, out_dir: str | os.PathLike | None = None, *,
        resume: bool = True, stop_after_steps: int | None = None) -> FitResult:
    """Train ``task`` on ``dataset`` for ``cfg.epochs`` (or ``cfg.max_steps``) full batches.

    With ``out_dir``: ``last.pt`` every ``checkpoint_every`` steps and at the end,
    ``metrics.csv`` every ``log_every`` steps, resume from a matching ``last.pt``.
    ``stop_after_steps`` stops as a kill would (after that step, no final outputs).
    """
    with run_device(cfg) as device:
        plan = plan_run(cfg, len(dataset), device)
        seed_everything(cfg.seed)
        out = Path(out_dir) if out_dir is not None else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        return _loop(_Run(task, cfg, plan, out, resume), dataset, stop_after_steps)


def _loop(run: _Run, dataset: Dataset, stop_after_steps: int | None) -> FitResult:
    task, cfg, plan = run.task, run.cfg, run.plan
    bar = tqdm(total=plan.total_steps, initial=run.step, desc=task.name, unit="step", mininterval=1.0,
               dynamic_ncols=True)
    try:
        while run.step < plan.total_steps:
            epoch, first_batch = divmod(run.step, plan.steps_per_epoch)
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)
            batches = epoch_batches(len(dataset), plan.batch_size, cfg.seed, epoch)[first_batch:]
            loader = make_loader(dataset, batches[: plan.total_steps - run.step], cfg.num_workers,
                                 plan.device.type == "cuda", cfg.seed + epoch)
            for batch in loader:
                run.train_step(batch, epoch, task.learning_rate(epoch, run.step))
                bar.update(1)
                if stop_after_steps is not None and run.step >= stop_after_steps:
                    log.warning("%s: stopping at step %d as asked (--stop-after-steps)", task.name, run.step)
                    return FitResult(run.step, True, run.log.rows, plan)
    finally:
        bar.close()
    return FitResult(run.step, False, run.log.rows, plan)


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, batches, forward) -> int:
    """Replace BatchNorm running statistics by their exact average over ``batches`` (precise BN).

    With few steps or a fast-moving network the exponential running averages
    lag behind the weights, and an eval-mode network (the frozen motion-content
    net is one) then sees the wrong statistics. ``forward(model, batch)`` runs
    one batch. Returns the number of batches used.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    count = 0
    for batch in batches:
        forward(model, batch)
        count += 1
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)
    return count


def add_training_arguments(p: argparse.ArgumentParser, section: str) -> None:
    """The command-line options the training stages share; ``section`` names their config slice."""
    p.add_argument("--shards", nargs="+", required=True, help="training HDF5 shards")
    p.add_argument("--out", required=True, help="output folder (checkpoint.pt, last.pt, metrics.csv, loss_curve.png)")
    p.add_argument("--config-json", help=f"the {section} config slice: inline JSON or a .json/.yaml file")
    p.add_argument("--max-steps", type=int, help=f"override {section}.max_steps")
    p.add_argument("--threads", type=int, help=f"override {section}.threads (CPU intra-op threads; the rule's threads)")
    p.add_argument("--device", help=f"override {section}.device (auto, cpu, cuda, cuda:1...)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing last.pt")
    p.add_argument("--stop-after-steps", type=int, help=argparse.SUPPRESS)  # tests: behave like a kill


TRAINING_OVERRIDES = ("max_steps", "device", "threads")
