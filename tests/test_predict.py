"""`im2flow predict` on a real photograph: the three outputs, the .flo through OpenCV, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline.cli import main
from pipeline.encoding import decode, from_uint8_image
from pipeline.flow.flo import read_flo


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny U-Net saved the way `im2flow train` saves it (the outputs' format is what is tested)."""
    from models.unet import build_unet

    torch.manual_seed(0)
    model = build_unet("tiny")
    with torch.no_grad():  # a non-trivial last layer so that the flow is not all zero
        model.up[-1].conv.weight.normal_(0.0, 0.2)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    torch.save({"model": model.state_dict(), "model_config": model.config.to_dict(), "magnitude_clip": 8.0,
                "train_config": {"model": "tiny"}, "step": 0}, path)
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """scikit-image's cat photograph (300 x 451, not square, not a multiple of anything)."""
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "chelsea.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR))
    return path


def test_predict_photo_writes_three_outputs_and_flo_round_trips(checkpoint, photo, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", str(photo), "--checkpoint", str(checkpoint), "--out", str(out), "--threads", "1"]) == 0
    flo, encoded, color = out / "chelsea.flo", out / "chelsea_flow.png", out / "chelsea_color.png"
    assert flo.is_file() and encoded.is_file() and color.is_file()
    umask = os.umask(0)
    os.umask(umask)
    for path in (flo, encoded, color):  # readable by the group and others, as the umask allows (not 0600)
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, (path, oct(path.stat().st_mode))
    flow = read_flo(flo)
    assert flow.shape == (300, 451, 2) and np.isfinite(flow).all() and np.abs(flow).max() > 0
    via_cv2 = cv2.readOpticalFlow(str(flo))
    assert via_cv2 is not None and via_cv2.shape == (300, 451, 2)
    np.testing.assert_array_equal(via_cv2, flow)
    # and OpenCV's writer gives back the same file content
    cv2.writeOpticalFlow(str(tmp_path / "again.flo"), via_cv2)
    assert (tmp_path / "again.flo").read_bytes() == flo.read_bytes()
    colour = cv2.imread(str(color))
    assert colour.shape == (300, 451, 3)
    record = json.loads((out / "predictions.json").read_text())["predictions"][0]
    assert record["network_size"] == [32, 32] and record["size"] == [300, 451]
    # the encoded PNG decodes back to the raw flow up to 8-bit quantisation
    rgb = cv2.cvtColor(cv2.imread(str(encoded)), cv2.COLOR_BGR2RGB)
    back = decode(from_uint8_image(rgb, record["magnitude_clip_px"]))
    step = record["magnitude_clip_px"] / 127.5  # one grey level of the magnitude channel
    small = np.hypot(flow[..., 0], flow[..., 1]) < record["magnitude_clip_px"]
    assert np.median(np.abs(back - flow)[small]) < 2 * step + 0.02 * np.abs(flow).max()


def test_resize_scales_the_flow(checkpoint, photo, tmp_path):
    """The same photo at twice the size gives (about) twice the flow: (u, v) follow the resize."""
    from pipeline.predict import predict_images

    img = cv2.imread(str(photo))
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), cv2.resize(img, (902, 600), interpolation=cv2.INTER_CUBIC))
    result = predict_images([photo, big], checkpoint, tmp_path / "o", threads=1)
    small_mag, big_mag = (r["mean_magnitude_px"] for r in result["ok"])
    assert big_mag == pytest.approx(2 * small_mag, rel=0.1)


def test_bad_images_are_named_and_the_rest_goes_on(checkpoint, photo, tmp_path, caplog):
    bad = tmp_path / "not_an_image.jpg"
    bad.write_text("hello")
    missing = tmp_path / "missing.png"
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.full((50, 70), 128, np.uint8))
    code = main(["predict", str(bad), str(photo), str(missing), str(grey), "--checkpoint", str(checkpoint),
                 "--out", str(tmp_path / "o"), "--threads", "1"])
    assert code == 1
    assert (tmp_path / "o" / "chelsea.flo").is_file() and (tmp_path / "o" / "grey.flo").is_file()
    assert not (tmp_path / "o" / "not_an_image.flo").exists()
    text = caplog.text
    assert f"{bad}: not an image" in text and f"{missing}: no such file" in text
    failed = json.loads((tmp_path / "o" / "predictions.json").read_text())["failed"]
    assert [f["image"] for f in failed] == [str(bad), str(missing)]


def test_duplicate_stems_do_not_overwrite(checkpoint, photo, tmp_path):
    from pipeline.predict import predict_images

    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / photo.name).write_bytes(photo.read_bytes())
    predict_images([photo, other / photo.name], checkpoint, tmp_path / "o", threads=1)
    assert (tmp_path / "o" / "chelsea.flo").is_file() and (tmp_path / "o" / "chelsea-2.flo").is_file()


def test_flip_average_is_the_mean_of_both_guesses_and_mirror_equivariant(checkpoint):
    """Flip averaging: the mean of the prediction and the mirrored frame's prediction mirrored back
    (u negated); so the averaged prediction of a mirrored frame is the mirrored averaged prediction."""
    from models.unet import load_im2flow
    from pipeline.encoding import hflip_raw
    from pipeline.inference import Im2FlowPredictor, InferenceOptions

    loaded = load_im2flow(checkpoint)
    predict = Im2FlowPredictor(loaded, "cpu", InferenceOptions())
    predict_averaged = Im2FlowPredictor(loaded, "cpu", InferenceOptions(flip_average=True))
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    mirrored = np.ascontiguousarray(frames[:, :, ::-1])
    plain, plain_mirrored, averaged = predict(frames), predict(mirrored), predict_averaged(frames)
    np.testing.assert_allclose(averaged, 0.5 * (plain + hflip_raw(plain_mirrored)), atol=1e-5)
    np.testing.assert_allclose(predict_averaged(mirrored), hflip_raw(averaged), atol=1e-5)
    assert np.abs(plain - averaged).max() > 1e-3      # the untrained net is not mirror-symmetric: it changed
