"""Flow targets of many videos in one process: decode ahead, batch pairs across videos, cache per video.

One flow job (rule ``shard`` or ``static_shard``) handles a shard's member videos. Start-up
(imports, an estimator, a CUDA context) is paid once per job instead of once per video;
a background pool decodes the next videos while the estimator works; consecutive-frame pairs
from several videos fill one estimator batch, so a GPU sees large batches and short videos
do not leave it idle. Each finished video's result is written at once, atomically, into a
:class:`TargetCache` keyed by everything that changes it (sampling, estimator and its
parameters) and stamped with the video's identity (path, size, mtime): a rerun, or a job
killed midway and restarted, reuses every video already done, and adding a video computes
that video only. A video that cannot be used is cached as rejected, with the reason, and its
batch goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.atomic import atomic_path
from pipeline.data import targets as tg
from pipeline.data.frames import DecodedVideo, Sampling, VideoError, decode_samples
from pipeline.data.targets import VideoFlows, VideoTargets, consecutive_pairs
from pipeline.flow import FlowEstimator, make_estimator

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when a cached result's meaning changes: every video is recomputed
DEFAULT_BATCH_PAIRS = 64  # pairs per estimator call: fills a GPU at 256², bounded memory on CPU
FINISH_BACKLOG = 2  # estimated batches waiting for the finishing thread before the estimator waits
# ExtractStats.summary() as a flow job logs it, for the benchmarks that read the logs
SUMMARY_PATTERN = re.compile(
    r"(?P<videos>\d+) videos: (?P<reused>\d+) reused from the cache, (?P<computed>\d+) computed "
    r"\((?P<rejected>\d+) rejected\); (?P<pairs>\d+) flow pairs, [\d.]+ pairs/s; the estimator "
    r"took (?P<share>\d+)% of (?P<total_s>[\d.]+) s wall time")


@dataclass(frozen=True)
class VideoSource:
    """One video to extract: its id and label, its path as the user knows it (relative to the
    dataset root), the file to read, and its identity (what a cached result must match)."""

    video_id: str
    label: int
    path: str
    file: str
    identity: str


class TargetCache:
    """Per-video results in ``root/<estimator>-<key>/<video_id>.npz``; the key hashes every
    parameter that changes a result, so a changed parameter starts a new folder."""

    def __init__(self, root: str | Path, sampling: Sampling, estimator: str, params: dict[str, Any]):
        self.key = {"cache_version": CACHE_VERSION, "sampling": asdict(sampling) | {"size": list(sampling.size)},
                    "estimator": estimator, "params": params,
                    "damage": [tg.RESIDUAL_FLOOR, tg.MAGNITUDE_FLOOR, tg.MAX_DROPPED]}
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:12]
        self.dir = Path(root) / f"{estimator}-{digest}"

    def path(self, video_id: str) -> Path:
        return self.dir / f"{video_id}.npz"

    def get(self, source: VideoSource) -> VideoTargets | None:
        """The cached result of ``source``, or None when absent, unreadable or of another file."""
        path = self.path(source.video_id)
        if not path.is_file():
            return None
        try:
            cached = VideoTargets.load(path)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s: unreadable cache entry (%s): recomputed", path, exc)
            return None
        return cached if cached.identity == source.identity else None

    def put(self, video: VideoTargets) -> None:
        path = self.path(video.video_id)
        if not self.dir.is_dir():
            self.dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.dir / "key.json") as tmp:
                Path(tmp).write_text(json.dumps(self.key, indent=1, sort_keys=True) + "\n")
        path.parent.mkdir(parents=True, exist_ok=True)
        video.save(path)


@dataclass
class ExtractStats:
    """What one extraction did, for the job's log and the benchmark."""

    videos: int = 0
    reused: int = 0
    computed: int = 0  # rejected ones included
    rejected: int = 0
    pairs: int = 0
    estimator_s: float = 0.0
    total_s: float = 0.0

    def summary(self) -> str:
        share = self.estimator_s / self.total_s if self.total_s else 0.0
        rate = self.pairs / self.total_s if self.total_s else 0.0
        return (f"{self.videos} videos: {self.reused} reused from the cache, {self.computed} computed "
                f"({self.rejected} rejected); {self.pairs} flow pairs, {rate:.1f} pairs/s; the estimator "
                f"took {share:.0%} of {self.total_s:.1f} s wall time")


@dataclass
class _Pending:
    """A decoded video whose flows are under way."""

    source: VideoSource
    flows: VideoFlows


class Extractor:
    """Runs one estimator over many videos, decoding ahead in ``decode_workers`` threads and
    filling batches of ``batch_pairs`` consecutive-frame pairs across video boundaries."""

    def __init__(self, sampling: Sampling, estimator: FlowEstimator, batch_pairs: int = DEFAULT_BATCH_PAIRS,
                 decode_workers: int = 2):
        self.sampling, self.estimator = sampling, estimator
        self.batch_pairs, self.decode_workers = max(1, int(batch_pairs)), max(1, int(decode_workers))
        self.params_json = estimator.params()

    def run(self, sources: Iterable[VideoSource], cache: TargetCache) -> ExtractStats:
        """Every source's result ends up in ``cache``; returns what was reused and computed.

        Three things overlap: decoding (``decode_workers`` threads, a few videos ahead), the
        estimator (this thread) and finishing (one thread, in order: each pair's damage
        statistics and target sums, then each completed video's checks and compressed cache
        entry), so the estimator is not kept waiting by the CPU work around it."""
        start, stats = time.perf_counter(), ExtractStats()
        todo = []
        for source in sources:
            stats.videos += 1
            if cache.get(source) is not None:
                stats.reused += 1
            else:
                todo.append(source)
        queue: deque[tuple[_Pending, int]] = deque()
        with ThreadPoolExecutor(1, thread_name_prefix="finish") as finisher:
            backlog: deque[Future] = deque()
            for source, decoded in tqdm(self._decoded(todo), total=len(todo), desc="videos", disable=None):
                if isinstance(decoded, str):
                    video = VideoTargets(source.video_id, source.label, source.path, "rejected", decoded,
                                         identity=source.identity)
                    backlog.append(finisher.submit(self._finish, video, cache, stats))
                    continue
                pending = _Pending(source, VideoFlows(decoded))
                queue.extend((pending, t) for t in consecutive_pairs(decoded.sample_indices))
                while len(queue) >= self.batch_pairs:
                    self._flow_batch(queue, cache, stats, finisher, backlog)
            while queue:
                self._flow_batch(queue, cache, stats, finisher, backlog)
            while backlog:
                backlog.popleft().result()  # a finishing error surfaces here, in this thread
        stats.total_s = time.perf_counter() - start
        return stats

    def _decoded(self, sources: list[VideoSource]) -> Iterator[tuple[VideoSource, DecodedVideo | str]]:
        """(source, decoded video or the reason it cannot be used), in order, a few videos ahead."""
        with ThreadPoolExecutor(self.decode_workers, thread_name_prefix="decode") as pool:
            ahead: deque[tuple[VideoSource, Future]] = deque()
            it = iter(sources)
            for source in it:
                ahead.append((source, pool.submit(self._decode, source)))
                if len(ahead) > self.decode_workers + 1:
                    break
            while ahead:
                source, future = ahead.popleft()
                nxt = next(it, None)
                if nxt is not None:
                    ahead.append((nxt, pool.submit(self._decode, nxt)))
                yield source, future.result()

    def _decode(self, source: VideoSource) -> DecodedVideo | str:
        try:
            return decode_samples(source.file, self.sampling)
        except VideoError as exc:
            return str(exc)
        except (OSError, cv2.error) as exc:  # a decoder crash on one file must not stop the others
            return f"could not be decoded: {exc}"

    def _flow_batch(self, queue: deque, cache: TargetCache, stats: ExtractStats, finisher: ThreadPoolExecutor,
                    backlog: deque[Future]) -> None:
        """Estimate the first ``batch_pairs`` queued pairs; hand them to the finishing thread."""
        batch = [queue.popleft() for _ in range(min(self.batch_pairs, len(queue)))]
        first = np.stack([p.flows.decoded.frame(t) for p, t in batch])
        second = np.stack([p.flows.decoded.frame(t + 1) for p, t in batch])
        began = time.perf_counter()
        flows = self.estimator.estimate(first, second)
        stats.estimator_s += time.perf_counter() - began
        stats.pairs += len(batch)
        while len(backlog) >= FINISH_BACKLOG:  # bounded: finished flows are not held without limit
            backlog.popleft().result()
        backlog.append(finisher.submit(self._absorb, batch, flows, cache, stats))

    def _absorb(self, batch: list[tuple[_Pending, int]], flows: np.ndarray, cache: TargetCache,
                stats: ExtractStats) -> None:
        """(Finishing thread.) Add a batch's flows to their videos; store every video they complete."""
        for (pending, t), flow in zip(batch, flows):
            pending.flows.add(t, flow)
            if pending.flows.done:
                s = pending.source
                self._finish(pending.flows.result(s.video_id, s.label, s.path, self.params_json, s.identity),
                             cache, stats)

    @staticmethod
    def _finish(video: VideoTargets, cache: TargetCache, stats: ExtractStats) -> None:
        cache.put(video)
        stats.computed += 1
        if not video.ok:
            stats.rejected += 1
            log.warning("%s: rejected: %s", video.path, video.reason)
        elif video.status == "partial":
            log.warning("%s: partly used: %s", video.path, video.reason)


def extract(sources: list[VideoSource], cache_root: str | Path, sampling: Sampling, estimator: str,
            params: dict[str, Any], batch_pairs: int = DEFAULT_BATCH_PAIRS, decode_workers: int = 2
            ) -> tuple[TargetCache, ExtractStats]:
    """Make sure every source's result is in the cache for ``estimator`` with ``params`` (runtime
    options such as threads included; they do not enter the cache key); returns (cache, stats)."""
    flow = make_estimator(estimator, **params)
    cache = TargetCache(cache_root, sampling, estimator, flow.params())
    stats = Extractor(sampling, flow, batch_pairs, decode_workers).run(sources, cache)
    log.info("%s", stats.summary())
    return cache, stats
