"""One video's frames and flow targets in one job: the DAG's only per-video step.

At UCF-101's 13,320 videos every per-video rule adds 13,320 jobs, and Snakemake's
DAG building grows faster than linearly in the jobs of a cluster batch
(benchmarks/dag_bench.md). Decoding costs a few per cent of the flow, so doing both
in one job and re-decoding when only a flow parameter changes is the cheaper trade.
The two outputs stay separate files, so the shard stage reads them as before.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pipeline.data.targets import add_estimator_arguments, compute_video_flow
from pipeline.data.frames import add_sampling_arguments, extract_frames


def prepare_video(video: str | Path, frames_out: str | Path, flow_out: str | Path, size_hw: tuple[int, int],
                  policy: str, every: int, per_video: int, estimator_name: str,
                  estimator_params: dict[str, Any] | None = None) -> dict:
    """Frames stage, then flow stage; a rejected video is recorded in both outputs."""
    extract_frames(video, frames_out, size_hw, policy, every, per_video)
    return compute_video_flow(frames_out, flow_out, estimator_name, estimator_params)


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
