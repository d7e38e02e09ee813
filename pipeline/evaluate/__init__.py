"""Flow-prediction evaluation, Table 1 and motion potential (rule ``evaluate`` in ``workflow/rules/evaluate.smk``).

:mod:`~pipeline.evaluate.evaluation` runs the stage; :mod:`~pipeline.evaluate.samples`
reads shards in batches; :mod:`~pipeline.evaluate.baselines` holds zero, mean,
nearest-neighbour and codebook flow; :mod:`~pipeline.evaluate.metrics` the
EPE / DS / OS definitions and masks; :mod:`~pipeline.evaluate.motion_potential`
the ranking. Im2Flow itself runs through :mod:`pipeline.inference`.
"""
