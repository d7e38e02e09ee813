"""HDF5 shards: contents and provenance, chunking, stable membership, atomic writes, the Dataset."""

import json
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pipeline.data.dataset import ShardDataset, to_network
from pipeline.encoding import decode, encode
from pipeline.data.extract import TargetCache
from pipeline.data.frames import Sampling
from pipeline.data.shards import CODECS, is_complete, shard_of, write_shard
from pipeline.data.targets import VideoTargets
from pipeline.data.videos import read_records
from pipeline.flow import make_estimator


def fake_video_outputs(tmp_path, name, n_samples=3, size=(24, 32), seed=0, status="ok"):
    """One video's extraction result in its real form, with random content."""
    rng = np.random.default_rng(seed)
    samples = np.arange(n_samples) * 5
    frames = rng.integers(0, 256, (n_samples, *size, 3), dtype=np.uint8)
    targets = rng.normal(scale=3, size=(n_samples, *size, 2)).astype(np.float32)
    targets[:, :2, :2] = 0.0
    if status != "ok":
        return VideoTargets(name, seed % 3, f"{name}.avi", "rejected", "bad file"), frames, targets
    return VideoTargets.from_targets(name, seed % 3, f"{name}.avi", frames, targets, samples, n_decoded=50,
                                     estimator_params='{"warps": 5}'), frames, targets


def shard_kwargs(**kw):
    base = dict(frame_size=(24, 32), class_names=["a", "b", "c"], estimator="tvl1", estimator_params={"warps": 5},
                split="train", shard_index=1, magnitude_clip=30.0, codec="blosc-lz4")
    base.update(kw)
    return base


def test_contents_attributes_and_chunks(tmp_path):
    m1, frames1, targets1 = fake_video_outputs(tmp_path, "A/v1", seed=1)
    m2, _, _ = fake_video_outputs(tmp_path, "B/v2", seed=2)
    bad, _, _ = fake_video_outputs(tmp_path, "C/v3", seed=3, status="rejected")
    n = write_shard([m1, m2, bad], tmp_path / "s.h5", videos_out=tmp_path / "videos.tsv", **shard_kwargs())
    assert n == 6 and is_complete(tmp_path / "s.h5")
    with h5py.File(tmp_path / "s.h5") as f:
        assert f["frames"].shape == (6, 24, 32, 3) and f["frames"].chunks == (1, 24, 32, 3)
        assert f["flow"].shape == (6, 3, 24, 32) and f["flow"].dtype == np.float16 and f["flow"].chunks == (1, 3, 24, 32)
        assert f["flow"].compression is not None or f["flow"]._filters      # blosc is a dynamic filter
        assert [s.decode() for s in f["video_ids"][:3]] == ["A/v1"] * 3   # in the order given
        np.testing.assert_array_equal(f["frames"][:3], frames1)
        np.testing.assert_allclose(decode(f["flow"][:3].astype(np.float32)), targets1, atol=0.02, rtol=2e-3)
        assert list(f["frame_index"][:3]) == [0, 5, 10]
        a = f.attrs
        assert (a["estimator"], json.loads(a["estimator_params"]), a["split"], int(a["shard_index"])) == \
            ("tvl1", {"warps": 5}, "train", 1)
        assert a["encoding_version"] == 1 and a["magnitude_clip"] == 30.0 and list(a["frame_size"]) == [24, 32]
        assert json.loads(a["class_names"]) == ["a", "b", "c"] and a["codec"] == "blosc-lz4"
        assert np.isfinite(f["flow"][:].astype(np.float32)).all()
    records = {r.video_id: r for r in read_records(tmp_path / "videos.tsv")}
    assert records["C/v3"].status == "rejected" and records["C/v3"].reason == "bad file" and records["C/v3"].samples == 0
    assert records["A/v1"].status == "ok" and records["A/v1"].samples == 3 and records["A/v1"].class_name == "b"
    assert records["A/v1"].split == "train" and records["A/v1"].p99_px > 1


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_round_trips(tmp_path, codec):
    m, frames, targets = fake_video_outputs(tmp_path, "A/v", seed=4)
    write_shard([m], tmp_path / f"{codec}.h5", **shard_kwargs(codec=codec))
    with h5py.File(tmp_path / f"{codec}.h5") as f:
        np.testing.assert_array_equal(f["frames"][:], frames)


def test_empty_shard_is_valid(tmp_path):
    assert write_shard([], tmp_path / "e.h5", **shard_kwargs()) == 0
    assert is_complete(tmp_path / "e.h5")
    assert len(ShardDataset([tmp_path / "e.h5"])) == 0


def test_non_finite_flow_never_reaches_a_shard(tmp_path):
    m, _, targets = fake_video_outputs(tmp_path, "A/v", seed=5)
    m.flow[0, 2, 3, 3] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        write_shard([m], tmp_path / "s.h5", **shard_kwargs())
    assert not (tmp_path / "s.h5").exists() and not list(tmp_path.glob(".s.h5*"))


def test_membership_is_stable_when_a_video_is_added():
    ids = [f"Class{i % 7}/v_{i:05d}" for i in range(2000)]
    before = {i: shard_of(i, 16) for i in ids}
    after = {i: shard_of(i, 16) for i in ids + ["NewClass/v_new"]}
    assert all(after[i] == before[i] for i in ids)
    counts = np.bincount(list(before.values()), minlength=16)
    assert counts.min() > 80                                  # the hash spreads videos evenly


def test_killed_writer_leaves_nothing_a_rerun_accepts(tmp_path):
    """`im2flow shard` killed while it writes (every video's targets already in the cache, so the job
    goes straight to writing): no shard under the real name; the rerun writes it."""
    sampling = Sampling((128, 128), "every_k", 5, 5)
    cache = TargetCache(tmp_path / "cache", sampling, "tvl1", make_estimator("tvl1").params())
    members = []
    for i in range(60):
        m, _, _ = fake_video_outputs(tmp_path, f"K/v{i:02d}", n_samples=8, size=(128, 128), seed=i)
        m.identity, m.estimator_params = f"K/v{i:02d}.avi|1|1", "{}"
        cache.put(m)
        members.append([m.video_id, m.label, m.path, m.identity])
    spec = dict(members=members, sampling=sampling.__dict__ | {"size": [128, 128]}, estimator="tvl1",
                estimator_params={}, attrs=dict(class_names=["a", "b", "c"], split="train", shard_index=0,
                                                codec="gzip", magnitude_clip=30.0))
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "shards" / "train-000.h5"
    command = [sys.executable, "-m", "pipeline.cli", "shard", "--spec", f"@{tmp_path / 'spec.json'}", "--out",
               str(out), "--dataset", str(tmp_path / "videos"), "--cache", str(tmp_path / "cache")]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list(out.parent.glob(".train-000.h5.*.partial")):
        time.sleep(0.005)
    partial = list(out.parent.glob(".train-000.h5.*.partial"))
    assert partial, "the writer never started its temporary file"
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()                                   # the real name never appears half-written
    assert all(not is_complete(p) for p in out.parent.glob(".*.partial"))
    # a rerun writes the real shard, from the cache (no video exists: nothing was recomputed)
    subprocess.run(command, check=True, capture_output=True)
    assert is_complete(out) and len(ShardDataset([out])) == 60 * 8


def test_is_complete_rejects_foreign_and_truncated_files(tmp_path):
    m, _, _ = fake_video_outputs(tmp_path, "A/v", seed=6)
    write_shard([m], tmp_path / "s.h5", **shard_kwargs())
    data = (tmp_path / "s.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    assert is_complete(tmp_path / "s.h5")
    assert not is_complete(tmp_path / "cut.h5") and not is_complete(tmp_path / "other.h5")
    with pytest.raises(ValueError, match="cut.h5"):
        ShardDataset([tmp_path / "cut.h5"])


def test_dataset_values_crop_flip_and_workers(tmp_path):
    paths = []
    for k in range(2):
        m, _, _ = fake_video_outputs(tmp_path, f"A/v{k}", seed=10 + k)
        write_shard([m], tmp_path / f"s{k}.h5", **shard_kwargs(magnitude_clip=4.0))
        paths.append(tmp_path / f"s{k}.h5")
    plain = ShardDataset(paths)
    assert len(plain) == 6 and plain.num_classes == 3 and plain.magnitude_clip == 4.0
    item = plain[0]
    frame, flow, label, vid, idx = plain.read(0)
    # samples leave the loader as stored (uint8 frame, float16 flow in px) ...
    assert item["frame"].dtype == torch.uint8 and item["frame"].shape == (24, 32, 3)
    assert item["flow"].dtype == torch.float16 and item["flow"].shape == (3, 24, 32) and item["video_id"] == "A/v0"
    np.testing.assert_array_equal(item["frame"].numpy(), frame)
    # ... and a batch is mapped to the network's range on the device
    batch = next(iter(DataLoader(plain, batch_size=2)))
    net_frame, net_flow = to_network(batch, torch.device("cpu"), plain.magnitude_clip)
    assert net_frame.shape == (2, 3, 24, 32) and -1.0 <= net_frame.min() and net_frame.max() <= 1.0
    np.testing.assert_allclose(net_frame[0].numpy(), np.moveaxis(frame, -1, 0) / 127.5 - 1, atol=1e-6)
    np.testing.assert_allclose(net_flow[0, 2].numpy(), np.minimum(flow[2].astype(np.float32), 4.0) / 4.0 * 2 - 1,
                               atol=1e-6)
    assert net_flow.min() >= -1.0 and net_flow.max() <= 1.0

    aug = ShardDataset(paths, crop=16, flip=True, seed=3)
    flipped_seen = 0
    for i in range(len(aug)):
        a, p = aug[i], plain[i]
        assert a["frame"].shape == (16, 16, 3)
        # find where the crop came from, then check flow was cropped/flipped the same way
        for flip in (False, True):
            f_full = p["frame"].flip(1) if flip else p["frame"]
            w_full = p["flow"].flip(-1) if flip else p["flow"]
            for top in range(24 - 16 + 1):
                for left in range(32 - 16 + 1):
                    if torch.equal(f_full[top:top + 16, left:left + 16], a["frame"]):
                        expected = w_full[:, top:top + 16, left:left + 16].clone()
                        if flip:
                            expected[1] = -expected[1]
                            flipped_seen += 1
                        assert torch.equal(expected, a["flow"])
                        break
                else:
                    continue
                break
    assert 0 < flipped_seen < len(aug) + 1
    # deterministic whatever the worker count
    again = ShardDataset(paths, crop=16, flip=True, seed=3)
    assert all(torch.equal(aug[i]["flow"], again[i]["flow"]) for i in range(len(aug)))
    loader = DataLoader(aug, batch_size=2, num_workers=2, shuffle=False)
    batches = list(loader)
    assert sum(len(b["label"]) for b in batches) == 6
    assert torch.equal(torch.cat([b["frame"] for b in batches]), torch.stack([aug[i]["frame"] for i in range(6)]))


def test_dataset_refuses_mixed_shards(tmp_path):
    m, _, _ = fake_video_outputs(tmp_path, "A/v", seed=7)
    write_shard([m], tmp_path / "a.h5", **shard_kwargs(magnitude_clip=30.0))
    write_shard([m], tmp_path / "b.h5", **shard_kwargs(magnitude_clip=8.0))
    with pytest.raises(ValueError, match="magnitude clips"):
        ShardDataset([tmp_path / "a.h5", tmp_path / "b.h5"])
