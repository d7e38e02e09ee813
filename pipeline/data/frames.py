"""Decode a video with OpenCV's FFmpeg backend, resize it, and choose its sample frames.

A sample frame t is usable only when frames t+1 ... t+5 exist, because its flow
target averages the five flows that follow it. Only the frames the flow needs
are kept (each sample frame and its five successors).

A video that cannot be used (missing, unreadable, empty, not a video,
truncated, too short) raises :class:`VideoError` with the reason; the
extraction (:mod:`pipeline.data.extract`) records it and goes on.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.data.damage import decoder_errors, native_stderr_capture, transient_frames

log = logging.getLogger(__name__)

FUTURE = 5  # the flow target of frame t averages t->t+1 ... t+4->t+5
POLICIES = ("every_k", "per_video", "centre")


class VideoError(Exception):
    """A video that cannot be used; the message is the reason shown to the user."""


@dataclass
class DecodeReport:
    """What decoding a video said besides the frames: the container's frame count and the
    decoder's error messages, by frame."""

    declared: int = 0
    decoded: int = 0
    decoder_errors: dict[int, str] = field(default_factory=dict)

    @property
    def truncated(self) -> bool:
        """The container's index promises clearly more frames than decode (cut short)."""
        return self.declared > 0 and self.decoded < self.declared - max(2, self.declared // 50)


def _check_file(path: Path) -> None:
    if not os.path.lexists(path):
        raise VideoError("file does not exist")
    if path.is_symlink() and not path.exists():
        raise VideoError(f"unreadable: broken symbolic link to {os.readlink(path)}")
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise VideoError(f"unreadable: {exc.strerror or exc}") from exc
    if path.is_dir():
        raise VideoError("is a directory, not a video file")
    if not head:
        raise VideoError("empty file (0 bytes)")


def read_frames(path: str | Path, size_hw: tuple[int, int]) -> tuple[np.ndarray, DecodeReport]:
    """All frames that decode, as (T, H, W, 3) uint8 RGB at ``size_hw``, with the decoder's errors by
    frame (:func:`pipeline.data.damage.native_stderr_capture`); VideoError when nothing usable decodes."""
    path = Path(path)
    _check_file(path)
    h, w = size_hw
    frames, report = [], DecodeReport()
    with native_stderr_capture() as native:
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        try:
            if not capture.isOpened():
                raise VideoError("not a video OpenCV/FFmpeg can open (corrupt, or not a video at all)")
            report.declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            while True:
                ok, frame = capture.read()
                errors = decoder_errors(native.read())
                if not ok:
                    break
                if frame is None or frame.ndim != 3:
                    raise VideoError(f"frame {len(frames)} decoded with an unexpected shape")
                if errors:
                    report.decoder_errors[len(frames)] = errors[0]
                frames.append(cv2.cvtColor(cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA),
                                           cv2.COLOR_BGR2RGB))
        finally:
            capture.release()
    if not frames:
        raise VideoError("no frame could be decoded (corrupt or not a video)")
    report.decoded = len(frames)
    return np.stack(frames), report


def decode_video(path: str | Path, size_hw: tuple[int, int]) -> np.ndarray:
    """All frames of ``path`` that decode, (T, H, W, 3) uint8 RGB at ``size_hw``; VideoError on bad input."""
    return read_frames(path, size_hw)[0]


def sample_indices(n_frames: int, policy: str = "every_k", every: int = 5, per_video: int = 5) -> list[int]:
    """Sample frames among the usable ones, 0 ... n_frames - 1 - FUTURE."""
    last = n_frames - 1 - FUTURE
    if last < 0:
        return []
    if policy == "every_k":
        if every < 1:
            raise ValueError("frames.every must be >= 1")
        return list(range(0, last + 1, every))
    if policy == "per_video":
        if per_video < 1:
            raise ValueError("frames.per_video must be >= 1")
        return sorted({int(round(x)) for x in np.linspace(0, last, min(per_video, last + 1))})
    if policy == "centre":
        return [min((n_frames - 1) // 2, last)]
    raise ValueError(f"frames.policy must be one of {POLICIES}, got {policy!r}")


def needed_indices(samples: list[int]) -> list[int]:
    """Every frame index the flow targets of ``samples`` need, each once."""
    return sorted({t + d for t in samples for d in range(FUTURE + 1)})


@dataclass(frozen=True)
class Sampling:
    """Which frames of a video become samples, at which size (the config's ``frames`` slice)."""

    size: tuple[int, int]  # (H, W) every frame is resized to
    policy: str = "every_k"
    every: int = 5
    per_video: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        if self.policy not in POLICIES:
            raise ValueError(f"frames.policy must be one of {POLICIES}, got {self.policy!r}")

    def samples(self, n_frames: int) -> list[int]:
        return sample_indices(n_frames, self.policy, self.every, self.per_video)


def kept_samples(samples: list[int], damaged: set[int]) -> tuple[list[int], list[int]]:
    """(samples whose frames t ... t+5 are all undamaged, the others)."""
    kept = [s for s in samples if not any(s + d in damaged for d in range(FUTURE + 1))]
    return kept, [s for s in samples if s not in kept]


@dataclass
class DecodedVideo:
    """The frames a video's targets need (each sample frame and its five successors, once), and what
    decoding found: the decoder's errors and the transient frames, by original frame number."""

    frames: np.ndarray  # (K, H, W, 3) uint8 RGB, original frames ``frame_indices``
    frame_indices: list[int]
    sample_indices: list[int]
    n_decoded: int
    report: DecodeReport = field(default_factory=DecodeReport)
    transient: list[int] = field(default_factory=list)

    def frame(self, t: int) -> np.ndarray:
        return self.frames[self.frame_indices.index(t)]


def decode_samples(video: str | Path, sampling: Sampling) -> DecodedVideo:
    """Decode ``video`` and keep the frames its sample targets need; VideoError when it cannot be used.

    A video that stops decoding early keeps what decodes (its report says it was truncated): every
    kept sample still has its five future frames, and the damage checks watch the frames before the cut.
    """
    frames, report = read_frames(video, sampling.size)
    samples = sampling.samples(len(frames))
    if not samples:
        cut = f" (truncated: the container declares {report.declared})" if report.truncated else ""
        raise VideoError(f"too short: {len(frames)} frames decoded{cut}, a sample needs at least {FUTURE + 1}")
    keep = needed_indices(samples)
    transient = transient_frames(frames, list(range(len(frames))))
    return DecodedVideo(frames[keep], keep, samples, len(frames), report, [t for t in transient if t in keep])
