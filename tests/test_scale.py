"""Scale: a dry run over a fake UCF-101 manifest with the SLURM profile plans one flow job per shard.

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
import yaml

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


def test_slurm_dry_run_plans_one_flow_job_per_shard(tmp_path):
    n = int(os.environ.get("IM2FLOW_SCALE_VIDEOS", "400"))
    r = dag_bench.dry_run(tmp_path, n, "profiles/slurm", REPO / "configs" / "ucf101.yaml")
    per_split = yaml.safe_load((REPO / "configs" / "ucf101.yaml").read_text())["shards"]["per_split"]
    # the flow is computed per shard (a batch of videos), never per video
    assert r.jobs["shard"] == 2 * per_split and r.jobs["static_shard"] == 2 * per_split
    assert not {"video_targets", "frames", "flow"} & set(r.jobs)
    assert sum(r.jobs.values()) < 2 * 2 * per_split + 20
    assert r.submissions == sum(c for rule, c in r.jobs.items() if rule not in dag_bench.NORUN_RULES)
    # our own CPU time, not the neighbours' (the wall clock on a shared machine is not ours)
    assert r.cpu_seconds < 60, r
