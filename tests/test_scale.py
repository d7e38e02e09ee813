"""Scale: a dry run over a fake UCF-101 manifest with the SLURM profile plans grouped flow submissions.

The full 13,320-video measurement is benchmarks/dag_bench.py (table in benchmarks/dag_bench.md);
this test runs the same code on IM2FLOW_SCALE_VIDEOS fake videos (400 by default) so that it
stays within the suite's time budget.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

spec = importlib.util.spec_from_file_location("dag_bench", REPO / "benchmarks" / "dag_bench.py")
dag_bench = importlib.util.module_from_spec(spec)
sys.modules["dag_bench"] = dag_bench  # dataclasses look their module up there
spec.loader.exec_module(dag_bench)


def test_fake_manifest_has_ucf101_shape():
    videos = dag_bench.fake_ucf101(13320)
    assert len(videos) == 13320 and len({v.video_id for v in videos}) == 13320
    assert len({v.class_name for v in videos}) == 101
    assert {v.split for v in videos} == {"train", "test"}
    v = videos[0]
    assert v.relpath == "FakeAction001/v_FakeAction001_g01_c01.avi" and v.video_id == v.relpath[:-4]


def test_slurm_dry_run_batches_flow_jobs(tmp_path):
    n = int(os.environ.get("IM2FLOW_SCALE_VIDEOS", "400"))
    r = dag_bench.dry_run(tmp_path, n, "profiles/slurm", REPO / "configs" / "ucf101.yaml")
    assert r.jobs["video_targets"] == n and "frames" not in r.jobs and "flow" not in r.jobs
    # frames + flow of 50 videos per sbatch, never one submission per video
    assert r.group_jobs["video"] == math.ceil(n / 50)
    assert "video_targets" not in r.single_jobs
    # recognition's static set: one job per shard, never one per video
    assert r.jobs.get("static_shard", 0) <= 2 * 128
    per_video_rules = {"video_targets"}
    other_jobs = sum(c for rule, c in r.jobs.items() if rule not in per_video_rules)
    assert r.submissions <= sum(r.group_jobs.values()) + other_jobs
    assert r.submissions - other_jobs <= math.ceil(n / 50)
    # our own CPU time, not the neighbours' (the wall clock on a shared machine is not ours)
    assert r.cpu_seconds < 60 * max(1.0, n / 2000), r
