"""Real Snakemake runs of the data-preparation DAG: demo renders to shards, incremental reruns, bad input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from conftest import make_bad_videos, planned_jobs, run_snakemake, small_config
from pipeline.data.dataset import ShardDataset
from pipeline.data.demo import render_video, write_video
from pipeline.data.discovery import read_manifest
from pipeline.data.rejects import read_rejections
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
            assert a["estimator"] == "tvl1" and config["flow"]["params"]["tvl1"].items() <= recorded.items()
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
    assert (results / "rejected_videos.tsv").read_text().splitlines() == ["video_id\tpath\treason"]
    for rule in ("video_targets", "shards"):
        assert list((results / "benchmarks" / rule).rglob("*.tsv")), rule
        assert list((results / "logs" / rule).rglob("*.log")), rule


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
    assert plan == {"video_targets": 1, "shard": 1, "manifest": 1, "rejected_videos": 1, "prepare_data": 1}, plan
    new_shard = f"train-{shard_of('CarDrive/v_CarDrive_g09_c01', 2):03d}.h5"
    assert new_shard in proc.stdout

    # every bad-input kind, listed in the split file: the DAG completes and lists each with its reason
    expected = make_bad_videos(root / "CarDrive", root / "CarDrive" / "v_CarDrive_g01_c01.avi")
    trainlist.write_text(trainlist.read_text() + "".join(f"CarDrive/{n} 4\n" for n in expected))
    run_snakemake(work, config, "prepare_data")
    rejected = {r.video_id.split("/")[1]: r for r in read_rejections(work / "results/t/rejected_videos.tsv")}
    assert set(rejected) == {n[:-4] for n in expected}
    for name, words in expected.items():
        assert words in rejected[name[:-4]].reason
        assert name in rejected[name[:-4]].path
    shards = sorted((work / "results/t/shards/tvl1").glob("*.h5"))
    ds = ShardDataset(shards)
    assert len(ds) == 13 * 3 and "CarDrive/v_CarDrive_g09_c01" in {ds.read(i)[3] for i in range(len(ds))}

    # a changed flow parameter reruns every video's job (decoding included: one job a video
    # keeps the DAG small, pipeline/video_targets.py) and the shards, not the manifest
    changed = json.loads(json.dumps(config))
    changed["flow"]["params"]["tvl1"]["warps"] = 4
    plan = planned_jobs(run_snakemake(work, changed, "-n", "prepare_data"))
    assert plan.get("video_targets") == 13 + len(expected) and plan.get("shard") == 4, plan
    assert "manifest" not in plan and "demo_dataset" not in plan, plan


def test_bad_config_fails_before_any_job_naming_the_key(tmp_path):
    config = small_config("data/ds", name="bad", demo=True)
    config["frames"]["size"] = [48]
    config["shards"]["codec"] = "rar"
    proc = run_snakemake(tmp_path, config, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "frames.size" in out and "shards.codec" in out
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()
