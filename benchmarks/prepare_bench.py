"""Data preparation before and after: `snakemake --cores N prepare_data` on the demo config, two revisions.

Each revision is checked out into its own temporary git worktree and run from scratch (no
results, no cache), one after the other on the same machine, with this checkout's virtual
environment and the revision's own code first on PYTHONPATH (the rules call `im2flow`). The
`liu` kernel of each revision is built before timing (a one-off cost per machine).

Reported per revision: the wall time of the whole `prepare_data` target, the number of flow
jobs and their summed job time (Snakemake's benchmark files: start-up included), and, where
the flow jobs log it ("the estimator took P% of S s"), the estimator's share of the flow
jobs' time = Σ estimator seconds ÷ Σ job seconds. The ratio column is against the first
revision.

    .venv/bin/python benchmarks/prepare_bench.py [--revisions 79ad5be WORKTREE] [--cores 2]

WORKTREE means the working tree as it is (uncommitted changes included).
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from pipeline.data.extract import SUMMARY_PATTERN  # noqa: E402

BIN = Path(sys.executable).parent
FLOW_RULES = ("video_targets", "shards")  # benchmark folders of the flow jobs: once one per video, now one per shard

log = logging.getLogger("prepare_bench")


@dataclass
class Run:
    revision: str
    wall_s: float
    flow_jobs: int
    flow_job_s: float
    estimator_s: float | None


def checkout(revision: str, into: Path) -> Path:
    """A clean copy of ``revision`` (or of the working tree) under ``into``."""
    tree = into / revision.replace("/", "_")
    if revision == "WORKTREE":
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                               capture_output=True, text=True).stdout.split("\0")
        for name in filter(None, files):
            if (REPO / name).is_file():
                (tree / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, tree / name)
    else:
        subprocess.run(["git", "worktree", "add", "--detach", "-f", str(tree), revision], cwd=REPO, check=True,
                       capture_output=True)
    return tree


def flow_jobs(results: Path) -> tuple[int, float, float | None]:
    """(jobs, Σ job seconds, Σ estimator seconds or None) of the flow jobs' benchmark files and logs
    (the first folder of FLOW_RULES present: where flow was per video, shard jobs only copied)."""
    jobs, job_s, est_s, logged = 0, 0.0, 0.0, True
    folder = next((results / "benchmarks" / f for f in FLOW_RULES if (results / "benchmarks" / f).is_dir()), None)
    if folder is not None:
        for tsv in sorted(folder.glob("**/*.tsv")):
            with open(tsv) as fh:
                row = next(csv.DictReader(fh, delimiter="\t"))
            jobs, job_s = jobs + 1, job_s + float(row["s"])
            log_file = results / "logs" / tsv.relative_to(results / "benchmarks").with_suffix(".log")
            found = SUMMARY_PATTERN.search(log_file.read_text(errors="replace")) if log_file.is_file() else None
            if found:
                est_s += int(found["share"]) / 100 * float(found["total_s"])
            else:
                logged = False
    return jobs, job_s, est_s if logged and jobs else None


def measure(revision: str, scratch: Path, cores: int) -> Run:
    tree = checkout(revision, scratch)
    env = dict(os.environ, PYTHONPATH=str(tree), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    subprocess.run([str(BIN / "python"), "-c", "from pipeline.flow import liu_kernel; liu_kernel.kernel()"],
                   cwd=tree, env=env, check=True, capture_output=True)
    began = time.perf_counter()
    proc = subprocess.run(["snakemake", "--cores", str(cores), "prepare_data"], cwd=tree, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"{revision}: prepare_data failed:\n{proc.stderr[-3000:]}")
    jobs, job_s, est_s = flow_jobs(tree / "results" / "demo")
    log.info("%s: %.1f s, %d flow jobs", revision, wall, jobs)
    return Run(revision, wall, jobs, job_s, est_s)


def table(runs: list[Run]) -> str:
    lines = ["| revision | prepare_data wall (s) | ÷ first | flow jobs | flow job time (s) | estimator share |",
             "|---|---|---|---|---|---|"]
    for r in runs:
        share = f"{r.estimator_s / r.flow_job_s:.0%}" if r.estimator_s is not None else "not logged"
        lines.append(f"| {r.revision} | {r.wall_s:.1f} | {r.wall_s / runs[0].wall_s:.2f} | {r.flow_jobs} | "
                     f"{r.flow_job_s:.1f} | {share} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--revisions", nargs="+", default=["79ad5be", "WORKTREE"])
    p.add_argument("--cores", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    scratch = Path(tempfile.mkdtemp(prefix="im2flow-prepare-bench-"))
    try:
        runs = [measure(rev, scratch, args.cores) for rev in args.revisions]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=REPO, capture_output=True)
    print(f"`snakemake --cores {args.cores} prepare_data` on config.yaml ({os.cpu_count()} cores here)\n")
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
