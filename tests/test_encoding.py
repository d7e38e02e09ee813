import numpy as np
import pytest

from pipeline import encoding as enc


def random_flows(rng, n=4, h=17, w=23, scale=10.0):
    flow = rng.normal(scale=scale, size=(n, h, w, 2)).astype(np.float32)
    flow[:, :3, :3] = 0.0                       # zero vectors
    flow[:, -1, -1] = (450.0, -300.0)           # large magnitudes
    flow[:, 0, -1] = (0.0, 1e-6)                # tiny, vertical
    return flow


def test_round_trip_exact_including_zero_and_large():
    flow = random_flows(np.random.default_rng(0))
    encoded = enc.encode(flow)
    assert encoded.shape == (4, 3, 17, 23)
    assert np.isfinite(encoded).all()
    np.testing.assert_allclose(enc.decode(encoded), flow, rtol=1e-5, atol=1e-4)


def test_zero_motion_encodes_as_zeros_not_nan():
    encoded = enc.encode(np.zeros((5, 6, 2), np.float32))
    assert np.array_equal(encoded, np.zeros((3, 5, 6), np.float32))


def test_angle_convention_y_down():
    # straight down in image coordinates: v > 0, so sin = +1, cos = 0
    encoded = enc.encode(np.array([[[0.0, 2.0]]], np.float32))
    np.testing.assert_allclose(encoded[:, 0, 0], [1.0, 0.0, 2.0])
    # right: cos = +1
    encoded = enc.encode(np.array([[[3.0, 0.0]]], np.float32))
    np.testing.assert_allclose(encoded[:, 0, 0], [0.0, 1.0, 3.0])


def test_unit_circle():
    encoded = enc.encode(random_flows(np.random.default_rng(1)))
    norm = encoded[:, 0] ** 2 + encoded[:, 1] ** 2
    moving = encoded[:, 2] > 0
    np.testing.assert_allclose(norm[moving], 1.0, atol=1e-5)


def test_flip_negates_cos_and_matches_flipped_raw_flow():
    flow = random_flows(np.random.default_rng(2))
    flipped_encoded = enc.hflip(enc.encode(flow))
    np.testing.assert_allclose(flipped_encoded, enc.encode(enc.hflip_raw(flow)), atol=1e-6)
    # the original code's bug: mirroring the picture only keeps cos, i.e. the wrong direction
    naive = enc.encode(flow)[..., ::-1]
    moving = np.abs(naive[:, 1]) > 0.1
    assert np.all(np.sign(naive[:, 1][moving]) == -np.sign(flipped_encoded[:, 1][moving]))
    # flipping twice is the identity
    np.testing.assert_allclose(enc.hflip(flipped_encoded), enc.encode(flow), atol=1e-6)


@pytest.mark.parametrize("clip", [30.0, 8.0])
def test_network_normalisation_known_values(clip):
    """The released mapping, point by point: M = 0 -> -1, clip/2 -> 0, clip -> 1, beyond the clip -> 1;
    sin and cos pass through; and back."""
    magnitudes = np.array([0.0, clip / 4, clip / 2, clip, 3 * clip], np.float32)
    encoded = np.zeros((3, 1, 5), np.float32)
    encoded[0, 0], encoded[1, 0], encoded[2, 0] = [0.6, -1, 0, 0.8, 0.28], [0.8, 0, 1, -0.6, -0.96], magnitudes
    net = enc.to_network(encoded, clip)
    np.testing.assert_allclose(net[2, 0], [-1.0, -0.5, 0.0, 1.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(net[:2], encoded[:2])
    np.testing.assert_allclose(enc.from_network(net, clip)[2, 0], np.minimum(magnitudes, clip), atol=1e-5)
    # the torch path gives the same numbers (the loader maps batches on the device with it)
    import torch

    np.testing.assert_allclose(enc.to_network(torch.from_numpy(encoded), clip).numpy(), net, atol=1e-6)
    np.testing.assert_allclose(enc.from_network(torch.from_numpy(net), clip).numpy(),
                               enc.from_network(net, clip), atol=1e-6)


def test_frames_to_network_and_flip_agree_on_numpy_and_torch():
    import torch

    frames = np.array([[[[0, 127, 255], [255, 0, 64]]]], np.uint8)   # (1, 1, 2, 3)
    net = enc.frames_to_network(frames)
    assert net.shape == (1, 3, 1, 2) and net.dtype == np.float32
    np.testing.assert_allclose(net[0, :, 0, 0], [-1.0, 127 / 127.5 - 1, 1.0], atol=1e-6)
    np.testing.assert_allclose(enc.frames_to_network(torch.from_numpy(frames)).numpy(), net, atol=1e-6)
    np.testing.assert_allclose(enc.network_to_unit(net)[0, :, 0, 1], [1.0, 0.0, 64 / 255], atol=1e-6)
    encoded = enc.encode(random_flows(np.random.default_rng(4)))
    np.testing.assert_array_equal(enc.hflip(torch.from_numpy(encoded)).numpy(), enc.hflip(encoded))


def test_uint8_image_matches_released_format():
    encoded = enc.encode(np.array([[[3.0, 4.0], [0.0, 0.0]]], np.float32))  # M = 5, sin .8, cos .6
    rgb = enc.to_uint8_image(encoded, 30.0)
    assert rgb.shape == (1, 2, 3) and rgb.dtype == np.uint8
    assert tuple(int(c) for c in rgb[0, 0]) == (int(1.8 / 2 * 255 + 0.5), int(1.6 / 2 * 255 + 0.5), int(5 / 30 * 255 + 0.5))
    assert tuple(rgb[0, 1]) == (128, 128, 0)
    back = enc.decode(enc.from_uint8_image(rgb, 30.0))
    np.testing.assert_allclose(back[0, 0], (3.0, 4.0), atol=0.15)


def test_resize_rescales_vectors():
    flow = np.zeros((20, 40, 2), np.float32)
    flow[..., 0], flow[..., 1] = 4.0, -2.0
    small = enc.resize_flow(flow, (10, 10))
    np.testing.assert_allclose(small[..., 0], 1.0)
    np.testing.assert_allclose(small[..., 1], -1.0)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError):
        enc.encode(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError):
        enc.decode(np.zeros((2, 4, 4)))
