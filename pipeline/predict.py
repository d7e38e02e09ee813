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

:func:`hallucinate` is the one place the network turns frames into raw flow;
the evaluation uses it too, so both score and predict the same way.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.encoding import decode, encode, from_network, hflip_raw, resize_flow, to_uint8_image

log = logging.getLogger(__name__)

BN_MODES = ("eval", "train")


def set_bn_mode(model: Any, mode: str) -> Any:
    """Put the generator in test mode: ``eval`` uses BatchNorm's running statistics;
    ``train`` normalises with the statistics of the batch being predicted (what the
    pix2pix test script did). Dropout is off in both, so predictions are deterministic."""
    import torch

    if mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, got {mode!r}")
    model.eval()
    if mode == "train":
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.train()
                module.momentum = 0.0  # use the batch's statistics without touching the stored ones
    return model


def network_size(model: Any, size_hw: tuple[int, int], target: int | None = None) -> tuple[int, int]:
    """The input size the network gets for frames of ``size_hw``: ``target`` squared when
    given, else the frame size rounded to the nearest multiple of 2**levels (at least one)."""
    factor = 2 ** model.config.num_levels
    if target is not None:
        side = max(factor, int(round(target / factor)) * factor)
        return side, side
    return tuple(max(factor, int(round(s / factor)) * factor) for s in size_hw)  # type: ignore[return-value]


def hallucinate(
    model: Any,
    frames: np.ndarray,
    magnitude_clip: float,
    *,
    input_size: int | None = None,
    bn_mode: str = "eval",
    batch_size: int = 32,
    device: str | Any = "cpu",
    flip_average: bool = False,
) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB frames (one size) -> (N, H, W, 2) float32 raw flow (u, v) in pixels.

    Frames are resized to :func:`network_size` when needed and the flow is
    resized back with (u, v) rescaled; the network output is decoded with the
    checkpoint's magnitude clip. ``flip_average``: also predict the mirrored
    frame, mirror that flow back (u negated) and average the two. Training
    flips too, so both are valid guesses; where they disagree about the
    direction the average shrinks towards no motion, which is what an L2
    (endpoint) error rewards under uncertainty.
    """
    import cv2
    import torch

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (N, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
    n, h, w = frames.shape[:3]
    if n == 0:
        return np.zeros((0, h, w, 2), np.float32)
    net_h, net_w = network_size(model, (h, w), input_size)
    device = torch.device(device)
    model = set_bn_mode(model.to(device), bn_mode)
    out = np.empty((n, h, w, 2), np.float32)
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            batch = frames[start:start + batch_size]
            if (net_h, net_w) != (h, w):
                batch = np.stack([cv2.resize(f, (net_w, net_h), interpolation=cv2.INTER_AREA) for f in batch])
            x = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))).to(device)
            x = x.float() * (1.0 / 127.5) - 1.0
            flows = decode(from_network(model(x).float().cpu().numpy(), magnitude_clip))
            if flip_average:
                mirrored = decode(from_network(model(torch.flip(x, dims=[3])).float().cpu().numpy(), magnitude_clip))
                flows = 0.5 * (flows + hflip_raw(mirrored))
            for k, flow in enumerate(flows):
                out[start + k] = flow if (net_h, net_w) == (h, w) else resize_flow(flow, (h, w))
    if not np.isfinite(out).all():
        raise FloatingPointError("the network predicted NaN or Inf flow")
    return out


def read_image(path: str | Path) -> np.ndarray:
    """An image file -> (H, W, 3) uint8 RGB; ValueError naming the file when it cannot be read."""
    import cv2

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
    import cv2

    from pipeline.atomic import atomic_path
    from pipeline.flow.flo import write_flo
    from pipeline.viz import flow_to_color

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
    input_size: int | None = None,
    bn_mode: str = "eval",
    device: str = "auto",
    threads: int | None = None,
    flip_average: bool = False,
) -> dict[str, Any]:
    """Predict every image; returns {"ok": [records], "failed": [(path, reason)]} and writes
    ``predictions.json`` (inputs, outputs, sizes, clips, checkpoint) beside the outputs."""
    import torch

    from models.unet import load_im2flow

    from pipeline.atomic import write_text
    from pipeline.train.loop import choose_device

    if threads:
        torch.set_num_threads(threads)
    dev = choose_device(device)
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = load_im2flow(checkpoint)
    clip = float(ckpt.get("magnitude_clip", 30.0))
    size = input_size or model.config.image_size
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
        h, w = image.shape[:2]
        flow = hallucinate(model, image[None], clip, input_size=size, bn_mode=bn_mode, device=dev,
                           flip_average=flip_average)[0]
        net_h, net_w = network_size(model, (h, w), size)
        out_clip = clip * max(h / net_h, w / net_w)  # the clip in the original image's pixels
        outputs = write_outputs(flow, out_dir, stem, out_clip)
        magnitude = np.hypot(flow[..., 0], flow[..., 1])
        records.append({"image": str(path), "size": [h, w], "network_size": [net_h, net_w],
                        "magnitude_clip_px": out_clip, "mean_magnitude_px": float(magnitude.mean()),
                        "max_magnitude_px": float(magnitude.max()), "outputs": outputs})
        log.info("%s (%dx%d): mean predicted motion %.2f px -> %s", path, w, h, magnitude.mean(), outputs["flo"])
    summary = {"checkpoint": str(checkpoint), "step": ckpt.get("step"), "bn_mode": bn_mode, "flip_average": flip_average,
               "network_magnitude_clip": clip, "predictions": records,
               "failed": [{"image": p, "reason": r} for p, r in failed]}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "predictions.json", json.dumps(summary, indent=2) + "\n")
    return {"ok": records, "failed": failed}


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
    result = predict_images(args.images, args.checkpoint, args.out, input_size=args.size, bn_mode=args.bn_mode,
                            device=args.device, threads=args.threads, flip_average=args.flip_average)
    if result["failed"]:
        log.error("%d of %d images could not be read: %s", len(result["failed"]), len(args.images),
                  "; ".join(r for _, r in result["failed"]))
        return 1
    return 0
