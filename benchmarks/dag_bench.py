"""DAG scale check: `snakemake -n` on a fake UCF-101 of 13,320 videos, with the SLURM profile.

Writes a manifest (pipeline.discovery.write_manifest) of N fake videos in the UCF-101 layout
(101 classes, ``<Class>/v_<Class>_gNN_cMM.avi``, 25 groups, groups 1-7 = test as in split 1)
and, unless --no-placeholders, an empty placeholder file for each video, so that the shard
rules' input functions see the videos as they would on a real dataset. Nothing is decoded:
a dry run only. The flow is computed one job per shard (a batch of its member videos).

The config is a preset (configs/ucf101.yaml by default) with dataset.root and dataset.manifest
pointed at the fake dataset. Measured: seconds until Snakemake has built the DAG (its first
"Job stats" table), the whole dry run, the CPU seconds of the Snakemake process, the planned
jobs per rule, and, with a cluster profile, the planned submissions: each group job
("Group job <group>") is one sbatch, each ungrouped job of a rule with a command is one.

    .venv/bin/python benchmarks/dag_bench.py [--videos 13320] [--profile profiles/slurm]
                                             [--config configs/ucf101.yaml] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.data.discovery import Video, write_manifest  # noqa: E402

N_CLASSES = 101
N_GROUPS = 25
TEST_GROUPS = 7  # UCF-101 split 1: groups 1-7 are the test list


def fake_ucf101(n_videos: int = 13320, n_classes: int = N_CLASSES) -> list[Video]:
    """UCF-101-shaped entries: classes of nearly equal size, clips spread over 25 groups."""
    videos = []
    for c in range(n_classes):
        cls = f"FakeAction{c + 1:03d}"
        n = n_videos // n_classes + (1 if c < n_videos % n_classes else 0)
        for g in range(N_GROUPS):
            clips = n // N_GROUPS + (1 if g < n % N_GROUPS else 0)
            for k in range(clips):
                rel = f"{cls}/v_{cls}_g{g + 1:02d}_c{k + 1:02d}.avi"
                split = "test" if g < TEST_GROUPS else "train"
                videos.append(Video(rel[:-4], rel, cls, c, split, 0, 0))
    return videos


def make_dataset(work: Path, n_videos: int, placeholders: bool = True) -> tuple[Path, Path]:
    root, manifest = work / "UCF-101", work / "manifest.tsv"
    videos = fake_ucf101(n_videos)
    if placeholders:
        for v in videos:
            path = root / v.relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    else:
        root.mkdir(parents=True, exist_ok=True)
    write_manifest(videos, manifest)
    return root, manifest


@dataclass
class DryRun:
    videos: int
    profile: str | None
    dag_seconds: float = math.nan
    total_seconds: float = math.nan
    cpu_seconds: float = math.nan
    returncode: int = -1
    jobs: dict[str, int] = field(default_factory=dict)
    group_jobs: dict[str, int] = field(default_factory=dict)  # group id -> planned group submissions
    single_jobs: dict[str, int] = field(default_factory=dict)  # rule -> ungrouped submissions
    local_jobs: dict[str, int] = field(default_factory=dict)  # rule -> jobs run by Snakemake itself

    @property
    def submissions(self) -> int:
        return sum(self.group_jobs.values()) + sum(self.single_jobs.values())


_STATS_ROW = re.compile(r"^(\w+)\s+(\d+)\s*$")
_GROUP = re.compile(r"^\[[^\]]+\] Group job (\S+) ")
_RULE = re.compile(r"^(local)?rule (\w+):\s*$")
# Target rules with inputs only: Snakemake finishes them itself, nothing is submitted.
NORUN_RULES = {"all", "prepare_data"}


def parse_dry_run(text: str, result: DryRun) -> None:
    """Job stats, group jobs and top-level (ungrouped) jobs of a dry run's output."""
    table = text.split("Job stats:", 1)[1] if "Job stats:" in text else ""
    for line in table.splitlines()[3:]:
        m = _STATS_ROW.match(line.strip())
        if not m:
            break
        if m.group(1) != "total":
            result.jobs[m.group(1)] = int(m.group(2))
    for line in text.splitlines():
        m = _GROUP.match(line)
        if m:
            result.group_jobs[m.group(1)] = result.group_jobs.get(m.group(1), 0) + 1
            continue
        m = _RULE.match(line)  # column 0 only: the members of a group job are indented
        if m:
            bucket = result.local_jobs if m.group(1) or m.group(2) in NORUN_RULES else result.single_jobs
            bucket[m.group(2)] = bucket.get(m.group(2), 0) + 1


def dry_run(work: Path, n_videos: int, profile: str | None, config_path: Path, placeholders: bool = True,
            extra: tuple[str, ...] = ()) -> DryRun:
    root, manifest = make_dataset(work, n_videos, placeholders)
    config = yaml.safe_load(config_path.read_text())
    config["name"] = "scale"
    config["dataset"].update(root=str(root), manifest=str(manifest))
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    bin_dir = Path(sys.executable).parent
    cmd = [str(bin_dir / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"), "--configfile", "config.yaml",
           "--directory", str(work), "-n", "--cores", "2"]
    if profile:
        cmd += ["--profile", str((REPO / profile).resolve() if not Path(profile).is_absolute() else profile)]
    cmd += list(extra)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    result = DryRun(n_videos, profile)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    lines = []
    with subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1) as proc:
        for line in proc.stdout:
            if math.isnan(result.dag_seconds) and line.startswith("Job stats:"):
                result.dag_seconds = time.perf_counter() - start
            lines.append(line)
        result.returncode = proc.wait()
    result.total_seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result.cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    text = "".join(lines)
    (work / "dry_run.log").write_text(text)
    if result.returncode != 0:
        raise RuntimeError(f"snakemake -n failed ({result.returncode}):\n{text[-4000:]}")
    parse_dry_run(text, result)
    return result


def markdown(results: list[DryRun]) -> str:
    rows = ["| videos | profile | jobs | DAG built (s) | whole dry run (s) | CPU (s) | submissions | "
            "flow submissions (shard jobs) | videos per flow submission |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        flow_subs = r.single_jobs.get("shard", 0) + sum(r.group_jobs.values())
        per = f"{r.videos / flow_subs:.1f}" if flow_subs else "-"
        rows.append(f"| {r.videos} | {r.profile or 'none (local)'} | {sum(r.jobs.values())} | {r.dag_seconds:.1f} "
                    f"| {r.total_seconds:.1f} | {r.cpu_seconds:.1f} | {r.submissions if r.profile else '-'} "
                    f"| {flow_subs if r.profile else '-'} | {per if r.profile else '-'} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=13320)
    p.add_argument("--profile", default="profiles/slurm", help="profile path, or 'none' for a plain local dry run")
    p.add_argument("--config", type=Path, default=REPO / "configs" / "ucf101.yaml")
    p.add_argument("--no-placeholders", action="store_true", help="no empty files for the videos")
    p.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (default: a temp dir)")
    args = p.parse_args(argv)
    profile = None if args.profile == "none" else args.profile
    with tempfile.TemporaryDirectory(prefix="dag_bench_") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        load = os.getloadavg()
        r = dry_run(work, args.videos, profile, args.config, placeholders=not args.no_placeholders)
    print(json.dumps({**asdict(r), "submissions": r.submissions, "loadavg_at_start": load}, indent=1))
    print()
    print(markdown([r]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
