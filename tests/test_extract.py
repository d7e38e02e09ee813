"""Many videos in one process: batches across videos, the per-video cache, rejections inside a batch."""

from __future__ import annotations

import numpy as np

from pipeline.data.extract import Extractor, TargetCache, VideoSource, extract
from pipeline.data.frames import Sampling
from pipeline.data.targets import video_targets
from pipeline.flow.tvl1 import TVL1

SAMPLING = Sampling((32, 32), "every_k", every=3)
PARAMS = {"warps": 2, "nscales": 2}


class CountingTVL1(TVL1):
    """TV-L1 that remembers the batch sizes it was given."""

    def __init__(self, **params):
        super().__init__(**params)
        self.batches: list[int] = []

    def estimate(self, first, second):
        self.batches.append(len(first))
        return super().estimate(first, second)


def _sources(demo_root, names):
    videos = sorted(demo_root.glob("*/*.avi"))
    return [VideoSource(v.stem, k, v.name, str(v), f"{v.name}|{v.stat().st_size}|{v.stat().st_mtime_ns}")
            for k, v in enumerate(videos) if v.stem in names]


def test_batches_span_videos_and_results_equal_one_video_at_a_time(demo_root, tmp_path):
    names = {p.stem for p in sorted(demo_root.glob("*/*.avi"))[:4]}
    sources = _sources(demo_root, names)
    estimator = CountingTVL1(**PARAMS)
    cache = TargetCache(tmp_path, SAMPLING, "tvl1", estimator.params())
    stats = Extractor(SAMPLING, estimator, batch_pairs=7, decode_workers=2).run(sources, cache)
    assert stats.computed == 4 and stats.reused == 0 and stats.rejected == 0
    pairs_per_video = stats.pairs // 4
    assert pairs_per_video % 7 != 0 and max(estimator.batches) == 7   # batches cross video boundaries
    for s in sources:
        alone = video_targets(s.file, SAMPLING, TVL1(**PARAMS), s.video_id, s.label)
        cached = cache.get(s)
        assert cached.ok and cached.identity == s.identity and cached.video_id == s.video_id
        np.testing.assert_array_equal(cached.sample_indices, alone.sample_indices)
        np.testing.assert_array_equal(cached.frames, alone.frames)
        np.testing.assert_array_equal(cached.flow, alone.flow)   # the same float16 the shard stores
    assert 0 < stats.estimator_s <= stats.total_s


def test_cache_reuse_added_video_changed_file_and_changed_parameters(demo_root, tmp_path):
    videos = sorted(demo_root.glob("*/*.avi"))
    first = _sources(demo_root, {v.stem for v in videos[:3]})
    _, stats = extract(first, tmp_path, SAMPLING, "tvl1", PARAMS, batch_pairs=16)
    assert stats.computed == 3
    # nothing changed: nothing computed
    _, again = extract(first, tmp_path, SAMPLING, "tvl1", PARAMS)
    assert again.computed == 0 and again.pairs == 0 and again.reused == 3
    # one more video: that video only
    more = _sources(demo_root, {v.stem for v in videos[:4]})
    _, added = extract(more, tmp_path, SAMPLING, "tvl1", PARAMS)
    assert added.computed == 1 and added.reused == 3
    # a changed file (another size or mtime): that video again
    changed = [s if k else VideoSource(s.video_id, s.label, s.path, s.file, s.identity + "-edited")
               for k, s in enumerate(more)]
    _, edited = extract(changed, tmp_path, SAMPLING, "tvl1", PARAMS)
    assert edited.computed == 1
    # a changed flow parameter: every video, in a new cache folder; the runtime threads change nothing
    cache, other = extract(more, tmp_path, SAMPLING, "tvl1", PARAMS | {"warps": 3})
    assert other.computed == 4
    _, threads = extract(more, tmp_path, SAMPLING, "tvl1", PARAMS | {"warps": 3, "threads": 2})
    assert threads.computed == 0
    assert len([d for d in tmp_path.iterdir() if d.is_dir()]) == 2


def test_a_bad_video_is_cached_as_rejected_and_its_batch_goes_on(demo_root, tmp_path):
    good = _sources(demo_root, {p.stem for p in sorted(demo_root.glob("*/*.avi"))[:2]})
    (tmp_path / "broken.avi").write_bytes(b"not a video at all" * 100)
    bad = VideoSource("X/broken", 0, "X/broken.avi", str(tmp_path / "broken.avi"), "X/broken.avi|1800|1")
    missing = VideoSource("X/missing", 0, "X/missing.avi", str(tmp_path / "missing.avi"), "X/missing.avi|-1|0")
    sources = [good[0], bad, missing, good[1]]
    cache, stats = extract(sources, tmp_path / "cache", SAMPLING, "tvl1", PARAMS, batch_pairs=5)
    assert stats.rejected == 2 and stats.computed == 4
    assert cache.get(good[0]).ok and cache.get(good[1]).ok
    rejected = cache.get(bad)
    assert not rejected.ok and "not a video" in rejected.reason and rejected.path == "X/broken.avi"
    assert "does not exist" in cache.get(missing).reason


class FailingCache(TargetCache):
    """A cache whose disk fills up at the third video."""

    def put(self, video):
        if len(list(self.dir.glob("*.npz"))) == 2:
            raise OSError(28, "No space left on device")
        super().put(video)


def test_an_error_while_finishing_stops_the_job_and_keeps_the_finished_videos(demo_root, tmp_path):
    """Finishing (damage checks, cache writes) runs beside the estimator: its errors must not be lost."""
    sources = _sources(demo_root, {p.stem for p in sorted(demo_root.glob("*/*.avi"))[:5]})
    estimator = TVL1(**PARAMS)
    cache = FailingCache(tmp_path, SAMPLING, "tvl1", estimator.params())
    try:
        Extractor(SAMPLING, estimator, batch_pairs=4).run(sources, cache)
    except OSError as exc:
        assert exc.errno == 28
    else:
        raise AssertionError("the finishing thread's error was swallowed")
    done = [s for s in sources if cache.get(s) is not None]
    assert [s.video_id for s in done] == [s.video_id for s in sources[:2]]
    assert not list(tmp_path.glob("**/*.partial"))  # nothing half-written left behind


def test_the_logged_summary_parses_back():
    """The benchmarks read a flow job's summary line from its log through SUMMARY_PATTERN."""
    from pipeline.data.extract import SUMMARY_PATTERN, ExtractStats

    line = ExtractStats(videos=5, reused=1, computed=4, rejected=1, pairs=40, estimator_s=3.0, total_s=4.0).summary()
    found = SUMMARY_PATTERN.search(f"2026-12-03 INFO pipeline.data.extract: {line}")
    assert found and {k: found[k] for k in ("videos", "computed", "pairs", "share", "total_s")} == \
        {"videos": "5", "computed": "4", "pairs": "40", "share": "75", "total_s": "4.0"}
