"""The report (rule ``report`` in ``workflow/rules/report.smk``).

:mod:`~pipeline.report.sections` reads the stages' outputs into sections,
:mod:`~pipeline.report.document` renders them as HTML (styled by ``report.css``)
and Markdown, :mod:`~pipeline.report.build` is the stage.
"""
