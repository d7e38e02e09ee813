# Config validation, paths, the dataset's video list and every helper the rule files use.
import hashlib
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from snakemake.exceptions import WorkflowError

from pipeline.config import ConfigError, validate
from pipeline.data.discovery import (
    ID_PATTERN,
    DiscoveryError,
    class_names,
    discover,
    read_manifest,
)
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
# Rules read the videos through this link to dataset.root, and name them by their path relative
# to it: moving or re-mounting the root re-points the link and reruns nothing.
DATASET_LINK = f"{RESULTS}/dataset"
# Per-video flow targets, reused across reruns (pipeline/data/extract.py).
TARGET_CACHE = f"{RESULTS}/targets"
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
# Memory (MB), run time (minutes) and disk (MB) of every rule: the config's `resources`
# (measured for the presets by benchmarks/scale_rehearsal.py) over these demo-sized defaults.
RESOURCE_DEFAULTS = {
    "demo_dataset": {"mem_mb": 1000, "runtime": 30, "disk_mb": 1000},
    "manifest": {"mem_mb": 1000, "runtime": 30, "disk_mb": 100},
    "shard": {"mem_mb": 4000, "runtime": 120, "disk_mb": 2000},
    "static_shard": {"mem_mb": 4000, "runtime": 120, "disk_mb": 1000},
    "video_lists": {"mem_mb": 1000, "runtime": 10, "disk_mb": 10},
    "train_motion_net": {"mem_mb": 4000, "runtime": 60, "disk_mb": 200},
    "train_im2flow": {"mem_mb": 4000, "runtime": 60, "disk_mb": 1000},
    "evaluate": {"mem_mb": 4000, "runtime": 60, "disk_mb": 2000},
    "recognize": {"mem_mb": 4000, "runtime": 60, "disk_mb": 2000},
    "report": {"mem_mb": 1000, "runtime": 10, "disk_mb": 100},
}
RES = {
    name: RESOURCE_DEFAULTS[name] | CFG["resources"].get(name, {})
    for name in RESOURCE_DEFAULTS
}
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
            try:
                videos = discover(
                    DATASET["root"],
                    DATASET["layout"],
                    DATASET["split"],
                    DATASET["splits_dir"],
                    DATASET["test_fraction"],
                    DATASET["group_pattern"],
                )
            except (DiscoveryError, FileNotFoundError) as exc:  # before any job runs
                raise WorkflowError(f"dataset {DATASET['root']}: {exc}")
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


def link_dataset_root():
    """Point DATASET_LINK at dataset.root (made or re-pointed when the workflow is read)."""
    target = os.path.abspath(DATASET["root"])
    link = Path(DATASET_LINK)
    if link.is_symlink() and os.readlink(link) == target:
        return
    if link.exists() and not link.is_symlink():
        raise WorkflowError(
            f"{link} should be a link to the dataset root, but it is not a link"
        )
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(".dataset.link")
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


link_dataset_root()


def member_videos(wildcards):
    """The shard's videos as inputs, read through the dataset link; a dangling or unreadable
    path is left out, so the job runs and records the rejection."""
    paths = [
        f"{DATASET_LINK}/{v.relpath}"
        for v in shard_members(wildcards.split, wildcards.shard)
    ]
    return DEMO_ROOT + [p for p in paths if os.path.isfile(p) and os.access(p, os.R_OK)]


def _shard_spec(wildcards, policy):
    """What a shard job computes: its members (by relative path and identity), the sampling,
    the estimator and the shard's attributes; any change reruns it."""
    frames = CFG["frames"]
    members = [
        [v.video_id, v.label, v.relpath, f"{v.relpath}|{v.size}|{v.mtime_ns}"]
        for v in shard_members(wildcards.split, wildcards.shard)
    ]
    return {
        "members": members,
        "sampling": {
            "size": frames["size"],
            "policy": policy,
            "every": frames["every"],
            "per_video": frames["per_video"],
        },
        "estimator": wildcards.estimator,
        "estimator_params": CFG["flow"]["params"].get(wildcards.estimator, {}),
        "attrs": {
            "class_names": class_names(list(dataset_videos().values())),
            "split": wildcards.split,
            "shard_index": int(wildcards.shard),
            "magnitude_clip": CFG["shards"]["magnitude_clip"],
            "codec": CFG["shards"]["codec"],
        },
    }


def shard_spec(wildcards):
    return as_json(_shard_spec(wildcards, CFG["frames"]["policy"]))


def static_shard_spec(wildcards):
    return as_json(_shard_spec(wildcards, "centre"))


def flow_gpus():
    """1 when the flow estimator runs on CUDA (liu with device cuda, or auto with a GPU visible here),
    so that flow jobs queue for the card like the other GPU rules; 0 otherwise."""
    if ESTIMATOR != "liu":
        return 0
    device = ESTIMATOR_PARAMS.get("device", "auto")
    if device == "auto":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            return int(
                bool([d for d in visible.split(",") if d.strip() not in ("", "-1")])
            )
        if shutil.which("nvidia-smi") is None:
            return 0
        try:
            listed = subprocess.run(
                ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20
            )
        except (OSError, subprocess.SubprocessError):
            return 0
        return int(listed.returncode == 0 and "GPU " in listed.stdout)
    return int(str(device).startswith("cuda"))


FLOW_GPUS = flow_gpus()


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


def current_benchmarks():
    """The benchmark files of the workflow's current jobs, relative to BENCH."""
    names = ["train_motion_net.tsv", "train_im2flow.tsv", "evaluate.tsv"]
    names += [f"shards/{ESTIMATOR}/{s}-{k}.tsv" for s in SPLITS for k in SHARD_IDS]
    if CFG["demo"]["enabled"]:
        names.append("demo_dataset.tsv")
    if REC["enabled"]:
        names.append(f"recognize/{ESTIMATOR}.tsv")
        if REC["source"] == "videos":
            names += [
                f"static/shards/{ESTIMATOR}/{s}-{k}.tsv"
                for s in SPLITS
                for k in SHARD_IDS
            ]
    return sorted(names)


def report_recognition():
    """(Table 2 as an input list, why it is missing)."""
    if not REC["enabled"]:
        return [], "recognize.enabled is false in the config."
    return [f"{RECOGNITION}/table.md"], ""


def report_recognition_args(wildcards, input):
    if input.recognition:
        return f"--recognition {input.recognition}"
    return f"--recognition-status {shlex.quote(report_recognition()[1])}"
