"""Baselines: exact zero/mean, nearest neighbour on duplicates, the codebook classifier learns a toy rule."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.demo import CLASSES, render_video
from pipeline.evaluate import baselines
from pipeline.evaluate.metrics import endpoint_error
from pipeline.evaluate.samples import ArraySamples

COLOURS = np.array([(220, 30, 30), (30, 200, 30), (30, 30, 220), (220, 220, 30)], np.uint8)
MOTIONS = np.array([(3.0, 0.0), (0.0, 3.0), (-3.0, 0.0), (0.0, -3.0)], np.float32)


def _toy(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Frames whose colour decides the motion: a noisy frame of one of four colours,
    the whole frame moving by that colour's vector."""
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.arange(n) % len(COLOURS))
    noise = rng.integers(-25, 26, size=(n, size, size, 3))
    frames = np.clip(COLOURS[classes][:, None, None, :].astype(int) + noise, 0, 255).astype(np.uint8)
    flows = np.broadcast_to(MOTIONS[classes][:, None, None, :], (n, size, size, 2)).astype(np.float32)
    return frames, flows


def _random_set(n: int = 6, h: int = 16, w: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8),
            rng.normal(size=(n, h, w, 2)).astype(np.float32))


def test_zero_flow_is_exactly_zero():
    frames, flows = _random_set()
    pred = baselines.ZeroFlow().fit(ArraySamples(frames, flows)).predict(frames[:3])
    assert pred.shape == (3, 16, 12, 2) and pred.dtype == np.float32
    assert not pred.any()


def test_mean_flow_is_the_per_pixel_training_mean():
    frames, flows = _random_set(n=7)
    model = baselines.MeanFlow(batch_size=3).fit(ArraySamples(frames, flows))   # a running mean over 3 batches
    pred = model.predict(frames[:2])
    np.testing.assert_allclose(pred[0], flows.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(pred[0], pred[1])
    # another test size: resized with (u, v) scaled
    big = np.zeros((1, 32, 24, 3), np.uint8)
    flows_const = np.zeros_like(flows)
    flows_const[..., 0] = 1.5
    flows_const[..., 1] = -2.0
    up = baselines.MeanFlow().fit(ArraySamples(frames, flows_const)).predict(big)
    np.testing.assert_allclose(up[0, ..., 0], 3.0, rtol=1e-6)
    np.testing.assert_allclose(up[0, ..., 1], -4.0, rtol=1e-6)
    with pytest.raises(RuntimeError):
        baselines.MeanFlow().predict(frames)
    with pytest.raises(ValueError):
        baselines.MeanFlow().fit(ArraySamples(frames, flows[:, :5]))


def _videos(n_frames: int = 8, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Two demo renders of each class: (videos, frames (12, T, size, size, 3))."""
    clips = [render_video(name, 31 * c + k, (size, size), n_frames)[0] for c, name in enumerate(CLASSES)
             for k in range(2)]
    return np.stack(clips)


@pytest.mark.parametrize("features", ["resnet18", "histogram"])
def test_nearest_neighbour_finds_the_same_scene_in_another_frame(features, tmp_path):
    """Index frame 0 of twelve rendered clips; query with frame 5 of each (the object has moved, the
    frames differ pixel by pixel): the neighbour must be the same clip. A hash of the pixels, or
    any embedding unrelated to appearance, fails this."""
    clips = _videos()
    train = clips[:, 0]
    flows = np.random.default_rng(1).normal(size=train.shape[:3] + (2,)).astype(np.float32)  # one flow per clip
    model = baselines.NearestNeighbour(features=features, weights="none", input_size=None, batch_size=5,
                                       index_dir=str(tmp_path))
    model.fit(ArraySamples(train, flows))
    assert model.index_.path.stat().st_size == len(train) * baselines.INDEX_DIM * 2   # float16, 512 B a sample
    queries = clips[:, 5]
    assert not any(np.array_equal(q, t) for q, t in zip(queries, train))
    np.testing.assert_array_equal(model.neighbours(queries), np.arange(len(train)))
    order = np.array([7, 2, 5, 0])
    np.testing.assert_array_equal(model.predict(queries[order]), flows[order])
    described = model.describe()
    assert ("random initialisation" in described and model.random_init_features) if features == "resnet18" \
        else ("histogram" in described and not model.random_init_features)


def test_nearest_neighbour_weights_sources(tmp_path, monkeypatch):
    import torch

    from models.backbones import resnet18_trunk

    # "imagenet" with nothing in the hub cache falls back to random init and says so
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    _, description = resnet18_trunk("imagenet")
    assert "random initialisation (ImageNet weights not available offline)" in description
    # a local state dict is loaded and named
    path = tmp_path / "r18.pth"
    saved, _ = resnet18_trunk("none", seed=3)
    state = dict(saved.state_dict())
    state["fc.weight"] = torch.zeros(1000, 512)
    state["fc.bias"] = torch.zeros(1000)
    torch.save(state, path)
    loaded, description = resnet18_trunk(str(path))
    assert str(path) in description
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), saved(x))
        assert loaded(x).shape == (1, 512)
    with pytest.raises(FileNotFoundError):
        resnet18_trunk(str(tmp_path / "nope.pth"))


def test_kmeans_is_deterministic_and_finds_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([(0, 0), (10, 0), (0, 10)], float)
    points = np.concatenate([c + rng.normal(scale=0.1, size=(50, 2)) for c in centres])
    found, labels = baselines.kmeans(points, 3, seed=5)
    again, labels2 = baselines.kmeans(points, 3, seed=5)
    np.testing.assert_array_equal(found, again)
    np.testing.assert_array_equal(labels, labels2)
    assert sorted(map(tuple, np.round(found).astype(int))) == [(0, 0), (0, 10), (10, 0)]
    assert len(set(labels[:50])) == 1 and len(set(labels)) == 3
    few, _ = baselines.kmeans(np.array([[1.0, 1.0]] * 10 + [[2.0, 2.0]] * 5), 40)
    assert few.shape == (2, 2)


def test_cell_flows_are_area_averages_in_grid_units():
    flows = np.zeros((1, 32, 32, 2), np.float32)
    flows[..., 0] = 4.0
    flows[0, :16, :16, 1] = 8.0          # the top-left quarter also moves down
    cells = baselines.cell_flows(flows, 8).numpy()
    np.testing.assert_allclose(cells[..., 0], 1.0)  # 4 image px = 1 grid px at 8/32
    np.testing.assert_allclose(cells[0, :4, :4, 1], 2.0)
    np.testing.assert_allclose(cells[0, 4:, :, 1], 0.0)
    from pipeline.encoding import resize_flow

    np.testing.assert_allclose(resize_flow(cells[0], (32, 32))[..., 0], 4.0, rtol=1e-6)


def test_codebook_classifier_learns_colour_to_motion():
    train_frames, train_flows = _toy(32, seed=2)
    test_frames, test_flows = _toy(8, seed=3)
    model = baselines.CodebookClassifier(n_codewords=40, grid=4, input_size=32, epochs=12, batch_size=8, width=16,
                                         seed=0, device="cpu")
    pred = model.fit(ArraySamples(train_frames, train_flows)).predict(test_frames)
    assert pred.shape == test_flows.shape and pred.dtype == np.float32 and np.isfinite(pred).all()
    assert len(model.codebook_) <= 40
    assert model.train_loss_[-1] < model.train_loss_[0]
    epe_model = endpoint_error(test_flows, pred).mean()
    epe_zero = endpoint_error(test_flows, np.zeros_like(test_flows)).mean()
    assert epe_zero == pytest.approx(3.0)
    assert epe_model < 0.25 * epe_zero, (epe_model, epe_zero)
    assert "codebook" in model.describe()


def test_codebook_classifier_is_deterministic():
    frames, flows = _toy(8, seed=5)
    runs = [baselines.CodebookClassifier(grid=4, input_size=16, epochs=2, width=8, batch_size=4, seed=1,
                                         device="cpu").fit(ArraySamples(frames, flows)) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].codebook_, runs[1].codebook_)
    np.testing.assert_array_equal(runs[0].predict(frames), runs[1].predict(frames))


def test_registry():
    frames, flows = _toy(8, seed=4)
    model = baselines.make_baseline("nearest_neighbour", features="histogram").fit(ArraySamples(frames, flows))
    assert "histogram" in model.describe()
    with pytest.raises(ValueError):
        baselines.make_baseline("oracle")
