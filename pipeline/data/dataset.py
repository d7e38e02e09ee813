"""A PyTorch Dataset over HDF5 shards.

h5py handles cannot be pickled, so files are opened lazily, once per process,
on first access: the same Dataset object works with ``num_workers=0`` and with
worker processes. Random crops and flips come from a numpy generator seeded by
(seed, epoch, index), so augmentation does not depend on the worker count.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc/Zstd filters for reading)
import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.data.shards import is_complete


class ShardDataset(Dataset):
    """Samples from one or more shards.

    ``ds[i]`` -> dict with ``frame`` (3, H, W) float32 RGB in [-1, 1], ``flow``
    (3, H, W) float32 (sin, cos, magnitude mapped to [-1, 1] by the shards'
    magnitude clip), ``label`` int64 scalar, ``video_id`` str, ``frame_index`` int.
    """

    def __init__(self, paths: list[str | os.PathLike], crop: int | None = None, flip: bool = False, seed: int = 0):
        self.paths = [str(p) for p in paths]
        self.crop, self.flip, self.seed, self.epoch = crop, flip, seed, 0
        self._index: list[tuple[int, int]] = []
        clips, classes, sizes = set(), None, set()
        for shard_id, path in enumerate(self.paths):
            if not is_complete(path):
                raise ValueError(f"{path}: not a complete im2flow shard (missing, half-written or another format)")
            with h5py.File(path, "r") as f:
                n = int(f.attrs["n_samples"])
                clips.add(float(f.attrs["magnitude_clip"]))
                names = json.loads(f.attrs["class_names"])
                sizes.add(tuple(int(x) for x in f.attrs["frame_size"]))
            if classes is not None and names != classes:
                raise ValueError(f"{path}: class names differ from {self.paths[0]}")
            classes = names
            self._index += [(shard_id, row) for row in range(n)]
        if len(clips) > 1 or len(sizes) > 1:
            raise ValueError(f"shards mix magnitude clips {sorted(clips)} or frame sizes {sorted(sizes)}")
        self.class_names: list[str] = classes or []
        self.num_classes = len(self.class_names)
        self.magnitude_clip = clips.pop() if clips else 30.0
        self.frame_size = sizes.pop() if sizes else (0, 0)
        if crop is not None and self._index and (crop > self.frame_size[0] or crop > self.frame_size[1]):
            raise ValueError(f"crop {crop} is larger than the shards' frames {self.frame_size}")
        self._files: dict[int, tuple[h5py.File, dict]] = {}
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self._index)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _file(self, shard_id: int) -> tuple[h5py.File, dict[str, np.ndarray]]:
        """The open shard and its small per-sample arrays, read once per process."""
        if self._pid != os.getpid():  # first use in this process (e.g. a forked DataLoader worker)
            self._files, self._pid = {}, os.getpid()
        if shard_id not in self._files:
            f = h5py.File(self.paths[shard_id], "r")
            meta = {"labels": f["labels"][:], "frame_index": f["frame_index"][:],
                    "video_ids": [v.decode() if isinstance(v, bytes) else str(v) for v in f["video_ids"][:]]}
            self._files[shard_id] = (f, meta)
        return self._files[shard_id]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_files"], state["_pid"] = {}, None
        return state

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray, int, str, int]:
        """Raw sample: frame (H, W, 3) uint8, flow (3, H, W) float32 (sin, cos, M px), label, id, frame."""
        shard_id, row = self._index[i]
        f, meta = self._file(shard_id)
        return (f["frames"][row], f["flow"][row].astype(np.float32), int(meta["labels"][row]),
                meta["video_ids"][row], int(meta["frame_index"][row]))

    def __getitem__(self, i: int) -> dict:
        frame, flow, label, video_id, frame_index = self.read(i)
        # numpy, not torch: tiny per-sample ops in torch pay its thread pool's start-up in every worker
        frame = np.transpose(frame, (2, 0, 1)).astype(np.float32) * (1.0 / 127.5) - 1.0
        clip = self.magnitude_clip
        flow[2] = np.minimum(flow[2], clip) * (2.0 / clip) - 1.0
        if self.crop is not None or self.flip:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            if self.crop is not None:
                h, w = frame.shape[1:]
                top, left = int(rng.integers(0, h - self.crop + 1)), int(rng.integers(0, w - self.crop + 1))
                frame = frame[:, top:top + self.crop, left:left + self.crop]
                flow = flow[:, top:top + self.crop, left:left + self.crop]
            if self.flip and rng.random() < 0.5:
                frame = frame[..., ::-1]
                flow = flow[..., ::-1].copy()
                flow[1] = -flow[1]  # mirrored motion: u, hence cos, changes sign
        return {"frame": torch.from_numpy(np.ascontiguousarray(frame)),
                "flow": torch.from_numpy(np.ascontiguousarray(flow)),
                "label": torch.tensor(label), "video_id": video_id, "frame_index": frame_index}

    def close(self) -> None:
        for f, _ in self._files.values():
            f.close()
        self._files = {}
