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
from pathlib import Path
from typing import Any, Iterable

import h5py
import hdf5plugin
import numpy as np

from pipeline import __version__
from pipeline.atomic import atomic_path
from pipeline.data.discovery import stable_hash
from pipeline.encoding import DEFAULT_MAGNITUDE_CLIP, ENCODING_VERSION
from pipeline.data.extract import VideoSource, extract
from pipeline.data.frames import Sampling
from pipeline.data.targets import VideoTargets
from pipeline.data.videos import VideoRecord, write_records

log = logging.getLogger(__name__)

SHARD_FORMAT = "im2flow-shard"
SHARD_FORMAT_VERSION = 1
CODECS = ("none", "gzip", "lzf", "blosc-lz4", "blosc-zstd", "zstd")


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


class ShardWriter:
    """Appends videos' samples to a shard as they come, so a shard never sits in memory whole.

    Writes to a temporary sibling; :meth:`finish` records the attributes, sets
    ``complete`` and renames it into place. Without :meth:`finish` (an error, a
    kill) nothing is left that :func:`is_complete` accepts.
    """

    def __init__(self, tmp: Path, frame_size: tuple[int, int], codec: str):
        h, w = self.frame_size = tuple(frame_size)
        kwargs = compression(codec)
        self.file = h5py.File(tmp, "w")
        self.frames = self.file.create_dataset("frames", (0, h, w, 3), np.uint8, maxshape=(None, h, w, 3),
                                               chunks=(1, h, w, 3), **kwargs)
        self.flow = self.file.create_dataset("flow", (0, 3, h, w), np.float16, maxshape=(None, 3, h, w),
                                             chunks=(1, 3, h, w), **kwargs)
        self.labels: list[int] = []
        self.ids: list[str] = []
        self.indices: list[int] = []
        self.params: set[str] = set()
        self.videos = 0

    def add(self, video: VideoTargets) -> None:
        """Append one usable video's samples (frames (S, H, W, 3) uint8, flow (S, 3, H, W) float16)."""
        if video.frames.shape[1:3] != self.frame_size:
            raise ValueError(f"{video.video_id}: frames are {video.frames.shape[1:3]}, shard expects {self.frame_size}")
        if video.flow.dtype != np.float16 or not np.isfinite(video.flow).all():
            raise ValueError(f"{video.video_id}: non-finite flow reached the shard writer")
        n, s = len(self.labels), len(video.sample_indices)
        for ds, data in ((self.frames, video.frames), (self.flow, video.flow)):
            ds.resize(n + s, axis=0)
            ds[n:n + s] = data
        self.labels += [video.label] * s
        self.ids += [video.video_id] * s
        self.indices += [int(i) for i in video.sample_indices]
        self.params.add(video.estimator_params)
        self.videos += 1

    def finish(self, attrs: dict[str, Any]) -> int:
        n = len(self.labels)
        f = self.file
        f.create_dataset("labels", data=np.array(self.labels, np.int64).reshape(n))
        f.create_dataset("video_ids", data=np.array(self.ids, dtype=object).reshape(n), dtype=h5py.string_dtype())
        f.create_dataset("frame_index", data=np.array(self.indices, np.int64).reshape(n))
        f.attrs.update(attrs | {"n_samples": n, "n_videos": self.videos})
        f.attrs["complete"] = True
        f.close()
        return n


def write_shard(videos: Iterable[VideoTargets], out: str | Path, *, frame_size: tuple[int, int],
                class_names: list[str], estimator: str, estimator_params: dict[str, Any], split: str,
                shard_index: int, magnitude_clip: float = DEFAULT_MAGNITUDE_CLIP, codec: str = "blosc-lz4",
                videos_out: str | Path | None = None) -> int:
    """Write the usable videos' samples to the HDF5 shard ``out`` atomically, in the order given;
    returns the sample count. Rejected videos are left out; with ``videos_out`` every video is
    listed there with its status, samples and reason (:mod:`pipeline.data.videos`)."""
    records: list[VideoRecord] = []
    h, w = frame_size
    with atomic_path(out) as tmp:
        writer = ShardWriter(tmp, frame_size, codec)
        try:
            for video in videos:
                records.append(VideoRecord.of(video, split, class_names, magnitude_clip))
                if video.ok:
                    writer.add(video)
            # record what the flow jobs actually used (defaults included), not only what the config named
            if len(writer.params) > 1:
                raise ValueError(f"{out}: members' flow was computed with different estimator parameters: "
                                 f"{sorted(writer.params)}")
            params_json = writer.params.pop() if writer.params else json.dumps(estimator_params, sort_keys=True)
            n = writer.finish({
                "format": SHARD_FORMAT, "format_version": SHARD_FORMAT_VERSION,
                "encoding": "sin,cos,magnitude_px", "encoding_version": ENCODING_VERSION,
                "magnitude_clip": float(magnitude_clip), "frame_size": np.array([h, w], np.int64),
                "estimator": estimator, "estimator_params": params_json,
                "class_names": json.dumps(list(class_names)), "split": split, "shard_index": int(shard_index),
                "codec": codec, "im2flow_version": __version__,
            })
        finally:
            writer.file.close()
    if videos_out is not None:
        write_records(records, videos_out)
    log.info("wrote %s: %d samples from %d videos (%d rejected) with codec %s", out, n, writer.videos,
             len(records) - writer.videos, codec)
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


def build_shard(spec: dict[str, Any], out: str | Path, videos_out: str | Path | None, dataset: str | Path,
                cache_root: str | Path, threads: int = 1) -> int:
    """The ``shard`` / ``static_shard`` job: extract the members' targets (cached per video, batched
    across videos, :mod:`pipeline.data.extract`), then write the shard from the cache in video-id order."""
    sampling = Sampling(**spec["sampling"])
    runtime = {"threads": threads} if spec["estimator"] in ("liu", "tvl1") else {}
    sources = [VideoSource(vid, int(label), rel, str(Path(dataset) / rel), identity)
               for vid, label, rel, identity in sorted(spec["members"])]
    cache, _ = extract(sources, cache_root, sampling, spec["estimator"], spec["estimator_params"] | runtime,
                       decode_workers=max(1, min(2, threads)))
    return write_shard((VideoTargets.load(cache.path(s.video_id)) for s in sources), out,
                       frame_size=sampling.size, videos_out=videos_out, **spec["attrs"],
                       estimator=spec["estimator"], estimator_params=spec["estimator_params"])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", required=True, help="JSON (or @file): members [[video_id, label, relative path, "
                   "identity], ...], sampling {size, policy, every, per_video}, estimator, estimator_params, attrs "
                   "{class_names, split, shard_index, magnitude_clip, codec}")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--videos-out", type=Path, default=None, help="TSV: every member video's status, samples, reason")
    p.add_argument("--dataset", required=True, type=Path, help="the dataset root the relative paths start from")
    p.add_argument("--cache", required=True, type=Path, help="per-video results folder (reused across reruns)")
    p.add_argument("--threads", type=int, default=1, help="CPU cores of the job (the estimator and decoding)")


def run(args: argparse.Namespace) -> int:
    spec = json.loads(Path(args.spec[1:]).read_text() if args.spec.startswith("@") else args.spec)
    build_shard(spec, args.out, args.videos_out, args.dataset, args.cache, args.threads)
    return 0
