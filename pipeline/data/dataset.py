"""A PyTorch Dataset over HDF5 shards, read by the training and evaluation rules.

h5py handles cannot be pickled, so files are opened lazily, once per process,
on first access: the same Dataset object works with ``num_workers=0`` and with
worker processes. Random crops and flips come from a numpy generator seeded by
(seed, epoch, index), so augmentation does not depend on the worker count.

Samples leave the loader as stored (uint8 frames, float16 flow in pixels,
cropped and flipped): a loader process does no float arithmetic, and
:func:`to_network` maps a whole batch to the network's range on the device.
"""

from __future__ import annotations

import json
import os
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc/Zstd filters for reading)
import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.data.shards import is_complete
from pipeline.encoding import DEFAULT_MAGNITUDE_CLIP, frames_to_network, hflip, to_network as flow_to_network


class ShardDataset(Dataset):
    """Samples from one or more shards.

    ``ds[i]`` -> dict with ``frame`` (H, W, 3) uint8 RGB, ``flow`` (3, H, W) float16
    (sin, cos, magnitude in px), ``label`` int64 scalar, ``video_id`` str,
    ``frame_index`` int; with ``crop`` both are cut to crop × crop, with ``flip``
    both are mirrored half of the time (the flow's cos negated).
    """

    def __init__(self, paths: list[str | os.PathLike], crop: int | None = None, flip: bool = False, seed: int = 0):
        self.paths = [str(p) for p in paths]
        self.crop, self.flip, self.seed, self.epoch = crop, flip, seed, 0
        self._index, clips, sizes, self.class_names = self._read_headers()
        if len(clips) > 1 or len(sizes) > 1:
            raise ValueError(f"shards mix magnitude clips {sorted(clips)} or frame sizes {sorted(sizes)}")
        self.num_classes = len(self.class_names)
        self.magnitude_clip = clips.pop() if clips else DEFAULT_MAGNITUDE_CLIP
        self.frame_size = sizes.pop() if sizes else (0, 0)
        if crop is not None and len(self._index) and (crop > self.frame_size[0] or crop > self.frame_size[1]):
            raise ValueError(f"crop {crop} is larger than the shards' frames {self.frame_size}")
        self._files: dict[int, tuple[h5py.File, dict]] = {}
        self._pid: int | None = None

    def _read_headers(self) -> tuple[np.ndarray, set[float], set[tuple[int, int]], list[str]]:
        """(sample index as (shard, row) pairs, magnitude clips, frame sizes, class names)."""
        shard_rows, clips, sizes, classes = [], set(), set(), None
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
            shard_rows.append(np.stack([np.full(n, shard_id), np.arange(n)], axis=1))
        index = np.concatenate(shard_rows) if shard_rows else np.zeros((0, 2), np.int64)
        return index.astype(np.int64), clips, sizes, classes or []

    def __len__(self) -> int:
        return len(self._index)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _file(self, shard_id: int) -> tuple[h5py.File, dict[str, Any]]:
        """The open shard and its small per-sample arrays, read once per process."""
        if self._pid != os.getpid():  # first use in this process (e.g. a forked DataLoader worker)
            self._files, self._pid = {}, os.getpid()
        if shard_id not in self._files:
            f = h5py.File(self.paths[shard_id], "r")
            meta = {"labels": f["labels"][:], "frame_index": f["frame_index"][:],
                    "video_ids": [v.decode() if isinstance(v, bytes) else str(v) for v in f["video_ids"][:]],
                    "frames": f["frames"], "flow": f["flow"]}  # dataset handles kept: a name lookup per read costs
            self._files[shard_id] = (f, meta)
        return self._files[shard_id]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_files"], state["_pid"] = {}, None
        return state

    def sample_meta(self, i: int) -> tuple[int, str, int]:
        """(label, video id, frame index) of sample ``i``, without reading its pixels."""
        shard_id, row = (int(x) for x in self._index[i])
        meta = self._file(shard_id)[1]
        return int(meta["labels"][row]), meta["video_ids"][row], int(meta["frame_index"][row])

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray, int, str, int]:
        """Stored sample: frame (H, W, 3) uint8, flow (3, H, W) float16 (sin, cos, M px), label, id, frame."""
        shard_id, row = (int(x) for x in self._index[i])
        f, meta = self._file(shard_id)
        return (meta["frames"][row], meta["flow"][row], int(meta["labels"][row]), meta["video_ids"][row],
                int(meta["frame_index"][row]))

    def __getitem__(self, i: int) -> dict:
        frame, flow, label, video_id, frame_index = self.read(i)
        if self.crop is not None or self.flip:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            if self.crop is not None:
                h, w = frame.shape[:2]
                top, left = int(rng.integers(0, h - self.crop + 1)), int(rng.integers(0, w - self.crop + 1))
                frame = frame[top:top + self.crop, left:left + self.crop]
                flow = flow[:, top:top + self.crop, left:left + self.crop]
            if self.flip and rng.random() < 0.5:
                frame = frame[:, ::-1]
                flow = hflip(flow)  # mirrored motion: u, hence cos, changes sign
        return {"frame": torch.from_numpy(np.ascontiguousarray(frame)),
                "flow": torch.from_numpy(np.ascontiguousarray(flow)),
                "label": torch.tensor(label), "video_id": video_id, "frame_index": frame_index}

    def close(self) -> None:
        for f, _ in self._files.values():
            f.close()
        self._files = {}


def to_network(batch: dict, device: torch.device, magnitude_clip: float,
               memory_format: torch.memory_format = torch.contiguous_format) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader batch -> (frames (B, 3, H, W), flow images (B, 3, H, W)) in the network range on ``device``."""
    frame = frames_to_network(batch["frame"].to(device, non_blocking=True)).contiguous(memory_format=memory_format)
    flow = flow_to_network(batch["flow"].to(device, non_blocking=True), magnitude_clip)
    return frame, flow.contiguous(memory_format=memory_format)
