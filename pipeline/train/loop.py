"""What the two training stages share: device, seeding, batch order, checkpoints, logs, plots.

Resume contract: everything a step depends on is either saved in ``last.pt``
(weights, optimizer, AMP scaler, step, RNG states) or a pure function of
(seed, epoch, step) — the batch order, the crops and flips (the dataset seeds
them by (seed, epoch, index)) and the dropout masks (the global generator is
reseeded every step). So a run killed after any checkpoint and resumed ends
with the same weights, bit for bit on the CPU, as a run that was never killed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import hashlib
import json
import logging
import os
import random
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from pipeline.atomic import atomic_path

log = logging.getLogger(__name__)

# Exit code of a run stopped by --stop-after-steps (a stand-in for a kill in tests).
STOPPED_EXIT_CODE = 3


# --------------------------------------------------------------------------- config


def config_from_mapping(cls: type, values: Mapping[str, Any] | None, name: str) -> Any:
    """Build dataclass ``cls`` from a config slice; unknown keys fail naming the key."""
    values = dict(values or {})
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"{name}: unknown key(s) {unknown}; known keys: {sorted(fields)}")
    return cls(**values)


def read_config_arg(text: str | None) -> dict[str, Any]:
    """--config-json value: inline JSON, or a path to a .json / .yaml file."""
    if not text:
        return {}
    stripped = text.strip()
    if stripped.startswith("{"):
        return json.loads(stripped)
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"--config-json: neither JSON nor a file: {text!r}")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(path.read_text()) or {}
    return json.loads(path.read_text())


# Config keys that change how a run goes but not what it computes: a rerun with other
# values (say, more cores from the scheduler) still resumes from last.pt.
NOT_RESULT_RELEVANT = ("threads", "num_workers", "log_every", "checkpoint_every", "device")


def result_relevant(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in NOT_RESULT_RELEVANT}


def fingerprint(obj: Any) -> str:
    """Short stable hash of a JSON-able object (decides whether last.pt belongs to this run)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- device, seeding


def choose_device(requested: str = "auto") -> torch.device:
    """CUDA when present (or asked for), else CPU."""
    if requested in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' asked for but CUDA is not available")
    return device


def step_seed(seed: int, step: int) -> int:
    """Seed for the global generator at a given step (dropout masks)."""
    return (int(seed) * 1_000_003 + int(step) * 7919 + 17) % (2**63 - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def determinism(deterministic: bool, device: torch.device) -> Iterator[None]:
    """Deterministic kernels where PyTorch has them (a warning elsewhere), else cuDNN autotuning.

    The global switches are restored on exit, so a training run inside a
    longer process (tests, notebooks) leaves the process as it found it.
    """
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def autocast(device: torch.device, enabled: bool, dtype: str = "bfloat16") -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA only; the CPU path stays float32 (and deterministic)."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=getattr(torch, dtype))


def make_grad_scaler(device: torch.device, enabled: bool, dtype: str) -> torch.amp.GradScaler:
    """Loss scaling is needed for float16 only (bfloat16 has float32's range)."""
    return torch.amp.GradScaler("cuda", enabled=enabled and device.type == "cuda" and dtype == "float16")


# --------------------------------------------------------------------------- batches


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The shuffled full batches of one epoch (the ragged tail is dropped: BatchNorm wants full batches)."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    order = torch.randperm(n, generator=g).tolist()
    return [order[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def effective_batch_size(n: int, batch_size: int) -> int:
    if n <= 0:
        raise ValueError("the training set is empty")
    if n < batch_size:
        log.warning("training set has %d samples, fewer than batch size %d: using batch %d", n, batch_size, n)
        return n
    return batch_size


def step_decay_lr(base_lr: float, epoch: int, every: int | None, factor: float) -> float:
    """lr · factor^(epoch // every): the paper's 'halved every 10 epochs'."""
    if not every:
        return base_lr
    return base_lr * factor ** (epoch // every)


def make_loader(dataset, batches: Sequence[Sequence[int]], num_workers: int, pin_memory: bool, seed: int):
    """A DataLoader over precomputed batches. Its own generator keeps it off the global RNG."""
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
    )


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


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(obj: Mapping[str, Any], path: str | os.PathLike) -> None:
    """torch.save to a temporary sibling, fsync, then os.replace: never a half-written checkpoint."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(dict(obj), fh)
            fh.flush()
            os.fsync(fh.fileno())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    return torch.load(path, map_location=map_location, weights_only=False)


def find_resumable(path: Path, fingerprint_value: str) -> dict[str, Any] | None:
    """``last.pt`` if it exists and was written by a run with the same config and inputs."""
    if not path.is_file():
        return None
    try:
        ckpt = load_checkpoint(path)
    except Exception as exc:  # a truncated file cannot happen with atomic writes, but be safe
        log.warning("ignoring unreadable %s (%s); starting from scratch", path, exc)
        return None
    if ckpt.get("fingerprint") != fingerprint_value:
        log.warning("%s belongs to a different config or input set; starting from scratch", path)
        return None
    return ckpt


# --------------------------------------------------------------------------- logs and plots


class MetricsLog:
    """A CSV of per-interval metrics, append-only during a run; on resume rows past the step are dropped."""

    def __init__(self, path: str | os.PathLike, fields: Sequence[str], resume_step: int | None = None):
        self.path = Path(path)
        self.fields = list(fields)
        rows: list[dict[str, str]] = []
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(float(r.get("step", 0))) <= resume_step]
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)

    def append(self, row: Mapping[str, Any]) -> None:
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
            )

    def read(self) -> list[dict[str, float]]:
        with open(self.path, newline="") as fh:
            return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(fh)]


def plot_loss_curve(
    csv_path: str | os.PathLike, png_path: str | os.PathLike, columns: Sequence[str], title: str
) -> None:
    """Loss against step, one line per column, log scale when positive."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    positive = True
    for col in columns:
        pts = [(float(r["step"]), float(r[col])) for r in rows if r.get(col) not in ("", None)]
        if pts:
            xs, ys = zip(*pts)
            positive &= min(ys) > 0
            ax.plot(xs, ys, label=col)
    if rows and positive:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if rows:
        ax.legend()
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def progress(total: int, initial: int, desc: str) -> Iterator:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", mininterval=1.0, dynamic_ncols=True)


def add_training_arguments(p: "argparse.ArgumentParser", section: str) -> None:
    """The command-line options both training stages share; ``section`` names their config slice."""
    p.add_argument("--shards", nargs="+", required=True, help="training HDF5 shards")
    p.add_argument("--out", required=True, help="output folder (checkpoint.pt, last.pt, metrics.csv, loss_curve.png)")
    p.add_argument("--config-json", help=f"the {section} config slice: inline JSON or a .json/.yaml file")
    p.add_argument("--max-steps", type=int, help=f"override {section}.max_steps")
    p.add_argument("--threads", type=int, help=f"override {section}.threads (CPU intra-op threads; the rule's threads)")
    p.add_argument("--device", help=f"override {section}.device (auto, cpu, cuda, cuda:1...)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing last.pt")
    p.add_argument("--stop-after-steps", type=int, help=argparse.SUPPRESS)  # tests: behave like a kill


def config_from_args(cls: type, args: "argparse.Namespace", section: str, extra: Sequence[str] = ()) -> Any:
    """The config slice from ``--config-json`` with the command-line overrides applied."""
    values = read_config_arg(args.config_json)
    for key in ("max_steps", "device", "threads", *extra):
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    return config_from_mapping(cls, values, section)


@dataclasses.dataclass
class RunConfig:
    """Fields both training stages share: how a run executes, not what it learns."""

    SECTION = "train"

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


@contextlib.contextmanager
def run_device(cfg: RunConfig) -> Iterator[torch.device]:
    """The device a run uses, with its thread count and determinism settings applied."""
    device = choose_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    with determinism(cfg.deterministic, device):
        yield device


@dataclasses.dataclass
class RunPlan:
    """What follows from a config, the device and the dataset size: precision, layout and step counts."""

    use_amp: bool
    memory_format: torch.memory_format
    batch_size: int
    steps_per_epoch: int
    total_steps: int


def plan_run(cfg: RunConfig, n_samples: int, device: torch.device) -> RunPlan:
    on_cuda = device.type == "cuda"
    batch_size = effective_batch_size(n_samples, cfg.batch_size)
    steps_per_epoch = n_samples // batch_size
    return RunPlan(
        use_amp=cfg.amp and on_cuda,
        memory_format=torch.channels_last if cfg.channels_last and on_cuda else torch.contiguous_format,
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        total_steps=cfg.epochs * steps_per_epoch if cfg.max_steps is None else cfg.max_steps,
    )


def run_fingerprint(cfg: RunConfig, shards: Sequence[str], device: torch.device, total_steps: int,
                    **extra: Any) -> str:
    """Identity of a run for resuming: same result-relevant config, inputs and length."""
    return fingerprint({
        "config": result_relevant(dataclasses.asdict(cfg)) | {"device": device.type},
        "shards": sorted(str(Path(s).resolve()) for s in shards),
        **extra,
        "total_steps": total_steps,
    })
