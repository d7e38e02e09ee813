"""The rejected-videos list: every video a stage could not use, with the reason."""

from __future__ import annotations

import argparse
import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.atomic import write_text

log = logging.getLogger(__name__)
HEADER = ("video_id", "path", "reason")


@dataclass(frozen=True)
class Rejection:
    video_id: str
    path: str
    reason: str


def _tsv(rows: list[Rejection]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows((r.video_id, r.path, " ".join(r.reason.split())) for r in rows)
    return buf.getvalue()


def write_rejections(rows: list[Rejection], path: str | Path) -> None:
    write_text(path, _tsv(sorted(rows, key=lambda r: r.video_id)))


def read_rejections(path: str | Path) -> list[Rejection]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [Rejection(r["video_id"], r["path"], r["reason"]) for r in csv.DictReader(fh, delimiter="\t")]


def gather(parts: list[str | Path], out: str | Path) -> list[Rejection]:
    """Merge per-shard rejection lists into one sorted list at ``out``."""
    rows = sorted({r for p in parts for r in read_rejections(p)}, key=lambda r: r.video_id)
    write_rejections(rows, out)
    for r in rows:
        log.warning("rejected %s (%s): %s", r.video_id, r.path, r.reason)
    log.info("%d rejected videos listed in %s", len(rows), out)
    return rows


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("parts", nargs="*", type=Path, help="per-shard rejection TSVs")
    p.add_argument("--out", required=True, type=Path)


def run(args: argparse.Namespace) -> int:
    gather(args.parts, args.out)
    return 0
