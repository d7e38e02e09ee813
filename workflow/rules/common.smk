# Config validation, paths and the dataset's video list, shared by every rule file.
import hashlib
import json
import os
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError

from pipeline.config import ConfigError, validate
from pipeline.data.discovery import ID_PATTERN, class_names, discover, read_manifest
from pipeline.data.shards import shard_of

REPO = Path(workflow.basedir).parent
if not config:  # plain `snakemake` from the repository root runs the demo config
    import yaml

    config.update(yaml.safe_load((REPO / "config.yaml").read_text()))
try:
    CFG = validate(config)
except ConfigError as exc:
    raise WorkflowError(str(exc))

RESULTS = f"results/{CFG['name']}"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
DATASET = CFG["dataset"]
ESTIMATOR = CFG["flow"]["estimator"]
ESTIMATOR_PARAMS = CFG["flow"]["params"].get(ESTIMATOR, {})
SPLITS = ["train", "test"]
SHARD_IDS = [f"{k:03d}" for k in range(CFG["shards"]["per_split"])]
# What `snakemake` builds by default; each rule file appends its final outputs.
FINAL_TARGETS = []
SHARDS = expand(f"{RESULTS}/shards/{ESTIMATOR}/{{split}}-{{shard}}.h5", split=SPLITS, shard=SHARD_IDS)

wildcard_constraints:
    vid=ID_PATTERN,
    split="train|test",
    shard=r"\d{3}",
    estimator="[a-z0-9_]+",


_VIDEOS = {}
# Rules whose params read the video list must name the demo checkpoint's output as input.
DEMO_ROOT = [DATASET["root"]] if CFG["demo"]["enabled"] else []


def dataset_videos():
    """video_id -> Video for the configured dataset (after the demo checkpoint, when enabled)."""
    if CFG["demo"]["enabled"]:
        checkpoints.demo_dataset.get()
    if "all" not in _VIDEOS:
        if DATASET["manifest"]:
            videos = read_manifest(DATASET["manifest"])
        else:
            videos = discover(DATASET["root"], DATASET["layout"], DATASET["split"], DATASET["splits_dir"],
                              DATASET["test_fraction"])
        _VIDEOS["all"] = {v.video_id: v for v in videos}
    return _VIDEOS["all"]


def _shard_index():
    """(split, shard index) -> member videos in manifest order, built once: a linear scan per shard
    call would cost O(videos x shards) hashes, about 13 s of DAG building at UCF-101's 13,320 videos."""
    videos = dataset_videos()
    if _VIDEOS.get("index_of") is not videos:
        index = {}
        for v in videos.values():
            index.setdefault((v.split, shard_of(v.video_id, len(SHARD_IDS))), []).append(v)
        _VIDEOS["index"], _VIDEOS["index_of"] = index, videos
    return _VIDEOS["index"]


def video_file(video_id):
    return os.path.join(DATASET["root"], dataset_videos()[video_id].relpath)


def existing_video(video_id):
    """The video as a job input when it exists; a dangling or unreadable path reaches the
    stage through params only, so the job runs and records the rejection."""
    path = video_file(video_id)
    return [path] if os.path.isfile(path) and os.access(path, os.R_OK) else []


def video_path(wildcards):
    return video_file(wildcards.vid)


def video_input(wildcards):
    return existing_video(wildcards.vid)


def shard_members(split, shard):
    return list(_shard_index().get((split, int(shard)), []))


def dataset_digest(wildcards):
    """Changes whenever a video is added, removed, replaced or moved between splits."""
    rows = sorted((v.video_id, v.relpath, v.label, v.split, v.size, v.mtime_ns) for v in dataset_videos().values())
    return hashlib.sha1(json.dumps(rows).encode()).hexdigest()
