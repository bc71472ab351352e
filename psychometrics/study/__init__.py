"""Studies across models: one study file, a run per model, and the comparison and validity across them.

:mod:`~psychometrics.study.spec` reads and checks the study file; :mod:`~psychometrics.study.runner` runs
it into one study directory. ``psytest study`` and :func:`psychometrics.api.study` call them.
"""
