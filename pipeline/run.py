"""`im2flow run [TARGET...] --configfile FILE [-- SNAKEMAKE OPTIONS]`: the workflow, from anywhere,
recovering by itself from an interrupted run.

What it does before handing over to Snakemake (``os.execv``, so signals reach Snakemake directly):

- runs this installation's ``workflow/Snakefile`` in the current folder (``--directory``);
- puts this environment's ``bin`` folder first on ``PATH``: the jobs call ``im2flow``, which
  a shell without the environment activated would not find;
- removes a lock that a killed Snakemake left behind (``.snakemake/locks``) when no Snakemake
  process runs in this folder any more (what ``snakemake --unlock`` does), and says so; a
  live run's lock is left alone;
- always ``--rerun-incomplete``: a killed job's outputs are redone, never taken as finished
  (``workflow/profiles/default`` sets it for plain ``snakemake`` calls too);
- takes one ``--configfile`` and the targets as positional words (Snakemake's own
  ``--configfile`` takes several files and reads a target written after it as one more).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

log = logging.getLogger(__name__)

SNAKEFILE = Path(__file__).resolve().parents[1] / "workflow" / "Snakefile"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("targets", nargs="*", help="rules or files to build (default: the whole DAG, ending in the report)")
    p.add_argument("--configfile", "--config-file", dest="configfile", default=None,
                   help="the config (default: config.yaml in this folder, else the demo)")
    p.add_argument("--cores", default="all", help="CPU cores (default: all)")
    p.add_argument("--profile", default=None, help="profiles/workstation or profiles/slurm")
    p.add_argument("--directory", type=Path, default=Path("."), help="where results/ go (default: here)")
    p.add_argument("-n", "--dry-run", action="store_true", help="show what would run, and why")


def snakemake_processes(folder: Path) -> list[int]:
    """Pids of the Snakemake processes working in ``folder`` (their current directory), this one aside."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if any(Path(arg.decode(errors="replace")).name == "snakemake" for arg in cmdline[:3]) \
                    and Path(os.readlink(proc / "cwd")) == folder.resolve():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def clear_stale_lock(folder: Path) -> bool:
    """Remove Snakemake's lock files in ``folder`` if no Snakemake runs there; True if it did."""
    locks = folder / ".snakemake" / "locks"
    if not locks.is_dir() or not any(locks.iterdir()):
        return False
    running = snakemake_processes(folder)
    if running:
        log.warning("%s is locked by a running Snakemake (pid %s): leaving its lock alone", folder,
                    ", ".join(map(str, running)))
        return False
    for lock in locks.iterdir():
        lock.unlink()
    log.warning("removed the lock of an interrupted run in %s (no Snakemake runs there; the same as "
                "`snakemake --unlock`)", folder.resolve())
    return True


def snakemake_command(args: argparse.Namespace, extra: list[str]) -> list[str]:
    bin_dir = Path(sys.executable).parent
    snakemake = bin_dir / "snakemake" if (bin_dir / "snakemake").exists() else shutil.which("snakemake")
    if snakemake is None:
        raise SystemExit("snakemake is not installed in this environment (pip install -e . installs it)")
    # targets first: Snakemake's --configfile takes several files and would swallow a target after it
    command = [str(snakemake), *args.targets, "--snakefile", str(SNAKEFILE), "--directory", str(args.directory),
               "--cores", str(args.cores), "--rerun-incomplete"]
    configfile = args.configfile
    if configfile is None and (args.directory / "config.yaml").is_file():
        configfile = args.directory / "config.yaml"
    if configfile:
        command += ["--configfile", str(configfile)]
    if args.profile:
        command += ["--profile", str(args.profile)]
    if args.dry_run:
        command.append("--dry-run")
    return command + extra


def run(args: argparse.Namespace) -> int:
    extra = getattr(args, "extra", [])
    clear_stale_lock(args.directory)
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]))
    command = snakemake_command(args, extra)
    log.info("%s", " ".join(command))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, env)
    return 0  # not reached
