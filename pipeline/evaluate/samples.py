"""Evaluation data read in batches, never a whole split at once.

At UCF-101 scale a split is 2×10⁵ (test) to 5×10⁵ (train) samples of 256²:
hundreds of GiB as float arrays. The evaluation and the baselines therefore
see their data through :class:`Samples`: a (possibly seeded-subset) list of
sample positions that is read in batches of raw frames and flows, read at
chosen positions (a neighbour's flow), or served to a DataLoader.
:class:`ShardSamples` reads HDF5 shards; :class:`ArraySamples` wraps arrays
already in memory (tests, small still-image sets).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.data.dataset import ShardDataset
from pipeline.encoding import decode


@dataclass
class SampleBatch:
    """Consecutive samples: their positions in the :class:`Samples`, frames and raw flows."""

    positions: np.ndarray  # (B,) int64
    frames: np.ndarray  # (B, H, W, 3) uint8 RGB
    flows: np.ndarray  # (B, H, W, 2) float32 (u, v) px


class Samples(abc.ABC):
    """Frames with their true flow, read in batches."""

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def read(self, positions: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(frames (B, H, W, 3) uint8, flows (B, H, W, 2) float32) at ``positions``."""

    def batches(self, batch_size: int = 64) -> Iterator[SampleBatch]:
        """Every sample once, in order, ``batch_size`` at a time."""
        for start in range(0, len(self), batch_size):
            positions = np.arange(start, min(start + batch_size, len(self)), dtype=np.int64)
            frames, flows = self.read(positions)
            yield SampleBatch(positions, frames, flows)

    def torch_dataset(self) -> Dataset:
        """A Dataset of ``{"frame": (H, W, 3) uint8, "flow": (H, W, 2) float32}`` for a DataLoader."""
        return _SamplesDataset(self)


class _SamplesDataset(Dataset):
    def __init__(self, samples: Samples):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        frames, flows = self.samples.read([i])
        return {"frame": torch.from_numpy(frames[0]), "flow": torch.from_numpy(flows[0])}


class ArraySamples(Samples):
    """Samples held in memory (small sets and tests)."""

    def __init__(self, frames: np.ndarray, flows: np.ndarray):
        frames, flows = np.asarray(frames), np.asarray(flows, dtype=np.float32)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (N, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
        if flows.shape != frames.shape[:3] + (2,):
            raise ValueError(f"flows must be {frames.shape[:3] + (2,)} to match the frames, got {flows.shape}")
        self.frames, self.flows = frames, flows

    def __len__(self) -> int:
        return len(self.frames)

    def read(self, positions: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        positions = np.asarray(positions, dtype=np.int64)
        return self.frames[positions], self.flows[positions]


class ShardSamples(Samples):
    """Samples of HDF5 shards, all of them or a seeded subset of ``limit`` (kept in shard order)."""

    def __init__(self, paths: Sequence[str | Path], limit: int | None = None, seed: int = 0):
        self.dataset = ShardDataset([str(p) for p in paths])
        index = np.arange(len(self.dataset), dtype=np.int64)
        if limit is not None and limit < len(index):
            index = np.sort(np.random.default_rng(seed).choice(len(index), size=limit, replace=False))
        self.index = index
        self.class_names = list(self.dataset.class_names)
        self.magnitude_clip = self.dataset.magnitude_clip
        self.frame_size = self.dataset.frame_size
        self.total = len(self.dataset)

    def __len__(self) -> int:
        return len(self.index)

    def read(self, positions: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.frame_size
        frames = np.empty((len(positions), h, w, 3), np.uint8)
        flows = np.empty((len(positions), h, w, 2), np.float32)
        for k, p in enumerate(positions):
            frame, flow, *_ = self.dataset.read(int(self.index[int(p)]))
            frames[k], flows[k] = frame, decode(flow)
        return frames, flows

    def meta(self) -> tuple[np.ndarray, list[str], list[int]]:
        """(labels, video ids, frame indices) of every sample, in position order (small arrays)."""
        labels, ids, frame_index = zip(*(self.dataset.sample_meta(int(i)) for i in self.index)) if len(self) \
            else ((), (), ())
        return np.asarray(labels, np.int64), list(ids), list(frame_index)

    def close(self) -> None:
        self.dataset.close()
