"""Find a dataset's videos, their classes and their split; write them as a manifest.

Layouts: ``ucf101`` (class folders, ``classInd.txt``, ``trainlist0N.txt`` /
``testlist0N.txt``), ``hmdb51`` (class folders, ``<class>_test_split<N>.txt``
with 1 = train, 2 = test, 0 = unused) and ``folder`` (class = parent folder,
split by a stable hash of the video id). Discovery never decodes a video: it
must stay fast on 13,000 files. Ids are stable, derived from the relative path
alone, and safe as Snakemake wildcards and file names.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from pipeline.atomic import atomic_path

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv")
LAYOUTS = ("ucf101", "hmdb51", "folder")
SPLITS = ("train", "test")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
ID_PATTERN = r"[A-Za-z0-9._-]+/[A-Za-z0-9._-]+"


@dataclass(frozen=True)
class Video:
    video_id: str
    relpath: str
    class_name: str
    label: int
    split: str  # "train", "test" or "unused"
    size: int
    mtime_ns: int


def stable_hash(text: str) -> int:
    """A process-independent 64-bit hash (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big")


def _safe(part: str, relpath: str) -> str:
    cleaned = _SAFE.sub("_", part)
    if cleaned != part or not cleaned.strip("._"):
        cleaned = f"{cleaned.strip('._') or 'x'}-{stable_hash(relpath) % 16**8:08x}"
    return cleaned


def video_id(relpath: str) -> str:
    """``Class/name.avi`` -> ``Class/name``; other characters become '_' plus a short hash."""
    parts = Path(relpath).parts
    folder = parts[-2] if len(parts) > 1 else "_root"
    stem = Path(parts[-1]).stem
    return f"{_safe(folder, relpath)}/{_safe(stem, relpath)}"


def _video_files(root: Path) -> list[str]:
    """Relative paths of files with a video extension, sorted; symlinks are listed even if dangling."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(p.replace(os.sep, "/") for p in found)


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
        return st.st_size, st.st_mtime_ns
    except OSError:  # dangling link or unreadable: the frames stage rejects it with the reason
        return -1, 0


def parse_ucf_class_index(path: Path) -> list[str]:
    """``classInd.txt``: lines '<1-based index> <ClassName>' -> class names in index order."""
    entries = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{path}:{lineno}: expected '<index> <class>', got {line!r}")
        entries.append((int(parts[0]), parts[1]))
    entries.sort()
    if [i for i, _ in entries] != list(range(1, len(entries) + 1)):
        raise ValueError(f"{path}: class indices must run 1..N without gaps")
    return [name for _, name in entries]


def parse_ucf_split_list(path: Path) -> list[str]:
    """``trainlist01.txt`` ('Class/v_x.avi 1') or ``testlist01.txt`` ('Class/v_x.avi') -> relpaths."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(line.split()[0].replace("\\", "/"))
    return out


def parse_hmdb_split(path: Path) -> dict[str, int]:
    """``<class>_test_split<N>.txt``: lines '<video file> <0|1|2>' -> {file name: code}."""
    codes = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in {"0", "1", "2"}:
            raise ValueError(f"{path}:{lineno}: expected '<video> <0|1|2>', got {line!r}")
        codes[parts[0]] = int(parts[1])
    return codes


def _find_one(root: Path, names: list[str], what: str) -> Path:
    for candidate in names:
        hits = sorted(root.rglob(candidate))
        if hits:
            return hits[0]
    raise FileNotFoundError(f"{what} not found under {root} (looked for {names})")


class DiscoveryError(ValueError):
    """A dataset folder that yields nothing to train on; the message says what was looked for."""


def discover(root: str | Path, layout: str = "ucf101", split: int = 1, splits_dir: str | Path | None = None,
             test_fraction: float = 0.25, group_pattern: str | None = None) -> list[Video]:
    """List the videos under ``root`` with class, label and split; DiscoveryError when there is
    nothing to train and test on (checked before any job runs)."""
    root = Path(root)
    if layout not in LAYOUTS:
        raise ValueError(f"dataset.layout must be one of {LAYOUTS}, got {layout!r}")
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} is not a directory")
    split_root = Path(splits_dir) if splits_dir else root
    relpaths = _video_files(root)
    if layout == "ucf101":
        videos = _ucf101(root, split_root, split, relpaths)
    elif layout == "hmdb51":
        videos = _hmdb51(root, split_root, split, relpaths)
    else:
        videos = _folder(root, relpaths, test_fraction, group_pattern)
    _check_usable(root, layout, relpaths, videos)
    log.info("%s: %d videos in %d classes (%d train, %d test)", root, len(videos), len(class_names(videos)),
             sum(v.split == "train" for v in videos), sum(v.split == "test" for v in videos))
    return videos


def _ucf101(root: Path, split_root: Path, split: int, relpaths: list[str]) -> list[Video]:
    classes = parse_ucf_class_index(_find_one(split_root, ["classInd.txt"], "classInd.txt"))
    train = set(parse_ucf_split_list(_find_one(split_root, [f"trainlist{split:02d}.txt"], "train list")))
    test = set(parse_ucf_split_list(_find_one(split_root, [f"testlist{split:02d}.txt"], "test list")))
    label_of = {c: i for i, c in enumerate(classes)}
    videos = []
    for rel in relpaths:
        class_name = Path(rel).parent.name
        if class_name not in label_of:
            log.warning("%s: class folder %r is not in classInd.txt; skipped", root / rel, class_name)
            continue
        which = "train" if rel in train else "test" if rel in test else "unused"
        videos.append(_video(root, rel, class_name, label_of[class_name], which))
    return videos


def _hmdb51(root: Path, split_root: Path, split: int, relpaths: list[str]) -> list[Video]:
    classes = sorted({Path(r).parent.name for r in relpaths if "/" in r})
    label_of = {c: i for i, c in enumerate(classes)}
    codes: dict[str, dict[str, int]] = {}
    for class_name in classes:
        matches = sorted(split_root.rglob(f"{class_name}_test_split{split}.txt"))
        codes[class_name] = parse_hmdb_split(matches[0]) if matches else {}
        if not matches:
            log.warning("no split file %s_test_split%d.txt under %s", class_name, split, split_root)
    videos = []
    for rel in relpaths:
        if "/" in rel:
            class_name = Path(rel).parent.name
            which = {1: "train", 2: "test"}.get(codes[class_name].get(Path(rel).name, 0), "unused")
            videos.append(_video(root, rel, class_name, label_of[class_name], which))
    return videos


def _folder(root: Path, relpaths: list[str], test_fraction: float, group_pattern: str | None) -> list[Video]:
    """Class = parent folder; split by a stable hash of the video id, or of its group when
    ``group_pattern`` (a regex on the relative path: its first group, else the whole match) names
    the clips that belong together (the same scene filmed twice, a clip and its copy)."""
    classes = sorted({Path(r).parent.name for r in relpaths if "/" in r})
    label_of = {c: i for i, c in enumerate(classes)}
    pattern = re.compile(group_pattern) if group_pattern else None
    videos = []
    for rel in relpaths:
        if "/" not in rel:
            log.warning("%s: not inside a class folder; skipped", root / rel)
            continue
        match = pattern.search(rel) if pattern else None
        key = (match.group(1) if match.groups() else match.group(0)) if match else video_id(rel)
        which = "test" if (stable_hash(key) % 10_000) / 10_000 < test_fraction else "train"
        videos.append(_video(root, rel, Path(rel).parent.name, label_of[Path(rel).parent.name], which))
    return videos


def _check_usable(root: Path, layout: str, relpaths: list[str], videos: list[Video]) -> None:
    """Stop now, saying what was looked for, when the dataset gives nothing to train or test on."""
    where = {"folder": f"{root}/<class>/<video>", "ucf101": f"{root}/<class>/<video> listed in the split files",
             "hmdb51": f"{root}/<class>/<video> listed in <class>_test_split<N>.txt"}[layout]
    if not relpaths:
        raise DiscoveryError(f"no video files under {root} (looked for {', '.join(VIDEO_EXTENSIONS)} files in "
                             f"class folders, {where})")
    ids = [v.video_id for v in videos]
    if len(set(ids)) != len(ids):
        raise DiscoveryError(f"duplicate video ids under {root}: {sorted({i for i in ids if ids.count(i) > 1})[:5]}")
    if not videos:
        raise DiscoveryError(f"{len(relpaths)} video files under {root} but none in a class ({where})")
    if all(v.size == 0 for v in videos):
        raise DiscoveryError(f"every one of the {len(videos)} video files under {root} is empty (0 bytes)")
    for split in ("train", "test"):
        if not any(v.split == split for v in videos):  # data preparation can go on; training or evaluation cannot
            log.warning("no %s videos under %s (%d videos in %d classes)", split, root, len(videos),
                        len(class_names(videos)))


def _video(root: Path, rel: str, class_name: str, label: int, split: str) -> Video:
    size, mtime = _stat(root / rel)
    return Video(video_id(rel), rel, class_name, label, split, size, mtime)


def class_names(videos: list[Video]) -> list[str]:
    """Class names in label order."""
    names: dict[int, str] = {}
    for v in videos:
        names[v.label] = v.class_name
    return [names.get(i, f"class{i}") for i in range(max(names, default=-1) + 1)]


def write_manifest(videos: list[Video], path: str | Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
            writer.writerow([f.name for f in fields(Video)])
            for v in videos:
                writer.writerow(list(asdict(v).values()))


def read_manifest(path: str | Path) -> list[Video]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [Video(r["video_id"], r["relpath"], r["class_name"], int(r["label"]), r["split"], int(r["size"]),
                  int(r["mtime_ns"])) for r in rows]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--layout", choices=LAYOUTS, default="ucf101")
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--splits-dir", type=Path, default=None)
    p.add_argument("--test-fraction", type=float, default=0.25)
    p.add_argument("--group-pattern", default=None, help="folder layout: regex naming the clips kept in one split")
    p.add_argument("--out", required=True, type=Path, help="manifest TSV to write")


def run(args: argparse.Namespace) -> int:
    videos = discover(args.root, args.layout, args.split, args.splits_dir, args.test_fraction, args.group_pattern)
    write_manifest(videos, args.out)
    return 0
