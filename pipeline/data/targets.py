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

import cv2
import numpy as np

from pipeline.atomic import atomic_path
from pipeline.data.damage import Damage, outliers, pair_stats
from pipeline.data.frames import FUTURE, DecodedVideo, Sampling, VideoError, decode_samples, kept_samples
from pipeline.encoding import decode, encode
from pipeline.flow import FlowEstimator


# Damage thresholds (pipeline.data.damage): a pair is damaged when its residual (grey levels) or its
# largest motion (px) stands out from the video's other pairs by at least these floors; a video that
# loses more than MAX_DROPPED of its samples is rejected.
RESIDUAL_FLOOR = 8.0
MAGNITUDE_FLOOR = 4.0
MAX_DROPPED = 0.5


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
    status: str = "ok"  # ok | partial (some samples dropped, or truncated) | rejected
    reason: str = ""  # why rejected, or what was left out of a partial video
    frames: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0, 3), np.uint8))  # (S, H, W, 3) uint8
    flow: np.ndarray = field(default_factory=lambda: np.zeros((0, 3, 0, 0), np.float16))  # (S, 3, H, W) float16
    sample_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    n_decoded: int = 0
    estimator_params: str = "{}"  # every parameter that changed the result, as JSON (provenance)
    identity: str = ""  # what the result was computed from (path, size, mtime): a changed file is recomputed
    dropped: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # samples left out (damage)
    fingerprint: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))  # dHashes (leakage check)

    @classmethod
    def from_targets(cls, video_id: str, label: int, path: str, frames: np.ndarray, targets: np.ndarray,
                     sample_indices: np.ndarray, status: str = "ok", reason: str = "", **extra: Any
                     ) -> "VideoTargets":
        """A usable video from raw (S, H, W, 2) targets."""
        return cls(video_id, label, path, status, reason, np.asarray(frames, np.uint8), encode_float16(targets),
                   np.asarray(sample_indices, np.int64), **extra)

    @property
    def ok(self) -> bool:
        """Usable: some of its samples go into the shard."""
        return self.status in ("ok", "partial")

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


class VideoFlows:
    """One video's consecutive flows as they arrive (in any order, in any batch): its target sums and,
    per pair, what the damage checks need (:mod:`pipeline.data.damage`)."""

    def __init__(self, decoded: DecodedVideo):
        self.decoded = decoded
        self.sums = TargetSums(decoded.sample_indices)
        self.residual: dict[int, float] = {}
        self.magnitude: dict[int, float] = {}

    def add(self, start: int, flow: np.ndarray) -> None:
        self.sums.add(start, flow)
        self.residual[start], self.magnitude[start] = pair_stats(self.decoded.frame(start),
                                                                 self.decoded.frame(start + 1), flow)

    @property
    def done(self) -> bool:
        return self.sums.done

    def damage(self) -> Damage:
        d = self.decoded
        needed = set(d.frame_indices)
        flow_pairs = sorted(set(outliers(self.residual, floor=RESIDUAL_FLOOR))
                            | set(outliers(self.magnitude, floor=MAGNITUDE_FLOOR)))
        return Damage.of({t: e for t, e in d.report.decoder_errors.items() if t in needed}, list(d.transient),
                         flow_pairs)

    def result(self, video_id: str, label: int, path: str, estimator_params: dict[str, Any], identity: str = "",
               max_dropped: float = MAX_DROPPED) -> "VideoTargets":
        """The video's record: its samples that no damage touches, or why it was rejected."""
        d, common = self.decoded, dict(n_decoded=self.decoded.n_decoded, identity=identity,
                                       estimator_params=json.dumps(estimator_params, sort_keys=True))
        targets = self.sums.targets()
        if not np.isfinite(targets).all():
            return VideoTargets(video_id, label, path, "rejected", "the flow estimator produced non-finite flow",
                                **common)
        damage = self.damage()
        kept, dropped = kept_samples(d.sample_indices, damage.frames())
        kept = [s for s in kept if not damage.spans_cut(s, FUTURE)]
        notes = [n for n in (_truncation(d), damage.describe()) if n]
        if len(dropped) > max_dropped * len(d.sample_indices) or not kept:
            why = (f"damaged: {len(dropped)} of {len(d.sample_indices)} samples touch damaged frames" if dropped
                   else "every sample spans a shot cut")
            return VideoTargets(video_id, label, path, "rejected", why + "; " + "; ".join(notes),
                                dropped=np.asarray(dropped, np.int64), **common)
        rows = [d.sample_indices.index(s) for s in kept]
        frames = np.stack([d.frame(s) for s in kept])
        status = "partial" if dropped or d.report.truncated else "ok"
        if dropped:
            notes.insert(0, f"dropped the samples at frames {', '.join(map(str, dropped))} ({len(dropped)} of "
                            f"{len(d.sample_indices)})")
        return VideoTargets.from_targets(video_id, label, path, frames, targets[rows], kept, status=status,
                                         reason="; ".join(notes), dropped=np.asarray(dropped, np.int64),
                                         fingerprint=fingerprint(frames), **common)


def _truncation(decoded: DecodedVideo) -> str:
    r = decoded.report
    return (f"truncated: the container declares {r.declared} frames, {r.decoded} decode (the decoded part is "
            "used)") if r.truncated else ""


def fingerprint(frames: np.ndarray, k: int = 4) -> np.ndarray:
    """(k,) uint64 difference hashes of ``k`` frames spread over the video (near-duplicate videos
    have close hashes: the leakage check compares them across splits)."""
    picks = np.linspace(0, len(frames) - 1, min(k, len(frames))).round().astype(int)
    hashes = []
    for i in picks:
        small = cv2.resize(cv2.cvtColor(frames[i], cv2.COLOR_RGB2GRAY), (9, 8), interpolation=cv2.INTER_AREA)
        bits = (small[:, 1:] > small[:, :-1]).ravel()
        hashes.append(int(np.packbits(bits).view(">u8")[0]))
    return np.asarray(hashes + [0] * (k - len(hashes)), np.uint64)


def video_targets(video: str | Path, sampling: Sampling, estimator: FlowEstimator, video_id: str = "video",
                  label: int = 0) -> VideoTargets:
    """Decode one video and compute its targets in one estimator batch (the many-video path is
    :mod:`pipeline.data.extract`); a video that cannot be used comes back rejected, with the reason."""
    try:
        decoded = decode_samples(video, sampling)
    except VideoError as exc:
        return VideoTargets(video_id, label, str(video), "rejected", str(exc))
    starts = consecutive_pairs(decoded.sample_indices)
    flows = estimator.estimate(np.stack([decoded.frame(s) for s in starts]),
                               np.stack([decoded.frame(s + 1) for s in starts]))
    flowing = VideoFlows(decoded)
    for s, flow in zip(starts, flows):
        flowing.add(s, flow)
    return flowing.result(video_id, label, str(video), estimator.params())
