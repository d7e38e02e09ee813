"""Flow-prediction baselines of Im2Flow's Table 1, fitted on training (frames, flows).

Every baseline has the same two calls, so the evaluation treats them like the
Im2Flow network:

* ``fit(frames (N, H, W, 3) uint8 RGB, flows (N, H, W, 2) float32) -> self``
* ``predict(frames (M, h, w, 3) uint8) -> (M, h, w, 2) float32`` raw flow (u, v)

and a ``describe()`` string that the results print (e.g. which features the
nearest neighbour really used). All are deterministic: fixed seeds, private
random generators, no global RNG state touched.

* :class:`ZeroFlow`: no motion anywhere.
* :class:`MeanFlow`: the per-pixel mean of the training flows.
* :class:`NearestNeighbour`: CNN features of the frame (ResNet-18 cut before
  the classifier; ImageNet weights when found on disk, else a stated fallback),
  copy the flow of the nearest training frame.
* :class:`CodebookClassifier`: Walker et al.'s idea at demo scale: a k-means
  codebook of 40 flow vectors, a small CNN classifying each cell of a coarse
  grid over the codebook, the flow being the probability-weighted sum of the
  codewords, resized to the image with (u, v) scaled.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from pipeline.encoding import resize_flow

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Baseline(Protocol):
    name: str

    def fit(self, frames: np.ndarray, flows: np.ndarray) -> "Baseline":
        """Learn from (N, H, W, 3) uint8 frames and their (N, H, W, 2) flows."""

    def predict(self, frames: np.ndarray) -> np.ndarray:
        """(M, h, w, 3) uint8 frames -> (M, h, w, 2) float32 flow."""

    def describe(self) -> str:
        """One line for the results: what this baseline actually did."""


# ----------------------------------------------------------------------------- checks and helpers

def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (N, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
    return frames


def _check_training(frames: np.ndarray, flows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    frames = _check_frames(frames)
    flows = np.asarray(flows, dtype=np.float32)
    if flows.shape != frames.shape[:3] + (2,):
        raise ValueError(f"flows must be {frames.shape[:3] + (2,)} to match the frames, got {flows.shape}")
    if frames.shape[0] == 0:
        raise ValueError("cannot fit a baseline on zero training frames")
    if not np.isfinite(flows).all():
        raise ValueError("training flows contain NaN or Inf")
    return frames, flows


def _to_size(flow: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 2) flow at another size, (u, v) rescaled (no-op when sizes agree)."""
    if flow.shape[:2] == tuple(size_hw):
        return np.array(flow, dtype=np.float32, copy=True)
    return resize_flow(flow, size_hw)


# ----------------------------------------------------------------------------- trivial baselines

class ZeroFlow:
    """Predicts no motion: the floor every method must beat on EPE (DS = OS = 0 by definition)."""

    name = "zero"

    def fit(self, frames: np.ndarray, flows: np.ndarray) -> "ZeroFlow":
        _check_training(frames, flows)
        return self

    def predict(self, frames: np.ndarray) -> np.ndarray:
        frames = _check_frames(frames)
        return np.zeros(frames.shape[:3] + (2,), np.float32)

    def describe(self) -> str:
        return "zero flow"


class MeanFlow:
    """Predicts the per-pixel mean training flow for every frame: the dataset's motion bias
    (camera pans, actors' typical placement) with no look at the image."""

    name = "mean"

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None

    def fit(self, frames: np.ndarray, flows: np.ndarray) -> "MeanFlow":
        _, flows = _check_training(frames, flows)
        self.mean_ = flows.astype(np.float64).mean(axis=0).astype(np.float32)
        return self

    def predict(self, frames: np.ndarray) -> np.ndarray:
        frames = _check_frames(frames)
        if self.mean_ is None:
            raise RuntimeError("MeanFlow.predict called before fit")
        mean = _to_size(self.mean_, frames.shape[1:3])
        return np.broadcast_to(mean, frames.shape[:3] + (2,)).astype(np.float32)

    def describe(self) -> str:
        return "mean training flow (per pixel)"


# ----------------------------------------------------------------------------- nearest neighbour

def resnet18_weights_path() -> Path:
    """Where torchvision's weights API caches ResNet-18's ImageNet weights (checked, never downloaded)."""
    import torch
    from torchvision.models import ResNet18_Weights

    filename = os.path.basename(ResNet18_Weights.IMAGENET1K_V1.url)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def load_resnet18_trunk(weights: str | os.PathLike | None = "auto", seed: int = 0) -> tuple[Any, str]:
    """ResNet-18 cut before the classifier (global-average-pooled 512-d output), in eval mode.

    ``weights``: "auto" looks for the ImageNet weights in torchvision's cache
    (offline: nothing is downloaded); a path loads that state dict; None means
    random initialisation with ``seed``. Returns (module, description); with
    "auto" and no weights on disk the description says random init was used.
    """
    import torch
    from torchvision.models import resnet18

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = resnet18(weights=None)
    source = f"random init (seed {seed})"
    path: Path | None = None
    if weights == "auto":
        candidate = resnet18_weights_path()
        if candidate.is_file():
            path = candidate
        else:
            log.warning("ImageNet ResNet-18 weights not found at %s: using random-init features", candidate)
    elif weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"ResNet-18 weights file not found: {path}")
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        source = f"ImageNet weights from {path}"
    model.fc = torch.nn.Identity()
    model.eval()
    return model, f"ResNet-18 features ({source})"


def histogram_features(frames: np.ndarray, bins: int = 8, orientations: int = 8, grid: int = 2) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, D) float32 colour + gradient-orientation histograms.

    Used when a CNN is unwanted: a joint RGB histogram (bins³) plus, on a
    grid×grid layout, magnitude-weighted gradient-orientation histograms, so
    that a shape's pointing direction (which drives the demo's motion) shows.
    """
    import cv2

    frames = _check_frames(frames)
    feats = []
    for frame in frames:
        colour = cv2.calcHist([frame], [0, 1, 2], None, [bins] * 3, [0, 256] * 3).ravel()
        colour /= max(colour.sum(), 1.0)
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
        gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
        mag = np.hypot(gx, gy)
        ang = np.arctan2(gy, gx)
        idx = np.clip(((ang + np.pi) / (2 * np.pi) * orientations).astype(int), 0, orientations - 1)
        h, w = grey.shape
        parts = []
        for gy_i in range(grid):
            for gx_i in range(grid):
                sl = (slice(gy_i * h // grid, (gy_i + 1) * h // grid), slice(gx_i * w // grid, (gx_i + 1) * w // grid))
                parts.append(np.bincount(idx[sl].ravel(), weights=mag[sl].ravel(), minlength=orientations))
        grad = np.concatenate(parts)
        grad /= max(float(grad.sum()), 1e-6)
        feats.append(np.concatenate([colour, grad]))
    return np.asarray(feats, dtype=np.float32)


class NearestNeighbour:
    """Copies the flow of the training frame whose appearance features are nearest.

    ``features``: "resnet18" (ImageNet weights when ``weights`` finds them,
    else random-init; :meth:`describe` says which) or "histogram" (colour +
    gradient histograms, no network). Features are L2-normalised, so nearest
    means largest cosine similarity; ties go to the lowest training index.
    ``input_size`` resizes frames to a square for the CNN; None (default) feeds
    them at their own size (the ResNet pools globally, and upsampling 64 px
    demo frames to 224 costs ten times the time for nothing).
    """

    name = "nearest_neighbour"

    def __init__(
        self,
        features: str = "resnet18",
        weights: str | os.PathLike | None = "auto",
        input_size: int | None = None,
        batch_size: int = 32,
        seed: int = 0,
    ) -> None:
        if features not in ("resnet18", "histogram"):
            raise ValueError(f"unknown nearest-neighbour features {features!r}; use 'resnet18' or 'histogram'")
        self.features = features
        self.weights = weights
        self.input_size = input_size
        self.batch_size = batch_size
        self.seed = seed
        self._model = None
        self._feature_source = "colour + gradient histograms" if features == "histogram" else ""
        self.train_features_: np.ndarray | None = None
        self.train_flows_: np.ndarray | None = None

    def _embed(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, D) float64 L2-normalised features (float64 so that
        a duplicate frame's cosine of 1 is not lost to rounding among near-ties)."""
        if self.features == "histogram":
            feats = histogram_features(frames)
        else:
            feats = self._cnn_features(frames)
        feats = feats.astype(np.float64)
        norms = np.linalg.norm(feats, axis=1, keepdims=True)
        return feats / np.maximum(norms, 1e-12)

    def _cnn_features(self, frames: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        if self._model is None:
            self._model, self._feature_source = load_resnet18_trunk(self.weights, self.seed)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        out = []
        with torch.inference_mode():
            for start in range(0, len(frames), self.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(frames[start:start + self.batch_size]))
                x = batch.permute(0, 3, 1, 2).float() / 255.0
                if self.input_size is not None and x.shape[-2:] != (self.input_size, self.input_size):
                    x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                      align_corners=False, antialias=True)
                out.append(self._model((x - mean) / std).numpy())
        return np.concatenate(out).astype(np.float32)

    def fit(self, frames: np.ndarray, flows: np.ndarray) -> "NearestNeighbour":
        frames, flows = _check_training(frames, flows)
        self.train_features_ = self._embed(frames)
        self.train_flows_ = flows.copy()
        log.info("nearest neighbour: %d training frames, %s", len(frames), self._feature_source)
        return self

    def neighbours(self, frames: np.ndarray) -> np.ndarray:
        """(M, H, W, 3) uint8 -> (M,) int index of each frame's nearest training frame."""
        frames = _check_frames(frames)
        if self.train_features_ is None:
            raise RuntimeError("NearestNeighbour used before fit")
        if len(frames) == 0:
            return np.zeros(0, np.int64)
        query = self._embed(frames)
        # squared distance between unit vectors = 2 - 2 cos; argmax of cos, first index on ties
        return np.argmax(query @ self.train_features_.T, axis=1)

    def predict(self, frames: np.ndarray) -> np.ndarray:
        frames = _check_frames(frames)
        idx = self.neighbours(frames)
        size = frames.shape[1:3]
        out = np.empty(frames.shape[:3] + (2,), np.float32)
        for i, j in enumerate(idx):
            out[i] = _to_size(self.train_flows_[j], size)
        return out

    def describe(self) -> str:
        return f"nearest neighbour on {self._feature_source or 'ResNet-18 features (not fitted yet)'}"


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
    rng = np.random.default_rng(seed)
    centres = np.empty((k, points.shape[1]))
    centres[0] = points[rng.integers(len(points))]
    d2 = np.sum((points - centres[0]) ** 2, axis=1)
    for c in range(1, k):
        total = d2.sum()
        j = int(rng.choice(len(points), p=d2 / total)) if total > 0 else int(np.argmax(d2))
        centres[c] = points[j]
        d2 = np.minimum(d2, np.sum((points - centres[c]) ** 2, axis=1))
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
                centres[c] = points[far]
                best[far] = 0.0
    else:
        labels = np.argmin(_sq_dist(points, centres), axis=1)
    return centres.astype(np.float32), labels


def _sq_dist(points: np.ndarray, centres: np.ndarray, chunk: int = 100_000) -> np.ndarray:
    """(P, D), (k, D) -> (P, k) squared distances, in chunks to bound memory."""
    out = np.empty((len(points), len(centres)))
    for s in range(0, len(points), chunk):
        out[s:s + chunk] = ((points[s:s + chunk, None, :] - centres[None]) ** 2).sum(-1)
    return out


def cell_flows(flows: np.ndarray, grid: int) -> np.ndarray:
    """(N, H, W, 2) flow -> (N, grid, grid, 2) cell-averaged flow in grid-pixel units.

    Area averaging (not the bilinear sampling of ``encoding.resize_flow``, which
    would alias at this reduction) with (u, v) scaled by grid/W and grid/H, so
    that ``resize_flow(cell, (H, W))`` brings it back to image pixels.
    """
    import cv2

    flows = np.asarray(flows, dtype=np.float32)
    n, h, w = flows.shape[:3]
    out = np.empty((n, grid, grid, 2), np.float32)
    for i in range(n):
        out[i] = cv2.resize(flows[i], (grid, grid), interpolation=cv2.INTER_AREA)
    out[..., 0] *= grid / w
    out[..., 1] *= grid / h
    return out


def _make_cell_classifier(n_classes: int, grid: int, width: int = 32):
    """Small fully convolutional net: (B, 3, S, S) -> (B, n_classes, grid, grid) logits.

    Three stride-2 conv blocks, a dilated block for context, pooling to the grid,
    then per-cell 1×1 layers that also see a broadcast global feature and the
    cell's coordinates (a cell's motion can depend on where it sits relative to
    the object, which a purely local classifier cannot know).
    """
    import torch
    from torch import nn

    def block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    class CellClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.trunk = nn.Sequential(block(5, width, 2), block(width, 2 * width, 2), block(2 * width, 2 * width, 2),
                                       block(2 * width, 2 * width, dilation=2))
            self.pool = nn.AdaptiveAvgPool2d(grid)
            self.head = nn.Sequential(nn.Conv2d(4 * width + 2, 2 * width, 1), nn.ReLU(inplace=True),
                                      nn.Conv2d(2 * width, n_classes, 1))

        @staticmethod
        def coords(b: int, h: int, w: int, like: "torch.Tensor") -> "torch.Tensor":
            ys = torch.linspace(-1, 1, h, dtype=like.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
            xs = torch.linspace(-1, 1, w, dtype=like.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
            return torch.cat([xs, ys], dim=1)

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            b, _, h, w = x.shape
            f = self.pool(self.trunk(torch.cat([x, self.coords(b, h, w, x)], dim=1)))
            g = f.mean(dim=(2, 3), keepdim=True).expand_as(f)
            return self.head(torch.cat([f, g, self.coords(b, grid, grid, f)], dim=1))

    return CellClassifier()


class CodebookClassifier:
    """Walker et al.-style flow prediction: per grid cell, a softmax over a k-means codebook.

    fit: cell-average the training flows on a grid×grid layout, k-means their
    vectors into ``n_codewords`` centres, label each cell with its nearest
    centre, train the small CNN with per-cell cross-entropy (Adam). predict:
    softmax probabilities × codebook (soft expectation), then resized to the
    frame with (u, v) scaled. Frames are resized to ``input_size`` for the CNN.
    """

    name = "codebook"

    def __init__(
        self,
        n_codewords: int = 40,
        grid: int = 8,
        input_size: int = 64,
        epochs: int = 30,
        batch_size: int = 32,
        lr: float = 2e-3,
        width: int = 32,
        seed: int = 0,
    ) -> None:
        self.n_codewords = n_codewords
        self.grid = grid
        self.input_size = input_size
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.width = width
        self.seed = seed
        self.codebook_: np.ndarray | None = None
        self.model_ = None
        self.train_loss_: list[float] = []

    def _inputs(self, frames: np.ndarray):
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=True)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return (x - mean) / std

    def fit(self, frames: np.ndarray, flows: np.ndarray) -> "CodebookClassifier":
        import torch
        import torch.nn.functional as F

        frames, flows = _check_training(frames, flows)
        cells = cell_flows(flows, self.grid)  # (N, g, g, 2) grid-pixel units
        self.codebook_, labels = kmeans(cells.reshape(-1, 2), self.n_codewords, seed=self.seed)
        k = len(self.codebook_)
        if k < self.n_codewords:
            log.info("codebook: only %d distinct cell flows, using %d codewords", k, k)
        targets = torch.from_numpy(labels.reshape(cells.shape[:3]))
        x_all = self._inputs(frames)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = _make_cell_classifier(k, self.grid, self.width)
            optimiser = torch.optim.Adam(model.parameters(), lr=self.lr)
            gen = torch.Generator().manual_seed(self.seed)
            n = len(frames)
            model.train()
            self.train_loss_ = []
            for _ in range(self.epochs):
                order = torch.randperm(n, generator=gen)
                total = 0.0
                for start in range(0, n, self.batch_size):
                    idx = order[start:start + self.batch_size]
                    if len(idx) < 2 and n >= 2:  # BatchNorm needs more than one sample
                        continue
                    logits = model(x_all[idx])
                    loss = F.cross_entropy(logits, targets[idx])
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                    total += float(loss.detach()) * len(idx)
                self.train_loss_.append(total / n)
        model.eval()
        self.model_ = model
        log.info("codebook: %d codewords, %dx%d grid, final training loss %.3f", k, self.grid, self.grid,
                 self.train_loss_[-1] if self.train_loss_ else float("nan"))
        return self

    def predict_cells(self, frames: np.ndarray) -> np.ndarray:
        """(M, H, W, 3) uint8 -> (M, grid, grid, 2) expected cell flow in grid-pixel units."""
        import torch

        frames = _check_frames(frames)
        if self.model_ is None:
            raise RuntimeError("CodebookClassifier.predict called before fit")
        codebook = torch.from_numpy(self.codebook_)
        out = []
        with torch.inference_mode():
            for start in range(0, len(frames), self.batch_size):
                probs = torch.softmax(self.model_(self._inputs(frames[start:start + self.batch_size])), dim=1)
                out.append(torch.einsum("bkhw,kc->bhwc", probs, codebook).numpy())
        if not out:
            return np.zeros((0, self.grid, self.grid, 2), np.float32)
        return np.concatenate(out).astype(np.float32)

    def predict(self, frames: np.ndarray) -> np.ndarray:
        frames = _check_frames(frames)
        cells = self.predict_cells(frames)
        size = frames.shape[1:3]
        return np.stack([resize_flow(c, size) for c in cells]) if len(cells) else np.zeros(frames.shape[:3] + (2,), np.float32)

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


def run_baselines(
    train_frames: np.ndarray,
    train_flows: np.ndarray,
    test_frames: np.ndarray,
    names: tuple[str, ...] = ("zero", "mean", "nearest_neighbour", "codebook"),
    params: dict[str, dict[str, Any]] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Fit each named baseline on the training set and predict the test frames.

    Returns (name -> (M, H, W, 2) predictions, name -> describe() line), ready
    for ``metrics.evaluate_predictions`` and for the report's provenance.
    """
    params = params or {}
    predictions: dict[str, np.ndarray] = {}
    descriptions: dict[str, str] = {}
    for name in names:
        baseline = make_baseline(name, **params.get(name, {}))
        baseline.fit(train_frames, train_flows)
        predictions[name] = baseline.predict(test_frames)
        descriptions[name] = baseline.describe()
        log.info("baseline %s: %s", name, descriptions[name])
    return predictions, descriptions
