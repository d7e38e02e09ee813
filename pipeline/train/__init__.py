"""Training (rules ``train_motion_net`` and ``train_im2flow`` in ``workflow/rules/train.smk``).

:mod:`~pipeline.train.loop` is the one training loop (:func:`~pipeline.train.loop.fit`
runs a :class:`~pipeline.train.loop.Task`): resume, mixed precision, the metrics
log, checkpoints and stopping, written once. The tasks: the motion-content
ResNet-18 (:mod:`~pipeline.train.motion_net`) and the Im2Flow U-Net
(:mod:`~pipeline.train.im2flow`); the recognition streams and the codebook
baseline's CNN use the same loop.
"""
