"""Static-image datasets for recognition, read from HDF5 in batches.

Two sources, one reader (:class:`StaticSet`):

- static shards (rule ``static_shard``): the centre frame of every video of a
  split with its five-future-frame true flow (uint8 ``frames``, float16 ``flow``
  in pixels), the im2flow shard format;
- a folder of labelled still images (class = folder; the form of Willow,
  Stanford-40 and PASCAL action crops), converted once by
  :func:`write_image_folder` into the same layout without ``flow``.

Nothing here holds a split in memory beyond its labels and ids: streams read
the rows they need (:class:`Column`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Sequence

import cv2
import h5py
import hdf5plugin  # noqa: F401  (registers the shards' Blosc filter)
import numpy as np

from pipeline.atomic import atomic_path
from pipeline.data.discovery import stable_hash
from pipeline.data.shards import compression
from pipeline.encoding import DEFAULT_MAGNITUDE_CLIP

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


class Column:
    """One per-sample HDF5 dataset (``frames``, ``flow``, ``motion``...) across files, read by position."""

    def __init__(self, paths: Sequence[str | os.PathLike], key: str):
        self.paths, self.key = [str(p) for p in paths], key
        sizes = []
        for path in self.paths:
            with h5py.File(path, "r") as f:
                sizes.append(len(f[key]) if key in f else 0)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._files: dict[int, h5py.File] = {}
        self._pid: int | None = None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self) -> dict:
        return self.__dict__ | {"_files": {}, "_pid": None}  # h5py handles do not pickle: reopen per process

    def _file(self, k: int) -> h5py.File:
        if self._pid != os.getpid():
            self._files, self._pid = {}, os.getpid()
        if k not in self._files:
            self._files[k] = h5py.File(self.paths[k], "r")
        return self._files[k]

    def row(self, position: int) -> np.ndarray:
        k = int(np.searchsorted(self.offsets, position, side="right") - 1)
        return self._file(k)[self.key][position - self.offsets[k]]

    def rows(self, positions: Sequence[int]) -> np.ndarray:
        return np.stack([self.row(int(p)) for p in positions]) if len(positions) else np.zeros((0,))


class StaticSet:
    """Still images with labels in HDF5 files; ``has_flow`` when the true flow (px) is there too."""

    def __init__(self, paths: Sequence[str | os.PathLike]):
        self.paths = [str(p) for p in paths]
        labels, ids, names, clips, self.has_flow = [], [], None, set(), True
        for path in self.paths:
            with h5py.File(path, "r") as f:
                labels.append(f["labels"][:])
                ids += [v.decode() if isinstance(v, bytes) else str(v) for v in f["video_ids"][:]]
                file_names = json.loads(f.attrs["class_names"])
                clips.add(float(f.attrs.get("magnitude_clip", DEFAULT_MAGNITUDE_CLIP)))
                self.has_flow &= "flow" in f
            if names is not None and file_names != names:
                raise ValueError(f"{path}: class names differ from {self.paths[0]}")
            names = file_names
        self.labels = np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64)
        self.ids, self.class_names = ids, names or []
        self.magnitude_clip = clips.pop() if len(clips) == 1 else DEFAULT_MAGNITUDE_CLIP
        self.frames = Column(self.paths, "frames")
        self.flow = Column(self.paths, "flow") if self.has_flow else None

    def __len__(self) -> int:
        return len(self.labels)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.startswith("."))


def image_folder_entries(root: Path, test_fraction: float) -> list[tuple[str, str, Path]]:
    """(split, class, path) of every still under ``root``: ``root/{train,test}/<class>/*`` when both
    exist (an official split), else ``root/<class>/*`` split by a stable hash of the relative path."""
    split_dirs = {s: root / s for s in ("train", "test")}
    if all(d.is_dir() for d in split_dirs.values()):
        return [(s, p.relative_to(d).parts[0], p) for s, d in split_dirs.items() for p in _image_files(d)
                if len(p.relative_to(d).parts) > 1]
    entries = []
    for p in _image_files(root):
        rel = p.relative_to(root)
        if len(rel.parts) < 2:
            log.warning("%s: not inside a class folder; skipped", p)
            continue
        which = "test" if (stable_hash(rel.as_posix()) % 10_000) / 10_000 < test_fraction else "train"
        entries.append((which, rel.parts[0], p))
    return entries


def write_image_folder(root: str | os.PathLike, size_hw: tuple[int, int], out_dir: str | os.PathLike,
                       test_fraction: float = 0.3) -> tuple[Path, Path]:
    """Convert a folder of labelled stills into (train, test) static-set files in ``out_dir``,
    one image at a time, resized to ``size_hw``; an unreadable file is skipped with a warning."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"still-image folder {root} is not a directory")
    entries = image_folder_entries(root, test_fraction)
    classes = sorted({c for _, c, _ in entries})
    if len(classes) < 2:
        raise ValueError(f"{root}: found {len(classes)} class folder(s) with images; need at least 2")
    paths = tuple(Path(out_dir) / f"stills-{split}.h5" for split in ("train", "test"))
    for split, path in zip(("train", "test"), paths):
        chosen = [(c, p) for s, c, p in entries if s == split]
        n = _write_stills(path, chosen, classes, size_hw, root)
        if n == 0:
            raise ValueError(f"{root}: no readable {split} images")
    log.info("%s: stills converted into %s and %s (%d classes)", root, *paths, len(classes))
    return paths


def _write_stills(path: Path, entries: list[tuple[str, Path]], classes: list[str], size_hw: tuple[int, int],
                  root: Path) -> int:
    h, w = size_hw
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        frames = f.create_dataset("frames", (0, h, w, 3), np.uint8, maxshape=(None, h, w, 3), chunks=(1, h, w, 3),
                                  **compression("blosc-lz4"))
        labels, ids = [], []
        for class_name, image_path in entries:
            bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
            if bgr is None:
                log.warning("%s: not an image OpenCV can read; skipped", image_path)
                continue
            frames.resize(len(labels) + 1, axis=0)
            frames[len(labels)] = cv2.cvtColor(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA),
                                               cv2.COLOR_BGR2RGB)
            labels.append(classes.index(class_name))
            ids.append(image_path.relative_to(root).as_posix())
        f.create_dataset("labels", data=np.asarray(labels, np.int64))
        f.create_dataset("video_ids", data=np.asarray(ids, dtype=object), dtype=h5py.string_dtype())
        f.attrs["class_names"] = json.dumps(classes)
    return len(labels)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): ``fraction`` of each class (at least one if it has two)."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = int(round(fraction * len(idx)))
        k = min(max(k, 1 if len(idx) >= 2 else 0), len(idx) - 1)
        val += idx[:k].tolist()
        train += idx[k:].tolist()
    return np.array(sorted(train), np.int64), np.array(sorted(val), np.int64)
