"""HDF5 shards: sample frames, encoded flow, labels and provenance.

Layout of one shard (N samples, frames H x W):

- ``frames``      (N, H, W, 3) uint8 RGB, one chunk per sample
- ``flow``        (N, 3, H, W) float16 (sin θ, cos θ, M in pixels), one chunk per sample
- ``labels``      (N,) int64; ``video_ids`` (N,) str; ``frame_index`` (N,) int64
- attributes: format, encoding version, magnitude clip, frame size, estimator
  and its parameters (JSON), class names (JSON), split, shard index, codec,
  sample count, and ``complete`` written last.

A video belongs to shard ``stable_hash(video_id) % n_shards`` of its split, so
adding a video rewrites one shard. Shards are written to a temporary name and
renamed, so a killed writer leaves nothing that :func:`is_complete` accepts.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from pipeline import __version__
from pipeline.atomic import atomic_path
from pipeline.data.discovery import stable_hash
from pipeline.encoding import DEFAULT_MAGNITUDE_CLIP, ENCODING_VERSION, encode
from pipeline.data.rejects import Rejection, write_rejections

log = logging.getLogger(__name__)

SHARD_FORMAT = "im2flow-shard"
SHARD_FORMAT_VERSION = 1
CODECS = ("none", "gzip", "lzf", "blosc-lz4", "blosc-zstd", "zstd")
FLOAT16_MAX = 65000.0


def shard_of(video_id: str, n_shards: int) -> int:
    """Stable shard index of a video: independent of every other video in the dataset."""
    return stable_hash(video_id) % n_shards


def compression(codec: str) -> dict[str, Any]:
    """h5py ``create_dataset`` keyword arguments for a codec name."""
    if codec == "none":
        return {}
    if codec == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    if codec == "lzf":
        return {"compression": "lzf", "shuffle": True}
    if codec == "blosc-lz4":
        return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))
    if codec == "blosc-zstd":
        return dict(hdf5plugin.Blosc(cname="zstd", clevel=3, shuffle=hdf5plugin.Blosc.SHUFFLE))
    if codec == "zstd":
        return dict(hdf5plugin.Zstd(clevel=3))
    raise ValueError(f"shards.codec must be one of {CODECS}, got {codec!r}")


@dataclass
class Member:
    """One video's contribution to a shard: the frames- and flow-stage outputs."""

    video_id: str
    label: int
    frames_npz: str
    flow_npz: str


def _load_member(member: Member) -> tuple[np.ndarray, np.ndarray, np.ndarray, str] | Rejection:
    """(frames (S,H,W,3), raw targets (S,H,W,2), frame indices (S,), the estimator's full parameters
    as JSON), or the video's rejection."""
    with np.load(member.flow_npz) as flow:
        if str(flow["status"]) != "ok":
            return Rejection(member.video_id, str(flow["video"]), str(flow["reason"]))
        targets = flow["targets"]
        samples = flow["sample_indices"]
        used_params = str(flow["estimator_params"])
    with np.load(member.frames_npz) as fr:
        where = {int(t): i for i, t in enumerate(fr["frame_indices"])}
        frames = fr["frames"][[where[int(s)] for s in samples]]
    return frames, targets, samples, used_params


def write_shard(members: list[Member], out: str | Path, *, frame_size: tuple[int, int], class_names: list[str],
                estimator: str, estimator_params: dict[str, Any], split: str, shard_index: int,
                magnitude_clip: float = DEFAULT_MAGNITUDE_CLIP, codec: str = "blosc-lz4",
                rejected_out: str | Path | None = None) -> int:
    """Write the members' samples to the HDF5 shard ``out`` atomically; returns the sample count.

    Members whose frames or flow stage rejected the video are left out and, with
    ``rejected_out``, listed there (TSV: video_id, path, reason).
    """
    h, w = frame_size
    loaded, rejected = [], []
    for m in sorted(members, key=lambda m: m.video_id):
        item = _load_member(m)
        if isinstance(item, Rejection):
            rejected.append(item)
        else:
            loaded.append((m, *item))
    if rejected_out is not None:
        write_rejections(rejected, rejected_out)
    # Record what the flow jobs actually used (defaults included), not only what the config named.
    used = {item[4] for item in loaded}
    if len(used) > 1:
        raise ValueError(f"{out}: members' flow was computed with different estimator parameters: {sorted(used)}")
    params_json = used.pop() if used else json.dumps(estimator_params, sort_keys=True)
    n = sum(len(item[3]) for item in loaded)
    kwargs = compression(codec)
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as f:
            frames_ds = f.create_dataset("frames", (n, h, w, 3), np.uint8, chunks=(1, h, w, 3) if n else None,
                                         **(kwargs if n else {}))
            flow_ds = f.create_dataset("flow", (n, 3, h, w), np.float16, chunks=(1, 3, h, w) if n else None,
                                       **(kwargs if n else {}))
            labels, ids, indices = [], [], []
            row = 0
            for member, frames, targets, samples, _ in loaded:
                if frames.shape[1:3] != (h, w):
                    raise ValueError(f"{member.frames_npz}: frames are {frames.shape[1:3]}, shard expects {(h, w)}")
                encoded = encode(targets)
                if not np.isfinite(encoded).all():
                    raise ValueError(f"{member.flow_npz}: non-finite flow reached the shard writer")
                encoded[:, 2] = np.minimum(encoded[:, 2], FLOAT16_MAX)
                frames_ds[row:row + len(samples)] = frames
                flow_ds[row:row + len(samples)] = encoded.astype(np.float16)
                labels += [member.label] * len(samples)
                ids += [member.video_id] * len(samples)
                indices += [int(s) for s in samples]
                row += len(samples)
            f.create_dataset("labels", data=np.array(labels, np.int64).reshape(n))
            f.create_dataset("video_ids", data=np.array(ids, dtype=object).reshape(n), dtype=h5py.string_dtype())
            f.create_dataset("frame_index", data=np.array(indices, np.int64).reshape(n))
            f.attrs.update({
                "format": SHARD_FORMAT, "format_version": SHARD_FORMAT_VERSION,
                "encoding": "sin,cos,magnitude_px", "encoding_version": ENCODING_VERSION,
                "magnitude_clip": float(magnitude_clip), "frame_size": np.array([h, w], np.int64),
                "estimator": estimator, "estimator_params": params_json,
                "class_names": json.dumps(list(class_names)), "split": split, "shard_index": int(shard_index),
                "codec": codec, "n_samples": n, "n_videos": len(loaded), "im2flow_version": __version__,
            })
            f.attrs["complete"] = True
    log.info("wrote %s: %d samples from %d videos (%d rejected) with codec %s", out, n, len(loaded),
             len(members) - len(loaded), codec)
    return n


def is_complete(path: str | Path) -> bool:
    """True only for a shard whose writer finished (format, ``complete`` flag, consistent sizes)."""
    try:
        with h5py.File(path, "r") as f:
            n = int(f.attrs.get("n_samples", -1))
            return (f.attrs.get("format") == SHARD_FORMAT and bool(f.attrs.get("complete", False))
                    and all(f[k].shape[0] == n for k in ("frames", "flow", "labels", "video_ids", "frame_index")))
    except (OSError, KeyError):
        return False


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", required=True, help="JSON: members [[video_id, label, frames_npz, flow_npz], ...], "
                   "frame_size, class_names, estimator, estimator_params, split, shard_index, magnitude_clip, codec")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--rejected-out", type=Path, default=None, help="TSV of the members' rejected videos")


def run(args: argparse.Namespace) -> int:
    spec = json.loads(Path(args.spec[1:]).read_text() if args.spec.startswith("@") else args.spec)
    members = [Member(*m) for m in spec.pop("members")]
    spec["frame_size"] = tuple(spec["frame_size"])
    write_shard(members, args.out, rejected_out=args.rejected_out, **spec)
    return 0
