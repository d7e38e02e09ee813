"""Damage inside a video that decodes: what the decoder complained about, frames that are garbage,
and flow that cannot explain the next frame.

A real dataset holds videos that open and decode yet carry broken frames: bytes overwritten
mid-stream (FFmpeg conceals the damage and says so on stderr), frames painted over with
garbage, a cut that leaves the last frames half-decoded. A sample that touches such a frame
would teach the network nonsense, so the extraction finds them three ways and drops the
samples they touch (:meth:`pipeline.data.targets.VideoFlows.result`):

- **decoder errors**: FFmpeg writes them to the process's stderr (file descriptor 2) from C,
  out of Python's reach; :func:`native_stderr_capture` reads them frame by frame;
- **transient frames**: a frame far from both neighbours while they agree with each other
  (:func:`transient_frames`);
- **flow outliers**: a pair whose warp residual or largest motion stands far out from the
  video's other pairs (:func:`pair_stats`, :func:`outliers`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Iterator

import cv2
import numpy as np

# FFmpeg's log lines that mean a frame was damaged (concealed, skipped or half decoded);
# informational lines (stream probing, deprecated pixel formats) do not count.
_DAMAGE_WORDS = re.compile(r"error|corrupt|conceal|invalid|missing|illegal|overread|out of range|"
                           r"decode_slice|no frame|damaged|truncat|bytestream|mmco", re.I)
_BENIGN = re.compile(r"deprecated pixel format|Could not find codec parameters|VIDEOIO|"
                     r"unspecified pixel format|Stream #", re.I)

# fd 2 is one per process: two threads decoding at once would read each other's messages,
# so decoding under capture is serialised (it still overlaps the estimator in another thread).
_CAPTURE_LOCK = threading.RLock()

# FFmpeg decodes frames in threads, so a message arrives a few frames before the picture it
# concerns comes out, and h264 damage spreads to the next frames: an error at frame t marks
# frames t-1 ... t+DECODER_SPREAD (measured: bytes overwritten in carphone_pristine.mp4 report at
# frame 68, the pictures differ from frame 71 on).
DECODER_SPREAD = 4


def decoder_errors(text: str) -> list[str]:
    """The lines of FFmpeg's stderr ``text`` that report damage (prefix like ``[h264 @ 0x..]`` removed)."""
    found = []
    for line in text.splitlines():
        line = re.sub(r"^\[[^\]]*@ ?0x[0-9a-f]+\]\s*", "", line.strip())
        if line and _DAMAGE_WORDS.search(line) and not _BENIGN.search(line):
            found.append(line)
    return found


class NativeStderr:
    """What native code wrote to fd 2 since the last :meth:`read`."""

    def __init__(self, sink) -> None:
        self._sink = sink
        self._offset = 0

    def read(self) -> str:
        self._sink.seek(self._offset)
        data = self._sink.read()
        self._offset += len(data)
        return data.decode("utf-8", "replace")


@contextlib.contextmanager
def native_stderr_capture() -> Iterator[NativeStderr]:
    """Send file descriptor 2 to a temporary file for the block (native libraries' messages land
    there), while Python's own ``sys.stderr`` and logging's stream handlers keep writing where they
    wrote (a duplicate of the old descriptor), so no log line is mistaken for a decoder error."""
    with _CAPTURE_LOCK, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        python_stderr = sys.stderr
        stream = open(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
        handlers = _stderr_handlers(python_stderr)
        try:
            sys.stderr = stream
            for handler in handlers:
                handler.setStream(stream)
            os.dup2(sink.fileno(), 2)
            yield NativeStderr(sink)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sys.stderr = python_stderr
            for handler in handlers:
                handler.setStream(python_stderr)
            stream.close()


def _stderr_handlers(stderr) -> list[logging.StreamHandler]:
    """Logging handlers writing to ``stderr`` (the root's and every named logger's)."""
    loggers = [logging.getLogger()] + [v for v in logging.Logger.manager.loggerDict.values()
                                       if isinstance(v, logging.Logger)]
    return [h for lg in loggers for h in lg.handlers
            if isinstance(h, logging.StreamHandler) and h.stream in (stderr, sys.__stderr__)]


def _grey_small(frame: np.ndarray, size: int = 64) -> np.ndarray:
    return cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (size, size),
                      interpolation=cv2.INTER_AREA).astype(np.float32)


def transient_frames(frames: np.ndarray, indices: list[int], ratio: float = 3.0, floor: float = 12.0) -> list[int]:
    """Frames (by ``indices``) far from both neighbours while the neighbours agree: garbage painted
    into one frame, not a cut (after a cut the next frames agree with the new shot) nor fast motion
    (then the neighbours differ from each other too). Mean absolute grey-level differences."""
    if len(frames) < 3:
        return []
    small = [_grey_small(f) for f in frames]
    found = []
    for k in range(1, len(frames) - 1):
        before = float(np.abs(small[k] - small[k - 1]).mean())
        after = float(np.abs(small[k + 1] - small[k]).mean())
        across = float(np.abs(small[k + 1] - small[k - 1]).mean())
        if min(before, after) > max(floor, ratio * across):
            found.append(int(indices[k]))
    return found


def pair_stats(first: np.ndarray, second: np.ndarray, flow: np.ndarray) -> tuple[float, float]:
    """(warp residual in grey levels, 99th-percentile motion in px) of one flow pair: the residual is
    the mean |first(x) - second(x + flow(x))|, large when the flow cannot explain the next frame."""
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    grey1 = cv2.cvtColor(first, cv2.COLOR_RGB2GRAY).astype(np.float32)
    grey2 = cv2.cvtColor(second, cv2.COLOR_RGB2GRAY).astype(np.float32)
    warped = cv2.remap(grey2, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    residual = float(np.abs(grey1 - warped).mean())
    magnitude = float(np.percentile(np.hypot(flow[..., 0], flow[..., 1]), 99))
    return residual, magnitude


def outliers(values: dict[int, float], floor: float, spread: float = 6.0) -> list[int]:
    """Keys whose value exceeds the video's median by more than ``floor`` and ``spread`` robust
    deviations (MAD): one bad pair stands out of a video's own statistics, whatever the content."""
    if len(values) < 3:
        return []
    array = np.array(list(values.values()), np.float64)
    median = float(np.median(array))
    mad = float(np.median(np.abs(array - median))) * 1.4826
    limit = median + max(floor, spread * mad)
    return sorted(k for k, v in values.items() if v > limit)


@dataclass
class Damage:
    """What was found wrong in one video, by original frame number."""

    decoder_errors: dict[int, str] = field(default_factory=dict)  # frame -> first decoder message
    transient: list[int] = field(default_factory=list)  # frames unlike both neighbours
    flow_pairs: list[int] = field(default_factory=list)  # t of pairs t->t+1 the flow cannot explain
    cuts: list[int] = field(default_factory=list)  # t of shot cuts t->t+1: real content, no damage

    @classmethod
    def of(cls, decoder: dict[int, str], transient: list[int], flow_outliers: list[int]) -> "Damage":
        """Sort the flow outliers: one pair alone between ordinary pairs, with both its frames
        clean, is a shot cut (each frame agrees with its own neighbours); runs of outlier pairs, or
        pairs touching a bad frame, are damage."""
        damage = cls(dict(decoder), sorted(transient))
        bad = damage.frames()
        outlying = set(flow_outliers)
        for t in sorted(outlying):
            alone = t - 1 not in outlying and t + 1 not in outlying
            (damage.cuts if alone and not {t, t + 1} & bad else damage.flow_pairs).append(t)
        return damage

    def spans_cut(self, sample: int, future: int) -> bool:
        """A sample whose five flows cross a cut: its target would average two shots."""
        return any(sample <= t < sample + future for t in self.cuts)

    def frames(self) -> set[int]:
        """Every frame a sample must not touch."""
        decoder = {t + d for t in self.decoder_errors for d in range(-1, DECODER_SPREAD + 1)}
        between = {t for t in self.flow_pairs if t - 1 in self.flow_pairs}  # both its pairs fail: frame t
        return decoder | set(self.transient) | between

    def describe(self) -> str:
        """One line for the video lists, empty when nothing was found."""
        notes = []
        if self.decoder_errors:
            first = min(self.decoder_errors)
            notes.append(f"decoder errors at frames {_frames_text(self.decoder_errors)} (frame {first}: "
                         f"{self.decoder_errors[first][:120]})")
        if self.transient:
            notes.append(f"garbage frames (unlike both neighbours) at {_frames_text(self.transient)}")
        if self.flow_pairs:
            notes.append(f"flow that cannot explain the next frame at pairs {_pairs_text(self.flow_pairs)}")
        if self.cuts:
            notes.append(f"shot cuts at pairs {_pairs_text(self.cuts)} (the samples spanning them are left out)")
        return "; ".join(notes)


def _pairs_text(pairs: list[int], limit: int = 10) -> str:
    return ", ".join(f"{t}->{t + 1}" for t in pairs[:limit]) + (f" (+{len(pairs) - limit} more)"
                                                               if len(pairs) > limit else "")


def _frames_text(frames, limit: int = 10) -> str:
    ordered = sorted(frames)
    more = f" (+{len(ordered) - limit} more)" if len(ordered) > limit else ""
    return ", ".join(map(str, ordered[:limit])) + more
