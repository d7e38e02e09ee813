"""What became of every video: the per-shard video lists and the dataset's three lists (rule ``video_lists``).

Each flow job writes one line per member video beside its shard (``*.videos.tsv``): status
(ok, partial, rejected), samples kept, the reason, the 99th-percentile flow magnitude, the
fraction of pixels over the magnitude clip and the frame fingerprints. ``im2flow videos``
gathers them into ``videos.tsv`` (every video), ``rejected_videos.tsv`` (rejected, and partly
rejected with what was dropped) and ``near_duplicates.tsv`` (train/test pairs whose frames
nearly match: leakage the nearest-neighbour baseline would profit from).
"""

from __future__ import annotations

import argparse
import csv
import logging
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Iterable

import numpy as np

from pipeline.atomic import atomic_path
from pipeline.data.targets import VideoTargets

log = logging.getLogger(__name__)

HASH_BITS_CLOSE = 6  # two difference hashes within this Hamming distance show the same frame
MIN_FRAMES_MATCHED = 3  # of the 4 fingerprinted frames: a near-duplicate video, not one similar shot


@dataclass
class VideoRecord:
    """One video's line in the lists."""

    video_id: str
    path: str
    label: int
    class_name: str
    split: str
    status: str  # ok | partial | rejected
    samples: int
    reason: str
    p99_px: float  # 99th percentile of the targets' flow magnitude
    over_clip: float  # fraction of target pixels above the magnitude clip
    fingerprint: str  # difference hashes, 16 hex digits each

    @classmethod
    def of(cls, video: VideoTargets, split: str, class_names: list[str], magnitude_clip: float) -> "VideoRecord":
        magnitude = video.flow[:, 2].astype(np.float32) if video.ok and len(video.flow) else np.zeros(0)
        return cls(video.video_id, video.path, int(video.label), _class_name(class_names, video.label), split,
                   video.status, int(len(video.sample_indices)) if video.ok else 0, video.reason,
                   float(np.percentile(magnitude, 99)) if magnitude.size else 0.0,
                   float((magnitude > magnitude_clip).mean()) if magnitude.size else 0.0,
                   "".join(f"{int(h):016x}" for h in np.asarray(video.fingerprint, np.uint64) if int(h)))

    def hashes(self) -> np.ndarray:
        """(k,) uint64 fingerprint hashes."""
        text = self.fingerprint.strip()
        return np.array([int(text[i:i + 16], 16) for i in range(0, len(text) - 15, 16)], np.uint64)


def _class_name(class_names: list[str], label: int) -> str:
    return class_names[label] if 0 <= label < len(class_names) else str(label)


COLUMNS = [f.name for f in fields(VideoRecord)]


def _clean(text: str) -> str:
    """One TSV cell: tabs and newlines inside a reason become spaces."""
    return " ".join(str(text).split())


def write_records(records: Iterable[VideoRecord], path: str | Path) -> None:
    """Every record as one TSV line, written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        fh.write("\t".join(COLUMNS) + "\n")
        for r in records:
            fh.write("\t".join(_clean(v if not isinstance(v, float) else f"{v:.4g}") for v in astuple(r)) + "\n")


def read_records(path: str | Path) -> list[VideoRecord]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [VideoRecord(r["video_id"], r["path"], int(r["label"]), r["class_name"], r["split"], r["status"],
                        int(r["samples"]), r["reason"] or "", float(r["p99_px"]), float(r["over_clip"]),
                        r["fingerprint"] or "") for r in rows]


def write_rejected(records: Iterable[VideoRecord], path: str | Path) -> None:
    """The videos left out in whole (rejected) or in part (partly rejected: damaged samples dropped,
    or cut short), each with the reason."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        fh.write("video_id\tpath\tstatus\treason\n")
        for r in records:
            if r.status != "ok":
                status = "rejected" if r.status == "rejected" else "partly rejected"
                fh.write("\t".join(_clean(v) for v in (r.video_id, r.path, status, r.reason)) + "\n")


def near_duplicates(records: list[VideoRecord], chunk: int = 512) -> list[tuple[str, str, int]]:
    """(train video, test video, frames matched) for every pair whose fingerprints nearly match.

    All train hashes against all test hashes, a chunk of test videos at a time: about 9.5k x 3.8k
    videos at UCF-101's scale, a few seconds."""
    train = [r for r in records if r.split == "train" and r.status != "rejected" and r.fingerprint]
    test = [r for r in records if r.split == "test" and r.status != "rejected" and r.fingerprint]
    if not train or not test:
        return []
    k = max(len(r.hashes()) for r in train + test)
    train_h, test_h = _hash_matrix(train, k), _hash_matrix(test, k)
    found = []
    for lo in range(0, len(test), chunk):
        block = test_h[lo:lo + chunk]
        close = np.zeros((len(block), len(train)), np.int64)  # test frames with a match in the train video
        for a in range(k):
            matched = np.zeros(close.shape, bool)
            for b in range(k):
                dist = np.bitwise_count(block[:, a, None] ^ train_h[None, :, b])
                matched |= (dist <= HASH_BITS_CLOSE) & (train_h[None, :, b] != 0)
            close += matched & (block[:, a, None] != 0)
        for i, j in zip(*np.nonzero(close >= min(MIN_FRAMES_MATCHED, k))):
            found.append((train[j].video_id, test[lo + i].video_id, int(close[i, j])))
    return sorted(found)


def _hash_matrix(records: list[VideoRecord], k: int) -> np.ndarray:
    matrix = np.zeros((len(records), k), np.uint64)
    for row, r in enumerate(records):
        h = r.hashes()[:k]
        matrix[row, :len(h)] = h
    return matrix


def gather(video_lists: list[Path], videos_out: Path, rejected_out: Path, duplicates_out: Path) -> list[VideoRecord]:
    """The rule ``video_lists``: the per-shard lists into the dataset's three lists."""
    records = sorted((r for p in video_lists for r in read_records(p)), key=lambda r: (r.split, r.video_id))
    write_records(records, videos_out)
    write_rejected(records, rejected_out)
    pairs = near_duplicates(records)
    with atomic_path(duplicates_out) as tmp, open(tmp, "w") as fh:
        fh.write("train_video\ttest_video\tframes_matched\n")
        fh.writelines(f"{_clean(a)}\t{_clean(b)}\t{n}\n" for a, b, n in pairs)
    log.info("%d videos: %d usable in full, %d partly, %d rejected; %d near-duplicate train/test pairs",
             len(records), sum(r.status == "ok" for r in records), sum(r.status == "partial" for r in records),
             sum(r.status == "rejected" for r in records), len(pairs))
    return records


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("video_lists", nargs="*", type=Path, help="per-shard *.videos.tsv files")
    p.add_argument("--videos-out", required=True, type=Path)
    p.add_argument("--rejected-out", required=True, type=Path)
    p.add_argument("--duplicates-out", required=True, type=Path)


def run(args: argparse.Namespace) -> int:
    gather(args.video_lists, args.videos_out, args.rejected_out, args.duplicates_out)
    return 0
