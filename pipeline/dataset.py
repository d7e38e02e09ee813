"""A PyTorch Dataset over HDF5 shards.

h5py handles cannot be pickled, so files are opened lazily, once per process,
on first access: the same Dataset object works with ``num_workers=0`` and with
worker processes. Random crops and flips come from a generator seeded by
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

from .shards import is_complete


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
        self._files: dict[int, h5py.File] = {}
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self._index)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _file(self, shard_id: int) -> h5py.File:
        if self._pid != os.getpid():  # first use in this process (e.g. a forked DataLoader worker)
            self._files, self._pid = {}, os.getpid()
        if shard_id not in self._files:
            self._files[shard_id] = h5py.File(self.paths[shard_id], "r")
        return self._files[shard_id]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_files"], state["_pid"] = {}, None
        return state

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray, int, str, int]:
        """Raw sample: frame (H, W, 3) uint8, flow (3, H, W) float32 (sin, cos, M px), label, id, frame."""
        shard_id, row = self._index[i]
        f = self._file(shard_id)
        video_id = f["video_ids"][row]
        return (f["frames"][row], f["flow"][row].astype(np.float32), int(f["labels"][row]),
                video_id.decode() if isinstance(video_id, bytes) else str(video_id), int(f["frame_index"][row]))

    def __getitem__(self, i: int) -> dict:
        frame, flow, label, video_id, frame_index = self.read(i)
        frame_t = torch.from_numpy(frame).permute(2, 0, 1).float().div(127.5).sub(1.0)
        flow_t = torch.from_numpy(flow)
        flow_t[2] = flow_t[2].clamp(max=self.magnitude_clip).div(self.magnitude_clip).mul(2.0).sub(1.0)
        if self.crop is not None or self.flip:
            g = torch.Generator().manual_seed(hash((self.seed, self.epoch, i)) & 0x7FFF_FFFF_FFFF_FFFF)
            if self.crop is not None:
                h, w = frame_t.shape[1:]
                top = int(torch.randint(0, h - self.crop + 1, (1,), generator=g))
                left = int(torch.randint(0, w - self.crop + 1, (1,), generator=g))
                frame_t = frame_t[:, top:top + self.crop, left:left + self.crop]
                flow_t = flow_t[:, top:top + self.crop, left:left + self.crop]
            if self.flip and bool(torch.rand((), generator=g) < 0.5):
                frame_t = frame_t.flip(-1)
                flow_t = flow_t.flip(-1)
                flow_t[1] = -flow_t[1]  # mirrored motion: u, hence cos, changes sign
        return {"frame": frame_t.contiguous(), "flow": flow_t.contiguous(), "label": torch.tensor(label),
                "video_id": video_id, "frame_index": frame_index}

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}
