"""Flow targets: for sample frame t, the mean of the five flows t->t+1 ... t+4->t+5.

Neighbouring sample frames share consecutive flows (with every-k sampling and
k < 5 they overlap); each consecutive flow is computed exactly once, and all
of a video's pairs go to the estimator as one batch so batched estimators
(``liu`` on a GPU) are used well.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import save_npz
from pipeline.flow import FlowEstimator, make_estimator
from pipeline.data.frames import FUTURE, add_sampling_arguments, extract_frames

log = logging.getLogger(__name__)


def consecutive_pairs(samples: list[int]) -> list[int]:
    """The start indices t of every flow t->t+1 the targets of ``samples`` need, each once."""
    return sorted({s + d for s in samples for d in range(FUTURE)})


def flow_targets(frames: np.ndarray, frame_indices: list[int], samples: list[int],
                 estimator: FlowEstimator) -> np.ndarray:
    """(S, H, W, 2) float32 five-future-frame mean flows for ``samples``.

    ``frames[i]`` is original frame ``frame_indices[i]``; it must hold every
    sample frame and its five successors.
    """
    where = {int(t): i for i, t in enumerate(frame_indices)}
    starts = consecutive_pairs(samples)
    missing = [t for t in starts + [s + FUTURE for s in samples] if t not in where]
    if missing:
        raise ValueError(f"frames missing for flow targets: {sorted(set(missing))[:10]}")
    first = frames[[where[t] for t in starts]]
    second = frames[[where[t + 1] for t in starts]]
    flows = estimator.estimate(first, second)
    by_start = {t: flows[i] for i, t in enumerate(starts)}
    targets = np.stack([np.mean([by_start[s + d] for d in range(FUTURE)], axis=0) for s in samples])
    return targets.astype(np.float32)


def compute_video_flow(frames_npz: str | Path, out: str | Path, estimator_name: str,
                       estimator_params: dict[str, Any] | None = None) -> dict:
    """Read a frames-stage npz, write the flow targets (or pass its rejection on) to ``out``."""
    params = dict(estimator_params or {})
    with np.load(frames_npz) as data:
        record = {k: data[k] for k in data.files}
    video = str(record["video"])
    estimator = make_estimator(estimator_name, **params)
    # provenance: every parameter that changes the result, defaults included
    base = dict(video=video, estimator=estimator_name, estimator_params=json.dumps(estimator.params(), sort_keys=True),
                sample_indices=record["sample_indices"])
    if str(record["status"]) != "ok":
        save_npz(out, status="rejected", reason=str(record["reason"]), targets=np.zeros((0, 0, 0, 2), np.float32),
                 **base)
        return {"status": "rejected", "reason": str(record["reason"])}
    samples = [int(s) for s in record["sample_indices"]]
    targets = flow_targets(record["frames"], [int(t) for t in record["frame_indices"]], samples, estimator)
    status, reason = "ok", ""
    if not np.isfinite(targets).all():
        status, reason = "rejected", f"estimator {estimator_name} produced non-finite flow"
        log.error("rejected video %s: %s", video, reason)
        targets = np.zeros((0,) + targets.shape[1:], np.float32)
    else:
        magnitude = np.hypot(targets[..., 0], targets[..., 1])
        log.info("%s: %d targets from %d pairs with %s, mean |flow| %.3f px, max %.2f px", video, len(samples),
                 len(consecutive_pairs(samples)), estimator_name, magnitude.mean(), magnitude.max())
    save_npz(out, status=status, reason=reason, targets=targets, **base)
    return {"status": status, "reason": reason, "targets": targets}


def prepare_video(video: str | Path, frames_out: str | Path, flow_out: str | Path, size_hw: tuple[int, int],
                  policy: str, every: int, per_video: int, estimator_name: str,
                  estimator_params: dict[str, Any] | None = None) -> dict:
    """Frames stage, then flow stage; a rejected video is recorded in both outputs."""
    extract_frames(video, frames_out, size_hw, policy, every, per_video)
    return compute_video_flow(frames_out, flow_out, estimator_name, estimator_params)


def add_estimator_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--estimator", default="tvl1")
    p.add_argument("--params", default="{}", help="estimator parameters as JSON")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--video", required=True, type=Path)
    p.add_argument("--frames-out", required=True, type=Path)
    p.add_argument("--flow-out", required=True, type=Path)
    add_sampling_arguments(p)
    add_estimator_arguments(p)


def run(args: argparse.Namespace) -> int:
    prepare_video(args.video, args.frames_out, args.flow_out, tuple(args.size), args.policy, args.every,
                  args.per_video, args.estimator, json.loads(args.params))
    return 0
