"""Paper-scale rehearsal: the real stage commands on UCF-101-shaped synthetic shards at two sizes.

For each size N (training samples; the test split gets 200/505 of that, as UCF-101 split 1
has about 200k test for 505k training samples) it writes shards directly, with no video
decoding and no flow estimation: 101 classes, the preset's frame size (286x286), textured
frames and smooth flows (a bank of multi-octave noise textures and sums of smooth bumps,
shifted per sample so that no two samples are alike and compression sees realistic data),
53 samples a video, the preset's codec. Static shards for recognition hold N/10 training
and N/25 test images (one a video; at least 4 training and 1 test image a class).

Then it runs the real stage commands on them, each as its own process, measuring its wall
time and peak resident memory (the stage's own VmHWM, written by `im2flow` at exit; the
loaders run in-process, ``num_workers: 0``): train-motion-net and train (a few steps each, the `tiny`
U-Net by default), evaluate with every baseline, recognize, report. It prints one table
(stage, samples, peak RSS, seconds, seconds per 1,000 samples, shard bytes per sample, and
the peak-RSS ratio between the sizes) and a projection for UCF-101 split 1 (505k training,
200k test samples, 9,537 + 3,783 static images): disk, RAM per stage, CPU-hours of the
evaluation (a line through the two sizes' times), and the loader rate that keeps one GPU at
1,500 images/s.

    .venv/bin/python benchmarks/scale_rehearsal.py --samples 5000 20000 [--size 286 286] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from pipeline.data.shards import write_shard  # noqa: E402
from pipeline.data.targets import VideoTargets  # noqa: E402
from pipeline.data.videos import VideoRecord, write_records, write_rejected  # noqa: E402

CLASSES = [f"FakeAction{c + 1:03d}" for c in range(101)]  # --classes takes the first N (tests)
SAMPLES_PER_VIDEO = 53  # configs/ucf101.yaml: frames.per_video
UCF = {"train": 505_461, "test": 200_000, "static_train": 9_537, "static_test": 3_783}
GPU_IMAGES_PER_S = 1500


# ----------------------------------------------------------------------------- synthetic shards


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    tex = np.zeros((h, w, 3), np.float32)
    for octave, weight in ((4, 0.5), (8, 0.3), (16, 0.15), (48, 0.08)):
        coarse = rng.random((octave, octave, 3)).astype(np.float32)
        tex += weight * cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(6):  # a few objects with edges
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(tex, centre, int(rng.integers(8, h // 4)), rng.random(3).tolist(), -1)
    return np.clip(tex * 255, 0, 255).astype(np.uint8)


def _smooth_flow(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    flow = np.zeros((h, w, 2), np.float32)
    for _ in range(4):  # smooth bumps of motion, up to ~15 px, still background elsewhere
        cy, cx, s = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(h / 10, h / 4)
        bump = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * s * s))
        flow += bump[..., None] * rng.uniform(-15, 15, 2).astype(np.float32)
    return flow


def bank(size: tuple[int, int], n: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = size
    return np.stack([_texture(rng, h, w) for _ in range(n)]), np.stack([_smooth_flow(rng, h, w) for _ in range(n)])


def synthetic_video(textures: np.ndarray, flows: np.ndarray, index: int, label: int, samples: int) -> VideoTargets:
    """A video's worth of samples: bank entries shifted, tinted by class and scaled."""
    k = len(textures)
    frames = np.stack([np.roll(textures[(index + 3 * s) % k], (7 * s + index, 11 * s), axis=(0, 1))
                       for s in range(samples)])
    frames = np.clip(frames.astype(np.int16) + (label % 17) * 3 - 24, 0, 255).astype(np.uint8)
    targets = np.stack([np.roll(flows[(index * 5 + s) % k], (5 * s, 3 * index), axis=(0, 1))
                        for s in range(samples)]) * (0.5 + label / len(CLASSES))
    video_id = f"{CLASSES[label]}/v_{index:06d}"
    return VideoTargets.from_targets(video_id, label, f"{video_id}.avi", frames, targets,
                                     np.arange(samples, dtype=np.int64) * 3)


def write_split(folder: Path, split: str, n_samples: int, per_video: int, per_shard: int, size: tuple[int, int],
                data: tuple[np.ndarray, np.ndarray], first: int = 0) -> list[str]:
    """Shards of ``n_samples`` samples (``per_video`` a video, ~``per_shard`` a shard); returns their paths."""
    n_videos = math.ceil(n_samples / per_video)
    n_shards = max(1, math.ceil(n_samples / per_shard))
    paths = []
    for s in range(n_shards):
        members = range(s, n_videos, n_shards)
        videos = (synthetic_video(*data, first + v, (first + v) % len(CLASSES),
                                  min(per_video, n_samples - v * per_video)) for v in members)
        path = folder / f"{split}-{s:03d}.h5"
        write_shard(videos, path, frame_size=size, class_names=CLASSES, estimator="synthetic",
                    estimator_params={}, split=split, shard_index=s, magnitude_clip=30.0, codec="blosc-lz4")
        paths.append(str(path))
    return paths


# ----------------------------------------------------------------------------- stages


@dataclass
class Row:
    stage: str
    size: int
    samples: int
    peak_rss_mb: float
    seconds: float
    bytes_per_sample: float = math.nan


def run_stage(name: str, size: int, samples: int, argv: list[str], log: Path) -> Row:
    """One stage command as its own process: wall seconds and its own peak resident memory, which
    `im2flow` writes at exit (VmHWM: ``ru_maxrss`` would count this big process it was forked from)."""
    peak = log.with_suffix(".peak_kb")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               IM2FLOW_PEAK_MEMORY_FILE=str(peak))
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        code = subprocess.run([str(Path(sys.executable).parent / "im2flow"), *argv], stdout=fh, stderr=fh,
                              env=env).returncode
    seconds = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"{name} failed; see {log}:\n{log.read_text()[-3000:]}")
    return Row(name, size, samples, int(peak.read_text()) / 1024, seconds)


def stage_configs(args: argparse.Namespace) -> dict[str, dict]:
    crop = args.crop
    return {
        "motion_net": {"pretrained": "none", "input_size": args.mn_input, "crop": crop, "batch_size": args.batch,
                       "max_steps": args.steps, "num_workers": 0, "log_every": 5, "checkpoint_every": 10**6,
                       "bn_recalibration_batches": 2},
        "train": {"model": args.model, "crop": crop, "batch_size": args.batch, "max_steps": args.steps,
                  "num_workers": 0, "log_every": 5, "checkpoint_every": 10**6},
        "evaluate": {"baselines": ["zero", "mean", "nearest_neighbour", "codebook"],
                     "baseline_params": {"nearest_neighbour": {"weights": "none", "input_size": args.nn_input},
                                         "codebook": {"epochs": 1, "kmeans_samples": 2000}},
                     "flip_average": True, "batch_size": 16},
        "recognize": {"backbone": args.backbone, "pretrained": "none", "input_size": args.rec_input, "epochs": 1,
                      "batch_size": args.batch, "hallucinate_batch": args.batch, "repeats": 1,
                      "validation_fraction": 0.34},
    }


def rehearse(n: int, work: Path, args: argparse.Namespace) -> list[Row]:
    """Write the shards for N training samples and run every stage on them."""
    size = tuple(args.size)
    data = bank(size)
    shards, static = work / "shards", work / "static"
    shards.mkdir(parents=True, exist_ok=True)
    static.mkdir(parents=True, exist_ok=True)
    n_test = round(n * UCF["test"] / UCF["train"])
    n_static = (max(n // 10, 4 * len(CLASSES)), max(n // 25, len(CLASSES)))
    t0 = time.perf_counter()
    split = {"train": write_split(shards, "train", n, SAMPLES_PER_VIDEO, args.per_shard, size, data),
             "test": write_split(shards, "test", n_test, SAMPLES_PER_VIDEO, args.per_shard, size, data, 10**5)}
    still = {"train": write_split(static, "train", n_static[0], 1, args.per_shard, size, data, 2 * 10**5),
             "test": write_split(static, "test", n_static[1], 1, args.per_shard, size, data, 3 * 10**5)}
    written = time.perf_counter() - t0
    shard_bytes = sum(Path(p).stat().st_size for p in split["train"] + split["test"])
    rows = [Row("write shards", n, n + n_test, math.nan, written, shard_bytes / (n + n_test))]
    rows += run_stages(n, n_test, n_static, split, still, work, args)
    return rows


def run_stages(n: int, n_test: int, n_static: tuple[int, int], split: dict, still: dict, work: Path,
               args: argparse.Namespace) -> list[Row]:
    cfg = stage_configs(args)
    models, logs = work / "models", work / "logs"
    logs.mkdir(exist_ok=True)
    steps = args.steps * args.batch
    rows = [
        run_stage("train-motion-net", n, steps + n_test, [
            "train-motion-net", "--shards", *split["train"], "--test-shards", *split["test"], "--out",
            str(models / "motion_net"), "--config-json", json.dumps(cfg["motion_net"]), "--threads",
            str(args.threads)], logs / "motion_net.log"),
        run_stage("train (Im2Flow)", n, steps, [
            "train", "--shards", *split["train"], "--motion-net", str(models / "motion_net" / "checkpoint.pt"),
            "--out", str(models / "im2flow"), "--config-json", json.dumps(cfg["train"]), "--threads",
            str(args.threads)], logs / "train.log"),
        run_stage("evaluate (every baseline)", n, n + n_test, [
            "evaluate", "--train-shards", *split["train"], "--test-shards", *split["test"], "--checkpoint",
            str(models / "im2flow" / "checkpoint.pt"), "--out", str(work / "evaluation"), "--config-json",
            json.dumps(cfg["evaluate"]), "--threads", str(args.threads)], logs / "evaluate.log"),
        run_stage("recognize", n, sum(n_static), [
            "recognize", "--train-shards", *still["train"], "--test-shards", *still["test"], "--im2flow",
            str(models / "im2flow" / "checkpoint.pt"), "--config-json", json.dumps(cfg["recognize"]), "--out-dir",
            str(work / "recognition"), "--threads", str(args.threads)], logs / "recognize.log"),
    ]
    rows.append(run_stage("report", n, n + n_test, report_argv(work, n, n_test), logs / "report.log"))
    return rows


def report_argv(work: Path, n: int, n_test: int) -> list[str]:
    """The report's inputs as the DAG makes them: one line a video in videos.tsv (what the flow jobs
    would have listed), empty rejected and near-duplicate lists."""
    records = []
    for split, count, first in (("train", n, 0), ("test", n_test, 10**5)):
        for v in range(math.ceil(count / SAMPLES_PER_VIDEO)):
            label = (first + v) % len(CLASSES)
            vid = f"{CLASSES[label]}/v_{first + v:06d}"
            records.append(VideoRecord(vid, f"{vid}.avi", label, CLASSES[label], split, "ok", SAMPLES_PER_VIDEO, "",
                                       15.0, 0.0, ""))
    write_records(records, work / "videos.tsv")
    write_rejected(records, work / "rejected.tsv")
    (work / "near_duplicates.tsv").write_text("train_video\ttest_video\tframes_matched\n")
    (work / "benchmarks").mkdir(exist_ok=True)
    models = work / "models"
    return ["report", "--evaluation", str(work / "evaluation"), "--im2flow", str(models / "im2flow"),
            "--motion-net", str(models / "motion_net"), "--videos", str(work / "videos.tsv"), "--rejected",
            str(work / "rejected.tsv"), "--duplicates", str(work / "near_duplicates.tsv"), "--config-json",
            json.dumps({"name": "rehearsal"}), "--benchmarks", str(work / "benchmarks"), "--recognition",
            str(work / "recognition" / "table.md"), "--out-html", str(work / "report" / "report.html"),
            "--out-md", str(work / "report" / "report.md")]


# ----------------------------------------------------------------------------- table and projection


def table(rows: list[Row], sizes: list[int]) -> str:
    small, large = sizes[0], sizes[-1]
    by = {(r.stage, r.size): r for r in rows}
    lines = ["| stage | samples | peak RSS (MB) | seconds | s per 1,000 samples | shard bytes per sample "
             f"| peak RSS {large:,} ÷ {small:,} |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = ""
        if r.size == large and not math.isnan(r.peak_rss_mb) and (r.stage, small) in by:
            ratio = f"{r.peak_rss_mb / by[(r.stage, small)].peak_rss_mb:.2f}"
        rss = "–" if math.isnan(r.peak_rss_mb) else f"{r.peak_rss_mb:,.0f}"
        bps = "" if math.isnan(r.bytes_per_sample) else f"{r.bytes_per_sample / 1024:,.0f} KiB"
        lines.append(f"| {r.stage} | {r.samples:,} | {rss} | {r.seconds:,.1f} | "
                     f"{1000 * r.seconds / max(r.samples, 1):,.2f} | {bps} | {ratio} |")
    return "\n".join(lines)


def projection(rows: list[Row], sizes: list[int], loader_rate: float | None) -> str:
    """UCF-101 split 1: disk, RAM per stage, evaluation CPU-hours, loader rate for one GPU."""
    large = max(sizes)
    by = {(r.stage, r.size): r for r in rows}
    bps = by[("write shards", large)].bytes_per_sample
    samples = UCF["train"] + UCF["test"]
    static = UCF["static_train"] + UCF["static_test"]
    disk_gb = bps * (samples + static) / 1e9
    ev = [by[("evaluate (every baseline)", n)] for n in sizes]
    slope = (ev[-1].seconds - ev[0].seconds) / (ev[-1].samples - ev[0].samples)
    eval_hours = (ev[0].seconds + slope * (samples - ev[0].samples)) / 3600
    lines = [f"Projection for UCF-101 split 1 ({UCF['train']:,} training + {UCF['test']:,} test samples, "
             f"{static:,} static images), from the {large:,}-sample run:", "",
             f"- disk: shards {disk_gb:,.0f} GB ({bps / 1024:,.0f} KiB a sample); the per-video target cache "
             f"(results/<name>/targets, reused by incremental reruns) about as much again: ~{2 * disk_gb:,.0f} GB "
             "in all",
             "- RAM per stage (peak RSS, which does not grow with the samples): "
             + ", ".join(f"{r.stage} {r.peak_rss_mb / 1024:.1f} GB" for r in rows
                         if r.size == large and not math.isnan(r.peak_rss_mb)),
             f"- evaluation on this machine's CPU (every baseline, both flip treatments, {os.cpu_count()} cores): "
             f"~{eval_hours:,.0f} CPU-hours by the line through the two sizes ({slope * 1000:.2f} s per 1,000 "
             "samples)",
             f"- loader: {GPU_IMAGES_PER_S:,} images/s for one GPU needs {GPU_IMAGES_PER_S:,} samples/s from the "
             "loader workers together"
             + (f"; at {loader_rate:,.0f} samples/s a process (benchmarks/shards_bench.py) that is "
                f"{math.ceil(GPU_IMAGES_PER_S / loader_rate)} workers" if loader_rate else "")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, nargs="+", default=[5000, 20000], help="training samples per run")
    p.add_argument("--size", type=int, nargs=2, default=[286, 286], help="frame size (configs/ucf101.yaml)")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--model", default="tiny", help="U-Net preset of the training stage")
    p.add_argument("--backbone", default="resnet18", help="recognition streams' backbone")
    p.add_argument("--rec-input", type=int, default=112, help="recognition streams' input size")
    p.add_argument("--nn-input", type=int, default=112, help="nearest neighbour's CNN input size")
    p.add_argument("--mn-input", type=int, default=224, help="motion-content network's input size (the paper's)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--per-shard", type=int, default=1000, help="samples a shard")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--classes", type=int, default=101, help="fewer classes for quick runs (tests)")
    p.add_argument("--loader-rate", type=float, default=None, help="samples/s a loader process (shards_bench)")
    p.add_argument("--keep", type=Path, default=None, help="work (and stay) in this folder")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = p.parse_args(argv)
    del CLASSES[args.classes:]
    sizes = sorted(args.samples)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="im2flow-rehearsal-") as tmp:
        base = args.keep or Path(tmp)
        for n in sizes:
            rows += rehearse(n, base / f"n{n}", args)
            print(table(rows, sizes), flush=True)
    print(f"\nScale rehearsal: {args.size[0]}x{args.size[1]} frames, {len(CLASSES)} classes, U-Net `{args.model}`, "
          f"{args.steps} training steps of {args.batch}, {args.threads} threads, {os.cpu_count()} cores\n")
    print(table(rows, sizes))
    print()
    print(projection(rows, sizes, args.loader_rate))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
