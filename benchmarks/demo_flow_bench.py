"""TV-L1 against `liu` on the demo renders, scored against their exact rendered flow.

This is the measurement that picks the demo config's estimator: the frames are
the demo's (rendered 96x96 as in config.yaml, decoded from MJPG, resized to 64x64),
the truth is the rendered flow resized with (u, v) scaled.

    python benchmarks/demo_flow_bench.py [--videos-per-class 2] [--render-size 96 96] [--size 64 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.data.demo import load_true_flow, make_demo_dataset
from pipeline.encoding import resize_flow
from pipeline.flow import make_estimator
from pipeline.data.frames import decode_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos-per-class", type=int, default=2)
    parser.add_argument("--render-size", type=int, nargs=2, default=(96, 96), help="demo.size [H W]")
    parser.add_argument("--size", type=int, nargs=2, default=(64, 64), help="frames.size [H W]")
    args = parser.parse_args()
    size = tuple(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        make_demo_dataset(Path(tmp), videos_per_class=args.videos_per_class, test_groups=1,
                          size_hw=tuple(args.render_size), n_frames=24, seed=0)
        data = []
        for video in sorted(Path(tmp).glob("*/*.avi")):
            frames = decode_video(video, size)
            truth = np.stack([resize_flow(f, size) for f in load_true_flow(video)])
            data.append((frames[:-1], frames[1:], truth))
    print(f"\nDemo renders: {len(data)} videos x {len(data[0][0])} pairs at {size[0]}x{size[1]}\n")
    print("| estimator | EPE all (px) | EPE moving (px) | zero flow, moving (px) | pairs/s | speed vs tvl1 |")
    print("|---|---|---|---|---|---|")
    base = None
    for name, params in (("tvl1", {"threads": 1}), ("liu", {"threads": 1, "batch_size": 32})):
        est = make_estimator(name, **params)
        est.estimate(data[0][0][:2], data[0][1][:2])  # warm-up (liu builds its C++ kernel once)
        err_all, err_moving, zero_moving, pairs = [], [], [], 0
        t0 = time.perf_counter()
        for first, second, truth in data:
            flow = est.estimate(first, second)
            pairs += len(first)
            err = np.linalg.norm(flow - truth, axis=-1)
            speed = np.linalg.norm(truth, axis=-1)
            moving = speed > 0.1
            err_all.append(err.mean())
            err_moving.append(err[moving].mean())
            zero_moving.append(speed[moving].mean())
        rate = pairs / (time.perf_counter() - t0)
        base = base or rate
        print(f"| {name} | {np.mean(err_all):.3f} | {np.mean(err_moving):.3f} | {np.mean(zero_moving):.3f} "
              f"| {rate:.1f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()
