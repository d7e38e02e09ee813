"""Real Snakemake runs of the data-preparation DAG: demo renders to shards, incremental reruns, bad input,
a flow job killed midway."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from conftest import BIN, REPO, make_bad_videos, planned_jobs, run_snakemake, small_config
from pipeline.data.dataset import ShardDataset
from pipeline.data.demo import render_video, write_video
from pipeline.data.discovery import read_manifest
from pipeline.data.videos import read_records
from pipeline.data.shards import is_complete, shard_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The demo config (rendering included, through the checkpoint), shrunk to run in about a minute."""
    work = tmp_path_factory.mktemp("wf")
    config = small_config("data/ds", name="t", demo=True)
    run_snakemake(work, config, "prepare_data")
    return work, config


def test_demo_dag_writes_complete_shards_with_provenance(workdir):
    work, config = workdir
    results = work / "results" / "t"
    manifest = read_manifest(results / "manifest.tsv")
    assert len(manifest) == 12 and {v.split for v in manifest} == {"train", "test"}
    shards = sorted((results / "shards" / "tvl1").glob("*.h5"))
    assert [p.name for p in shards] == ["test-000.h5", "test-001.h5", "train-000.h5", "train-001.h5"]
    total, seen_ids = 0, set()
    for path in shards:
        assert is_complete(path)
        with h5py.File(path) as f:
            a = f.attrs
            recorded = json.loads(a["estimator_params"])
            wanted = {k: v for k, v in config["flow"]["params"]["tvl1"].items() if k != "threads"}  # runtime only
            assert a["estimator"] == "tvl1" and wanted.items() <= recorded.items() and "threads" not in recorded
            assert list(a["frame_size"]) == [48, 48] and a["magnitude_clip"] == config["shards"]["magnitude_clip"]
            assert json.loads(a["class_names"]) == config["demo"]["classes"]
            split = a["split"]
            ids = {s.decode() for s in f["video_ids"][:]}
            flow = f["flow"][:].astype(np.float32)
            assert np.isfinite(flow).all() and flow[:, 2].max() > 0.3     # the objects move
            total += a["n_samples"]
        for vid in ids:
            entry = next(v for v in manifest if v.video_id == vid)
            assert entry.split == split and shard_of(vid, 2) == int(path.stem[-3:])
        seen_ids |= ids
    assert seen_ids == {v.video_id for v in manifest}
    assert total == 12 * 3                                          # 12 frames, every 3rd usable: 0, 3, 6
    ds = ShardDataset(shards)
    labels = {int(ds[i]["label"]) for i in range(len(ds))}
    assert labels == set(range(6))
    assert (results / "rejected_videos.tsv").read_text().splitlines() == ["video_id\tpath\tstatus\treason"]
    assert {r.status for r in read_records(results / "videos.tsv")} == {"ok"}
    assert list((results / "benchmarks" / "shards").rglob("*.tsv")) and list((results / "logs" / "shards").rglob("*.log"))
    # one flow job per shard, four in all: each of the 12 videos computed once, none reused on a first run
    logs = _shard_logs(results)
    assert len(logs) == 4 and sum(_computed(text) for text in logs.values()) == 12


def _shard_logs(results) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((results / "logs" / "shards").rglob("*.log"))}


def _computed(log: str) -> int:
    """Videos whose flow a shard job computed (its last summary line)."""
    found = re.findall(r"(\d+) videos: (\d+) reused from the cache, (\d+) computed", log)
    return int(found[-1][2]) if found else 0


def test_incremental_rerun_and_bad_input(workdir):
    work, config = workdir
    root = work / "data" / "ds"
    trainlist = root / "ucfTrainTestlist" / "trainlist01.txt"

    # nothing to do when nothing changed (Snakemake lists the output-less target rule
    # after a checkpoint; it runs no command)
    assert set(planned_jobs(run_snakemake(work, config, "-n", "prepare_data"))) <= {"prepare_data"}

    # one new video: only its jobs, its one shard and what depends on them
    frames, _ = render_video("CarDrive", 99, (96, 128), 12)
    write_video(root / "CarDrive" / "v_CarDrive_g09_c01.avi", frames)
    trainlist.write_text(trainlist.read_text() + "CarDrive/v_CarDrive_g09_c01.avi 4\n")
    proc = run_snakemake(work, config, "-n", "prepare_data")
    plan = planned_jobs(proc)
    assert plan == {"shard": 1, "manifest": 1, "video_lists": 1, "prepare_data": 1}, plan
    new_shard = f"train-{shard_of('CarDrive/v_CarDrive_g09_c01', 2):03d}"
    assert f"{new_shard}.h5" in proc.stdout
    run_snakemake(work, config, "prepare_data")
    log = (work / "results/t/logs/shards/tvl1" / f"{new_shard}.log").read_text()
    assert _computed(log) == 1 and re.search(r"\d+ videos: \d+ reused from the cache, 1 computed", log)

    # every bad-input kind, listed in the split file: the DAG completes and lists each with its reason
    expected = make_bad_videos(root / "CarDrive", root / "CarDrive" / "v_CarDrive_g01_c01.avi")
    trainlist.write_text(trainlist.read_text() + "".join(f"CarDrive/{n} 4\n" for n in expected))
    run_snakemake(work, config, "prepare_data")
    records = {r.video_id.split("/")[1]: r for r in read_records(work / "results/t/videos.tsv")}
    rejected = {k: r for k, r in records.items() if r.status != "ok"}
    assert set(rejected) == {n[:-4] for n in expected}
    for name, words in expected.items():
        assert words in rejected[name[:-4]].reason
        assert name in rejected[name[:-4]].path
    # (half of a 12-frame clip decodes to 5 frames: too short for one sample, so rejected too; a longer
    # clip cut short keeps what decodes: tests/test_damage.py)
    assert {r.status for r in rejected.values()} == {"rejected"}
    assert (work / "results/t/rejected_videos.tsv").read_text().count("\trejected\t") == len(expected)
    shards = sorted((work / "results/t/shards/tvl1").glob("*.h5"))
    ds = ShardDataset(shards)
    ids = [ds.read(i)[3] for i in range(len(ds))]
    assert len(ds) == 13 * 3 and "CarDrive/v_CarDrive_g09_c01" in ids

    # a changed flow parameter reruns every shard job and recomputes every video, not the manifest
    changed = json.loads(json.dumps(config))
    changed["flow"]["params"]["tvl1"]["warps"] = 4
    plan = planned_jobs(run_snakemake(work, changed, "-n", "prepare_data"))
    assert plan.get("shard") == 4 and "manifest" not in plan and "demo_dataset" not in plan, plan
    run_snakemake(work, changed, "prepare_data")
    assert sum(_computed(text) for text in _shard_logs(work / "results/t").values()) == 13 + len(expected)
    # a runtime-only change (the estimator's threads) recomputes no video: the cache key leaves it out
    threads = json.loads(json.dumps(changed))
    threads["flow"]["params"]["tvl1"]["threads"] = 2
    run_snakemake(work, threads, "prepare_data")
    assert sum(_computed(text) for text in _shard_logs(work / "results/t").values()) == 0


def test_bad_config_fails_before_any_job_naming_the_key(tmp_path):
    config = small_config("data/ds", name="bad", demo=True)
    config["frames"]["size"] = [48]
    config["shards"]["codec"] = "rar"
    proc = run_snakemake(tmp_path, config, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "frames.size" in out and "shards.codec" in out
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()


def _kill_jobs(workdir: Path, command: str) -> int:
    """SIGKILL the processes running ``command`` in ``workdir`` (and no other test's); returns how many."""
    killed = 0
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if command in cmdline and Path(os.readlink(proc / "cwd")) == workdir:
                os.kill(int(proc.name), signal.SIGKILL)
                killed += 1
        except (OSError, ValueError):
            continue
    return killed


def test_flow_job_killed_midway_keeps_the_videos_it_finished(tmp_path):
    """SIGKILL every running flow job once a few videos are cached, then rerun: the finished videos are
    reused, the rest computed, every video lands in a shard once, and nothing half-written is kept."""
    config = small_config("data/ds", name="t", demo=True)
    config["demo"].update(videos_per_class=4)
    config["frames"]["size"] = [96, 96]
    config["flow"]["params"]["tvl1"] = {"threads": 1}
    run_snakemake(tmp_path, config, "manifest")             # render the videos first
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"), "--configfile", "config.yaml",
           "--cores", "2", "prepare_data"]
    run = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = tmp_path / "results" / "t" / "targets"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(cache.rglob("*.npz"))) < 3:
        time.sleep(0.01)
    finished = {p: p.stat().st_mtime_ns for p in cache.rglob("*.npz")}
    killed = _kill_jobs(tmp_path, "im2flow shard")
    run.wait(timeout=120)
    assert killed and 3 <= len(finished) < 24, finished
    shards = tmp_path / "results" / "t" / "shards" / "tvl1"
    assert not any(is_complete(p) for p in shards.glob(".*partial"))
    run_snakemake(tmp_path, config, "--rerun-incomplete", "prepare_data")
    # every video finished before the kill is reused as it was (never recomputed), the others computed
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())
    assert len(list(cache.rglob("*.npz"))) == 24
    logs = _shard_logs(tmp_path / "results" / "t")
    reused = sum(int(m[1]) for text in logs.values()
                 for m in re.findall(r"(\d+) videos: (\d+) reused from the cache", text)[-1:])
    assert reused + sum(_computed(text) for text in logs.values()) == 24
    ds = ShardDataset(sorted(shards.glob("*.h5")))
    ids = [ds.read(i)[3] for i in range(len(ds))]
    assert len(set(ids)) == 24 and len(ids) == 24 * 3


def test_moving_the_dataset_root_reruns_nothing(tmp_path):
    """The same files under another root (moved, or re-mounted elsewhere): the jobs name videos by
    their path relative to the root and read them through results/<name>/dataset, so nothing reruns."""
    from pipeline.data.demo import make_demo_dataset

    make_demo_dataset(tmp_path / "data" / "first", videos_per_class=2, test_groups=1, n_frames=12, seed=3)
    config = small_config("data/first", name="t", demo=False)
    run_snakemake(tmp_path, config, "prepare_data")
    (tmp_path / "data" / "first").rename(tmp_path / "data" / "moved")
    moved = json.loads(json.dumps(config))
    moved["dataset"]["root"] = str(tmp_path / "data" / "moved")    # now an absolute path, elsewhere
    dry = run_snakemake(tmp_path, moved, "-n", "prepare_data")
    assert set(planned_jobs(dry)) <= {"prepare_data"}, dry.stdout[-3000:]
    assert os.readlink(tmp_path / "results" / "t" / "dataset") == str(tmp_path / "data" / "moved")


def test_an_empty_dataset_folder_stops_before_any_job(tmp_path):
    (tmp_path / "data" / "empty").mkdir(parents=True)
    config = small_config("data/empty", name="e", demo=False)
    config["dataset"]["layout"] = "folder"
    proc = run_snakemake(tmp_path, config, "prepare_data", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "no video files under" in out and "looked for" in out, out[-3000:]
    assert not (tmp_path / "results" / "e" / "shards").exists()


def test_flow_jobs_ask_for_a_gpu_exactly_when_liu_runs_on_cuda(tmp_path):
    """With liu on CUDA each flow job holds a card (gpu=1): one process per card, large batches;
    on the CPU (or with TV-L1) flow jobs ask for none and run side by side."""
    from pipeline.data.demo import make_demo_dataset

    make_demo_dataset(tmp_path / "data" / "g", videos_per_class=2, test_groups=1, n_frames=8, seed=5)
    asked = {}
    for name, estimator, device in (("cuda", "liu", "cuda"), ("cpu", "liu", "cpu"), ("tvl1", "tvl1", "cuda")):
        config = small_config("data/g", name=name, demo=False)
        config["flow"]["estimator"] = estimator
        config["flow"]["params"]["liu"] = {"device": device, "batch_size": 64}
        dry = run_snakemake(tmp_path, config, "-n", "prepare_data")
        blocks = re.split(r"\n(?=(?:local)?rule \w+:)", dry.stdout)
        shard_blocks = [b for b in blocks if re.match(r"(?:local)?rule shard:", b)]
        assert shard_blocks, dry.stdout[-3000:]
        asked[name] = {re.search(r"\bgpu=(\d+)", b)[1] for b in shard_blocks}
    assert asked == {"cuda": {"1"}, "cpu": {"0"}, "tvl1": {"0"}}
