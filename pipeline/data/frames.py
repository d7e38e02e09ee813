"""Decode a video with OpenCV's FFmpeg backend, resize it, and choose its sample frames.

A sample frame t is usable only when frames t+1 ... t+5 exist, because its flow
target averages the five flows that follow it. The stage keeps only the frames
the flow stage needs (each sample frame and its five successors).

A video that cannot be used (missing, unreadable, empty, not a video,
truncated, too short) does not fail the job: the output records the reason,
the log names the file, and later stages pass the rejection on.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from pipeline.atomic import save_npz

log = logging.getLogger(__name__)

FUTURE = 5  # the flow target of frame t averages t->t+1 ... t+4->t+5
POLICIES = ("every_k", "per_video", "centre")


class VideoError(Exception):
    """A video that cannot be used; the message is the reason shown to the user."""


def decode_video(path: str | Path, size_hw: tuple[int, int]) -> np.ndarray:
    """All frames of ``path`` as (T, H, W, 3) uint8 RGB at ``size_hw``; VideoError on bad input."""
    path = Path(path)
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
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            raise VideoError("not a video OpenCV/FFmpeg can open (corrupt, or not a video at all)")
        declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        h, w = size_hw
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if frame is None or frame.ndim != 3:
                raise VideoError(f"frame {len(frames)} decoded with an unexpected shape")
            frames.append(cv2.cvtColor(cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        raise VideoError("no frame could be decoded (corrupt or not a video)")
    # A container whose index promises clearly more frames than decode is cut short.
    if declared > 0 and len(frames) < declared - max(2, declared // 50):
        raise VideoError(f"truncated: the container declares {declared} frames, only {len(frames)} decode")
    return np.stack(frames)


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


def extract_frames(video: str | Path, out: str | Path, size_hw: tuple[int, int], policy: str = "every_k",
                   every: int = 5, per_video: int = 5) -> dict:
    """Decode ``video`` and write the frames its sample targets need to ``out`` (npz).

    Returns the record written: ``status`` is "ok" or "rejected" with a ``reason``.
    """
    try:
        frames = decode_video(video, size_hw)
        samples = sample_indices(len(frames), policy, every, per_video)
        if not samples:
            raise VideoError(f"too short: {len(frames)} frames decoded, a sample needs at least {FUTURE + 1}")
        keep = needed_indices(samples)
        record = dict(status="ok", reason="", frames=frames[keep], frame_indices=np.array(keep, np.int64),
                      sample_indices=np.array(samples, np.int64), n_decoded=len(frames))
    except VideoError as exc:
        log.error("rejected video %s: %s", video, exc)
        record = dict(status="rejected", reason=str(exc), frames=np.zeros((0, *size_hw, 3), np.uint8),
                      frame_indices=np.zeros(0, np.int64), sample_indices=np.zeros(0, np.int64), n_decoded=0)
    save_npz(out, video=str(video), **record)
    if record["status"] == "ok":
        log.info("%s: %d frames decoded, %d sample frames, %d frames kept", video, record["n_decoded"],
                 len(record["sample_indices"]), len(record["frame_indices"]))
    return record


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, nargs=2, required=True, metavar=("H", "W"))
    p.add_argument("--policy", choices=POLICIES, default="every_k")
    p.add_argument("--every", type=int, default=5)
    p.add_argument("--per-video", type=int, default=5)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--video", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    add_sampling_arguments(p)


def run(args: argparse.Namespace) -> int:
    extract_frames(args.video, args.out, tuple(args.size), args.policy, args.every, args.per_video)
    return 0
