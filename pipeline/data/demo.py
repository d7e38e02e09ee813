"""A procedurally rendered action dataset in the UCF-101 layout, with exact true flow.

Each class is an object whose still appearance tells how it moves: an arrow
glides the way it points, a car drives towards its headlight, a wheel with
curved spokes spins the way the spokes trail, a pendulum swings away from
the streamer that trails its bob, a balloon rises, a ball falls. Objects and
backgrounds carry multi-scale colour texture so that flow estimation is
meaningful. Every object moves by a
known affine pose per frame, so the forward flow t -> t+1 of every pixel is
exact: x' = A(t+1) A(t)^-1 x for object pixels, 0 for the static background.

Output: ``ROOT/<Class>/v_<Class>_gNN_c01.avi`` (MJPG), beside each video
``v_..._c01.flow.npz`` holding ``flow`` (T-1, H, W, 2) float16, and
``ROOT/ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt``.
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.atomic import atomic_path, save_npz, write_text

log = logging.getLogger(__name__)

CLASSES = ("ArrowGlide", "BalloonRise", "BallFall", "CarDrive", "PendulumSwing", "WheelSpin")

# An object is a mask and a colour function over object coordinates, and a pose
# per frame: a 2x3 affine map from object coordinates to image pixels.
Shape = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Actor:
    mask: Shape          # (xo, yo) -> bool mask
    shade: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (xo, yo, texture rgb) -> rgb
    poses: list[np.ndarray]  # T affine (2, 3) object -> image


def _texture(rng: np.random.Generator, size: int, base: np.ndarray, contrast: float) -> np.ndarray:
    """A multi-octave smooth colour noise texture, float32 (size, size, 3) in [0, 1]."""
    tex = np.zeros((size, size, 3), np.float32)
    for octave, weight in ((4, 0.5), (8, 0.3), (16, 0.15), (48, 0.08)):
        coarse = rng.random((octave, octave, 3)).astype(np.float32)
        tex += weight * cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    tex = (tex - tex.mean()) / (tex.std() + 1e-6)
    return np.clip(base[None, None, :] + contrast * tex, 0.0, 1.0)


def _affine(angle: float, tx: float, ty: float, scale: float = 1.0, mirror: bool = False) -> np.ndarray:
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    m = np.array([[c, -s, tx], [s, c, ty]], np.float64)
    if mirror:
        m[:, 0] *= -1.0
    return m


def _invert(a: np.ndarray) -> np.ndarray:
    full = np.vstack([a, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def _apply(a: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return a[0, 0] * x + a[0, 1] * y + a[0, 2], a[1, 0] * x + a[1, 1] * y + a[1, 2]


def _arrow(rng, h, w, t_count) -> Actor:
    length = rng.uniform(0.4, 0.5) * min(h, w)
    # one of eight compass directions (jittered): a few dozen training clips cover each
    angle = int(rng.integers(0, 8)) * math.pi / 4 + rng.uniform(-0.15, 0.15)
    speed = rng.uniform(2.5, 4.0) * min(h, w) / 96
    d = np.array([math.cos(angle), math.sin(angle)])
    start = np.array([w / 2, h / 2]) - d * speed * t_count / 2
    poses = [_affine(angle, *(start + d * speed * t)) for t in range(t_count)]

    def mask(xo, yo):
        shaft = (xo > -length) & (xo < 0.2 * length) & (np.abs(yo) < 0.12 * length)
        head = (xo >= 0.2 * length) & (xo < length) & (np.abs(yo) < (length - xo) * 0.7)
        return shaft | head

    return Actor(mask, lambda xo, yo, tex: tex, poses)


def _balloon(rng, h, w, t_count, falling: bool = False) -> Actor:
    r = rng.uniform(0.17, 0.21) * min(h, w)
    speed = rng.uniform(2.0, 3.2) * min(h, w) / 96
    x0 = rng.uniform(0.3, 0.7) * w
    sway = rng.uniform(0.5, 1.5) * min(h, w) / 96
    phase = rng.uniform(0, 2 * math.pi)
    if falling:
        y0 = 0.15 * h
        accel = 0.16 * min(h, w) / 96 * (24 / max(t_count, 2)) ** 2  # reaches the bottom in any clip length
        ys = [y0 + speed * 0.4 * t + 0.5 * accel * t * t for t in range(t_count)]
        xs = [x0] * t_count
        spin = rng.choice([-1, 1]) * 0.05
        poses = [_affine(spin * t, xs[t], ys[t]) for t in range(t_count)]
    else:
        y0 = 0.5 * h + 0.4 * speed * t_count  # passes the centre half-way through the clip
        poses = [_affine(0.05 * math.sin(0.3 * t + phase), x0 + sway * math.sin(0.3 * t + phase), y0 - speed * t)
                 for t in range(t_count)]

    if falling:
        def mask(xo, yo):
            return xo**2 + yo**2 < r * r

        def shade(xo, yo, tex):
            # a shaded sphere: light from the top left
            light = np.clip(1.0 - ((xo + 0.35 * r) ** 2 + (yo + 0.35 * r) ** 2) / (1.6 * r * r), 0.35, 1.0)
            return tex * light[..., None]
    else:
        def mask(xo, yo):
            body = (xo / r) ** 2 + (yo / (1.25 * r)) ** 2 < 1.0
            knot = (yo > 1.2 * r) & (yo < 1.45 * r) & (np.abs(xo) < (yo - 1.2 * r) * 0.8 + 0.05 * r)
            string = (yo >= 1.45 * r) & (yo < 3.2 * r) & (np.abs(xo - 0.15 * r * np.sin(yo / r * 3)) < 0.06 * r + 0.6)
            return body | knot | string

        def shade(xo, yo, tex):
            highlight = np.exp(-((xo + 0.4 * r) ** 2 + (yo + 0.5 * r) ** 2) / (0.08 * r * r))
            string = yo >= 1.45 * r
            out = tex * (1 - 0.6 * highlight[..., None]) + 0.6 * highlight[..., None]
            out[string] = 0.15
            return out

    return Actor(mask, shade, poses)


def _car(rng, h, w, t_count) -> Actor:
    length = rng.uniform(0.38, 0.46) * w
    heading_right = bool(rng.integers(0, 2))
    speed = rng.uniform(3.0, 4.5) * w / 128
    y = rng.uniform(0.55, 0.7) * h
    x_start = w / 2 - (1 if heading_right else -1) * speed * t_count / 2
    poses = [_affine(0.0, x_start + (1 if heading_right else -1) * speed * t, y, mirror=not heading_right)
             for t in range(t_count)]
    half, wheel_r = length / 2, 0.13 * length

    def mask(xo, yo):
        body = (np.abs(xo) < half) & (yo > -0.18 * length) & (yo < 0.08 * length)
        cabin = (xo > -0.35 * length) & (xo < 0.12 * length) & (yo > -0.38 * length) & (yo <= -0.18 * length)
        wheels = ((xo - 0.3 * length) ** 2 + (yo - 0.1 * length) ** 2 < wheel_r**2) | (
            (xo + 0.3 * length) ** 2 + (yo - 0.1 * length) ** 2 < wheel_r**2
        )
        return body | cabin | wheels

    def shade(xo, yo, tex):
        out = tex.copy()
        wheels = ((np.abs(xo) - 0.3 * length) ** 2 + (yo - 0.1 * length) ** 2 < wheel_r**2) & (yo > 0.0)
        out[wheels] *= 0.25
        headlight = (xo > half - 0.12 * length) & (yo > -0.17 * length) & (yo < -0.03 * length)
        out[headlight] = (1.0, 0.95, 0.3)
        taillight = (xo < -half + 0.07 * length) & (yo > -0.15 * length) & (yo < -0.07 * length)
        out[taillight] = (0.8, 0.05, 0.05)
        window = (xo > -0.3 * length) & (xo < 0.08 * length) & (yo > -0.34 * length) & (yo < -0.2 * length)
        out[window] = out[window] * 0.3 + np.array([0.45, 0.6, 0.75]) * 0.7
        return out

    return Actor(mask, shade, poses)


def _pendulum(rng, h, w, t_count) -> Actor:
    """A half swing that never turns within the clip, with a streamer trailing the bob:
    a still frame shows which way it swings, as the arrow's head does."""
    pivot = (rng.uniform(0.4, 0.6) * w, 0.06 * h)
    rod = rng.uniform(0.55, 0.68) * h
    bob = 0.16 * min(h, w)
    amplitude = rng.uniform(0.6, 0.85)
    direction = float(rng.choice([-1.0, 1.0]))
    half_period, start = t_count + 6, rng.uniform(0, 6)
    # the angle rises (direction +1) or falls monotonically over the whole clip
    poses = [_affine(-direction * amplitude * math.cos(math.pi * (t + start) / half_period), *pivot)
             for t in range(t_count)]
    # a rising angle moves the bob towards -x in object coordinates: the streamer is on +x
    reach = 3.0 * bob

    def streamer(xo, yo):
        behind = direction * xo
        return (behind > 0) & (behind < reach) & (np.abs(yo - rod) < 0.6 * bob * (1 - behind / reach))

    def mask(xo, yo):
        stick = (np.abs(xo) < 0.02 * h + 0.7) & (yo > 0) & (yo < rod)
        return stick | (xo**2 + (yo - rod) ** 2 < bob * bob) | streamer(xo, yo)

    def shade(xo, yo, tex):
        out = tex.copy()
        out[(yo < rod - bob)] *= 0.45
        tail = streamer(xo, yo) & (xo**2 + (yo - rod) ** 2 >= bob * bob)
        out[tail] = (0.95, 0.15, 0.1)
        return out

    return Actor(mask, shade, poses)


def _wheel(rng, h, w, t_count) -> Actor:
    radius = rng.uniform(0.3, 0.38) * min(h, w)
    centre = (rng.uniform(0.4, 0.6) * w, rng.uniform(0.4, 0.6) * h)
    direction = float(rng.choice([-1.0, 1.0]))
    omega = direction * rng.uniform(0.10, 0.15)
    poses = [_affine(omega * t, *centre) for t in range(t_count)]
    spokes = 5

    def mask(xo, yo):
        return xo**2 + yo**2 < radius * radius

    def shade(xo, yo, tex):
        r = np.hypot(xo, yo) / radius
        theta = np.arctan2(yo, xo)
        # spokes curve back against the spin, like a swept fan blade
        spoke = np.cos(spokes * (theta + direction * 1.2 * r)) > 0.75
        rim = r > 0.88
        out = tex.copy()
        out[spoke | rim] *= 0.3
        out[r < 0.12] = (0.9, 0.9, 0.9)
        return out

    return Actor(mask, shade, poses)


ACTORS = {
    "ArrowGlide": _arrow,
    "BalloonRise": lambda rng, h, w, t: _balloon(rng, h, w, t, falling=False),
    "BallFall": lambda rng, h, w, t: _balloon(rng, h, w, t, falling=True),
    "CarDrive": _car,
    "PendulumSwing": _pendulum,
    "WheelSpin": _wheel,
}


def _with_decoy(background: np.ndarray, class_name: str, seed: int, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Paint one static decoy into the background: another class's object, grey and smaller.

    The decoy never moves (it is part of the static background, so the true flow
    stays exact), but a still frame now shows two class shapes: the label is the
    one that moves. Appearance must learn which shape counts from a few labelled
    stills; flow, true or hallucinated, shows only the mover. The decoy draws on
    its own generator, so the moving object of a given seed is unchanged.
    """
    h, w = background.shape[:2]
    rng = np.random.default_rng([int(seed), 7])
    others = [c for c in ACTORS if c != class_name]
    decoy = ACTORS[others[int(rng.integers(0, len(others)))]](rng, h, w, 12)
    pose = decoy.poses[int(rng.integers(0, 12))].copy()
    scale = rng.uniform(0.55, 0.75)
    pose[:, :2] *= scale
    pose[:, 2] = (rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h)
    xo, yo = _apply(_invert(pose), xs, ys)
    size = 2 * max(h, w)
    tex = _texture(rng, size, np.full(3, rng.uniform(0.35, 0.65)), 0.3)
    tex = cv2.remap(tex, (xo + size / 2).astype(np.float32), (yo + size / 2).astype(np.float32), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REFLECT)
    grey = np.clip(decoy.shade(xo, yo, tex), 0.0, 1.0).mean(axis=-1, keepdims=True)
    return np.where(decoy.mask(xo, yo)[..., None], grey, background).astype(np.float32)


def render_video(class_name: str, seed: int, size_hw: tuple[int, int], n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one clip: (T, H, W, 3) uint8 RGB frames and (T-1, H, W, 2) float32 true flow t -> t+1."""
    h, w = size_hw
    rng = np.random.default_rng(seed)
    tex_size = 2 * max(h, w)
    background = _texture(rng, max(h, w), rng.uniform(0.3, 0.7, 3), 0.25)[:h, :w]
    actor = ACTORS[class_name](rng, h, w, n_frames)
    object_tex = _texture(rng, tex_size, rng.uniform(0.35, 0.75, 3), 0.3)

    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    background = _with_decoy(background, class_name, seed, xs, ys)
    frames = np.empty((n_frames, h, w, 3), np.uint8)
    flows = np.zeros((max(n_frames - 1, 0), h, w, 2), np.float32)
    for t in range(n_frames):
        inv = _invert(actor.poses[t])
        xo, yo = _apply(inv, xs, ys)
        inside = actor.mask(xo, yo)
        tex = cv2.remap(object_tex, (xo + tex_size / 2).astype(np.float32), (yo + tex_size / 2).astype(np.float32),
                        cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        colour = np.clip(actor.shade(xo, yo, tex), 0.0, 1.0)
        image = np.where(inside[..., None], colour, background)
        frames[t] = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if t + 1 < n_frames:
            x1, y1 = _apply(actor.poses[t + 1], xo, yo)
            flows[t, ..., 0] = np.where(inside, x1 - xs, 0.0)
            flows[t, ..., 1] = np.where(inside, y1 - ys, 0.0)
    return frames, flows


def write_video(path: Path, frames_rgb: np.ndarray, fps: float = 25.0) -> None:
    """Write RGB frames as an MJPG AVI (quality 95) atomically."""
    h, w = frames_rgb.shape[1:3]
    with atomic_path(path) as tmp:
        tmp_avi = tmp.with_suffix(".avi")  # OpenCV picks the container from the suffix
        writer = cv2.VideoWriter(str(tmp_avi), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write MJPG video to {path}")
        writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
        for frame in frames_rgb:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        tmp_avi.replace(tmp)


def video_name(class_name: str, group: int) -> str:
    return f"v_{class_name}_g{group:02d}_c01"


def make_demo_dataset(
    root: str | Path,
    classes: tuple[str, ...] | list[str] = CLASSES,
    videos_per_class: int = 8,
    test_groups: int = 2,
    size_hw: tuple[int, int] = (96, 128),
    n_frames: int = 24,
    seed: int = 0,
) -> list[Path]:
    """Render the dataset under ``root``; groups 1..test_groups form testlist01 (as in UCF-101)."""
    root = Path(root)
    unknown = [c for c in classes if c not in ACTORS]
    if unknown:
        raise ValueError(f"unknown demo class(es) {unknown}; known: {sorted(ACTORS)}")
    if not 0 < test_groups < videos_per_class:
        raise ValueError("test_groups must be between 1 and videos_per_class - 1")
    written: list[Path] = []
    train_lines, test_lines = [], []
    jobs = [(ci, c, g) for ci, c in enumerate(classes) for g in range(1, videos_per_class + 1)]
    for ci, class_name, group in tqdm(jobs, desc="render demo", unit="video"):
        name = video_name(class_name, group)
        frames, flow = render_video(class_name, seed * 1_000_003 + ci * 1009 + group, size_hw, n_frames)
        video = root / class_name / f"{name}.avi"
        write_video(video, frames)
        save_npz(root / class_name / f"{name}.flow.npz", flow=flow.astype(np.float16))
        written.append(video)
        rel = f"{class_name}/{name}.avi"
        (test_lines if group <= test_groups else train_lines).append(rel)
    lists = root / "ucfTrainTestlist"
    write_text(lists / "classInd.txt", "".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    label = {c: i + 1 for i, c in enumerate(classes)}
    write_text(lists / "trainlist01.txt", "".join(f"{r} {label[r.split('/')[0]]}\n" for r in train_lines))
    write_text(lists / "testlist01.txt", "".join(f"{r}\n" for r in test_lines))
    log.info("rendered %d demo videos (%d classes) under %s", len(written), len(classes), root)
    return written


def true_flow_path(video: str | Path) -> Path:
    video = Path(video)
    return video.with_name(video.stem + ".flow.npz")


def load_true_flow(video: str | Path) -> np.ndarray:
    """The rendered (T-1, H, W, 2) flow saved beside a demo video, as float32."""
    with np.load(true_flow_path(video)) as data:
        return data["flow"].astype(np.float32)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path, help="dataset root to create")
    p.add_argument("--classes", nargs="+", default=list(CLASSES))
    p.add_argument("--videos-per-class", type=int, default=8)
    p.add_argument("--test-groups", type=int, default=2)
    p.add_argument("--size", type=int, nargs=2, default=(96, 128), metavar=("H", "W"))
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    make_demo_dataset(args.out, tuple(args.classes), args.videos_per_class, args.test_groups,
                      tuple(args.size), args.frames, args.seed)
    return 0
