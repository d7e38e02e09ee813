"""Data preparation: from a folder of videos to HDF5 shards and the lists of what became of each video.

Serves the rules ``demo_dataset`` (:mod:`~pipeline.data.demo`), ``manifest``
(:mod:`~pipeline.data.discovery`), ``shard`` and ``static_shard`` (:mod:`~pipeline.data.shards`,
which runs :mod:`~pipeline.data.extract`: decoding in :mod:`~pipeline.data.frames`, damage checks
in :mod:`~pipeline.data.damage`, flow targets in :mod:`~pipeline.data.targets`) and
``video_lists`` (:mod:`~pipeline.data.videos`). :mod:`~pipeline.data.dataset` reads the shards
for training and evaluation.
"""
