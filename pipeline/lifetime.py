"""A stage started by Snakemake does not outlive it, and a terminated stage cleans up after itself.

Snakemake runs a job as ``snakemake -> shell -> im2flow``. When Snakemake is
killed outright (SIGKILL, an OOM kill, a closed terminal), nothing stops its
jobs: a training would go on as an orphan, writing into outputs the next run
is about to redo. So every `im2flow` stage looks up the outermost Snakemake
among its ancestors and watches it; when it is gone, the stage sends itself
SIGTERM. SIGTERM (from this watch, from Snakemake's own interrupt handling, or
from a scheduler) becomes a ``SystemExit``, so that ``finally`` blocks run:
temporary files are removed and no output is left that looks finished, while a
training's last checkpoint stays for the resumed run.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

log = logging.getLogger(__name__)

TERMINATED_EXIT_CODE = 128 + signal.SIGTERM


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of ``pid`` from /proc, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), int(fields[19])


def _is_snakemake(pid: int) -> bool:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:4]
    except OSError:
        return False
    return any(Path(a.decode(errors="replace")).name == "snakemake" or a == b"snakemake" for a in args)


def snakemake_ancestor(pid: int | None = None) -> tuple[int, int] | None:
    """(pid, start time) of the outermost Snakemake process above ``pid`` (default: this one), or None."""
    pid, found = pid or os.getpid(), None
    while pid > 1:
        stat = _stat(pid)
        if stat is None:
            break
        parent = stat[0]
        if parent > 1 and _is_snakemake(parent):
            found = (parent, _stat(parent)[1]) if _stat(parent) else found
        pid = parent
    return found


def _alive(pid: int, started: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[1] == started  # the same process, not a reused pid


def watch_snakemake(interval: float = 1.0) -> int | None:
    """Start a daemon thread that terminates this process once the outermost Snakemake ancestor is
    gone; returns that Snakemake's pid (None when there is none: run by hand, or on a SLURM node)."""
    ancestor = snakemake_ancestor()
    if ancestor is None:
        return None
    pid, started = ancestor
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(interval):
            if not _alive(pid, started):
                log.error("Snakemake (pid %d) is gone: stopping this job so that it does not run on as an orphan",
                          pid)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="watch-snakemake", daemon=True).start()
    return pid


def exit_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit(143)``, so that cleanup code runs."""
    def handler(signum, frame) -> None:
        raise SystemExit(TERMINATED_EXIT_CODE)

    signal.signal(signal.SIGTERM, handler)
