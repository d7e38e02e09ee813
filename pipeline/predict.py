"""`im2flow predict IMAGE... --checkpoint W --out DIR`: hallucinate the flow of still images.

For each image, three files named after it land in ``--out``:

- ``<stem>_flow.png``: the encoded flow image (sin θ, cos θ, magnitude as
  8-bit RGB, the released code's format) at the image's own size; its
  magnitude clip is the network's, scaled by the resize factor, and is
  recorded in ``predictions.json``;
- ``<stem>.flo``: raw (u, v) in pixels of the original image, Middlebury
  format (``cv2.readOpticalFlow`` reads it);
- ``<stem>_color.png``: the colour-wheel picture.

Any image size works: the image is resized to the network's input size, and
the predicted flow is resized back with u and v scaled by the width and
height factors. An unreadable file is logged with its path and reason and the
other images go on; the exit status is then 1.

The network runs through :mod:`pipeline.inference`, the path the evaluation
and the recognition use too, so all three score and predict the same way.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from models.unet import load_im2flow
from pipeline.atomic import atomic_path, write_text
from pipeline.encoding import encode, to_uint8_image
from pipeline.flow.flo import write_flo
from pipeline.inference import BN_MODES, Im2FlowPredictor, InferenceOptions, network_size
from pipeline.runtime import choose_device, set_threads
from pipeline.viz import flow_to_color

log = logging.getLogger(__name__)


def read_image(path: str | Path) -> np.ndarray:
    """An image file -> (H, W, 3) uint8 RGB; ValueError naming the file when it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file")
    data = np.fromfile(path, np.uint8)  # np.fromfile + imdecode handles non-ASCII names everywhere
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ValueError(f"{path}: not an image OpenCV can decode ({data.size} bytes)")
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    else:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(image)


def write_outputs(flow: np.ndarray, out_dir: Path, stem: str, magnitude_clip: float) -> dict[str, str]:
    """Write the three outputs for one image; returns {kind: path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"encoded": out_dir / f"{stem}_flow.png", "flo": out_dir / f"{stem}.flo", "color": out_dir / f"{stem}_color.png"}
    encoded_rgb = to_uint8_image(encode(flow), magnitude_clip)
    for key, rgb in (("encoded", encoded_rgb), ("color", flow_to_color(flow))):
        with atomic_path(paths[key]) as tmp:
            ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            if not ok:
                raise RuntimeError(f"PNG encoding failed for {paths[key]}")
            tmp.write_bytes(buf.tobytes())
    write_flo(paths["flo"], flow)
    return {k: str(v) for k, v in paths.items()}


def _unique_stems(paths: Sequence[Path]) -> list[str]:
    """Output stems: the file's stem, with ``-2``, ``-3``... when two inputs share one."""
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        stem = p.stem or "image"
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


def predict_images(
    images: Sequence[str | Path],
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    options: InferenceOptions | None = None,
    device: str = "auto",
    threads: int | None = None,
) -> dict[str, Any]:
    """Predict every image; returns {"ok": [records], "failed": [(path, reason)]} and writes
    ``predictions.json`` (inputs, outputs, sizes, clips, checkpoint) beside the outputs.
    ``options.input_size`` defaults to the model's training size."""
    set_threads(threads)
    loaded = load_im2flow(checkpoint)
    options = options or InferenceOptions()
    options.input_size = options.input_size or loaded.model.config.image_size
    predictor = Im2FlowPredictor(loaded, choose_device(device), options)
    out_dir = Path(out_dir)
    paths = [Path(p) for p in images]
    records, failed = [], []
    for path, stem in zip(paths, _unique_stems(paths)):
        try:
            image = read_image(path)
        except ValueError as exc:
            log.error("skipping %s", exc)
            failed.append((str(path), str(exc)))
            continue
        records.append(_predict_one(predictor, image, path, out_dir, stem))
    summary = {"checkpoint": str(checkpoint), "step": loaded.step, "bn_mode": options.bn_mode,
               "flip_average": options.flip_average, "network_magnitude_clip": loaded.magnitude_clip,
               "predictions": records, "failed": [{"image": p, "reason": r} for p, r in failed]}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "predictions.json", json.dumps(summary, indent=2) + "\n")
    return {"ok": records, "failed": failed}


def _predict_one(predictor: Im2FlowPredictor, image: np.ndarray, path: Path, out_dir: Path, stem: str) -> dict:
    """Hallucinate one image's flow, write its three files, return its record."""
    h, w = image.shape[:2]
    flow = predictor(image[None])[0]
    net_h, net_w = network_size(predictor.model, (h, w), predictor.options.input_size)
    out_clip = predictor.magnitude_clip * max(h / net_h, w / net_w)  # the clip in the original image's pixels
    outputs = write_outputs(flow, out_dir, stem, out_clip)
    magnitude = np.hypot(flow[..., 0], flow[..., 1])
    log.info("%s (%dx%d): mean predicted motion %.2f px -> %s", path, w, h, magnitude.mean(), outputs["flo"])
    return {"image": str(path), "size": [h, w], "network_size": [net_h, net_w], "magnitude_clip_px": out_clip,
            "mean_magnitude_px": float(magnitude.mean()), "max_magnitude_px": float(magnitude.max()),
            "outputs": outputs}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files (any size, any format OpenCV reads)")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt written by `im2flow train`")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", type=int, help="network input side in pixels (default: the model's training size)")
    p.add_argument("--bn-mode", choices=BN_MODES, default="eval", help="BatchNorm statistics at test time")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1...")
    p.add_argument("--threads", type=int, help="CPU intra-op threads")
    p.add_argument("--flip-average", action="store_true",
                   help="average with the mirrored image's prediction (mirrored back); evaluate.flip_average")


def run(args: argparse.Namespace) -> int:
    if not Path(args.checkpoint).is_file():
        log.error("checkpoint not found: %s", args.checkpoint)
        return 2
    options = InferenceOptions(bn_mode=args.bn_mode, flip_average=args.flip_average, input_size=args.size)
    result = predict_images(args.images, args.checkpoint, args.out, options=options, device=args.device,
                            threads=args.threads)
    if result["failed"]:
        log.error("%d of %d images could not be read: %s", len(result["failed"]), len(args.images),
                  "; ".join(r for _, r in result["failed"]))
        return 1
    return 0
