"""Flow-prediction baselines of Im2Flow's Table 1, fitted on training samples read in batches.

Every baseline has the same calls, so the evaluation treats them like the Im2Flow network:

* ``fit(train: Samples) -> self``: learn from training frames and flows, streamed;
* ``predict(frames (M, h, w, 3) uint8) -> (M, h, w, 2) float32`` raw flow (u, v);
* ``describe()``: what this baseline actually did (e.g. which features the nearest
  neighbour really used); ``random_init_features`` says when a baseline that
  should see ImageNet features ran on random-initialisation ones.

Memory does not grow with the training set: the mean flow is a running mean,
the nearest neighbour keeps a float16 feature index on disk (512 bytes a sample)
and reads the neighbour's flow back from the shards, the codebook classifier
clusters a seeded subset and trains through a DataLoader. All are deterministic:
fixed seeds, private generators.

* :class:`ZeroFlow`: no motion anywhere.
* :class:`MeanFlow`: the per-pixel mean of the training flows.
* :class:`NearestNeighbour`: CNN features of the frame (ResNet-18 cut before the
  classifier), copy the flow of the nearest training frame.
* :class:`CodebookClassifier`: Walker et al.'s idea: a k-means codebook of flow
  vectors, a small CNN classifying each cell of a coarse grid over the codebook,
  the flow being the probability-weighted sum of the codewords, resized to the
  image with (u, v) scaled.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from models.backbones import imagenet_normalise, resize_square, resnet18_trunk
from models.codebook import CellClassifier
from pipeline.encoding import resize_flow
from pipeline.evaluate.samples import Samples
from pipeline.inference import check_frames
from pipeline.runtime import choose_device
from pipeline.train.loop import LoopConfig, RunPlan, Task, fit

log = logging.getLogger(__name__)

INDEX_DIM = 256  # float16 features: 512 bytes a training sample


class Baseline(Protocol):
    name: str
    random_init_features: bool

    def fit(self, train: Samples) -> "Baseline":
        """Learn from the training samples (read in batches)."""

    def predict(self, frames: np.ndarray) -> np.ndarray:
        """(M, h, w, 3) uint8 frames -> (M, h, w, 2) float32 flow."""

    def describe(self) -> str:
        """One line for the results: what this baseline actually did."""


def _nonempty(train: Samples) -> Samples:
    if len(train) == 0:
        raise ValueError("cannot fit a baseline on zero training frames")
    return train


def _frames_to_unit(frames: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 in [0, 1] on ``device``."""
    x = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
    return x.to(device).permute(0, 3, 1, 2).float() / 255.0


# ----------------------------------------------------------------------------- trivial baselines

class ZeroFlow:
    """Predicts no motion: the floor every method must beat on EPE (DS = OS = 0 by definition)."""

    name = "zero"
    random_init_features = False

    def fit(self, train: Samples) -> "ZeroFlow":
        _nonempty(train)
        return self

    def predict(self, frames: np.ndarray) -> np.ndarray:
        return np.zeros(check_frames(frames).shape[:3] + (2,), np.float32)

    def describe(self) -> str:
        return "zero flow"


class MeanFlow:
    """Predicts the per-pixel mean training flow for every frame: the dataset's motion bias
    (camera pans, actors' typical placement) with no look at the image. A running mean."""

    name = "mean"
    random_init_features = False

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size
        self.mean_: np.ndarray | None = None

    def fit(self, train: Samples) -> "MeanFlow":
        total, n = None, 0
        for batch in _nonempty(train).batches(self.batch_size):
            if not np.isfinite(batch.flows).all():
                raise ValueError("training flows contain NaN or Inf")
            part = batch.flows.sum(axis=0, dtype=np.float64)
            total = part if total is None else total + part
            n += len(batch.flows)
        self.mean_ = (total / n).astype(np.float32)
        return self

    def predict(self, frames: np.ndarray) -> np.ndarray:
        frames = check_frames(frames)
        if self.mean_ is None:
            raise RuntimeError("MeanFlow.predict called before fit")
        mean = resize_flow(self.mean_, frames.shape[1:3])
        return np.broadcast_to(mean, frames.shape[:3] + (2,)).astype(np.float32)

    def describe(self) -> str:
        return "mean training flow (per pixel)"


# ----------------------------------------------------------------------------- nearest neighbour

class FeatureIndex:
    """L2-normalised float16 feature rows in a file, searched in chunks (bounded memory).

    Features wider than :data:`INDEX_DIM` are projected to it by a fixed, seeded
    orthonormal projection (cosine similarities approximately preserved).
    """

    def __init__(self, folder: str | os.PathLike | None = None, seed: int = 0, chunk_rows: int = 32768):
        self._tmp = tempfile.TemporaryDirectory(prefix="im2flow-nn-", dir=folder)
        self.path = Path(self._tmp.name) / "features.f16"
        self.seed, self.chunk_rows, self.dim, self.rows = seed, chunk_rows, None, 0
        self._projection: np.ndarray | None = None

    def _project(self, feats: np.ndarray) -> np.ndarray:
        feats = np.asarray(feats, np.float32)
        if feats.shape[1] > INDEX_DIM:
            if self._projection is None:
                gauss = np.random.default_rng(self.seed).normal(size=(feats.shape[1], INDEX_DIM))
                self._projection = np.linalg.qr(gauss)[0].astype(np.float32)
            feats = feats @ self._projection
        return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)

    def add(self, feats: np.ndarray) -> None:
        rows = self._project(feats).astype(np.float16)
        self.dim = rows.shape[1]
        with open(self.path, "ab") as fh:
            fh.write(rows.tobytes())
        self.rows += len(rows)

    def search(self, feats: np.ndarray) -> np.ndarray:
        """(M, D) query features -> (M,) row of the most similar indexed feature (first on ties)."""
        query = self._project(feats)
        best = np.full(len(query), -np.inf, np.float32)
        where = np.zeros(len(query), np.int64)
        with open(self.path, "rb") as fh:
            for start in range(0, self.rows, self.chunk_rows):
                n = min(self.chunk_rows, self.rows - start)
                chunk = np.fromfile(fh, np.float16, count=n * self.dim).reshape(n, self.dim).astype(np.float32)
                sims = query @ chunk.T
                arg = sims.argmax(axis=1)
                top = sims[np.arange(len(query)), arg]
                better = top > best
                best[better], where[better] = top[better], start + arg[better]
        return where

    def close(self) -> None:
        self._tmp.cleanup()


def histogram_features(frames: np.ndarray, bins: int = 8, orientations: int = 8, grid: int = 2) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, D) float32 colour + gradient-orientation histograms.

    Used when a CNN is unwanted: a joint RGB histogram (bins³) plus, on a
    grid×grid layout, magnitude-weighted gradient-orientation histograms, so
    that a shape's pointing direction (which drives the demo's motion) shows.
    """
    return np.asarray([_histogram(frame, bins, orientations, grid) for frame in check_frames(frames)], np.float32)


def _histogram(frame: np.ndarray, bins: int, orientations: int, grid: int) -> np.ndarray:
    colour = cv2.calcHist([frame], [0, 1, 2], None, [bins] * 3, [0, 256] * 3).ravel()
    colour /= max(colour.sum(), 1.0)
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    mag, ang = np.hypot(gx, gy), np.arctan2(gy, gx)
    idx = np.clip(((ang + np.pi) / (2 * np.pi) * orientations).astype(int), 0, orientations - 1)
    h, w = grey.shape
    parts = []
    for gy_i in range(grid):
        for gx_i in range(grid):
            sl = (slice(gy_i * h // grid, (gy_i + 1) * h // grid), slice(gx_i * w // grid, (gx_i + 1) * w // grid))
            parts.append(np.bincount(idx[sl].ravel(), weights=mag[sl].ravel(), minlength=orientations))
    grad = np.concatenate(parts)
    return np.concatenate([colour, grad / max(float(grad.sum()), 1e-6)])


class NearestNeighbour:
    """Copies the flow of the training frame whose appearance features are nearest (largest cosine).

    ``features``: "resnet18" (``weights`` in :func:`models.backbones.resolve_pretrained`'s
    vocabulary; :meth:`describe` says when random-init features were used) or
    "histogram" (colour + gradient histograms, no network). ``input_size`` resizes
    frames to a square for the CNN; None feeds them at their own size (the ResNet
    pools globally). Ties go to the lowest training position.
    """

    name = "nearest_neighbour"

    def __init__(self, features: str = "resnet18", weights: str | None = "imagenet", input_size: int | None = None,
                 batch_size: int = 64, seed: int = 0, device: str = "auto", index_dir: str | None = None) -> None:
        if features not in ("resnet18", "histogram"):
            raise ValueError(f"unknown nearest-neighbour features {features!r}; use 'resnet18' or 'histogram'")
        self.features, self.weights, self.input_size = features, weights, input_size
        self.batch_size, self.seed, self.device, self.index_dir = batch_size, seed, choose_device(device), index_dir
        self._model = None
        self._source = "colour + gradient histograms" if features == "histogram" else ""
        self.random_init_features = False
        self.index_: FeatureIndex | None = None
        self.train_: Samples | None = None

    def _embed(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, D) float32 features."""
        if self.features == "histogram":
            return histogram_features(frames)
        if self._model is None:
            model, self._source = resnet18_trunk(self.weights, self.seed)
            self._model = model.to(self.device)
            self.random_init_features = "random initialisation" in self._source
        with torch.inference_mode():
            x = resize_square(_frames_to_unit(frames, self.device), self.input_size, antialias=True)
            return self._model(imagenet_normalise(x)).float().cpu().numpy()

    def fit(self, train: Samples) -> "NearestNeighbour":
        self.index_, self.train_ = FeatureIndex(self.index_dir, self.seed), _nonempty(train)
        for batch in train.batches(self.batch_size):
            self.index_.add(self._embed(batch.frames))
        log.info("nearest neighbour: %d training frames indexed (%s)", self.index_.rows, self._source)
        return self

    def neighbours(self, frames: np.ndarray) -> np.ndarray:
        """(M, H, W, 3) uint8 -> (M,) position of each frame's nearest training frame."""
        frames = check_frames(frames)
        if self.index_ is None:
            raise RuntimeError("NearestNeighbour used before fit")
        return self.index_.search(self._embed(frames)) if len(frames) else np.zeros(0, np.int64)

    def predict(self, frames: np.ndarray) -> np.ndarray:
        frames = check_frames(frames)
        _, flows = self.train_.read(self.neighbours(frames))
        return np.stack([resize_flow(f, frames.shape[1:3]) for f in flows]) if len(frames) \
            else np.zeros(frames.shape[:3] + (2,), np.float32)

    def describe(self) -> str:
        return f"nearest neighbour on {self._source or 'ResNet-18 features (not fitted yet)'}"


# ----------------------------------------------------------------------------- Walker-style codebook

def kmeans(points: np.ndarray, k: int, iterations: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic k-means (k-means++ seeding, Lloyd iterations) on (P, D) points.

    Returns (centres (k', D) float32, labels (P,) int64) with k' = min(k, number
    of distinct points). An emptied cluster is re-seeded at the point farthest
    from its centre, so the codebook keeps k' distinct entries.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or len(points) == 0:
        raise ValueError(f"k-means needs (P, D) points with P > 0, got {points.shape}")
    k = int(min(k, len(np.unique(points, axis=0))))
    centres = _kmeans_plus_plus(points, k, np.random.default_rng(seed))
    labels = np.full(len(points), -1, np.int64)
    for _ in range(iterations + 1):
        dist = _sq_dist(points, centres)
        new_labels = np.argmin(dist, axis=1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        best = dist[np.arange(len(points)), labels]
        for c in range(k):
            members = labels == c
            if members.any():
                centres[c] = points[members].mean(axis=0)
            else:
                far = int(np.argmax(best))
                centres[c], best[far] = points[far], 0.0
    else:
        labels = np.argmin(_sq_dist(points, centres), axis=1)
    return centres.astype(np.float32), labels


def _kmeans_plus_plus(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centres = np.empty((k, points.shape[1]))
    centres[0] = points[rng.integers(len(points))]
    d2 = np.sum((points - centres[0]) ** 2, axis=1)
    for c in range(1, k):
        total = d2.sum()
        j = int(rng.choice(len(points), p=d2 / total)) if total > 0 else int(np.argmax(d2))
        centres[c] = points[j]
        d2 = np.minimum(d2, np.sum((points - centres[c]) ** 2, axis=1))
    return centres


def _sq_dist(points: np.ndarray, centres: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """(P, D), (k, D) -> (P, k) squared distances, in chunks to bound the temporaries."""
    out = np.empty((len(points), len(centres)))
    for s in range(0, len(points), chunk):
        out[s:s + chunk] = ((points[s:s + chunk, None, :] - centres[None]) ** 2).sum(-1)
    return out


def cell_flows(flows: np.ndarray | torch.Tensor, grid: int) -> torch.Tensor:
    """(N, H, W, 2) flow -> (N, grid, grid, 2) cell-averaged flow in grid-pixel units.

    Area averaging (adaptive average pooling; bilinear sampling would alias at
    this reduction) with (u, v) scaled by grid/W and grid/H, so that
    ``resize_flow(cell, (H, W))`` brings it back to image pixels.
    """
    flows = torch.as_tensor(flows, dtype=torch.float32)
    h, w = flows.shape[1:3]
    cells = F.adaptive_avg_pool2d(flows.permute(0, 3, 1, 2), grid).permute(0, 2, 3, 1)
    return cells * torch.tensor([grid / w, grid / h], device=cells.device)


class _CodebookTask(Task):
    """Per-cell cross-entropy of the cell classifier against each cell's nearest codeword."""

    name = "codebook CNN"

    def __init__(self, baseline: "CodebookClassifier"):
        self.baseline = baseline

    def setup(self, plan: RunPlan) -> torch.optim.Optimizer:
        b = self.baseline
        self.model = CellClassifier(len(b.codebook_), b.grid, b.width).to(plan.device).train()
        self.codebook = torch.from_numpy(b.codebook_).to(plan.device)
        return torch.optim.Adam(self.model.parameters(), lr=b.lr)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def compute(self, batch: dict, plan: RunPlan) -> dict[str, torch.Tensor]:
        cells = cell_flows(batch["flow"].to(plan.device), self.baseline.grid)  # (B, g, g, 2)
        targets = ((cells[..., None, :] - self.codebook) ** 2).sum(-1).argmin(-1)  # (B, g, g)
        logits = self.model(self.baseline.inputs(batch["frame"], plan.device))
        return {"loss": F.cross_entropy(logits, targets)}


class CodebookClassifier:
    """Walker et al.-style flow prediction: per grid cell, a softmax over a k-means codebook.

    fit: k-means the cell-averaged flow vectors of a seeded subset of at most
    ``kmeans_samples`` training samples into ``n_codewords`` centres, then train
    the small CNN (:class:`models.codebook.CellClassifier`) through the shared
    training loop with per-cell cross-entropy against each cell's nearest centre.
    predict: softmax probabilities × codebook (soft expectation), resized to the
    frame with (u, v) scaled. Frames are resized to ``input_size`` for the CNN.
    """

    name = "codebook"
    random_init_features = False

    def __init__(self, n_codewords: int = 40, grid: int = 8, input_size: int = 64, epochs: int = 30,
                 batch_size: int = 32, lr: float = 2e-3, width: int = 32, kmeans_samples: int = 20000, seed: int = 0,
                 device: str = "auto") -> None:
        self.n_codewords, self.grid, self.input_size, self.epochs = n_codewords, grid, input_size, epochs
        self.batch_size, self.lr, self.width, self.kmeans_samples = batch_size, lr, width, kmeans_samples
        self.seed, self.device = seed, device
        self.codebook_: np.ndarray | None = None
        self.model_: CellClassifier | None = None
        self.train_loss_: list[float] = []

    def inputs(self, frames: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> the CNN's (B, 3, S, S) ImageNet-normalised input."""
        return imagenet_normalise(resize_square(_frames_to_unit(frames, device), self.input_size, antialias=True))

    def _fit_codebook(self, train: Samples) -> None:
        n = min(len(train), self.kmeans_samples)
        positions = np.sort(np.random.default_rng(self.seed).choice(len(train), size=n, replace=False))
        points = [cell_flows(train.read(positions[s:s + 32])[1], self.grid).reshape(-1, 2).numpy()
                  for s in range(0, n, 32)]
        self.codebook_, _ = kmeans(np.concatenate(points), self.n_codewords, seed=self.seed)
        if len(self.codebook_) < self.n_codewords:
            log.info("codebook: only %d distinct cell flows, using %d codewords", *[len(self.codebook_)] * 2)

    def fit(self, train: Samples) -> "CodebookClassifier":
        self._fit_codebook(_nonempty(train))
        cfg = LoopConfig(batch_size=self.batch_size, epochs=self.epochs, seed=self.seed, num_workers=0,
                         log_every=max(1, math.ceil(len(train) / self.batch_size)), checkpoint_every=10**9,
                         device=self.device)
        task = _CodebookTask(self)
        result = fit(task, train.torch_dataset(), cfg)
        self.model_ = task.model.eval()
        self.train_loss_ = [row["loss"] for row in result.history]
        log.info("codebook: %d codewords, %dx%d grid, final training loss %.3f", len(self.codebook_), self.grid,
                 self.grid, self.train_loss_[-1] if self.train_loss_ else float("nan"))
        return self

    def predict_cells(self, frames: np.ndarray) -> np.ndarray:
        """(M, H, W, 3) uint8 -> (M, grid, grid, 2) expected cell flow in grid-pixel units."""
        frames = check_frames(frames)
        if self.model_ is None:
            raise RuntimeError("CodebookClassifier.predict called before fit")
        device = next(self.model_.parameters()).device
        codebook = torch.from_numpy(self.codebook_).to(device)
        with torch.inference_mode():
            probs = torch.softmax(self.model_(self.inputs(frames, device)), dim=1) if len(frames) else None
        if probs is None:
            return np.zeros((0, self.grid, self.grid, 2), np.float32)
        return torch.einsum("bkhw,kc->bhwc", probs, codebook).cpu().numpy().astype(np.float32)

    def predict(self, frames: np.ndarray) -> np.ndarray:
        frames = check_frames(frames)
        cells = self.predict_cells(frames)
        return np.stack([resize_flow(c, frames.shape[1:3]) for c in cells]) if len(cells) \
            else np.zeros(frames.shape[:3] + (2,), np.float32)

    def describe(self) -> str:
        k = len(self.codebook_) if self.codebook_ is not None else self.n_codewords
        return (f"Walker-style codebook classifier ({k} k-means flow codewords, {self.grid}x{self.grid} cells, "
                f"small CNN on {self.input_size}px input, {self.epochs} epochs)")


# ----------------------------------------------------------------------------- registry

BASELINES: dict[str, Callable[..., Baseline]] = {
    "zero": ZeroFlow,
    "mean": MeanFlow,
    "nearest_neighbour": NearestNeighbour,
    "codebook": CodebookClassifier,
}


def make_baseline(name: str, **params: Any) -> Baseline:
    """Build the baseline registered under ``name`` with its parameters."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {sorted(BASELINES)}")
    return BASELINES[name](**params)
