"""Static-image action recognition, Table 2 (rule ``recognize`` in ``workflow/rules/recognize.smk``).

:mod:`~pipeline.recognize.experiment` runs the stage; :mod:`~pipeline.recognize.static_sets`
reads the static shards (built by the ``static_shard`` rule, :mod:`pipeline.data.shards`)
or a folder of stills; :mod:`~pipeline.recognize.streams` trains one stream on the
shared loop; :mod:`~pipeline.recognize.scoring` fuses and scores;
:mod:`~pipeline.recognize.tables` writes Table 2.
"""
