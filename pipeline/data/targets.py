"""Flow targets: for sample frame t, the mean of the five flows t->t+1 ... t+4->t+5.

Neighbouring sample frames share consecutive flows (with every-k sampling and
k < 5 they overlap); each consecutive flow is computed exactly once and added
to the running sums of the samples it belongs to (:class:`TargetSums`), so a
flow is dropped as soon as it is used. One video's result, its sample frames
and their targets or the reason it was rejected, is a :class:`VideoTargets`,
the unit the extraction caches and the shard writer stores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import atomic_path
from pipeline.encoding import decode, encode
from pipeline.data.frames import FUTURE, DecodedVideo, Sampling, VideoError, decode_samples
from pipeline.flow import FlowEstimator


def consecutive_pairs(samples: list[int]) -> list[int]:
    """The start indices t of every flow t->t+1 the targets of ``samples`` need, each once."""
    return sorted({s + d for s in samples for d in range(FUTURE)})


class TargetSums:
    """The five-future-frame means of one video's samples, built one consecutive flow at a time."""

    def __init__(self, samples: list[int]):
        self.samples = list(samples)
        self.pending = set(consecutive_pairs(self.samples))
        self.sums: np.ndarray | None = None

    def add(self, start: int, flow: np.ndarray) -> None:
        """The flow ``start -> start+1``: counted in every sample whose five futures include it."""
        if self.sums is None:
            self.sums = np.zeros((len(self.samples), *flow.shape), np.float32)
        for k, s in enumerate(self.samples):
            if s <= start < s + FUTURE:
                self.sums[k] += flow
        self.pending.discard(start)

    @property
    def done(self) -> bool:
        return not self.pending

    def targets(self) -> np.ndarray:
        """(S, H, W, 2) float32 mean flows (every pair must have been added)."""
        if self.pending:
            raise ValueError(f"flows missing for targets: {sorted(self.pending)[:10]}")
        return self.sums / np.float32(FUTURE)


def flow_targets(frames: np.ndarray, frame_indices: list[int], samples: list[int],
                 estimator: FlowEstimator) -> np.ndarray:
    """(S, H, W, 2) float32 five-future-frame mean flows for ``samples`` of one video, in one batch.

    ``frames[i]`` is original frame ``frame_indices[i]``; it must hold every
    sample frame and its five successors.
    """
    where = {int(t): i for i, t in enumerate(frame_indices)}
    starts = consecutive_pairs(samples)
    missing = [t for t in starts + [s + FUTURE for s in samples] if t not in where]
    if missing:
        raise ValueError(f"frames missing for flow targets: {sorted(set(missing))[:10]}")
    flows = estimator.estimate(frames[[where[t] for t in starts]], frames[[where[t + 1] for t in starts]])
    sums = TargetSums(samples)
    for t, flow in zip(starts, flows):
        sums.add(t, flow)
    return sums.targets()


FLOAT16_MAX = 65000.0  # magnitudes are clipped here before float16 (never an Inf)


def encode_float16(targets: np.ndarray) -> np.ndarray:
    """(S, H, W, 2) raw targets -> (S, 3, H, W) float16 (sin, cos, M px): the shards' encoding."""
    encoded = encode(targets)
    if not np.isfinite(encoded).all():
        raise ValueError("non-finite flow cannot be stored")
    encoded[:, 2] = np.minimum(encoded[:, 2], FLOAT16_MAX)
    return encoded.astype(np.float16)


@dataclass
class VideoTargets:
    """One video's contribution to a shard: sample frames and their flow targets, or why there are none.

    The flow is held as the shards store it (float16 sin, cos, M px), so the per-video cache costs
    what the shard does and writing the shard is a copy.
    """

    video_id: str
    label: int
    path: str  # as the user knows it: relative to the dataset root in the DAG
    status: str = "ok"  # ok | rejected
    reason: str = ""
    frames: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0, 3), np.uint8))  # (S, H, W, 3) uint8
    flow: np.ndarray = field(default_factory=lambda: np.zeros((0, 3, 0, 0), np.float16))  # (S, 3, H, W) float16
    sample_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    n_decoded: int = 0
    estimator_params: str = "{}"  # every parameter that changed the result, as JSON (provenance)
    identity: str = ""  # what the result was computed from (path, size, mtime): a changed file is recomputed

    @classmethod
    def from_targets(cls, video_id: str, label: int, path: str, frames: np.ndarray, targets: np.ndarray,
                     sample_indices: np.ndarray, **extra: Any) -> "VideoTargets":
        """A usable video from raw (S, H, W, 2) targets."""
        return cls(video_id, label, path, "ok", "", np.asarray(frames, np.uint8), encode_float16(targets),
                   np.asarray(sample_indices, np.int64), **extra)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def targets(self) -> np.ndarray:
        """(S, H, W, 2) float32 raw flow targets (u, v) px."""
        return decode(self.flow.astype(np.float32))

    def save(self, path: str | Path) -> None:
        """Compressed npz (zlib), written atomically: the cache of every video of a dataset."""
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{k: np.asarray(v) for k, v in self.__dict__.items()})

    @classmethod
    def load(cls, path: str | Path) -> "VideoTargets":
        with np.load(path, allow_pickle=False) as data:
            values: dict[str, Any] = {k: data[k] for k in data.files}
        for key in ("video_id", "path", "status", "reason", "estimator_params", "identity"):
            values[key] = str(values[key])
        values["label"], values["n_decoded"] = int(values["label"]), int(values["n_decoded"])
        return cls(**values)


def from_flows(video_id: str, label: int, path: str, decoded: DecodedVideo, targets: np.ndarray,
               estimator_params: dict[str, Any], identity: str = "") -> VideoTargets:
    """The record of a decoded video whose targets were computed (rejected when they are not finite)."""
    params = json.dumps(estimator_params, sort_keys=True)
    if not np.isfinite(targets).all():
        return VideoTargets(video_id, label, path, "rejected", "the flow estimator produced non-finite flow",
                            n_decoded=decoded.n_decoded, estimator_params=params, identity=identity)
    frames = np.stack([decoded.frame(s) for s in decoded.sample_indices])
    return VideoTargets.from_targets(video_id, label, path, frames, targets, decoded.sample_indices,
                                     n_decoded=decoded.n_decoded, estimator_params=params, identity=identity)


def video_targets(video: str | Path, sampling: Sampling, estimator: FlowEstimator, video_id: str = "video",
                  label: int = 0) -> VideoTargets:
    """Decode one video and compute its targets in one estimator batch (the many-video path is
    :mod:`pipeline.data.extract`); a video that cannot be used comes back rejected, with the reason."""
    try:
        decoded = decode_samples(video, sampling)
    except VideoError as exc:
        return VideoTargets(video_id, label, str(video), "rejected", str(exc))
    targets = flow_targets(decoded.frames, decoded.frame_indices, decoded.sample_indices, estimator)
    return from_flows(video_id, label, str(video), decoded, targets, estimator.params())
