"""Static-image datasets from videos: the centre frame of each video, with its true flow.

One job builds one static shard from its member videos (decode, centre frame,
five-future-frame flow, shard), reusing the frames, flow and shard stages: a
per-video job for one frame and five flows would double the DAG (13,320 more
jobs for UCF-101) for a few seconds of work each.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.data.targets import compute_video_flow
from pipeline.data.frames import extract_frames
from pipeline.data.shards import Member, write_shard

log = logging.getLogger(__name__)


def build_static_shard(videos: list[tuple[str, int, str]], out: str | Path, *, frame_size: tuple[int, int],
                       estimator: str, estimator_params: dict[str, Any], rejected_out: str | Path | None = None,
                       **shard_attrs: Any) -> int:
    """Centre frame + true flow of each (video_id, label, path) into the shard ``out``; returns the sample count."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp_name:
        tmp = Path(tmp_name)
        members = []
        for i, (video_id, label, path) in enumerate(tqdm(videos, desc=f"static {out.name}", unit="video")):
            frames_npz, flow_npz = tmp / f"{i}.frames.npz", tmp / f"{i}.flow.npz"
            extract_frames(path, frames_npz, frame_size, "centre")
            compute_video_flow(frames_npz, flow_npz, estimator, estimator_params)
            members.append(Member(video_id, int(label), str(frames_npz), str(flow_npz)))
        return write_shard(members, out, frame_size=frame_size, estimator=estimator,
                           estimator_params=estimator_params, rejected_out=rejected_out, **shard_attrs)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", required=True, help="JSON (or @file): videos [[video_id, label, path], ...], frame_size, "
                   "class_names, estimator, estimator_params, split, shard_index, magnitude_clip, codec")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--rejected-out", type=Path, default=None)


def run(args: argparse.Namespace) -> int:
    spec = json.loads(Path(args.spec[1:]).read_text() if args.spec.startswith("@") else args.spec)
    videos = [tuple(v) for v in spec.pop("videos")]
    spec["frame_size"] = tuple(spec["frame_size"])
    build_static_shard(videos, args.out, rejected_out=args.rejected_out, **spec)
    return 0
