"""Execution profiles: the workstation profile's GPU limit on the demo DAG, and the SLURM profile
through a real single-node SLURM (sbatch submissions, status by squeue), checked against a local run."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the shards' blosc filter with h5py)
import numpy as np
import pytest

from conftest import REPO, run_snakemake, small_config

pytestmark = pytest.mark.slow

PROFILES = REPO / "profiles"
CLASSES = ["ArrowGlide", "BallFall", "WheelSpin"]  # 6 videos: 3 train, 3 test
TINY = {
    "motion_net": {"pretrained": None, "input_size": None, "crop": None, "batch_size": 4, "epochs": 1,
                   "max_steps": 2, "num_workers": 0, "log_every": 1, "checkpoint_every": 100,
                   "bn_recalibration_batches": 1},
    "train": {"model": "tiny", "crop": 32, "batch_size": 4, "epochs": 1, "max_steps": 2, "num_workers": 0,
              "log_every": 1, "checkpoint_every": 100},
    "evaluate": {"baselines": ["zero", "mean"], "figure_rows": 2, "motion_potential_rows": 1},
    "recognize": {"enabled": True, "backbone": "tiny", "pretrained": None, "epochs": 1, "batch_size": 4,
                  "repeats": 1, "threads": 1},
    # one thread each: with --cores 2 two GPU rules could run side by side but for the gpu limit
    "gpu_rules": {"threads": 1},
    "resources": {r: {"mem_mb": 1000, "runtime": 30} for r in ("train_motion_net", "train_im2flow", "evaluate", "recognize")},
}


def demo_config() -> dict:
    config = small_config("data/ds", name="t", demo=True, **{"demo.classes": CLASSES})
    config.update({k: dict(v) for k, v in TINY.items()})
    return config


# ----------------------------------------------------------------------------- job intervals from the log

def job_events(log: str) -> tuple[list[tuple[str, int]], dict[int, str], set[int]]:
    """(start|end, jobid) events in log order, jobid -> rule, and the jobids that asked for a GPU."""
    events, rule_of, gpu = [], {}, set()
    rule, current = None, None
    for line in log.splitlines():
        s = line.strip()
        m = re.match(r"^(?:local)?rule (\w+):$", s)
        if m:
            rule, current = m.group(1), None
            continue
        m = re.match(r"^jobid: (\d+)$", s)
        if m and rule is not None:
            current = int(m.group(1))
            rule_of[current] = rule
            events.append(("start", current))
            continue
        if s.startswith("resources:") and current is not None:
            if re.search(r"\bgpu=([1-9]\d*)\b", s):
                gpu.add(current)
            continue
        m = re.match(r"^Finished jobid: (\d+)", s)
        if m:
            events.append(("end", int(m.group(1))))
    return events, rule_of, gpu


def max_concurrent(events: list[tuple[str, int]], which: set[int]) -> int:
    running, peak = set(), 0
    for kind, jobid in events:
        if jobid not in which:
            continue
        if kind == "start":
            running.add(jobid)
            peak = max(peak, len(running))
        else:
            running.discard(jobid)
    return peak


def test_job_events_parser_sees_overlap():
    log = ("rule a:\n    jobid: 1\n    resources: tmpdir=/tmp, gpu=1\nrule b:\n    jobid: 2\n"
           "    resources: tmpdir=/tmp, gpu=1\nFinished jobid: 1 (Rule: a)\nFinished jobid: 2 (Rule: b)\n"
           "localrule c:\n    jobid: 3\n    resources: tmpdir=/tmp\nFinished jobid: 3 (Rule: c)\n")
    events, rule_of, gpu = job_events(log)
    assert rule_of == {1: "a", 2: "b", 3: "c"} and gpu == {1, 2}
    assert max_concurrent(events, gpu) == 2


# ----------------------------------------------------------------------------- workstation profile

def test_workstation_profile_counts_gpus(monkeypatch):
    """The profile's `gpu` resource: IM2FLOW_GPUS, else CUDA_VISIBLE_DEVICES, else nvidia-smi; at least 1."""
    from snakemake.profiles import ProfileConfigFileParser

    def gpu_resource() -> str:
        with open(PROFILES / "workstation" / "config.v8+.yaml") as fh:
            parsed = ProfileConfigFileParser().parse(fh)
        return parsed["resources"]

    monkeypatch.delenv("IM2FLOW_GPUS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert gpu_resource() == ["gpu=2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_resource() == ["gpu=1"]  # no visible card: GPU rules still run (on the CPU), one at a time
    monkeypatch.setenv("IM2FLOW_GPUS", "3")
    assert gpu_resource() == ["gpu=3"]


@pytest.fixture(scope="module")
def workstation_run(tmp_path_factory):
    """The demo DAG, data to report, with the workstation profile and one (fake) GPU declared."""
    work = tmp_path_factory.mktemp("ws")
    config = demo_config()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IM2FLOW_GPUS", "1")
        proc = run_snakemake(work, config, "--profile", str(PROFILES / "workstation"))
    return work, config, proc


def test_workstation_profile_never_runs_two_gpu_rules_at_once(workstation_run):
    work, config, proc = workstation_run
    events, rule_of, gpu = job_events(proc.stdout + proc.stderr)
    gpu_rules = {rule_of[j] for j in gpu}
    # every rule that declares gpu=1 in the DAG ran, and some of them could have overlapped:
    # evaluate and recognize both wait only for train_im2flow
    assert {"train_motion_net", "train_im2flow", "evaluate"} <= gpu_rules, gpu_rules
    assert len(gpu) >= 4, gpu_rules
    assert max_concurrent(events, gpu) == 1
    # the limit, not the DAG, kept them apart: with two GPUs declared, the two independent GPU
    # jobs (both ready at once) do run side by side
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IM2FLOW_GPUS", "2")
        proc2 = run_snakemake(work, config, "--profile", str(PROFILES / "workstation"),
                              "--forcerun", "evaluate", "recognize")
    events2, rule_of2, gpu2 = job_events(proc2.stdout + proc2.stderr)
    assert {rule_of2[j] for j in gpu2} == {"evaluate", "recognize"}
    assert max_concurrent(events2, gpu2) == 2


# ----------------------------------------------------------------------------- SLURM profile, real SLURM

def slurm_problem() -> str | None:
    """Why the SLURM test cannot run here, or None."""
    for tool in ("sinfo", "sbatch", "squeue"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found: no SLURM here (CI starts one with .ci/slurm-up.sh)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sinfo failed: {exc}"
    if out.returncode != 0:
        return f"sinfo failed: {out.stderr.strip()}"
    if not re.search(r"\b(idle|mixed|allocated)\b", out.stdout):
        return f"no usable SLURM node (sinfo states: {out.stdout.split()})"
    return None


def require_slurm() -> None:
    problem = slurm_problem()
    if problem is None:
        return
    if os.environ.get("IM2FLOW_REQUIRE_SLURM") == "1":
        pytest.fail(f"IM2FLOW_REQUIRE_SLURM=1 but {problem}")
    pytest.skip(problem)


def read_shard(path: Path) -> tuple[dict, dict]:
    with h5py.File(path) as f:
        data = {name: f[name][()] for name in f}
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
    return data, attrs


def manifest_rows(path: Path) -> list[dict]:
    rows = list(csv.DictReader(io.StringIO(path.read_text()), delimiter="\t"))
    for row in rows:
        row.pop("mtime_ns")  # rendered at another time; everything else must match
    return rows


@pytest.mark.slurm
def test_slurm_profile_runs_demo_data_dag_through_sbatch(tmp_path, workstation_run):
    require_slurm()
    local, config, _ = workstation_run
    proc = run_snakemake(tmp_path, config, "prepare_data", "--profile", str(PROFILES / "slurm"),
                         # the CI cluster: no accounts, quick first status check
                         "--slurm-no-account", "--slurm-init-seconds-before-status-checks", "2")
    log = proc.stdout + proc.stderr
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: ([^)]+)\)", log)
    logs = {Path(p).relative_to(tmp_path / ".snakemake" / "slurm_logs").parts[0] for _, p in submitted}
    # every job went through sbatch: the demo render, the manifest, 4 shard jobs (each the flow of
    # its member videos, then the shard), the video lists; never a job per video
    assert len(submitted) == 7, submitted
    assert logs == {"rule_demo_dataset", "rule_manifest", "rule_shard", "rule_video_lists"}, logs
    # finished jobs are still listed by squeue (MinJobAge), their state read without sacct
    ids = [j for j, _ in submitted]
    states = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i %T", "-j", ",".join(ids)],
                            capture_output=True, text=True, timeout=30).stdout.split("\n")
    assert {line.split()[1] for line in states if line.strip()} == {"COMPLETED"}, states

    ours, theirs = tmp_path / "results" / "t", local / "results" / "t"
    names = sorted(p.name for p in (theirs / "shards" / "tvl1").glob("*.h5"))
    assert names == sorted(p.name for p in (ours / "shards" / "tvl1").glob("*.h5")) and len(names) == 4
    for name in names:
        data, attrs = read_shard(ours / "shards" / "tvl1" / name)
        ref_data, ref_attrs = read_shard(theirs / "shards" / "tvl1" / name)
        assert attrs == ref_attrs, name  # shards carry no timestamps: every attribute must match
        assert data.keys() == ref_data.keys(), name
        for key in data:
            assert data[key].dtype == ref_data[key].dtype and data[key].shape == ref_data[key].shape, (name, key)
            np.testing.assert_array_equal(data[key], ref_data[key], err_msg=f"{name}:{key}")
    assert manifest_rows(ours / "manifest.tsv") == manifest_rows(theirs / "manifest.tsv")
    assert (ours / "rejected_videos.tsv").read_text() == (theirs / "rejected_videos.tsv").read_text()
