"""Flow estimators side by side: accuracy (EPE) and speed on real images with exact ground truth.

One run prints one Markdown table. Test sets (the constructions of facts.md's anchor table):
synthetic warps of real photographs at 256×256 (astronaut translated by (2.5, 1.25);
astronaut rotated 2° and scaled 1.03; chelsea under smooth bumps of at most 4 px), where
image 1 = remap(photo, grid + F), image 2 = the plain crop, so image2(x + F(x)) = image1(x)
exactly; and the Middlebury motorcycle stereo pair (skimage.data.stereo_motorcycle) at ¼ and
½ size, flow = (-disparity, 0) where the disparity is finite.

Methods: `liu` on CPU at batch 1 and batch 8 (the batch holds 8 copies of the set's pair:
same work as 8 distinct pairs), `liu` in plain torch ops (what the C++ level kernel
buys, first set only), OpenCV TV-L1 (defaults, 2 threads), DIS (medium preset) and DeepFlow;
speed is also given as a ratio to TV-L1 on the same set in the same run. With CUDA present,
`liu` also runs on the GPU at batch 1, 8 and 64.

    .venv/bin/python benchmarks/flow_bench.py [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import skimage.data
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.flow.tvl1 import TVL1  # noqa: E402
from pipeline.flow.liu import LiuEstimator, liu_flow  # noqa: E402

log = logging.getLogger("flow_bench")

SIZE = 256
PAD = 32


@dataclass
class TestSet:
    name: str
    first: np.ndarray  # (H, W, 3) uint8
    second: np.ndarray  # (H, W, 3) uint8
    flow: np.ndarray  # (H, W, 2) float32 ground truth
    valid: np.ndarray  # (H, W) bool


def _synthetic(photo: np.ndarray, field: np.ndarray, name: str) -> TestSet:
    """image1 = photo sampled at grid + F, image2 = the crop: image2(x + F(x)) = image1(x)."""
    big = cv2.resize(photo, (SIZE + 2 * PAD, SIZE + 2 * PAD), interpolation=cv2.INTER_AREA)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    mx, my = (xs + PAD + field[..., 0]).astype(np.float32), (ys + PAD + field[..., 1]).astype(np.float32)
    first = cv2.remap(big, mx, my, cv2.INTER_LINEAR)
    second = big[PAD:PAD + SIZE, PAD:PAD + SIZE].copy()
    return TestSet(name, first, second, field.astype(np.float32), np.ones((SIZE, SIZE), bool))


def make_sets() -> list[TestSet]:
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    sets = []
    translation = np.zeros((SIZE, SIZE, 2))
    translation[..., 0], translation[..., 1] = 2.5, 1.25
    sets.append(_synthetic(skimage.data.astronaut(), translation, "astronaut, translation (2.5, 1.25)"))
    c = (SIZE - 1) / 2
    th, s = math.radians(2.0), 1.03
    rx = s * (math.cos(th) * (xs - c) - math.sin(th) * (ys - c)) + c
    ry = s * (math.sin(th) * (xs - c) + math.cos(th) * (ys - c)) + c
    sets.append(_synthetic(skimage.data.astronaut(), np.stack((rx - xs, ry - ys), -1), "astronaut, rotation 2° + scale 1.03"))
    rng = np.random.default_rng(3)
    bumps = np.zeros((SIZE, SIZE, 2))
    for _ in range(6):
        cx, cy = rng.uniform(0, SIZE, 2)
        sigma = rng.uniform(25, 60)
        amp = rng.uniform(-1, 1, 2)
        bumps += amp * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2))[..., None]
    bumps *= 4.0 / np.linalg.norm(bumps, axis=-1).max()
    sets.append(_synthetic(skimage.data.chelsea(), bumps, "chelsea, smooth bumps ≤ 4 px"))
    left, right, disp = skimage.data.stereo_motorcycle()
    for frac, label in ((0.25, "¼"), (0.5, "½")):
        h, w = round(left.shape[0] * frac), round(left.shape[1] * frac)
        a = cv2.resize(left, (w, h), interpolation=cv2.INTER_AREA)
        b = cv2.resize(right, (w, h), interpolation=cv2.INTER_AREA)
        d = cv2.resize(disp.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
        valid = np.isfinite(d)
        flow = np.zeros((h, w, 2), np.float32)
        flow[..., 0] = np.where(valid, -d * frac, 0.0)
        sets.append(TestSet(f"motorcycle {label} ({w}×{h})", a, b, flow, valid))
    return sets


def epe(flow: np.ndarray, ts: TestSet) -> float:
    return float(np.linalg.norm(flow - ts.flow, axis=-1)[ts.valid].mean())


def _grey(x: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)


def opencv_method(kind: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A one-pair RGB -> flow callable for an OpenCV estimator."""
    if kind == "tvl1":
        est = TVL1(threads=2)
        return lambda a, b: est.estimate(a[None], b[None])[0]
    if kind == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return lambda a, b: dis.calc(_grey(a), _grey(b), None)
    if kind == "deepflow":
        df = cv2.optflow.createOptFlow_DeepFlow()
        return lambda a, b: df.calc(_grey(a), _grey(b), None)
    raise ValueError(kind)


def timed(fn: Callable[[], np.ndarray], repeats: int, sync: Callable[[], None] = lambda: None) -> tuple[np.ndarray, float]:
    """Run once to warm up, then ``repeats`` times; return the result and the fastest time (s)."""
    out = fn()
    sync()
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return out, best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs after a warm-up (fastest kept)")
    parser.add_argument("--sets", type=str, default="", help="comma-separated substrings selecting test sets")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    sets = make_sets()
    if args.sets:
        keys = [k.strip() for k in args.sets.split(",")]
        sets = [s for s in sets if any(k in s.name for k in keys)]
    cuda = torch.cuda.is_available()
    rows: list[tuple[str, str, str, float, float, float]] = []
    for si, ts in enumerate(sets):
        log.info("set %s", ts.name)
        results: list[tuple[str, str, float, float]] = []  # method, batch, epe, pairs/s
        for kind, label in (("tvl1", "OpenCV TV-L1 (2 threads)"), ("dis", "OpenCV DIS medium"), ("deepflow", "OpenCV DeepFlow")):
            fn = opencv_method(kind)
            reps = 1 if kind == "tvl1" and ts.first.size > 200_000 else args.repeats
            flow, sec = timed(lambda: fn(ts.first, ts.second), reps)
            results.append((label, "1", epe(flow, ts), 1.0 / sec))
        variants = [("liu (CPU, C++ levels)", "c", 1), ("liu (CPU, C++ levels)", "c", 8)]
        if si == 0:
            variants.append(("liu (CPU, torch ops)", "torch", 8))
        for label, backend, batch in variants:
            est = LiuEstimator(device="cpu", batch_size=batch, threads=args.threads, backend=backend)
            a = np.repeat(ts.first[None], batch, 0)
            b = np.repeat(ts.second[None], batch, 0)
            reps = 1 if backend == "torch" else args.repeats
            flow, sec = timed(lambda: est.estimate(a, b), reps)
            results.append((label, str(batch), epe(flow[0], ts), batch / sec))
        if cuda:
            for batch in (1, 8, 64):
                x1 = torch.from_numpy(np.repeat(ts.first[None], batch, 0)).cuda().permute(0, 3, 1, 2).float() / 255
                x2 = torch.from_numpy(np.repeat(ts.second[None], batch, 0)).cuda().permute(0, 3, 1, 2).float() / 255
                out, sec = timed(lambda: liu_flow(x1, x2), args.repeats, torch.cuda.synchronize)
                flow = out[0].permute(1, 2, 0).cpu().numpy()
                results.append((f"liu (GPU {torch.cuda.get_device_name()})", str(batch), epe(flow, ts), batch / sec))
        tvl1_speed = results[0][3]
        for method, batch, e, pps in results:
            rows.append((ts.name, method, batch, e, pps, pps / tvl1_speed))
    print(f"torch {torch.__version__}, OpenCV {cv2.__version__}, {args.threads} threads, "
          f"fastest of {args.repeats} timed runs after a warm-up (1 for TV-L1 on the ½-size pair and for torch ops)")
    print("| set | method | batch | EPE (px) | pairs/s | ms/pair | speed ÷ TV-L1 |")
    print("|---|---|---|---|---|---|---|")
    for name, method, batch, e, pps, ratio in rows:
        print(f"| {name} | {method} | {batch} | {e:.3f} | {pps:.2f} | {1000 / pps:.0f} | {ratio:.2f} |")
    if not cuda:
        print("\nGPU: no CUDA device here; the GPU rows (liu at batch 1, 8, 64) were not run.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
