# Config validation, paths, the dataset's video list and every helper the rule files use.
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
SHARDS = expand(
    f"{RESULTS}/shards/{ESTIMATOR}/{{split}}-{{shard}}.h5",
    split=SPLITS,
    shard=SHARD_IDS,
)
TRAIN_SHARDS = expand(
    f"{RESULTS}/shards/{ESTIMATOR}/train-{{shard}}.h5", shard=SHARD_IDS
)
TEST_SHARDS = expand(f"{RESULTS}/shards/{ESTIMATOR}/test-{{shard}}.h5", shard=SHARD_IDS)
MODELS = f"{RESULTS}/models/{ESTIMATOR}"
EVALUATION = f"{RESULTS}/evaluation/{ESTIMATOR}"
STATIC = f"{RESULTS}/static"
REC = CFG["recognize"]
RECOGNITION = f"{RESULTS}/recognition/{ESTIMATOR}"
GPU = CFG["gpu_rules"]
# One software environment for every rule (`--software-deployment-method conda`).
ENV = "../../environment.yml"
# What `snakemake` builds by default; each rule file appends its final outputs.
FINAL_TARGETS = []
# Rules whose params read the video list must name the demo checkpoint's output as input.
DEMO_ROOT = [DATASET["root"]] if CFG["demo"]["enabled"] else []


wildcard_constraints:
    vid=ID_PATTERN,
    split="train|test",
    shard=r"\d{3}",
    estimator="[a-z0-9_]+",


_VIDEOS = {}


def as_json(value):
    """A config slice as one quoted shell word."""
    return shlex.quote(json.dumps(value, sort_keys=True, default=str))


def out_dir(output):
    """The folder of a rule's first output: stages write their files there."""
    return os.path.dirname(output[0])


# ----------------------------------------------------------------------------- the dataset


def dataset_videos():
    """video_id -> Video for the configured dataset (after the demo checkpoint, when enabled)."""
    if CFG["demo"]["enabled"]:
        checkpoints.demo_dataset.get()
    if "all" not in _VIDEOS:
        if DATASET["manifest"]:
            videos = read_manifest(DATASET["manifest"])
        else:
            videos = discover(
                DATASET["root"],
                DATASET["layout"],
                DATASET["split"],
                DATASET["splits_dir"],
                DATASET["test_fraction"],
            )
        _VIDEOS["all"] = {v.video_id: v for v in videos}
    return _VIDEOS["all"]


def _shard_index():
    """(split, shard index) -> member videos in manifest order, built once: a linear scan per shard
    call would cost O(videos x shards) hashes, about 13 s of DAG building at UCF-101's 13,320 videos.
    """
    videos = dataset_videos()
    if _VIDEOS.get("index_of") is not videos:
        index = {}
        for v in videos.values():
            index.setdefault(
                (v.split, shard_of(v.video_id, len(SHARD_IDS))), []
            ).append(v)
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
    return shlex.quote(video_file(wildcards.vid))


def video_input(wildcards):
    return existing_video(wildcards.vid)


def shard_members(split, shard):
    return list(_shard_index().get((split, int(shard)), []))


def dataset_digest(wildcards):
    """Changes whenever a video is added, removed, replaced or moved between splits."""
    rows = sorted(
        (v.video_id, v.relpath, v.label, v.split, v.size, v.mtime_ns)
        for v in dataset_videos().values()
    )
    return hashlib.sha1(json.dumps(rows).encode()).hexdigest()


# ----------------------------------------------------------------------------- data rules


def shard_inputs(wildcards):
    members = shard_members(wildcards.split, wildcards.shard)
    return {
        "dataset": DEMO_ROOT,
        "frames": [f"{RESULTS}/frames/{v.video_id}.npz" for v in members],
        "flow": [
            f"{RESULTS}/flow/{wildcards.estimator}/{v.video_id}.npz" for v in members
        ],
    }


def _shard_attrs(wildcards):
    return {
        "frame_size": CFG["frames"]["size"],
        "class_names": class_names(list(dataset_videos().values())),
        "estimator": wildcards.estimator,
        "estimator_params": CFG["flow"]["params"].get(wildcards.estimator, {}),
        "split": wildcards.split,
        "shard_index": int(wildcards.shard),
        "magnitude_clip": CFG["shards"]["magnitude_clip"],
        "codec": CFG["shards"]["codec"],
    }


def shard_spec(wildcards):
    members = shard_members(wildcards.split, wildcards.shard)
    spec = _shard_attrs(wildcards) | {
        "members": [
            [
                v.video_id,
                v.label,
                f"{RESULTS}/frames/{v.video_id}.npz",
                f"{RESULTS}/flow/{wildcards.estimator}/{v.video_id}.npz",
            ]
            for v in members
        ]
    }
    return as_json(spec)


def static_shard_inputs(wildcards):
    members = shard_members(wildcards.split, wildcards.shard)
    return DEMO_ROOT + [p for v in members for p in existing_video(v.video_id)]


def static_shard_spec(wildcards):
    members = shard_members(wildcards.split, wildcards.shard)
    spec = _shard_attrs(wildcards) | {
        "videos": [[v.video_id, v.label, video_file(v.video_id)] for v in members]
    }
    return as_json(spec)


# ----------------------------------------------------------------------------- recognition and report

# The Im2Flow checkpoint: this run's, or one trained on another dataset (the transfer setting).
REC_IM2FLOW = REC["im2flow_checkpoint"] or f"{MODELS}/im2flow/checkpoint.pt"
REC_IM2FLOW_NAME = REC["im2flow_name"] or (
    CFG["name"] if not REC["im2flow_checkpoint"] else "external"
)


def recognize_inputs(wildcards):
    inputs = {"im2flow": REC_IM2FLOW}
    if REC["source"] == "images":
        if not REC["images_root"]:
            raise WorkflowError(
                "recognize.source is 'images' but recognize.images_root is not set"
            )
        inputs["images"] = REC["images_root"]
    else:
        for split in SPLITS:
            inputs[split] = expand(
                f"{STATIC}/shards/{wildcards.estimator}/{split}-{{shard}}.h5",
                shard=SHARD_IDS,
            )
    return inputs


def recognize_data_args(wildcards, input):
    if REC["source"] == "images":
        size = " ".join(str(s) for s in CFG["frames"]["size"])
        return (
            f"--images-root {shlex.quote(input.images)} --image-size {size}"
            f" --test-fraction {REC['images_test_fraction']}"
        )
    return (
        f"--train-shards {' '.join(input.train)} --test-shards {' '.join(input.test)}"
    )


def recognize_config(wildcards):
    """The recognize slice, with Im2Flow's test-time choices taken from evaluate (Tables 1 and 2 agree)."""
    chosen = {
        k: CFG["evaluate"][k]
        for k in ("bn_mode", "flip_average")
        if CFG["evaluate"].get(k) is not None
    }
    return as_json(REC | chosen)


def report_recognition():
    """(Table 2 as an input list, why it is missing)."""
    if not REC["enabled"]:
        return [], "recognize.enabled is false in the config."
    return [f"{RECOGNITION}/table.md"], ""


def report_recognition_args(wildcards, input):
    if input.recognition:
        return f"--recognition {input.recognition}"
    return f"--recognition-status {shlex.quote(report_recognition()[1])}"
